//! Where a request goes on each kind of endpoint, and the translation the
//! hf-inference provider needs for embeddings (feature extraction).

use base64::Engine as _;
use bytes::Bytes;
use reqwest::Url;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::{EndpointConfig, Kind};

/// What a client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Chat,
    Embeddings,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Chat => "chat completions",
            Op::Embeddings => "embeddings",
        }
    }
}

/// How one endpoint carries one operation.
#[derive(Clone, Debug)]
pub struct Mapping {
    pub url: Url,
    /// hf-inference embeddings: OpenAI in, feature extraction upstream.
    pub feature_extraction: bool,
}

/// The URLs of one endpoint per operation; None where its kind cannot carry it.
#[derive(Clone, Debug)]
pub struct Target {
    pub chat: Option<Mapping>,
    pub embeddings: Option<Mapping>,
    /// The endpoint's `model` as a JSON string, to put in the request.
    pub model_json: Option<Bytes>,
}

fn join(base: &Url, path: &str) -> Option<Url> {
    let mut s = base.as_str().trim_end_matches('/').to_string();
    s.push_str(path);
    Url::parse(&s).ok()
}

fn plain(url: Option<Url>) -> Option<Mapping> {
    url.map(|url| Mapping {
        url,
        feature_extraction: false,
    })
}

/// Whether endpoints of this kind can carry gateway traffic at all.
pub fn carries_traffic(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Tgi | Kind::Tei | Kind::Openai | Kind::HfInference
    )
}

impl Target {
    pub fn of(cfg: &EndpointConfig) -> Target {
        let mut base = cfg.url.clone();
        // Like the probes: the certificate's name in the URL, the client
        // connects to the configured host.
        if let Some(name) = &cfg.request.upstream.server_name {
            let _ = base.set_host(Some(name));
        }
        let model = cfg.model.as_deref();
        let (chat, embeddings) = match cfg.kind {
            Kind::Tgi => (plain(join(&base, "/v1/chat/completions")), None),
            Kind::Tei => (None, plain(join(&base, "/v1/embeddings"))),
            Kind::Openai => (
                plain(join(&base, "/chat/completions")),
                plain(join(&base, "/embeddings")),
            ),
            Kind::HfInference => match model {
                Some(m) => (
                    plain(join(&base, &format!("/models/{m}/v1/chat/completions"))),
                    join(&base, &format!("/models/{m}")).map(|url| Mapping {
                        url,
                        feature_extraction: true,
                    }),
                ),
                None => (None, None),
            },
            Kind::EndpointStatus | Kind::Http => (None, None),
        };
        Target {
            chat,
            embeddings,
            model_json: model.map(|m| Bytes::from(Value::from(m).to_string())),
        }
    }

    pub fn for_op(&self, op: Op) -> Option<&Mapping> {
        match op {
            Op::Chat => self.chat.as_ref(),
            Op::Embeddings => self.embeddings.as_ref(),
        }
    }
}

#[derive(Deserialize)]
struct EmbeddingsRequest {
    input: Value,
    #[serde(default)]
    encoding_format: Option<String>,
}

/// An OpenAI embeddings request as a feature-extraction payload, and
/// whether the answer must be base64 (the openai client asks for it by default).
pub fn feature_extraction_request(body: &[u8]) -> Option<(Bytes, bool)> {
    let r: EmbeddingsRequest = serde_json::from_slice(body).ok()?;
    let base64 = r.encoding_format.as_deref() == Some("base64");
    Some((Bytes::from(json!({"inputs": r.input}).to_string()), base64))
}

/// A feature-extraction answer (one vector, or one per input) as an OpenAI
/// embeddings answer; None when it is neither.
pub fn feature_extraction_response(body: &[u8], model: &str, base64: bool) -> Option<Bytes> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let rows: Vec<Vec<f32>> = match &v {
        Value::Array(a) if a.iter().all(Value::is_number) => vec![floats(a)?],
        Value::Array(a) => a
            .iter()
            .map(|r| r.as_array().and_then(|r| floats(r)))
            .collect::<Option<_>>()?,
        _ => return None,
    };
    let data: Vec<Value> = rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = row.iter().flat_map(|f| f.to_le_bytes()).collect();
                Value::from(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                Value::from(row.clone())
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let out = json!({
        "object": "list", "data": data, "model": model,
        "usage": {"prompt_tokens": 0, "total_tokens": 0}
    });
    Some(Bytes::from(out.to_string()))
}

fn floats(a: &[Value]) -> Option<Vec<f32>> {
    a.iter().map(|x| x.as_f64().map(|f| f as f32)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_extraction_round_trip() {
        let (req, b64) = feature_extraction_request(
            br#"{"model":"r","input":["a","b"],"encoding_format":"base64"}"#,
        )
        .unwrap();
        assert!(b64);
        assert_eq!(&req[..], br#"{"inputs":["a","b"]}"#);
        let out = feature_extraction_response(b"[[1.0,2.0],[3.0,4.0]]", "r", false).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["data"][1]["embedding"], json!([3.0, 4.0]));
        let out = feature_extraction_response(b"[1.0,2.0]", "r", true).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(v["data"][0]["embedding"].as_str().unwrap())
            .unwrap();
        assert_eq!(raw, [1.0f32.to_le_bytes(), 2.0f32.to_le_bytes()].concat());
        assert!(feature_extraction_response(b"{\"error\":1}", "r", false).is_none());
        assert!(feature_extraction_response(b"[[1.0],[\"x\"]]", "r", false).is_none());
    }
}
