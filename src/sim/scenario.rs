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
//! ```

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::mpsc;

use super::{Mode, Protocol, Sim, VirtualSpec};
use crate::config::HumanDuration;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub endpoints: Vec<ScenarioEndpoint>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioEndpoint {
    /// Path prefix: the endpoint is served under `/{name}/`.
    pub name: String,
    pub protocol: Protocol,
    /// Model id the endpoint reports and serves.
    #[serde(default = "default_model")]
    pub model: String,
    /// Bearer token inference routes require.
    #[serde(default)]
    pub api_key: Option<String>,
    /// hf-inference: answer as a feature-extraction model.
    #[serde(default)]
    pub embedding: Option<bool>,
    /// Repeat the timeline; false keeps the last step's mode.
    #[serde(default = "default_loop", rename = "loop")]
    pub repeat: bool,
    /// Mode when there is no timeline.
    #[serde(default)]
    pub mode: Option<Mode>,
    #[serde(default)]
    pub timeline: Vec<Step>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub mode: Mode,
    #[serde(rename = "for")]
    pub duration: HumanDuration,
    /// Printed when the step begins (the demo shows it).
    #[serde(default)]
    pub note: Option<String>,
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
    #[error("{origin}:{line}:{column}: {message}")]
    Invalid {
        origin: String,
        line: u64,
        column: u64,
        message: String,
    },
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let origin = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|e| ScenarioError::Read(origin.clone(), e))?;
        Scenario::parse(&text, &origin)
    }

    pub fn parse(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        let invalid = |line, column, message: String| ScenarioError::Invalid {
            origin: origin.to_string(),
            line,
            column,
            message,
        };
        let s: Scenario = serde_saphyr::from_str(text).map_err(|e| {
            let (l, c) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((0, 0));
            invalid(l, c, e.without_snippet().to_string())
        })?;
        let mut seen = HashSet::new();
        for (i, e) in s.endpoints.iter().enumerate() {
            let ok = !e.name.is_empty()
                && !e.name.starts_with('_')
                && e.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok {
                return Err(invalid(
                    0,
                    0,
                    format!(
                        "endpoints[{i}].name {:?}: use [A-Za-z0-9_-], not starting with _",
                        e.name
                    ),
                ));
            }
            if !seen.insert(e.name.clone()) {
                return Err(invalid(
                    0,
                    0,
                    format!("endpoints[{i}].name: duplicate {:?}", e.name),
                ));
            }
            if e.timeline.iter().any(|s| s.duration.0.is_zero()) {
                return Err(invalid(
                    0,
                    0,
                    format!("endpoints[{i}].timeline: every step needs a duration above zero"),
                ));
            }
        }
        Ok(s)
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
                            v.spec.write().unwrap_or_else(|p| p.into_inner()).mode =
                                step.mode.clone();
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

    #[test]
    fn errors_name_the_line() {
        let e = Scenario::parse("endpoints:\n  - name: a\n    protocol: tgi\n    timeline:\n      - {mode: sideways, for: 1s}\n", "s.yml").unwrap_err();
        assert!(e.to_string().starts_with("s.yml:5:"), "{e}");
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
