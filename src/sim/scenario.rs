//! Scenario files: the virtual endpoints of a simulated deployment and a
//! timeline of modes for each.
//!
//! ```yaml
//! endpoints:
//!   - name: zephyr-dedicated
//!     protocol: tgi                # tgi | tei | router | hf-inference | endpoints-api
//!     model: HuggingFaceH4/zephyr-7b-beta
//!     api_key: sim-key             # optional: inference routes need this bearer token
//!     loop: true                   # repeat the timeline (default); false keeps the last mode
//!     timeline:
//!       - {mode: ok, for: 20s}
//!       - {mode: {status: 503}, for: 10s, note: "the primary fails"}
//!       - mode:                    # a latency model; its clock starts with the step
//!           latency: {median: 80ms, jitter: 0.2, brownout: {start: 5s, ramp: 1m, peak: 5}}
//!         for: 2m
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;
use tokio::sync::mpsc;

use super::{Mode, Protocol, Sim, VirtualSpec};
use crate::config::{Errors, FieldError, HumanDuration, render_errors, syntax_error};

#[derive(Clone, Debug)]
pub struct Scenario {
    pub endpoints: Vec<ScenarioEndpoint>,
}

#[derive(Clone, Debug)]
pub struct ScenarioEndpoint {
    /// Path prefix: the endpoint is served under `/{name}/`.
    pub name: String,
    pub protocol: Protocol,
    /// Model id the endpoint reports and serves.
    pub model: String,
    /// Bearer token inference routes require.
    pub api_key: Option<String>,
    /// hf-inference: answer as a feature-extraction model.
    pub embedding: Option<bool>,
    /// Repeat the timeline; false keeps the last step's mode.
    pub repeat: bool,
    /// Mode when there is no timeline.
    pub mode: Option<Mode>,
    pub timeline: Vec<Step>,
}

#[derive(Clone, Debug)]
pub struct Step {
    pub mode: Mode,
    pub duration: HumanDuration,
    /// Printed when the step begins (the demo shows it).
    pub note: Option<String>,
}

// The file as written: the types above plus the positions that semantic
// errors point at.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    endpoints: Vec<RawEndpoint>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    name: Spanned<String>,
    protocol: Protocol,
    #[serde(default = "default_model")]
    model: String,
    #[serde(default)]
    api_key: Option<String>,
    #[serde(default)]
    embedding: Option<bool>,
    #[serde(default = "default_loop", rename = "loop")]
    repeat: bool,
    #[serde(default)]
    mode: Option<Spanned<Mode>>,
    #[serde(default)]
    timeline: Vec<RawStep>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    mode: Spanned<Mode>,
    #[serde(rename = "for")]
    duration: Spanned<HumanDuration>,
    #[serde(default)]
    note: Option<String>,
}

fn default_model() -> String {
    "HuggingFaceH4/zephyr-7b-beta".to_string()
}

fn default_loop() -> bool {
    true
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{0}: cannot read scenario: {1}")]
    Read(String, std::io::Error),
    /// Every problem found, each as `origin:line:column: field: message`.
    #[error("{}", render_errors(origin, errors))]
    Invalid {
        origin: String,
        errors: Vec<FieldError>,
    },
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let origin = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|e| ScenarioError::Read(origin.clone(), e))?;
        Scenario::parse(&text, &origin)
    }

    /// Parse YAML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        let invalid = |errors| ScenarioError::Invalid {
            origin: origin.to_string(),
            errors,
        };
        let raw: RawScenario =
            serde_saphyr::from_str(text).map_err(|e| invalid(vec![syntax_error(&e, text)]))?;
        let mut errs = Errors::new();
        check(&raw, &mut errs);
        errs.finish().map_err(invalid)?;
        Ok(Scenario {
            endpoints: raw
                .endpoints
                .into_iter()
                .map(ScenarioEndpoint::from)
                .collect(),
        })
    }

    /// Start a simulator playing this scenario. Step notes go to `notes`.
    pub async fn start(
        &self,
        addr: SocketAddr,
        notes: Option<mpsc::UnboundedSender<String>>,
    ) -> std::io::Result<Sim> {
        let specs = self
            .endpoints
            .iter()
            .map(|e| {
                let mut spec = VirtualSpec::new(e.protocol, &e.model);
                spec.api_key = e.api_key.clone();
                if let Some(emb) = e.embedding {
                    spec.embedding = emb;
                }
                spec.mode = e
                    .timeline
                    .first()
                    .map(|s| s.mode.clone())
                    .or_else(|| e.mode.clone())
                    .unwrap_or(Mode::Ok);
                (e.name.clone(), spec)
            })
            .collect();
        let mut sim = Sim::start(addr, specs).await?;
        for e in self.endpoints.iter().filter(|e| !e.timeline.is_empty()) {
            let state = sim.state.clone();
            let e = e.clone();
            let notes = notes.clone();
            sim.timelines.push(tokio::spawn(async move {
                loop {
                    for step in &e.timeline {
                        if let Some(v) = state
                            .endpoints
                            .read()
                            .unwrap_or_else(|p| p.into_inner())
                            .get(&e.name)
                        {
                            v.set_mode(step.mode.clone());
                        }
                        if let (Some(tx), Some(note)) = (&notes, &step.note) {
                            let _ = tx.send(format!("{}: {note}", e.name));
                        }
                        tokio::time::sleep(step.duration.0).await;
                    }
                    if !e.repeat {
                        break;
                    }
                }
            }));
        }
        Ok(sim)
    }

    /// Length of the longest timeline.
    pub fn cycle(&self) -> Duration {
        self.endpoints
            .iter()
            .map(|e| e.timeline.iter().map(|s| s.duration.0).sum())
            .max()
            .unwrap_or_default()
    }
}

/// Names must be unique and usable as a path prefix (a leading `_` is the
/// simulator's own `/_sim/`); steps must take time, or a loop would spin.
fn check(raw: &RawScenario, errs: &mut Errors) {
    let mut seen: HashMap<&str, u64> = HashMap::new();
    for (i, e) in raw.endpoints.iter().enumerate() {
        let name = &e.name.value;
        let ok = !name.is_empty()
            && !name.starts_with('_')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            errs.at(
                &e.name,
                format!("endpoints[{i}].name"),
                format!("{name:?}: use [A-Za-z0-9_-], not starting with _"),
            );
        } else if let Some(first) = seen.get(name.as_str()) {
            errs.at(
                &e.name,
                format!("endpoints[{i}].name"),
                format!("duplicate {name:?} (first defined on line {first})"),
            );
        } else {
            seen.insert(name, e.name.referenced.line());
        }
        if let Some(mode) = &e.mode {
            check_mode(mode, &format!("endpoints[{i}].mode"), errs);
        }
        for (j, step) in e.timeline.iter().enumerate() {
            check_mode(
                &step.mode,
                &format!("endpoints[{i}].timeline[{j}].mode"),
                errs,
            );
            if step.duration.value.0.is_zero() {
                errs.at(
                    &step.duration,
                    format!("endpoints[{i}].timeline[{j}].for"),
                    "a step needs a duration above zero",
                );
            }
        }
    }
}

/// A mode's bad values (a latency model's), each at the mode's position.
fn check_mode(mode: &Spanned<Mode>, at: &str, errs: &mut Errors) {
    for (field, msg) in mode.value.problems() {
        errs.at(mode, format!("{at}.{field}"), msg);
    }
}

impl From<RawEndpoint> for ScenarioEndpoint {
    fn from(e: RawEndpoint) -> Self {
        ScenarioEndpoint {
            name: e.name.value,
            protocol: e.protocol,
            model: e.model,
            api_key: e.api_key,
            embedding: e.embedding,
            repeat: e.repeat,
            mode: e.mode.map(|m| m.value),
            timeline: e
                .timeline
                .into_iter()
                .map(|s| Step {
                    mode: s.mode.value,
                    duration: s.duration.value,
                    note: s.note,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_mode() {
        let s = Scenario::parse(
            r#"
endpoints:
  - name: a
    protocol: tgi
    timeline:
      - {mode: ok, for: 1s}
      - {mode: {status: 503}, for: 1s, note: "503s"}
      - {mode: hang, for: 1s}
      - {mode: reset, for: 1s}
      - {mode: down, for: 1s}
      - {mode: {slow: 2s}, for: 1s}
      - {mode: garbage, for: 1s}
      - {mode: huge_body, for: 1s}
      - {mode: {loading: {estimated_time: 15}}, for: 1s}
      - {mode: {rate_limited: {retry_after: 5}}, for: 1s}
      - {mode: auth_failure, for: 1s}
      - {mode: scaled_to_zero, for: 1s}
      - {mode: paused, for: 1s}
      - {mode: failed, for: 1s}
      - {mode: stream_error, for: 1s}
      - {mode: {flapping: {period: 10s, fault: {status: 500}}}, for: 1s}
  - name: b
    protocol: endpoints-api
    mode: scaled_to_zero
"#,
            "s.yml",
        )
        .unwrap();
        assert_eq!(s.endpoints[0].timeline.len(), 16);
        assert_eq!(s.endpoints[0].timeline[1].mode, Mode::Status(503));
        assert_eq!(
            s.endpoints[0].timeline[5].mode,
            Mode::Slow(HumanDuration(Duration::from_secs(2)))
        );
        assert_eq!(s.endpoints[1].mode, Some(Mode::ScaledToZero));
        assert_eq!(s.cycle(), Duration::from_secs(16));
    }

    #[test]
    fn shipped_examples_parse() {
        let s = Scenario::parse(
            include_str!("../../examples/scenario.yml"),
            "examples/scenario.yml",
        )
        .unwrap();
        assert_eq!(s.endpoints.len(), 5);
        assert_eq!(s.endpoints[0].timeline.len(), 13);
        assert!(!s.endpoints[2].repeat);
    }

    /// The rendered error lines for a scenario that must not parse.
    fn errors(yaml: &str) -> Vec<String> {
        match Scenario::parse(yaml, "s.yml") {
            Ok(_) => panic!("expected an error for:\n{yaml}"),
            Err(e) => e.to_string().lines().map(str::to_string).collect(),
        }
    }

    const HEAD: &str = "endpoints:\n  - name: a\n    protocol: tgi\n";

    #[test]
    fn yaml_syntax_errors_name_line_and_column() {
        let e = errors(&format!(
            "{HEAD}    timeline:\n      - {{mode: ok, for: 1s\n"
        ));
        assert_eq!(e, ["s.yml:5:9: mode: unclosed bracket '{'"]);
        let e = errors(&format!("{HEAD}    model: x: y\n"));
        assert_eq!(
            e,
            ["s.yml:4:13: model: mapping values are not allowed in this context"]
        );
    }

    #[test]
    fn unknown_fields_name_line_column_and_field() {
        let e = errors("endpoints:\n  - name: a\n    protocl: tgi\n");
        assert_eq!(
            e,
            [
                "s.yml:3:5: protocl: unknown field `protocl`, expected one of name, protocol, \
              model, api_key, embedding, loop, mode, timeline"
            ]
        );
        let e = errors(&format!(
            "{HEAD}    timeline:\n      - {{mode: ok, for: 1s, bogus: 2}}\n"
        ));
        assert_eq!(
            e,
            ["s.yml:5:29: bogus: unknown field `bogus`, expected one of mode, for, note"]
        );
    }

    #[test]
    fn bad_values_name_line_column_and_field() {
        let e = errors(&format!(
            "{HEAD}    timeline:\n      - {{mode: sideways, for: 1s}}\n"
        ));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("s.yml:5:16: mode: unknown variant `sideways`"),
            "{e:?}"
        );
        let e = errors(&format!(
            "{HEAD}    timeline:\n      - {{mode: {{status: abc}}, for: 1s}}\n"
        ));
        assert_eq!(e, ["s.yml:5:25: status: invalid u16"]);
        let e = errors(&format!(
            "{HEAD}    timeline:\n      - {{mode: ok, for: 1 parsec}}\n"
        ));
        assert!(
            e[0].starts_with("s.yml:5:25: for: invalid duration \"1 parsec\""),
            "{e:?}"
        );
        let e = errors("endpoints:\n  - name: a\n    protocol: grpc\n");
        assert!(
            e[0].starts_with("s.yml:3:15: protocol: unknown variant `grpc`"),
            "{e:?}"
        );
        let e = errors(&format!("{HEAD}    loop: maybe\n"));
        assert_eq!(e, ["s.yml:4:11: loop: invalid boolean"]);
    }

    #[test]
    fn semantic_errors_are_all_reported_with_positions() {
        let yaml = "endpoints:
  - name: a
    protocol: tgi
  - {name: a, protocol: tei}
  - name: _sim
    protocol: tgi
    timeline:
      - {mode: ok, for: 0s}
      - mode: hang
        for: 0ms
  - name: a/b
    protocol: tei
";
        assert_eq!(
            errors(yaml),
            [
                "s.yml:4:12: endpoints[1].name: duplicate \"a\" (first defined on line 2)",
                "s.yml:5:11: endpoints[2].name: \"_sim\": use [A-Za-z0-9_-], not starting with _",
                "s.yml:8:25: endpoints[2].timeline[0].for: a step needs a duration above zero",
                "s.yml:10:14: endpoints[2].timeline[1].for: a step needs a duration above zero",
                "s.yml:11:11: endpoints[3].name: \"a/b\": use [A-Za-z0-9_-], not starting with _",
            ]
        );
    }

    #[test]
    fn duplicate_names_point_at_the_first_definition() {
        let e = errors(&format!(
            "{HEAD}  - {{name: a, protocol: tei}}\n  - {{name: a, protocol: tgi}}\n"
        ));
        assert_eq!(
            e,
            [
                "s.yml:4:12: endpoints[1].name: duplicate \"a\" (first defined on line 2)",
                "s.yml:5:12: endpoints[2].name: duplicate \"a\" (first defined on line 2)",
            ]
        );
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.yml");
        std::fs::write(
            &path,
            format!("{HEAD}    timeline:\n      - {{mode: ok, for: 0s}}\n"),
        )
        .unwrap();
        let e = Scenario::load(&path).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}:5:25: endpoints[0].timeline[0].for: a step needs a duration above zero",
                path.display()
            )
        );
    }

    #[test]
    fn latency_modes_parse() {
        let s = Scenario::parse(
            "endpoints:
  - name: a
    protocol: tgi
    timeline:
      - {mode: {latency: {median: 80ms}}, for: 1m}
      - mode:
          latency: {median: 80ms, jitter: 0.2, outliers: 0.01, outlier_factor: 8, drift: 2,
                    drift_period: 1h, brownout: {start: 5s, ramp: 1m, peak: 5, hold: 30s}}
        for: 2m
  - name: b
    protocol: tei
    mode: {latency: {median: 20ms, jitter: 0.1}}
",
            "s.yml",
        )
        .unwrap();
        let Mode::Latency(m) = &s.endpoints[0].timeline[1].mode else {
            panic!("{:?}", s.endpoints[0].timeline[1].mode);
        };
        assert_eq!(m.median.0, Duration::from_millis(80));
        assert_eq!(m.outlier_factor, 8.0);
        assert_eq!(m.drift_period.0, Duration::from_secs(3600));
        let b = m.brownout.as_ref().unwrap();
        assert_eq!((b.peak, b.hold.unwrap().0), (5.0, Duration::from_secs(30)));
        assert_eq!(
            s.endpoints[1].mode,
            Some(Mode::Latency(super::super::latency::Latency {
                jitter: 0.1,
                ..super::super::latency::Latency::constant(Duration::from_millis(20))
            }))
        );
    }

    #[test]
    fn bad_latency_values_name_line_column_and_field() {
        let yaml = "endpoints:
  - name: a
    protocol: tgi
    timeline:
      - {mode: ok, for: 1s}
      - mode: {latency: {median: 80ms, jitter: -1, brownout: {start: 0s, peak: 0}}}
        for: 1s
      - {mode: {flapping: {period: 4s, fault: {latency: {median: 1s, outliers: 2}}}}, for: 1s}
  - name: b
    protocol: tei
    mode: {latency: {median: 0s}}
";
        assert_eq!(
            errors(yaml),
            [
                "s.yml:6:15: endpoints[0].timeline[1].mode.latency.jitter: -1 is out of range 0 - 3",
                "s.yml:6:15: endpoints[0].timeline[1].mode.latency.brownout.peak: 0 is out of range (0, 1000]",
                "s.yml:8:16: endpoints[0].timeline[2].mode.flapping.fault.latency.outliers: 2 is out of range 0 - 1",
                "s.yml:11:11: endpoints[1].mode.latency.median: 0ns is out of range (0, 5m]",
            ]
        );
        let e = errors(&format!(
            "{HEAD}    timeline:\n      - {{mode: {{latency: {{median: 1s, jitter: high}}}}, for: 1s}}\n"
        ));
        assert_eq!(e, ["s.yml:5:47: jitter: invalid floating point"]);
        let e = errors(&format!(
            "{HEAD}    timeline:\n      - {{mode: {{latency: {{median: 1s, spread: 2}}}}, for: 1s}}\n"
        ));
        assert!(
            e[0].starts_with(
                "s.yml:5:39: spread: unknown field `spread`, expected one of median, "
            ),
            "{e:?}"
        );
    }

    #[test]
    fn flapping_alternates() {
        let m = Mode::Flapping {
            period: HumanDuration(Duration::from_secs(10)),
            fault: Box::new(Mode::Hang),
        };
        assert_eq!(m.at(Duration::from_secs(1)), &Mode::Ok);
        assert_eq!(m.at(Duration::from_secs(6)), &Mode::Hang);
        assert_eq!(m.at(Duration::from_secs(11)), &Mode::Ok);
    }
}
