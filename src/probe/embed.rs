//! Embeds one word: TEI `POST /embed`, or the hf-inference feature-extraction task.

use bytes::Bytes;
use reqwest::Method;
use serde_json::{Value, json};

use super::{Check, CheckError, PROMPT, Spec, bad, join};
use crate::config::{EndpointConfig, Kind};

pub(super) fn spec(ep: &EndpointConfig) -> Spec {
    let path = match (ep.kind, ep.model.as_deref()) {
        (Kind::HfInference, Some(model)) => format!("/models/{model}"),
        _ => "/embed".to_string(),
    };
    Spec {
        method: Method::POST,
        url: join(&ep.url, &path),
        body: Some(Bytes::from(json!({"inputs": PROMPT}).to_string())),
        check: Check::Embed,
    }
}

/// TEI: `[[f32, ...]]`; the task API may answer a flat `[f32, ...]`.
pub(super) fn check(body: &[u8]) -> Result<(), CheckError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| bad("embed: body is not JSON"))?;
    let Value::Array(outer) = v else {
        return Err(bad("embed: not a list"));
    };
    let vector = match outer.first() {
        Some(Value::Array(inner)) => inner,
        Some(Value::Number(_)) => &outer,
        _ => return Err(bad("embed: empty or not a list of vectors")),
    };
    if vector.is_empty() || !vector.iter().all(Value::is_number) {
        return Err(bad("embed: vector is empty or not numeric"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_nested_and_flat() {
        assert!(check(b"[[0.1,-0.2,0.3]]").is_ok());
        assert!(check(b"[0.1,0.2]").is_ok());
    }

    #[test]
    fn rejects_wrong_shapes() {
        for b in [&b"[]"[..], b"[[]]", b"{\"a\":1}", b"[[\"x\"]]", b"nope"] {
            assert!(check(b).is_err(), "{}", String::from_utf8_lossy(b));
        }
    }
}
