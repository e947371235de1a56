//! `GET {url}/models` on an OpenAI-compatible API; the configured model must be listed.

use reqwest::Method;
use serde::Deserialize;

use super::{Check, CheckError, Spec, bad, join};
use crate::config::EndpointConfig;

pub(super) fn spec(ep: &EndpointConfig) -> Spec {
    Spec {
        method: Method::GET,
        url: join(&ep.url, "/models"),
        body: None,
        check: Check::Models(ep.model.clone()),
    }
}

#[derive(Deserialize)]
struct List {
    data: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    id: String,
}

pub(super) fn check(body: &[u8], model: Option<&str>) -> Result<(), CheckError> {
    let list: List =
        serde_json::from_slice(body).map_err(|_| bad("models: not an OpenAI model list"))?;
    let Some(model) = model else {
        return Ok(());
    };
    // Router ids may carry a routing policy suffix: "org/model:fastest".
    let wanted = model.split(':').next().unwrap_or(model);
    if list
        .data
        .iter()
        .any(|e| e.id.split(':').next() == Some(wanted))
    {
        Ok(())
    } else {
        Err(bad("models: configured model is not listed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_model_ignoring_policy_suffix() {
        let body = br#"{"object":"list","data":[{"id":"a/b","object":"model"}]}"#;
        assert!(check(body, Some("a/b:fastest")).is_ok());
        assert!(check(body, None).is_ok());
        assert!(check(body, Some("c/d")).is_err());
        assert!(check(b"[]", None).is_err());
    }
}
