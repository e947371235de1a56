//! The one parser of the Prometheus text format as hfbreaker serves it.

/// Every value of the `state` label of `hfbreaker_circuit_state`, from the
/// breaker's own enum so that tests cannot drift from it.
pub const STATES: [&str; hfbreaker::breaker::State::ALL.len()] = hfbreaker::breaker::State::LABELS;

/// One sample line: `name{labels} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    /// The value of label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether every `(key, value)` of `want` is among its labels.
    pub fn has(&self, want: &[(&str, &str)]) -> bool {
        want.iter().all(|(k, v)| self.label(k) == Some(v))
    }

    /// Parse one line; `None` for comments, blank and malformed lines.
    pub fn parse(line: &str) -> Option<Sample> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let name_end = line.find(['{', ' '])?;
        let name = &line[..name_end];
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end + 1..])?
        } else {
            (Vec::new(), &line[name_end..])
        };
        // The value; a timestamp may follow (hfbreaker writes none).
        let value = rest.split_whitespace().next()?.parse().ok()?;
        Some(Sample {
            name: name.to_string(),
            labels,
            value,
        })
    }
}

/// `k="v",...}` (after the `{`) and what follows the `}`.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches([',', ' ']);
        if let Some(rest) = s.strip_prefix('}') {
            return Some((labels, rest));
        }
        let (key, rest) = s.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.trim().to_string(), value));
        s = &rest[end + 1..];
    }
}

/// A `/metrics` text with lookups by name and labels. Label filters are
/// `(name, value)` pairs that must all match exactly; other labels may be
/// present.
#[derive(Clone, Debug)]
pub struct Scrape(pub String);

impl Scrape {
    /// Every sample, in order.
    pub fn samples(&self) -> impl Iterator<Item = Sample> + '_ {
        self.0.lines().filter_map(Sample::parse)
    }

    /// The samples of `name` whose labels include all of `labels`.
    pub fn series<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = Sample> + 'a {
        self.samples()
            .filter(move |s| s.name == name && s.has(labels))
    }

    /// Value of the first series `name` whose labels include all of `labels`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.series(name, labels).next().map(|s| s.value)
    }

    /// Like [`Scrape::get`], panicking with the hfbreaker lines when absent.
    pub fn val(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no series {name}{labels:?}\n{}", self.hfbreaker_lines()))
    }

    /// Sum over every series `name` whose labels include all of `labels`
    /// (0 when there is none).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.series(name, labels).map(|s| s.value).sum()
    }

    /// The values of every series `name` whose labels include all of
    /// `labels`, in order (e.g. one per endpoint).
    pub fn values(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.series(name, labels).map(|s| s.value).collect()
    }

    /// `(value of label key, value)` of every series `name` whose labels
    /// include all of `labels`, in order.
    pub fn by_label(&self, name: &str, key: &str, labels: &[(&str, &str)]) -> Vec<(String, f64)> {
        self.series(name, labels)
            .filter_map(|s| Some((s.label(key)?.to_string(), s.value)))
            .collect()
    }

    /// The breaker state of `endpoint` (the `hfbreaker_circuit_state` gauge at 1).
    pub fn state(&self, endpoint: &str) -> Option<&'static str> {
        STATES.into_iter().find(|s| {
            self.get(
                "hfbreaker_circuit_state",
                &[("endpoint", endpoint), ("state", s)],
            ) == Some(1.0)
        })
    }

    /// Every state some endpoint is in.
    pub fn states_held(&self) -> Vec<&'static str> {
        STATES
            .into_iter()
            .filter(|s| {
                self.series("hfbreaker_circuit_state", &[("state", s)])
                    .any(|x| x.value == 1.0)
            })
            .collect()
    }

    /// The `hfbreaker_*` sample lines, for failure messages.
    pub fn hfbreaker_lines(&self) -> String {
        self.0
            .lines()
            .filter(|l| l.starts_with("hfbreaker_"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP hfbreaker_circuit_state Breaker state.
# TYPE hfbreaker_circuit_state gauge
hfbreaker_circuit_state{endpoint="a",state="closed"} 1
hfbreaker_circuit_state{endpoint="a",state="open"} 0
hfbreaker_circuit_state{endpoint="b",state="closed"} 0
hfbreaker_circuit_state{endpoint="b",state="open"} 1
hfbreaker_probes_total{endpoint="a",result="success"} 3
hfbreaker_probes_total{endpoint="b",result="success"} 4
hfbreaker_probes_total{endpoint="b",result="failure"} 5
hfbreaker_route_level{route="r"} -1
hfbreaker_config_last_reload_successful 1
hfbreaker_endpoint_info{endpoint="a",model="say \"hi\", ok}",kind="tgi"} 1
hfbreaker_probe_duration_seconds_bucket{endpoint="a",le="+Inf"} 3
"#;

    #[test]
    fn lookups_by_name_and_labels() {
        let s = Scrape(TEXT.to_string());
        assert_eq!(
            s.get("hfbreaker_route_level", &[("route", "r")]),
            Some(-1.0)
        );
        assert_eq!(
            s.get("hfbreaker_config_last_reload_successful", &[]),
            Some(1.0)
        );
        assert_eq!(s.get("hfbreaker_route_level", &[("route", "r2")]), None);
        // Exact label values: a prefix of a value does not match.
        assert_eq!(s.get("hfbreaker_probes_total", &[("endpoint", "")]), None);
        assert_eq!(s.sum("hfbreaker_probes_total", &[]), 12.0);
        assert_eq!(
            s.sum("hfbreaker_probes_total", &[("result", "success")]),
            7.0
        );
        assert_eq!(s.sum("hfbreaker_missing", &[]), 0.0);
        assert_eq!(
            s.values("hfbreaker_probes_total", &[("result", "success")]),
            vec![3.0, 4.0]
        );
        assert_eq!(
            s.by_label(
                "hfbreaker_probes_total",
                "endpoint",
                &[("result", "success")]
            ),
            vec![("a".to_string(), 3.0), ("b".to_string(), 4.0)]
        );
        assert_eq!(
            s.val("hfbreaker_probe_duration_seconds_bucket", &[("le", "+Inf")]),
            3.0
        );
    }

    #[test]
    fn escaped_label_values_and_states() {
        let s = Scrape(TEXT.to_string());
        let info = s
            .series("hfbreaker_endpoint_info", &[("kind", "tgi")])
            .next()
            .unwrap();
        assert_eq!(info.label("model"), Some("say \"hi\", ok}"));
        assert_eq!(s.state("a"), Some("closed"));
        assert_eq!(s.state("b"), Some("open"));
        assert_eq!(s.state("c"), None);
        assert_eq!(s.states_held(), vec!["closed", "open"]);
    }

    #[test]
    #[should_panic(expected = "no series hfbreaker_nope")]
    fn val_panics_with_the_lines() {
        Scrape(TEXT.to_string()).val("hfbreaker_nope", &[]);
    }
}
