//! The Kustomize base under deploy/kubernetes, validated offline (no cluster
//! is reachable here): rendered from kustomization.yaml's `resources`, the
//! core objects checked against the Kubernetes 1.30 schemas and the
//! Prometheus Operator objects against that operator's models (Python
//! packages pinned in tests/python/requirements.txt), the PrometheusRule's
//! rules by promtool, and the objects against each other and the binary.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use testkit::{find_tool, require_tool};

const BIN: &str = env!("CARGO_BIN_EXE_hfbreaker");

fn repo(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn yaml_docs(text: &str) -> Vec<Value> {
    text.split("\n---\n")
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.starts_with('#'))
        })
        .map(|d| serde_saphyr::from_str(d).unwrap())
        .collect()
}

/// The base as `kustomize build` renders it: the files of `resources`, in
/// order. The kustomization may hold nothing else, so this stays exact.
fn render() -> Vec<Value> {
    let base = repo("deploy/kubernetes");
    let k: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(base.join("kustomization.yaml")).unwrap())
            .unwrap();
    let keys: BTreeSet<&str> = k.as_object().unwrap().keys().map(|s| s.as_str()).collect();
    assert_eq!(
        keys,
        BTreeSet::from(["apiVersion", "kind", "resources"]),
        "the test renders only `resources`"
    );
    k["resources"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| yaml_docs(&std::fs::read_to_string(base.join(r.as_str().unwrap())).unwrap()))
        .collect()
}

fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn python() -> Option<PathBuf> {
    let found = [
        std::env::var_os("HFBREAKER_PYTHON").map(PathBuf::from),
        Some(repo("target/fidelity-venv/bin/python")),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.exists());
    if found.is_none() {
        let msg = "no Python environment with kubernetes-validate: run scripts/test (it creates target/fidelity-venv)";
        assert!(std::env::var("CI").is_err(), "{msg}");
        eprintln!("SKIPPED: {msg}");
    }
    found
}

#[test]
fn base_renders_the_expected_objects() {
    let objs = render();
    let kinds: BTreeMap<String, usize> = objs.iter().fold(BTreeMap::new(), |mut m, o| {
        *m.entry(o["kind"].as_str().unwrap().to_string())
            .or_default() += 1;
        m
    });
    for (kind, n) in [
        ("Deployment", 1),
        ("Service", 1),
        ("PodDisruptionBudget", 1),
        ("HorizontalPodAutoscaler", 1),
        ("ServiceMonitor", 1),
        ("PrometheusRule", 1),
        ("Secret", 2),
        ("ConfigMap", 3),
    ] {
        assert_eq!(kinds.get(kind), Some(&n), "{kind}: {kinds:?}");
    }
    // Where kubectl is installed (not by scripts/test), its kustomize agrees.
    if let Some(kubectl) = find_tool(&["kubectl"]) {
        let out = Command::new(kubectl)
            .args(["kustomize", repo("deploy/kubernetes").to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let theirs = yaml_docs(&String::from_utf8(out.stdout).unwrap());
        let key = |o: &Value| format!("{}/{}", o["kind"], o["metadata"]["name"]);
        let mine: BTreeMap<String, &Value> = objs.iter().map(|o| (key(o), o)).collect();
        let theirs: BTreeMap<String, &Value> = theirs.iter().map(|o| (key(o), o)).collect();
        assert_eq!(
            mine.keys().collect::<Vec<_>>(),
            theirs.keys().collect::<Vec<_>>(),
            "kubectl kustomize renders other objects"
        );
        for (k, o) in &mine {
            assert!(
                *o == theirs[k],
                "kubectl kustomize renders {k} differently:\n{}",
                serde_json::to_string_pretty(theirs[k]).unwrap()
            );
        }
    }
}

#[test]
fn objects_validate_against_kubernetes_and_prometheus_operator_schemas() {
    let Some(py) = python() else { return };
    let objs = render();
    let mut child = Command::new(py)
        .arg(repo("tests/kubernetes/validate.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&objs).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "validate.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(results.len(), objs.len());
    for r in &results {
        let validator = r["validator"].as_str().unwrap();
        let operator = r["kind"] == "ServiceMonitor" || r["kind"] == "PrometheusRule";
        assert_eq!(
            validator,
            if operator {
                "prometheus-operator"
            } else {
                "kubernetes 1.30.0"
            }
        );
        assert_eq!(
            r["errors"].as_array().unwrap().len(),
            0,
            "{} {}: {}",
            r["kind"],
            r["name"],
            r["errors"]
        );
    }
}

#[test]
fn prometheusrule_is_the_mixins_rules_and_promtool_accepts_it() {
    let objs = render();
    let rule = find(&objs, "PrometheusRule", "hfbreaker");
    let file: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo("alerts/hfbreaker.rules.yml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        rule["spec"], file,
        "PrometheusRule spec differs from alerts/hfbreaker.rules.yml"
    );
    let Some(promtool) = require_tool("promtool", &["promtool"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spec.json");
    std::fs::write(&path, rule["spec"].to_string()).unwrap();
    let out = Command::new(promtool)
        .args(["check", "rules"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("SUCCESS: 33 rules found"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn dashboard_configmaps_carry_the_dashboards_for_the_grafana_sidecar() {
    let objs = render();
    for f in ["hfbreaker-overview.json", "hfbreaker-endpoint.json"] {
        let name = format!("grafana-dashboard-{}", f.trim_end_matches(".json"));
        let cm = find(&objs, "ConfigMap", &name);
        assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
        let inside: Value = serde_json::from_str(cm["data"][f].as_str().unwrap()).unwrap();
        let file: Value = serde_json::from_str(
            &std::fs::read_to_string(repo(&format!("dashboards/{f}"))).unwrap(),
        )
        .unwrap();
        assert_eq!(inside, file, "{name}");
    }
}

fn container(objs: &[Value]) -> &Value {
    &find(objs, "Deployment", "hfbreaker")["spec"]["template"]["spec"]["containers"][0]
}

fn args(objs: &[Value]) -> BTreeMap<String, String> {
    container(objs)["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let (k, v) = a.as_str().unwrap().split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn port_of(address: &str) -> u64 {
    address.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn deployment_is_hardened_probed_and_spread() {
    let objs = render();
    let d = find(&objs, "Deployment", "hfbreaker");
    assert_eq!(d["spec"]["replicas"], 2);
    let pod = &d["spec"]["template"]["spec"];
    let c = container(&objs);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(
        c["securityContext"]["capabilities"]["drop"],
        serde_json::json!(["ALL"])
    );
    for k in ["requests", "limits"] {
        for r in ["cpu", "memory"] {
            assert!(c["resources"][k][r].is_string(), "resources.{k}.{r}");
        }
    }
    // the probes hit the metrics listener the args open
    let a = args(&objs);
    let ports: BTreeMap<&str, u64> = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                p["containerPort"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ports["metrics"], port_of(&a["--web.listen-address"]));
    assert_eq!(ports["gateway"], port_of(&a["--gateway.listen-address"]));
    for (probe, path) in [
        ("readinessProbe", "/-/ready"),
        ("livenessProbe", "/-/healthy"),
    ] {
        assert_eq!(c[probe]["httpGet"]["path"], path);
        assert_eq!(c[probe]["httpGet"]["port"], "metrics");
    }
    assert_eq!(a["--config.auto-reload-interval"], "30s");
    // two replicas on two nodes
    let anti =
        &pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(anti["topologyKey"], "kubernetes.io/hostname");
    let pod_labels = &d["spec"]["template"]["metadata"]["labels"];
    assert_eq!(&anti["labelSelector"]["matchLabels"], pod_labels);
    assert_eq!(&d["spec"]["selector"]["matchLabels"], pod_labels);
    // storage on an emptyDir volume that is mounted where --storage.path points
    let mounts: BTreeMap<&str, &str> = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap(),
                m["mountPath"].as_str().unwrap(),
            )
        })
        .collect();
    let volumes: BTreeMap<&str, &Value> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v))
        .collect();
    assert_eq!(
        mounts.keys().collect::<Vec<_>>(),
        volumes.keys().collect::<Vec<_>>()
    );
    assert!(volumes["storage"]["emptyDir"].is_object());
    assert_eq!(mounts["storage"], a["--storage.path"]);
    assert_eq!(
        format!("{}/hfbreaker.yml", mounts["config"]),
        a["--config.file"]
    );
    assert!(
        find(
            &objs,
            "ConfigMap",
            volumes["config"]["configMap"]["name"].as_str().unwrap()
        )["data"]["hfbreaker.yml"]
            .is_string()
    );
}

#[test]
fn service_servicemonitor_pdb_and_hpa_point_at_the_deployment() {
    let objs = render();
    let d = find(&objs, "Deployment", "hfbreaker");
    let pod_labels = &d["spec"]["template"]["metadata"]["labels"];
    let c = container(&objs);
    let svc = find(&objs, "Service", "hfbreaker");
    assert_eq!(&svc["spec"]["selector"], pod_labels);
    let container_ports: BTreeSet<&str> = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    let svc_ports: BTreeSet<&str> = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert!(container_ports.contains(p["targetPort"].as_str().unwrap()));
            p["name"].as_str().unwrap()
        })
        .collect();
    assert_eq!(svc_ports, BTreeSet::from(["metrics", "gateway"]));
    let sm = find(&objs, "ServiceMonitor", "hfbreaker");
    assert_eq!(
        &sm["spec"]["selector"]["matchLabels"],
        &svc["metadata"]["labels"]
    );
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
    let pdb = find(&objs, "PodDisruptionBudget", "hfbreaker");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], pod_labels);
    let hpa = find(&objs, "HorizontalPodAutoscaler", "hfbreaker");
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "hfbreaker");
    assert_eq!(hpa["spec"]["minReplicas"], d["spec"]["replicas"]);
    assert_eq!(hpa["spec"]["metrics"][0]["resource"]["name"], "cpu");
}

/// Every flag the container runs with is one the binary has
/// (`--config.auto-reload-interval` comes with the lead's change).
#[test]
fn container_args_are_flags_of_the_binary() {
    let objs = render();
    assert_eq!(
        container(&objs)["command"],
        serde_json::json!(["/hfbreaker"])
    );
    let help = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in args(&objs).keys() {
        assert!(
            help.contains(&format!("{flag}=")) || help.contains(&format!("{flag} ")),
            "hfbreaker has no flag {flag}"
        );
    }
}

/// The ConfigMap's config passes `hfbreaker check-config` with the Secrets'
/// files where the Deployment mounts them (moved into a temporary directory),
/// and every file it names is a key of a mounted Secret.
#[test]
fn configmap_config_passes_check_config_with_the_mounted_secrets() {
    let objs = render();
    let c = container(&objs);
    let pod = &find(&objs, "Deployment", "hfbreaker")["spec"]["template"]["spec"];
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap().to_string();
    // every Secret volume's keys, as files under its mount path
    let mut secret_files = BTreeSet::new();
    for m in c["volumeMounts"].as_array().unwrap() {
        let vol = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == m["name"])
            .unwrap();
        let Some(secret) = vol["secret"]["secretName"].as_str() else {
            continue;
        };
        let s = find(&objs, "Secret", secret);
        for (key, value) in s["stringData"].as_object().unwrap() {
            let path = format!("{}/{key}", m["mountPath"].as_str().unwrap());
            let local = Path::new(&root).join(path.trim_start_matches('/'));
            std::fs::create_dir_all(local.parent().unwrap()).unwrap();
            std::fs::write(&local, value.as_str().unwrap()).unwrap();
            secret_files.insert(path);
        }
    }
    let config = find(&objs, "ConfigMap", "hfbreaker-config")["data"]["hfbreaker.yml"]
        .as_str()
        .unwrap()
        .to_string();
    // the files the config names are files the Secrets provide
    let named: BTreeSet<String> = config
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            l.strip_prefix("token_file:")
                .or(l.strip_prefix("client_keys_file:"))
                .map(|p| p.trim().to_string())
        })
        .collect();
    assert!(named.iter().any(|p| p.contains("client-keys")), "{named:?}");
    for p in &named {
        assert!(
            secret_files.contains(p),
            "{p} is not a mounted Secret key: {secret_files:?}"
        );
    }
    let local = config.replace("/run/secrets/", &format!("{root}/run/secrets/"));
    let file = dir.path().join("hfbreaker.yml");
    std::fs::write(&file, local).unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "check-config: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid (3 endpoints, 1 routes)"));
}
