//! The real binary keeps breaker state across a restart (`--storage.path`),
//! and a storage file it cannot use is a warning and a clean start.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use hfbreaker::sim::{Mode, Protocol, Sim, VirtualSpec};
use testkit::*;

const ADMIN: &str = "adm_restart";

struct World {
    rt: tokio::runtime::Runtime,
    sim: Sim,
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let sim = rt.block_on(sim(vec![
            ("ok", VirtualSpec::new(Protocol::Tgi, "m")),
            (
                "bad",
                VirtualSpec {
                    mode: Mode::Status(503),
                    ..VirtualSpec::new(Protocol::Tgi, "m")
                },
            ),
        ]));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("admin"), ADMIN).unwrap();
        World { rt, sim, dir }
    }

    fn storage(&self) -> std::path::PathBuf {
        self.dir.path().join("state")
    }

    fn config(&self) -> String {
        format!(
            "global:
  interval: 150ms
  timeout: 400ms
  confirm_interval: 40ms
  breaker:
    failure_threshold: 3
    open_duration: 60s
    max_open_duration: 120s
endpoints:
  - {{name: primary, kind: tgi, url: {bad}, probe: health}}
  - {{name: fallback, kind: tgi, url: {ok}, probe: health}}
  - {{name: pinned, kind: tgi, url: {ok}, probe: health}}
routes:
  - name: r
    endpoints: [primary, fallback]
",
            bad = self.sim.url("bad"),
            ok = self.sim.url("ok"),
        )
    }

    fn start(&self, storage: &Path) -> Proc {
        testkit::binary!().daemon(
            &self.config(),
            &[
                &format!("--storage.path={}", storage.display()),
                &format!(
                    "--web.admin-token-file={}",
                    self.dir.path().join("admin").display()
                ),
            ],
            &[],
        )
    }

    fn get(&self, p: &Proc, path: &str) -> serde_json::Value {
        self.rt.block_on(async {
            let r = client()
                .get(format!("{}{path}", p.base()))
                .send()
                .await
                .unwrap();
            serde_json::from_str(&r.text().await.unwrap()).unwrap()
        })
    }

    fn admin(&self, p: &Proc, endpoint: &str, action: &str) -> u16 {
        self.rt.block_on(async {
            client()
                .post(format!("{}/api/v1/breakers/{endpoint}/{action}", p.base()))
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    }

    fn breaker(&self, p: &Proc, name: &str) -> serde_json::Value {
        let v = self.get(p, "/api/v1/breakers");
        v["breakers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {v}"))
    }
}

fn time(v: &serde_json::Value) -> SystemTime {
    humantime::parse_rfc3339(v.as_str().unwrap_or_else(|| panic!("a time: {v}"))).unwrap()
}

fn stop(p: &mut Proc) {
    p.signal("TERM");
    let status = p.exit_within(Duration::from_secs(10)).expect("exits");
    assert_eq!(status.code(), Some(0), "{}", p.stderr());
}

#[test]
fn restart_keeps_open_and_forced_breakers_and_the_fallback() {
    let w = World::new();
    let mut p = w.start(&w.storage());
    let start = Instant::now();
    while w.breaker(&p, "primary")["state"] != "open" {
        assert!(start.elapsed() < Duration::from_secs(10), "{}", p.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(w.admin(&p, "pinned", "force-open"), 200);
    let open_until = time(&w.breaker(&p, "primary")["open_until"]);
    stop(&mut p);
    let text = std::fs::read_to_string(w.storage().join("breakers.json")).unwrap();
    assert!(
        text.contains("\"format\": \"hfbreaker-breakers\""),
        "{text}"
    );

    let p = w.start(&w.storage());
    // The first answers already have the saved state: no trip needed.
    let routes = w.get(&p, "/api/v1/routes");
    assert_eq!(routes["routes"][0]["serving"], "fallback", "{routes}");
    let primary = w.breaker(&p, "primary");
    assert_eq!(primary["state"], "open", "{primary}");
    let until = time(&primary["open_until"]);
    let drift = until
        .duration_since(open_until)
        .unwrap_or_else(|e| e.duration());
    assert!(
        drift <= Duration::from_secs(1),
        "open_until moved by {drift:?}"
    );
    assert_eq!(w.breaker(&p, "pinned")["state"], "forced_open");
    assert_eq!(w.breaker(&p, "fallback")["state"], "closed");
    assert!(
        p.stderr().contains("breaker state restored"),
        "{}",
        p.stderr()
    );
    // still open a while later: the period runs on, probes are rejected
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(w.breaker(&p, "primary")["state"], "open");
    assert_eq!(
        w.get(&p, "/api/v1/routes")["routes"][0]["serving"],
        "fallback"
    );
}

#[test]
fn unusable_storage_files_give_a_warning_and_a_clean_start() {
    let w = World::new();
    // A valid file to damage: pinned forced open.
    let mut p = w.start(&w.storage());
    assert_eq!(w.admin(&p, "pinned", "force-open"), 200);
    stop(&mut p);
    let file = w.storage().join("breakers.json");
    let good = std::fs::read(&file).unwrap();
    type Damage = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Damage)> = vec![
        (
            "corrupt",
            Box::new(|f| std::fs::write(f, b"\x00\x01{{{ not json").unwrap()),
        ),
        (
            "truncated",
            Box::new(move |f| std::fs::write(f, &good[..good.len() / 2]).unwrap()),
        ),
        (
            "foreign",
            Box::new(|f| {
                std::fs::write(
                    f,
                    br#"{"format":"hfbreaker-breakers","version":99,"endpoints":{}}"#,
                )
                .unwrap()
            }),
        ),
        (
            "unreadable",
            Box::new(|f| {
                std::fs::remove_file(f).unwrap();
                std::fs::create_dir(f).unwrap();
            }),
        ),
    ];
    for (name, damage) in cases {
        damage(&file);
        let mut p = w.start(&w.storage());
        p.wait_stderr("ignoring the saved breaker state", Duration::from_secs(5));
        assert!(
            p.stderr().contains("level=warn"),
            "{name}: a warning\n{}",
            p.stderr()
        );
        assert_eq!(
            w.breaker(&p, "pinned")["state"],
            "closed",
            "{name}: clean start"
        );
        stop(&mut p);
        if file.is_dir() {
            std::fs::remove_dir(&file).unwrap();
        }
    }
}

#[test]
fn a_storage_path_that_cannot_be_written_never_blocks_for_long() {
    let w = World::new();
    // A file where the directory should be: nothing can be written under it.
    let blocked = w.dir.path().join("not-a-dir");
    std::fs::write(&blocked, "x").unwrap();
    let mut p = w.start(&blocked);
    let start = Instant::now();
    assert_eq!(
        w.admin(&p, "pinned", "force-open"),
        503,
        "applied but not saved: not acknowledged"
    );
    assert!(start.elapsed() < Duration::from_secs(6));
    assert_eq!(
        w.breaker(&p, "pinned")["state"],
        "forced_open",
        "applied all the same"
    );
    // probing goes on
    let start = Instant::now();
    while w.breaker(&p, "primary")["state"] != "open" {
        assert!(start.elapsed() < Duration::from_secs(10), "{}", p.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    let errors = scrape_blocking(&w.rt, &p.base())
        .val("hfbreaker_local_errors_total", &[("operation", "storage")]);
    assert!(errors >= 1.0, "failed writes are counted");
    assert!(
        p.stderr().contains("cannot save breaker state"),
        "{}",
        p.stderr()
    );
    stop(&mut p);
}
