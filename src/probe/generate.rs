//! One new token from a one-word prompt: TGI `POST /generate`, or the
//! hf-inference provider's `POST {url}/models/{model}` task payload.

use bytes::Bytes;
use reqwest::Method;
use serde_json::{Value, json};

use super::{Check, CheckError, PROMPT, Spec, bad, join};
use crate::config::{EndpointConfig, Kind};

pub(super) fn spec(ep: &EndpointConfig) -> Spec {
    let path = match (ep.kind, ep.model.as_deref()) {
        (Kind::HfInference, Some(model)) => format!("/models/{model}"),
        _ => "/generate".to_string(),
    };
    let body = json!({"inputs": PROMPT, "parameters": {"max_new_tokens": ep.request.max_tokens}});
    Spec {
        method: Method::POST,
        url: join(&ep.url, &path),
        body: Some(Bytes::from(body.to_string())),
        check: Check::Generate,
    }
}

/// `{"generated_text": str}` (TGI) or `[{"generated_text": str}]` (task API, TGI compat route).
pub(super) fn check(body: &[u8]) -> Result<(), CheckError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| bad("generate: body is not JSON"))?;
    let obj = match &v {
        Value::Array(items) => items.first().ok_or_else(|| bad("generate: empty list"))?,
        other => other,
    };
    if obj.get("error").is_some() {
        return Err(bad("generate: error object in a 2xx answer"));
    }
    match obj.get("generated_text") {
        Some(Value::String(_)) => Ok(()),
        _ => Err(bad("generate: no generated_text string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_object_and_list() {
        assert!(check(br#"{"generated_text":" pong"}"#).is_ok());
        assert!(check(br#"[{"generated_text":""}]"#).is_ok());
    }

    #[test]
    fn rejects_garbage_and_errors() {
        assert!(check(b"<html>").is_err());
        assert!(check(b"[]").is_err());
        assert!(check(br#"{"generated_text":3}"#).is_err());
        assert!(check(br#"{"error":"x","generated_text":""}"#).is_err());
    }
}
