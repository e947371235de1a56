//! The request body: what the gateway reads of it (`model`, `stream`) and
//! the one change it makes (the upstream's `model`), without parsing into
//! or re-serialising the whole document.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::errors::GatewayError;

/// What the gateway needs to know of a request.
#[derive(Debug)]
pub struct Peeked {
    pub model: String,
    /// Byte range of the `model` value (quotes included) in the body.
    pub model_span: (usize, usize),
    pub stream: bool,
}

#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    #[serde(default)]
    stream: Option<bool>,
}

/// Read `model` and `stream`; anything else is left as it is. A duplicate
/// `model` is refused (which one would the upstream read?).
pub fn peek(body: &[u8]) -> Result<Peeked, GatewayError> {
    peek_optional(body)?.ok_or(GatewayError::MissingModel)
}

/// As [`peek`], for requests whose route may come from the path: None when
/// the body has no `model`.
pub fn peek_optional(body: &[u8]) -> Result<Option<Peeked>, GatewayError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(GatewayError::BadJson("expected an object".into()));
    }
    let p: Peek = serde_json::from_slice(body).map_err(|e| GatewayError::BadJson(e.to_string()))?;
    let Some(raw) = p.model else {
        return Ok(None);
    };
    let model: Cow<str> = serde_json::from_str(raw.get())
        .map_err(|_| GatewayError::BadJson("`model` must be a string".into()))?;
    if model.is_empty() {
        return Err(GatewayError::MissingModel);
    }
    let start = (raw.get().as_ptr() as usize).wrapping_sub(body.as_ptr() as usize);
    let end = start.wrapping_add(raw.get().len());
    if end > body.len() || start > end {
        return Err(GatewayError::BadJson("unreadable `model`".into()));
    }
    Ok(Some(Peeked {
        model: model.into_owned(),
        model_span: (start, end),
        stream: p.stream.unwrap_or(false),
    }))
}

/// `body` with the `model` value at `span` replaced by `json` (an encoded
/// JSON string): one copy, no parse.
pub fn with_model(body: &Bytes, span: (usize, usize), json: &[u8]) -> Bytes {
    let (start, end) = span;
    let mut out = BytesMut::with_capacity(body.len() - (end - start) + json.len());
    out.extend_from_slice(&body[..start]);
    out.extend_from_slice(json);
    out.extend_from_slice(&body[end..]);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peeks_and_rewrites_only_the_model() {
        let body = Bytes::from_static(
            br#"{"messages":[{"role":"user","content":"\"model\": x"}], "model" : "assistant","stream":true}"#,
        );
        let p = peek(&body).unwrap();
        assert_eq!(p.model, "assistant");
        assert!(p.stream);
        let out = with_model(&body, p.model_span, br#""org/zephyr""#);
        assert_eq!(
            &out[..],
            br#"{"messages":[{"role":"user","content":"\"model\": x"}], "model" : "org/zephyr","stream":true}"#
        );
        let escaped = peek(br#"{"model":"a\u0062c"}"#).unwrap();
        assert_eq!(escaped.model, "abc");
    }

    #[test]
    fn refuses_what_is_not_a_request() {
        for bad in [
            &b""[..],
            b"[\"assistant\"]",
            b"{\"model\": 3}",
            b"{\"model\": \"a\", \"model\": \"b\"}",
            b"{\"model\": \"a\"",
            b"{\"stream\": \"yes\", \"model\": \"a\"}",
            b"\xff\xfe",
        ] {
            assert!(peek(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(matches!(peek(b"{}"), Err(GatewayError::MissingModel)));
        assert!(matches!(peek_optional(br#"{"inputs":"a"}"#), Ok(None)));
        assert!(peek_optional(br#"{"model":3}"#).is_err());
        assert!(matches!(
            peek(b"{\"model\":\"\"}"),
            Err(GatewayError::MissingModel)
        ));
    }
}
