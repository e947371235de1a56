//! Property-based fuzzing of everything that reads input from outside: the
//! config loader, every response classifier, and the metrics writer. The
//! default case counts keep this under a minute in CI; `scripts/fuzz` runs
//! the same properties for as long as you like (PROPTEST_CASES).

use std::collections::HashMap;

use hfbreaker::classify::{MAX_LOADING_ESTIMATE_SECONDS, Reason, Verdict, classify_status};
use hfbreaker::metrics::text::{Family, MetricType, TextWriter};
use hfbreaker::probe::Prepared;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use testkit::Sample;

const TOKEN: &str = "hf_fuzzSECRETtoken0123456789";
const EXAMPLE: &str = include_str!("../examples/hfbreaker.yml");

fn env() -> HashMap<String, String> {
    HashMap::from([("HF_TOKEN".to_string(), TOKEN.to_string())])
}

/// The example config with a few random edits: characters deleted,
/// inserted or replaced, lines swapped. Mostly near-valid YAML, which
/// reaches deeper into the loader than random text.
fn mutated_example() -> impl Strategy<Value = String> {
    let edit = (any::<prop::sample::Index>(), any::<char>(), 0u8..4);
    prop::collection::vec(edit, 1..6).prop_map(|edits| {
        let mut chars: Vec<char> = EXAMPLE.chars().collect();
        for (at, c, op) in edits {
            let i = at.index(chars.len().max(1));
            match op {
                0 if !chars.is_empty() => {
                    chars.remove(i);
                }
                1 => chars.insert(i, c),
                2 if !chars.is_empty() => chars[i] = c,
                _ => {
                    let mut lines: Vec<String> = chars
                        .iter()
                        .collect::<String>()
                        .lines()
                        .map(str::to_string)
                        .collect();
                    let j = at.index(lines.len());
                    let n = lines.len();
                    lines.swap(j, (j + 1) % n);
                    chars = lines.join("\n").chars().collect();
                }
            }
        }
        chars.into_iter().collect()
    })
}

fn check_config_outcome(text: &str) {
    match hfbreaker::config::parse(text, "fuzz.yml", &env()) {
        Ok(cfg) => {
            for ep in &cfg.endpoints {
                // Every valid endpoint yields a probe request without panicking.
                let _ = Prepared::new(ep);
            }
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(shown.starts_with("fuzz.yml"), "{shown}");
            assert!(!shown.contains(TOKEN), "the token leaked: {shown}");
            for fe in e.errors() {
                assert!(!fe.message.is_empty());
            }
        }
    }
}

/// One endpoint of every probe kind, for the classifiers.
fn every_probe() -> Vec<Prepared> {
    let yaml = r#"
endpoints:
  - {name: tgi-generate, kind: tgi, url: "http://h", probe: generate}
  - {name: tgi-health, kind: tgi, url: "http://h", probe: health}
  - {name: tgi-chat, kind: tgi, url: "http://h", probe: chat}
  - {name: tgi-stream, kind: tgi, url: "http://h", probe: chat_stream}
  - {name: tei-embed, kind: tei, url: "http://h", probe: embed}
  - {name: openai-models, kind: openai, url: "http://h/v1", model: m, probe: models}
  - {name: hfi-embed, kind: hf-inference, url: "http://h", model: m, probe: embed}
  - {name: status, kind: endpoint-status, url: "http://h", namespace: ns, endpoint_name: e}
  - {name: get, kind: http, url: "http://h"}
"#;
    let cfg = hfbreaker::config::parse(yaml, "probes.yml", &HashMap::<String, String>::new())
        .unwrap_or_else(|e| panic!("{e}"));
    cfg.endpoints.iter().map(Prepared::new).collect()
}

/// Bodies near what servers send: JSON of the right shapes with random
/// values, SSE streams, and random bytes.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let scalar = prop_oneof![
        Just("null".to_string()),
        any::<f64>().prop_map(|f| f.to_string()),
        any::<i64>().prop_map(|i| i.to_string()),
        ".{0,20}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        Just("[]".to_string()),
        Just("{}".to_string()),
    ];
    let shaped = (scalar.clone(), scalar).prop_flat_map(|(a, b)| {
        prop_oneof![
            Just(format!(r#"[{{"generated_text": {a}}}]"#)),
            Just(format!(r#"{{"generated_text": {a}, "details": {b}}}"#)),
            Just(format!(
                r#"{{"choices": [{{"message": {{"content": {a}}}, "finish_reason": {b}}}]}}"#
            )),
            Just(format!(
                "data: {{\"choices\": [{{\"delta\": {{\"content\": {a}}}}}]}}\n\ndata: {b}\n\n"
            )),
            Just(format!("data: {a}\n\ndata: [DONE]\n\n")),
            Just(format!(r#"[[{a}, {b}]]"#)),
            Just(format!(r#"{{"data": [{{"embedding": [{a}, {b}]}}]}}"#)),
            Just(format!(r#"{{"data": [{{"id": {a}}}]}}"#)),
            Just(format!(r#"{{"status": {{"state": {a}, "message": {b}}}}}"#)),
            Just(format!(r#"{{"error": {a}, "estimated_time": {b}}}"#)),
        ]
    });
    prop_oneof![
        shaped.prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..512),
    ]
}

const FAMILY: Family = Family {
    name: "fuzz_total",
    kind: MetricType::Counter,
    help: "Fuzzed.",
    labels: &["a", "b"],
};

proptest! {
    #[test]
    fn config_loader_never_panics_on_any_text(text in "(?s).{0,600}") {
        check_config_outcome(&text);
    }

    #[test]
    fn config_loader_never_panics_on_mutated_configs(text in mutated_example()) {
        check_config_outcome(&text);
    }

    #[test]
    fn every_classifier_judges_any_answer(status in 0u16..1000, body in body()) {
        for p in every_probe() {
            let (result, code, estimate, detail) = p.judge(status, &body);
            prop_assert_eq!(code, Some(status));
            prop_assert!(detail.len() < 400, "{}", detail);
            if let Some(t) = estimate {
                prop_assert!((0.0..=MAX_LOADING_ESTIMATE_SECONDS).contains(&t));
            }
            if !(200..300).contains(&status) {
                prop_assert!(result.is_err());
            }
            // The ignore list only ever turns a failure into an ignored one.
            let all = Reason::ALL.into_iter().collect();
            match Verdict::of(result, &all) {
                Verdict::Failure(_) => prop_assert!(false, "everything is ignored"),
                Verdict::Success => prop_assert!(result.is_ok()),
                Verdict::Ignored(r) => prop_assert_eq!(Err(r), result),
            }
        }
        let (reason, estimate) = classify_status(status, &body);
        prop_assert!(estimate.is_none_or(|t| (0.0..=MAX_LOADING_ESTIMATE_SECONDS).contains(&t)));
        prop_assert!(estimate.is_none() || reason == Reason::ModelLoading);
    }

    #[test]
    fn the_writer_round_trips_any_label_value(a in any::<String>(), b in "(?s).{0,40}", v in any::<f64>()) {
        let mut w = TextWriter::with_capacity(0);
        w.family(&FAMILY);
        w.sample(&FAMILY, &[&a, &b], v);
        let text = w.finish();
        let lines: Vec<&str> = text.lines().collect();
        prop_assert_eq!(lines.len(), 3, "one sample line, whatever the labels hold: {:?}", text);
        let sample = Sample::parse(lines[2]).expect("the sample parses");
        prop_assert_eq!(sample.label("a"), Some(a.as_str()));
        prop_assert_eq!(sample.label("b"), Some(b.as_str()));
        if v.is_nan() {
            prop_assert!(sample.value.is_nan());
        } else {
            prop_assert_eq!(sample.value, v);
        }
    }
}

/// A batch of random series through Prometheus' own parser.
#[test]
fn promtool_parses_random_label_values() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = ("(?s).{0,30}", any::<f64>());
    let mut w = TextWriter::with_capacity(0);
    w.family(&FAMILY);
    for i in 0..300 {
        let (label, value) = strategy.new_tree(&mut runner).unwrap().current();
        w.sample(&FAMILY, &[&label, &i.to_string()], value.abs());
    }
    let text = w.finish();
    if let Some(Err(said)) = testkit::promtool_check_metrics(&text) {
        panic!("{said}\n{text}");
    }
}
