//! A one-word chat completion with `max_tokens` (default 1), plain or streamed, on TGI
//! (`{url}/v1/chat/completions`) or an OpenAI-compatible API such as the
//! serverless router (`{url}/chat/completions`, the url ending in `/v1`).

use bytes::Bytes;
use reqwest::Method;
use serde_json::{Value, json};

use super::{Check, CheckError, PROMPT, Spec, bad, join};
use crate::config::{EndpointConfig, Kind};

pub(super) fn spec(ep: &EndpointConfig, stream: bool) -> Spec {
    let path = if ep.kind == Kind::Tgi {
        "/v1/chat/completions"
    } else {
        "/chat/completions"
    };
    let body = json!({
        "model": ep.model.as_deref().unwrap_or("tgi"),
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": ep.request.max_tokens,
        "stream": stream,
    });
    Spec {
        method: Method::POST,
        url: join(&ep.url, path),
        body: Some(Bytes::from(body.to_string())),
        check: if stream {
            Check::ChatStream
        } else {
            Check::Chat
        },
    }
}

pub(super) fn check(body: &[u8]) -> Result<(), CheckError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| bad("chat: body is not JSON"))?;
    if v.get("error").is_some() {
        return Err(bad("chat: error object in a 2xx answer"));
    }
    let first = v
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| bad("chat: no choices"))?;
    if first.get("message").is_some_and(Value::is_object) {
        Ok(())
    } else {
        Err(bad("chat: first choice has no message"))
    }
}

/// SSE: `data: {chunk}` events ending with `data: [DONE]`. Errors arrive
/// inside a 200 stream as `data: {"error": ...}`.
pub(super) fn check_stream(body: &[u8]) -> Result<(), CheckError> {
    let text = std::str::from_utf8(body).map_err(|_| bad("chat stream: not UTF-8"))?;
    let mut chunks = 0;
    let mut done = false;
    for line in text.lines() {
        let Some(data) = line.strip_prefix("data:") else {
            continue;
        };
        let data = data.trim();
        if data == "[DONE]" {
            done = true;
            break;
        }
        let v: Value =
            serde_json::from_str(data).map_err(|_| bad("chat stream: event is not JSON"))?;
        if v.get("error").is_some() {
            return Err(bad("chat stream: error event"));
        }
        if v.get("choices").and_then(Value::as_array).is_none() {
            return Err(bad("chat stream: chunk without choices"));
        }
        chunks += 1;
    }
    match (chunks, done) {
        (0, _) => Err(bad("chat stream: no chunk")),
        (_, false) => Err(bad("chat stream: ended without [DONE]")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain() {
        assert!(check(br#"{"object":"chat.completion","id":"","choices":[{"index":0,"message":{"role":"assistant","content":"p"},"finish_reason":"length"}]}"#).is_ok());
        assert!(check(br#"{"choices":[]}"#).is_err());
        assert!(check(br#"{"error":{"message":"x"}}"#).is_err());
        assert!(check(b"garbage").is_err());
    }

    #[test]
    fn stream() {
        let ok = "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"p\"}}]}\n\ndata: [DONE]\n\n";
        assert!(check_stream(ok.as_bytes()).is_ok());
        let err = "data: {\"error\":{\"message\":\"Input validation error\",\"http_status_code\":422}}\n\ndata: [DONE]\n\n";
        assert!(check_stream(err.as_bytes()).is_err());
        let cut = "data: {\"choices\":[{\"delta\":{}}]}\n\n";
        assert!(check_stream(cut.as_bytes()).is_err());
    }
}
