//! Where a request goes on each kind of endpoint, and the translations
//! between OpenAI embeddings and Hugging Face feature extraction: OpenAI
//! embeddings on hf-inference, and feature extraction (`InferenceClient`'s
//! `feature_extraction`) on TEI's `/embed`, hf-inference and OpenAI APIs.

use base64::Engine as _;
use bytes::Bytes;
use reqwest::Url;
use serde::Deserialize;
use serde_json::{Value, json};

use super::errors::GatewayError;
use crate::config::{EndpointConfig, Kind};

/// What a client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Chat,
    Embeddings,
    /// Hugging Face feature extraction: `{"inputs": str | [str], ...}` in,
    /// one vector (a string) or one per input (a list) out.
    FeatureExtraction,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Chat => "chat completions",
            Op::Embeddings => "embeddings",
            Op::FeatureExtraction => "feature extraction",
        }
    }
}

/// What the body and the answer go through between client and endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Translate {
    /// As sent (with the endpoint's `model`); the answer as it comes.
    None,
    /// OpenAI embeddings in, feature extraction upstream (hf-inference).
    EmbeddingsToFeatures,
    /// Feature extraction in and upstream (TEI `/embed`, hf-inference):
    /// `model` dropped, the answer shaped like the input.
    Features,
    /// Feature extraction in, OpenAI embeddings upstream (`openai`).
    FeaturesToEmbeddings,
}

/// How one endpoint carries one operation.
#[derive(Clone, Debug)]
pub struct Mapping {
    pub url: Url,
    pub translate: Translate,
}

/// The URLs of one endpoint per operation; None where its kind cannot carry it.
#[derive(Clone, Debug)]
pub struct Target {
    pub chat: Option<Mapping>,
    pub embeddings: Option<Mapping>,
    pub features: Option<Mapping>,
    /// The endpoint's `model` as a JSON string, to put in the request.
    pub model_json: Option<Bytes>,
}

fn join(base: &Url, path: &str) -> Option<Url> {
    let mut s = base.as_str().trim_end_matches('/').to_string();
    s.push_str(path);
    Url::parse(&s).ok()
}

fn plain(url: Option<Url>) -> Option<Mapping> {
    mapped(url, Translate::None)
}

fn mapped(url: Option<Url>, translate: Translate) -> Option<Mapping> {
    url.map(|url| Mapping { url, translate })
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
        let (chat, embeddings, features) = match cfg.kind {
            Kind::Tgi => (plain(join(&base, "/v1/chat/completions")), None, None),
            // TEI's own feature extraction keeps `normalize`, `truncate`...
            Kind::Tei => (
                None,
                plain(join(&base, "/v1/embeddings")),
                mapped(join(&base, "/embed"), Translate::Features),
            ),
            Kind::Openai => (
                plain(join(&base, "/chat/completions")),
                plain(join(&base, "/embeddings")),
                mapped(join(&base, "/embeddings"), Translate::FeaturesToEmbeddings),
            ),
            Kind::HfInference => match model {
                Some(m) => {
                    let task = join(&base, &format!("/models/{m}"));
                    (
                        plain(join(&base, &format!("/models/{m}/v1/chat/completions"))),
                        mapped(task.clone(), Translate::EmbeddingsToFeatures),
                        mapped(task, Translate::Features),
                    )
                }
                None => (None, None, None),
            },
            Kind::EndpointStatus | Kind::Http => (None, None, None),
        };
        Target {
            chat,
            embeddings,
            features,
            model_json: model.map(|m| Bytes::from(Value::from(m).to_string())),
        }
    }

    pub fn for_op(&self, op: Op) -> Option<&Mapping> {
        match op {
            Op::Chat => self.chat.as_ref(),
            Op::Embeddings => self.embeddings.as_ref(),
            Op::FeatureExtraction => self.features.as_ref(),
        }
    }
}

/// How to read an endpoint's 2xx answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A JSON object, relayed as it is.
    Json,
    /// Feature extraction, as OpenAI embeddings (base64 if asked).
    Embeddings { base64: bool },
    /// Vectors as feature extraction for `count` inputs (`single`: one
    /// string, answered with one vector), from OpenAI embeddings or not.
    Features {
        from_openai: bool,
        single: bool,
        count: usize,
    },
}

/// What a feature-extraction request's `inputs` is: `(single, count)`.
pub fn feature_inputs(body: &[u8]) -> Result<(bool, usize), GatewayError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| GatewayError::BadJson(e.to_string()))?;
    inputs_shape(v.get("inputs"))
}

fn inputs_shape(inputs: Option<&Value>) -> Result<(bool, usize), GatewayError> {
    match inputs {
        Some(Value::String(_)) => Ok((true, 1)),
        Some(Value::Array(a)) if !a.is_empty() && a.iter().all(Value::is_string) => {
            Ok((false, a.len()))
        }
        _ => Err(GatewayError::BadField(
            "`inputs` must be a string or a non-empty list of strings",
        )),
    }
}

/// The body to send for `translate`, and how to read the answer. `span`
/// is `model`'s place in `body` (none for feature extraction, where it
/// is optional); `route` is the route's name.
pub fn prepare(
    translate: Translate,
    body: &Bytes,
    span: Option<(usize, usize)>,
    endpoint_model: Option<&Bytes>,
    route: &str,
) -> Result<(Bytes, Answer), GatewayError> {
    match translate {
        Translate::None => {
            let out = match (endpoint_model, span) {
                (Some(m), Some(span)) => super::body::with_model(body, span, m),
                _ => body.clone(),
            };
            Ok((out, Answer::Json))
        }
        Translate::EmbeddingsToFeatures => {
            let (out, base64) = feature_extraction_request(body)
                .ok_or(GatewayError::BadField("`input` is required"))?;
            Ok((out, Answer::Embeddings { base64 }))
        }
        Translate::Features | Translate::FeaturesToEmbeddings => {
            let mut map: serde_json::Map<String, Value> =
                serde_json::from_slice(body).map_err(|e| GatewayError::BadJson(e.to_string()))?;
            let (single, count) = inputs_shape(map.get("inputs"))?;
            let from_openai = translate == Translate::FeaturesToEmbeddings;
            let out = if from_openai {
                let model = endpoint_model
                    .and_then(|m| serde_json::from_slice::<String>(m).ok())
                    .unwrap_or_else(|| route.to_string());
                json!({"model": model, "input": map.remove("inputs"), "encoding_format": "float"})
            } else {
                // The route's name means nothing to the endpoint.
                map.remove("model");
                Value::Object(map)
            };
            let answer = Answer::Features {
                from_openai,
                single,
                count,
            };
            Ok((Bytes::from(out.to_string()), answer))
        }
    }
}

impl Answer {
    /// The client's answer from the endpoint's 2xx body; None when the body
    /// is not what the endpoint promised (a failure of the endpoint).
    pub fn body(self, upstream: Bytes, model: &str) -> Option<Bytes> {
        match self {
            Answer::Json => looks_like_json_object(&upstream).then_some(upstream),
            Answer::Embeddings { base64 } => feature_extraction_response(&upstream, model, base64),
            Answer::Features {
                from_openai,
                single,
                count,
            } => features_response(&upstream, from_openai, single, count),
        }
    }

    /// Whether the endpoint's `Content-Type` still describes the answer.
    pub fn keeps_content_type(self) -> bool {
        self == Answer::Json
    }
}

fn looks_like_json_object(b: &[u8]) -> bool {
    b.iter().find(|c| !c.is_ascii_whitespace()) == Some(&b'{')
}

/// Vectors from TEI's `/embed` (always a list of vectors), hf-inference
/// (one vector for a string, for sentence-transformers models) or an
/// OpenAI embeddings answer (floats or base64), shaped like the input:
/// one vector for a string, a list of vectors for a list. Any other
/// numeric nesting from a native endpoint (token embeddings) goes as it is.
fn features_response(body: &[u8], from_openai: bool, single: bool, count: usize) -> Option<Bytes> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let rows = if from_openai {
        openai_rows(&v)?
    } else {
        match vector_rows(&v) {
            Some(rows) => rows,
            None if v.is_array() => return Some(Bytes::copy_from_slice(body)),
            None => return None,
        }
    };
    if rows.len() != count {
        return None;
    }
    let out = if single {
        serde_json::to_vec(&rows[0])
    } else {
        serde_json::to_vec(&rows)
    };
    out.ok().map(Bytes::from)
}

/// One vector, or a list of vectors.
fn vector_rows(v: &Value) -> Option<Vec<Vec<f32>>> {
    match v {
        Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_number) => {
            Some(vec![floats(a)?])
        }
        Value::Array(a) if !a.is_empty() => a
            .iter()
            .map(|r| r.as_array().and_then(|r| floats(r)))
            .collect(),
        _ => None,
    }
}

/// `data[].embedding` in `index` order, floats or base64 float32.
fn openai_rows(v: &Value) -> Option<Vec<Vec<f32>>> {
    let data = v.get("data")?.as_array()?;
    let mut rows: Vec<(u64, Vec<f32>)> = data
        .iter()
        .map(|d| {
            let index = d.get("index").and_then(Value::as_u64).unwrap_or(0);
            let row = match d.get("embedding")? {
                Value::Array(a) => floats(a)?,
                Value::String(s) => {
                    let raw = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
                    if raw.len() % 4 != 0 {
                        return None;
                    }
                    raw.chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect()
                }
                _ => return None,
            };
            Some((index, row))
        })
        .collect::<Option<_>>()?;
    rows.sort_by_key(|(i, _)| *i);
    Some(rows.into_iter().map(|(_, r)| r).collect())
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

    fn features(translate: Translate, body: &str, model: Option<&str>) -> (Value, Answer) {
        let m = model.map(|m| Bytes::from(Value::from(m).to_string()));
        let (out, answer) = prepare(
            translate,
            &Bytes::from(body.to_string()),
            None,
            m.as_ref(),
            "route",
        )
        .unwrap();
        (serde_json::from_slice(&out).unwrap(), answer)
    }

    #[test]
    fn feature_extraction_both_ways() {
        // Native: parameters kept, the route's `model` dropped.
        let (out, answer) = features(
            Translate::Features,
            r#"{"model":"route","inputs":"a","normalize":false}"#,
            None,
        );
        assert_eq!(out, json!({"inputs": "a", "normalize": false}));
        // TEI answers a list of vectors even for one string.
        let one = answer
            .body(Bytes::from_static(b"[[1.5,2.0]]"), "r")
            .unwrap();
        assert_eq!(&one[..], b"[1.5,2.0]");
        // A list: one vector per input, or it is broken.
        let (_, answer) = features(Translate::Features, r#"{"inputs":["a","b"]}"#, None);
        assert!(answer.body(Bytes::from_static(b"[1.0,2.0]"), "r").is_none());
        let two = answer
            .body(Bytes::from_static(b"[[1.0],[2.0]]"), "r")
            .unwrap();
        assert_eq!(&two[..], b"[[1.0],[2.0]]");
        // Token embeddings go as they are.
        let tokens = answer.body(Bytes::from_static(b"[[[1.0]],[[2.0]]]"), "r");
        assert_eq!(&tokens.unwrap()[..], b"[[[1.0]],[[2.0]]]");
        // OpenAI upstream: the endpoint's model, floats asked, base64 read too.
        let (out, answer) = features(
            Translate::FeaturesToEmbeddings,
            r#"{"inputs":["a","b"],"truncate":true}"#,
            Some("org/bge"),
        );
        assert_eq!(
            out,
            json!({"model": "org/bge", "input": ["a", "b"], "encoding_format": "float"})
        );
        let b64 = base64::engine::general_purpose::STANDARD.encode(3.0f32.to_le_bytes());
        let upstream = json!({"data": [
            {"index": 1, "embedding": b64},
            {"index": 0, "embedding": [1.0]},
        ]});
        let out = answer.body(Bytes::from(upstream.to_string()), "r").unwrap();
        assert_eq!(&out[..], b"[[1.0],[3.0]]");
        let (out, _) = features(Translate::FeaturesToEmbeddings, r#"{"inputs":"a"}"#, None);
        assert_eq!(out["model"], "route");
        for bad in [r#"{"inputs":[]}"#, r#"{"inputs":[1]}"#, r#"{"input":"a"}"#] {
            assert!(feature_inputs(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
