//! The YAML configuration: what users write, its defaults, and validation
//! that names the file, line and field of every mistake.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;

use crate::baseline::AdaptiveConfig;
use crate::breaker::BreakerConfig;
use crate::classify::Reason;
use crate::label::label_enum;
use crate::secret::{Secret, read_regular_file, read_secret_file};

/// A duration written as a human string: "15s", "2m", "500ms".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl serde::Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim())
            .map(HumanDuration)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid duration {s:?} ({e}); write e.g. \"15s\", \"2m\" or \"500ms\""
                ))
            })
    }
}

label_enum! {
    /// What an endpoint speaks.
    pub enum Kind {
        /// text-generation-inference server or a dedicated endpoint running it.
        Tgi = "tgi",
        /// text-embeddings-inference server.
        Tei = "tei",
        /// OpenAI-compatible API, e.g. the serverless router `https://router.huggingface.co/v1`.
        Openai = "openai",
        /// The hf-inference provider: `{url}/models/{model}` task payloads.
        HfInference = "hf-inference",
        /// The Inference Endpoints management API; reads state, never wakes the endpoint.
        EndpointStatus = "endpoint-status",
        /// Any HTTP URL: a 2xx answer is a success.
        Http = "http",
    }
}

impl Kind {
    /// The probes this kind supports; the first is the default.
    pub fn probes(self) -> &'static [ProbeKind] {
        use ProbeKind::*;
        match self {
            Kind::Tgi => &[Generate, Health, Chat, ChatStream],
            Kind::Tei => &[Embed, Health],
            Kind::Openai => &[Chat, ChatStream, Models],
            Kind::HfInference => &[Generate, Embed],
            Kind::EndpointStatus => &[Status],
            Kind::Http => &[Get],
        }
    }
}

label_enum! {
    /// The request a probe sends; always the cheapest real request of its kind.
    pub enum ProbeKind {
        /// `GET /health` (TGI: 200 with an empty body; TEI: 200).
        Health = "health",
        /// One new token from a one-word prompt.
        Generate = "generate",
        /// A one-word chat completion with `max_tokens: 1`.
        Chat = "chat",
        /// The same, streamed: checks the SSE stream ends with `data: [DONE]` and carries no error event.
        ChatStream = "chat_stream",
        /// Embeds one word.
        Embed = "embed",
        /// `GET {url}/models`, and the configured model is listed.
        Models = "models",
        /// Endpoint state from the management API.
        Status = "status",
        /// Plain `GET` of the URL.
        Get = "get",
    }
}

// ---------------------------------------------------------------- raw YAML

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    global: RawGlobal,
    endpoints: Option<Spanned<Vec<RawEndpoint>>>,
    #[serde(default)]
    routes: Vec<RawRoute>,
    #[serde(default)]
    gateway: RawGateway,
}

/// The `gateway:` section; used only with `--gateway.listen-address`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    client_keys_file: Option<Spanned<PathBuf>>,
    allow_unauthenticated: Option<bool>,
    max_request_bytes: Option<Spanned<u64>>,
    timeout: Option<Spanned<HumanDuration>>,
    first_byte_timeout: Option<Spanned<HumanDuration>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGlobal {
    interval: Option<Spanned<HumanDuration>>,
    timeout: Option<Spanned<HumanDuration>>,
    confirm_interval: Option<Spanned<HumanDuration>>,
    max_body_bytes: Option<Spanned<u64>>,
    #[serde(default)]
    breaker: RawBreaker,
    /// Run with no endpoints at all; without it an empty file is a mistake.
    allow_empty: Option<bool>,
    max_tokens: Option<Spanned<u32>>,
    tls: Option<RawTls>,
    proxy_url: Option<Spanned<String>>,
    headers: Option<BTreeMap<String, Spanned<RawHeaderValue>>>,
}

/// The request options of `global` or of one endpoint, which inherits from
/// `global` and may override each one.
struct RawRequest<'a> {
    max_tokens: &'a Option<Spanned<u32>>,
    tls: &'a Option<RawTls>,
    proxy_url: &'a Option<Spanned<String>>,
    headers: &'a Option<BTreeMap<String, Spanned<RawHeaderValue>>>,
}

macro_rules! raw_request {
    ($r:expr) => {
        RawRequest {
            max_tokens: &$r.max_tokens,
            tls: &$r.tls,
            proxy_url: &$r.proxy_url,
            headers: &$r.headers,
        }
    };
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca_file: Option<Spanned<PathBuf>>,
    insecure_skip_verify: Option<Spanned<bool>>,
    server_name: Option<Spanned<String>>,
}

/// `X-Api-Key: literal`, `{value_env: NAME}` or `{value_file: PATH}`.
#[derive(Debug)]
enum RawHeaderValue {
    Literal(String),
    Env(String),
    File(PathBuf),
}

// By hand: serde's untagged enums buffer the input and lose the positions
// that `Spanned` needs, and their error ("did not match any variant") says nothing.
impl<'de> Deserialize<'de> for RawHeaderValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawHeaderValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, {value_env: NAME} or {value_file: PATH}")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawHeaderValue::Literal(v.to_string()))
            }
            // `X-Priority: 1`, `X-Debug: true`: YAML reads them as numbers and booleans.
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(RawHeaderValue::Literal(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(RawHeaderValue::Literal(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(RawHeaderValue::Literal(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(RawHeaderValue::Literal(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Self::Value, A::Error> {
                use serde::de::Error;
                let one = match m.next_key::<String>()?.as_deref() {
                    Some("value_env") => RawHeaderValue::Env(m.next_value()?),
                    Some("value_file") => RawHeaderValue::File(m.next_value()?),
                    Some(k) => {
                        return Err(A::Error::unknown_field(k, &["value_env", "value_file"]));
                    }
                    None => {
                        return Err(A::Error::custom(
                            "empty mapping; write {value_env: NAME} or {value_file: PATH}",
                        ));
                    }
                };
                if m.next_key::<String>()?.is_some() {
                    return Err(A::Error::custom("set one of value_env and value_file"));
                }
                Ok(one)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBreaker {
    failure_threshold: Option<Spanned<u32>>,
    failure_rate_threshold: Option<Spanned<f64>>,
    window: Option<Spanned<u32>>,
    min_calls: Option<Spanned<u32>>,
    slow_call_duration: Option<Spanned<SlowCallDuration>>,
    slow_call_rate_threshold: Option<Spanned<f64>>,
    open_duration: Option<Spanned<HumanDuration>>,
    max_open_duration: Option<Spanned<HumanDuration>>,
    success_threshold: Option<Spanned<u32>>,
    enforce: Option<bool>,
    #[serde(default)]
    adaptive: RawAdaptive,
}

/// `breaker.adaptive`: the knobs of `slow_call_duration: auto`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdaptive {
    factor: Option<Spanned<f64>>,
    min: Option<Spanned<HumanDuration>>,
    max: Option<Spanned<HumanDuration>>,
    warmup_calls: Option<Spanned<u32>>,
    half_life: Option<Spanned<HumanDuration>>,
}

/// `slow_call_duration`: a duration, or `auto` (learned per endpoint).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlowCallDuration {
    Auto,
    Fixed(HumanDuration),
}

impl<'de> Deserialize<'de> for SlowCallDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.trim() == "auto" {
            return Ok(SlowCallDuration::Auto);
        }
        humantime::parse_duration(s.trim())
            .map(|d| SlowCallDuration::Fixed(HumanDuration(d)))
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid duration {s:?} ({e}); write e.g. \"5s\" or \"800ms\", or auto"
                ))
            })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    name: Spanned<String>,
    kind: Spanned<Kind>,
    url: Option<Spanned<String>>,
    token_env: Option<Spanned<String>>,
    token_file: Option<Spanned<PathBuf>>,
    probe: Option<Spanned<ProbeKind>>,
    model: Option<Spanned<String>>,
    namespace: Option<Spanned<String>>,
    endpoint_name: Option<Spanned<String>>,
    interval: Option<Spanned<HumanDuration>>,
    timeout: Option<Spanned<HumanDuration>>,
    confirm_interval: Option<Spanned<HumanDuration>>,
    #[serde(default)]
    breaker: RawBreaker,
    #[serde(default)]
    ignore: Vec<Reason>,
    max_tokens: Option<Spanned<u32>>,
    tls: Option<RawTls>,
    proxy_url: Option<Spanned<String>>,
    headers: Option<BTreeMap<String, Spanned<RawHeaderValue>>>,
    max_in_flight: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: Spanned<String>,
    endpoints: Spanned<Vec<Spanned<String>>>,
    cache: Option<RawCache>,
}

/// `routes[].cache`; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    ttl: Option<Spanned<HumanDuration>>,
    max_entries: Option<Spanned<u64>>,
    max_bytes: Option<Spanned<u64>>,
}

// ---------------------------------------------------------------- resolved

/// Global settings after defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct Global {
    pub interval: Duration,
    pub timeout: Duration,
    pub confirm_interval: Duration,
    pub max_body_bytes: u64,
    /// A config without endpoints is accepted (and runs idle) only with this.
    pub allow_empty: bool,
    /// Defaults of every endpoint's request options.
    pub request: RequestOptions,
}

/// What a probe request carries beyond its kind: the token budget, extra
/// headers and how the connection is made.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestOptions {
    /// `max_tokens` (chat) or `max_new_tokens` (generate) of the probe.
    pub max_tokens: u32,
    /// Extra headers, sent as written. Every value is a [`Secret`]: it may be
    /// an API key, so none is ever logged, exported or echoed in an error.
    pub headers: Vec<(String, Secret)>,
    pub upstream: Upstream,
}

impl Default for RequestOptions {
    fn default() -> Self {
        RequestOptions {
            max_tokens: default_max_tokens(),
            headers: Vec::new(),
            upstream: Upstream::default(),
        }
    }
}

/// How connections to an endpoint are made; endpoints with equal options
/// share one HTTP client and its connection pool.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Upstream {
    /// `tls.ca_file` and its PEM, read and checked at load, trusted in
    /// addition to the system and bundled roots.
    pub ca_file: Option<PathBuf>,
    pub ca_pem: Option<Vec<u8>>,
    /// `tls.insecure_skip_verify`: no certificate or name check at all.
    pub insecure_skip_verify: bool,
    /// `tls.server_name`: the name the certificate must carry (SNI and Host),
    /// while the connection still goes to the URL's host.
    pub server_name: Option<String>,
    /// `proxy_url`; a Secret because it may carry credentials. None = the
    /// standard HTTPS_PROXY / HTTP_PROXY / ALL_PROXY / NO_PROXY variables.
    pub proxy_url: Option<Secret>,
}

impl Upstream {
    /// True when the shared default client serves the endpoint.
    pub fn is_default(&self) -> bool {
        *self == Upstream::default()
    }
}

pub fn default_interval() -> Duration {
    Duration::from_secs(15)
}
pub fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
/// 1 s: with the default threshold of 5, a fast failure (refused, 5xx) trips
/// 4 s after it is first seen, and five hanging probes are out within 4 s.
pub fn default_confirm_interval() -> Duration {
    Duration::from_secs(1)
}
/// The knobs of `slow_call_duration: auto`, chosen from the evaluation in
/// docs/performance.md ("Learned slow-call thresholds"): 2x the baseline
/// trips a 3x brownout within 30 s (2.5x was late on one run in twenty) and
/// not a 1.5x step, jitter or outliers; a floor of 10 ms keeps
/// loopback-fast endpoints from calling their scheduling noise slow; `max`
/// defaults to the probe timeout (and is never above it); 20 warm-up calls
/// are learned within 60 s at a 1 s interval; a one-hour half-life follows a
/// daily drift and learns a few percent from minutes of brownout.
pub fn default_adaptive() -> AdaptiveConfig {
    AdaptiveConfig {
        factor: 2.0,
        min: Duration::from_millis(10),
        max: bounds::ADAPTIVE_MAX.max,
        warmup_calls: 20,
        half_life: Duration::from_secs(3600),
    }
}
/// With `slow_call_duration: auto` the slow-call rule is on unless
/// `slow_call_rate_threshold` says otherwise: half the window slow trips.
pub fn default_auto_slow_call_rate_threshold() -> f64 {
    0.5
}
pub fn default_max_body_bytes() -> u64 {
    256 * 1024
}
/// One token: the cheapest generation. Reasoning models and some providers
/// need more (they spend or refuse a budget of 1); raise `max_tokens` there.
pub fn default_max_tokens() -> u32 {
    1
}

/// Inclusive range of one setting: `min..=max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds<T> {
    pub min: T,
    pub max: T,
}

impl<T: PartialOrd> Bounds<T> {
    pub fn contains(&self, v: &T) -> bool {
        self.min <= *v && *v <= self.max
    }
}

/// The range of every duration, count and size in the file, in one place
/// (the README's table lists the same). Every value is validated against
/// them at load, so no arithmetic on a loaded config can overflow: the largest
/// time ever added to a clock is 24 h (+10% backoff jitter).
pub mod bounds {
    use super::Bounds;
    use std::time::Duration;

    const fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }
    const HOUR: u64 = 3_600_000;

    /// Healthy probe interval. Below 100 ms probing becomes load generation;
    /// above a day a probe says nothing about the present.
    pub const INTERVAL: Bounds<Duration> = Bounds {
        min: ms(100),
        max: ms(24 * HOUR),
    };
    /// Per-probe deadline. 10 ms allows loopback tests; 5 min is beyond any
    /// proxy's idle timeout, so a longer wait could never be answered anyway.
    pub const TIMEOUT: Bounds<Duration> = Bounds {
        min: ms(10),
        max: ms(5 * 60_000),
    };
    /// Interval while confirming a failure. Short floor: confirmations exist to
    /// decide fast (tests use 40 ms); at most scheduled at the hour.
    pub const CONFIRM_INTERVAL: Bounds<Duration> = Bounds {
        min: ms(10),
        max: ms(HOUR),
    };
    /// A success slower than this is slow; a probe never lasts beyond TIMEOUT.max.
    pub const SLOW_CALL_DURATION: Bounds<Duration> = Bounds {
        min: ms(1),
        max: ms(5 * 60_000),
    };
    /// `breaker.adaptive.factor`: above 1 (the baseline itself is no
    /// threshold), at most 100 (beyond that the timeout decides anyway).
    pub const ADAPTIVE_FACTOR: Bounds<f64> = Bounds {
        min: 1.1,
        max: 100.0,
    };
    /// `breaker.adaptive.min` and `.max`: as `slow_call_duration`.
    pub const ADAPTIVE_MIN: Bounds<Duration> = SLOW_CALL_DURATION;
    pub const ADAPTIVE_MAX: Bounds<Duration> = SLOW_CALL_DURATION;
    /// Successes before the learned threshold applies; all are kept until then.
    pub const ADAPTIVE_WARMUP_CALLS: Bounds<u32> = Bounds {
        min: 1,
        max: crate::baseline::MAX_WARMUP,
    };
    /// How fast the baseline follows: a minute learns a brownout in
    /// minutes; a day cannot follow a daily drift.
    pub const ADAPTIVE_HALF_LIFE: Bounds<Duration> = Bounds {
        min: ms(60_000),
        max: ms(24 * HOUR),
    };
    /// First open period and cap of the doubling backoff: at most a day,
    /// so every open period ends and every timestamp stays printable.
    pub const OPEN_DURATION: Bounds<Duration> = Bounds {
        min: ms(100),
        max: ms(24 * HOUR),
    };
    pub const MAX_OPEN_DURATION: Bounds<Duration> = Bounds {
        min: ms(100),
        max: ms(24 * HOUR),
    };
    /// Probe answers are one token or one vector: 1 KiB holds an error page's
    /// start, 64 MiB a large embedding; more is buffered per probe in flight.
    pub const MAX_BODY_BYTES: Bounds<u64> = Bounds {
        min: 1024,
        max: 64 * 1024 * 1024,
    };
    /// Consecutive failures that trip; also the cap of probes of one endpoint in flight.
    pub const FAILURE_THRESHOLD: Bounds<u32> = Bounds { min: 1, max: 100 };
    /// Probes remembered per endpoint (memory per endpoint).
    pub const WINDOW: Bounds<u32> = Bounds { min: 1, max: 1000 };
    /// At most `window` as well.
    pub const MIN_CALLS: Bounds<u32> = Bounds { min: 1, max: 1000 };
    pub const SUCCESS_THRESHOLD: Bounds<u32> = Bounds { min: 1, max: 100 };
    /// Generation budget of a probe: one token up to a short answer.
    pub const MAX_TOKENS: Bounds<u32> = Bounds { min: 1, max: 4096 };
    /// Extra headers per endpoint, their names and values.
    pub const MAX_HEADERS: usize = 32;
    pub const MAX_HEADER_NAME_BYTES: usize = 128;
    pub const MAX_HEADER_VALUE_BYTES: usize = 4096;
    /// Endpoint and route names (labels), HF namespaces and endpoint names, models.
    pub const MAX_NAME_BYTES: usize = 128;
    pub const MAX_HF_NAME_BYTES: usize = 96;
    pub const MAX_MODEL_BYTES: usize = 256;
    /// A CA bundle; the system's whole store is about 200 KiB.
    pub const MAX_CA_FILE_BYTES: u64 = 1024 * 1024;
    /// Gateway request bodies: 1 KiB holds a short chat; 64 MiB a long
    /// context; the body is buffered per request in flight.
    pub const GATEWAY_MAX_REQUEST_BYTES: Bounds<u64> = Bounds {
        min: 1024,
        max: 64 * 1024 * 1024,
    };
    /// Whole gateway request, all attempts (and a stream) included.
    pub const GATEWAY_TIMEOUT: Bounds<Duration> = Bounds {
        min: ms(10),
        max: ms(HOUR),
    };
    /// Response headers (streams: the first chunk) of one attempt.
    pub const GATEWAY_FIRST_BYTE_TIMEOUT: Bounds<Duration> = Bounds {
        min: ms(10),
        max: ms(5 * 60_000),
    };
    /// Gateway requests one endpoint carries at once before the next spill over.
    pub const MAX_IN_FLIGHT: Bounds<u32> = Bounds {
        min: 1,
        max: 1_000_000,
    };
    /// How long a cached gateway answer is served: a second up to a day (an
    /// older answer is a different service, not a degraded one).
    pub const CACHE_TTL: Bounds<Duration> = Bounds {
        min: ms(1000),
        max: ms(24 * HOUR),
    };
    /// Cached answers per route.
    pub const CACHE_MAX_ENTRIES: Bounds<u64> = Bounds {
        min: 1,
        max: 1_000_000,
    };
    /// Memory of one route's cache: 1 KiB up to 4 GiB.
    pub const CACHE_MAX_BYTES: Bounds<u64> = Bounds {
        min: 1024,
        max: 4 * 1024 * 1024 * 1024,
    };
}

/// A bound as people write it: `100ms`, `5m`, `24h`.
pub fn format_bound(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        _ if ms >= 3_600_000 && ms.is_multiple_of(3_600_000) => format!("{}h", ms / 3_600_000),
        _ if ms >= 60_000 && ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
        _ if ms >= 1000 && ms.is_multiple_of(1000) => format!("{}s", ms / 1000),
        _ => format!("{ms}ms"),
    }
}
pub fn default_router_url(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::Openai => Some("https://router.huggingface.co/v1"),
        Kind::HfInference => Some("https://router.huggingface.co/hf-inference"),
        Kind::EndpointStatus => Some("https://api.endpoints.huggingface.cloud"),
        _ => None,
    }
}

/// Where a token came from, for messages (never the value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSource {
    Env(String),
    File(PathBuf),
}

#[derive(Clone, Debug, PartialEq)]
pub struct EndpointConfig {
    pub name: String,
    pub kind: Kind,
    pub url: reqwest::Url,
    pub probe: ProbeKind,
    pub model: Option<String>,
    pub namespace: Option<String>,
    pub endpoint_name: Option<String>,
    pub token: Option<Secret>,
    pub token_source: Option<TokenSource>,
    pub interval: Duration,
    pub timeout: Duration,
    pub confirm_interval: Duration,
    pub max_body_bytes: u64,
    /// Token budget, headers, TLS and proxy.
    pub request: RequestOptions,
    pub breaker: BreakerConfig,
    /// false = observe-only: states are computed and exported, routes ignore them.
    pub enforce: bool,
    /// Failure reasons moved to "ignored" for this endpoint.
    pub ignore: BTreeSet<Reason>,
    /// Gateway requests carried at once; more spill to the next level. None = no limit.
    pub max_in_flight: Option<u32>,
}

impl EndpointConfig {
    /// Host (and port) for the `host` label: no path, no query, no credentials.
    pub fn host(&self) -> String {
        match (self.url.host_str(), self.url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            _ => String::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct RouteConfig {
    pub name: String,
    /// Fallback chain, first = primary.
    pub endpoints: Vec<String>,
    /// The gateway's last level before its 503; None = no cache.
    pub cache: Option<CacheConfig>,
}

/// `routes[].cache`: the gateway keeps the successful (2xx) non-streamed
/// answers of the route's chat completions and embeddings, keyed by the
/// request body (JSON key order and whitespace aside), and serves one only
/// when no endpoint of the chain can answer, with `X-Hfbreaker-Tier: cache`
/// and an `Age` header. Streams are never stored nor served from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// How long an answer may be served after it was stored.
    pub ttl: Duration,
    /// Answers kept at most; the least recently used go first.
    pub max_entries: u64,
    /// Bytes of requests and answers kept at most (the memory the cache
    /// holds); the least recently used go first, and a single answer larger
    /// than this is not stored.
    pub max_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            ttl: default_cache_ttl(),
            max_entries: default_cache_max_entries(),
            max_bytes: default_cache_max_bytes(),
        }
    }
}

/// 5 min: an answer from a few minutes ago beats a 503 during a short outage.
pub fn default_cache_ttl() -> Duration {
    Duration::from_secs(300)
}
/// 1000 answers per route.
pub fn default_cache_max_entries() -> u64 {
    1000
}
/// 64 MiB per route.
pub fn default_cache_max_bytes() -> u64 {
    64 * 1024 * 1024
}

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub global: Global,
    pub endpoints: Vec<EndpointConfig>,
    pub routes: Vec<RouteConfig>,
    pub gateway: GatewayConfig,
}

/// The `gateway:` section after defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct GatewayConfig {
    /// Keys clients may send as `Authorization: Bearer`, one per line of
    /// `client_keys_file` (blank and `#` lines skipped); None without a file.
    pub client_keys: Option<Vec<Secret>>,
    /// Without a key file the gateway refuses to start unless this is set:
    /// an open gateway spends the endpoints' tokens for anyone.
    pub allow_unauthenticated: bool,
    pub max_request_bytes: u64,
    pub timeout: Duration,
    pub first_byte_timeout: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            client_keys: None,
            allow_unauthenticated: false,
            max_request_bytes: default_gateway_max_request_bytes(),
            timeout: default_gateway_timeout(),
            first_byte_timeout: default_gateway_first_byte_timeout(),
        }
    }
}

/// 4 MiB: a long chat context with room to spare.
pub fn default_gateway_max_request_bytes() -> u64 {
    4 * 1024 * 1024
}
/// 5 min: a long generation, every attempt and the stream included.
pub fn default_gateway_timeout() -> Duration {
    Duration::from_secs(300)
}
/// 60 s: a non-streamed completion's headers come only when it is generated.
pub fn default_gateway_first_byte_timeout() -> Duration {
    Duration::from_secs(60)
}

// ---------------------------------------------------------------- errors

/// One problem at one place in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub line: u64,
    pub column: u64,
    pub field: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read config file: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render_errors(path, errors))]
    Invalid {
        path: String,
        errors: Vec<FieldError>,
    },
    /// The loading itself failed (its task panicked or was cancelled); the
    /// running config stays.
    #[error("{path}: loading the config failed: {detail}")]
    Loader { path: String, detail: String },
}

impl ConfigError {
    pub fn errors(&self) -> &[FieldError] {
        match self {
            ConfigError::Read { .. } | ConfigError::Loader { .. } => &[],
            ConfigError::Invalid { errors, .. } => errors,
        }
    }
}

/// One `path:line:column: field: message` line per error.
pub(crate) fn render_errors(path: &str, errors: &[FieldError]) -> String {
    let mut out = String::new();
    for (i, e) in errors.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!(
            "{path}:{}:{}: {}: {}",
            e.line, e.column, e.field, e.message
        ));
    }
    out
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {} column {}: {}: {}",
            self.line, self.column, self.field, self.message
        )
    }
}

/// Collects every problem in a file, so one run reports them all.
pub(crate) struct Errors(Vec<FieldError>);

impl Errors {
    pub(crate) fn new() -> Self {
        Errors(Vec::new())
    }

    pub(crate) fn at<T>(
        &mut self,
        s: &Spanned<T>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.0.push(FieldError {
            line: s.referenced.line(),
            column: s.referenced.column(),
            field: field.into(),
            message: message.into(),
        });
    }

    /// The errors in file order, or Ok when there are none.
    pub(crate) fn finish(mut self) -> Result<(), Vec<FieldError>> {
        if self.0.is_empty() {
            return Ok(());
        }
        // Stable: errors at one position keep the order they were found in.
        self.0.sort_by_key(|e| (e.line, e.column));
        Err(self.0)
    }
}

// ---------------------------------------------------------------- loading

/// Where tokens come from; tests swap in their own map.
pub trait EnvSource {
    fn var(&self, name: &str) -> Option<String>;
}

pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl EnvSource for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// Read and validate a config file; tokens from the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with_env(path, &ProcessEnv)
}

pub fn load_with_env(path: &Path, env: &dyn EnvSource) -> Result<Config, ConfigError> {
    let display = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: display.clone(),
        source,
    })?;
    parse(&text, &display, env)
}

/// Parse YAML text; `origin` names it in errors.
pub fn parse(text: &str, origin: &str, env: &dyn EnvSource) -> Result<Config, ConfigError> {
    let raw: RawFile = if blank(text) {
        RawFile::default()
    } else {
        serde_saphyr::from_str(text).map_err(|e| ConfigError::Invalid {
            path: origin.to_string(),
            errors: vec![syntax_error(&e, text)],
        })?
    };
    let mut errs = Errors::new();
    let cfg = resolve(raw, &mut errs, env);
    errs.finish()
        .map(|()| cfg)
        .map_err(|errors| ConfigError::Invalid {
            path: origin.to_string(),
            errors,
        })
}

/// Nothing but whitespace, comments and document markers: an empty file.
fn blank(text: &str) -> bool {
    text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---" || t == "..."
    })
}

/// A parse error (YAML syntax, unknown field, bad value) as a [`FieldError`]
/// named after the key it sits under.
pub(crate) fn syntax_error(e: &serde_saphyr::Error, text: &str) -> FieldError {
    let (line, column) = e
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((0, 0));
    let mut message = e.without_snippet().to_string();
    // The library prefixes "error: line L column C: " or suffixes
    // " at line L, column C"; we print our own position.
    if let Some(rest) = message.strip_prefix("error: ") {
        message = rest.to_string();
    }
    if let Some(idx) = message.find(": ")
        && message.starts_with("line ")
    {
        message = message[idx + 2..].to_string();
    }
    if let Some(rest) = message.strip_suffix(&format!(" at line {line}, column {column}")) {
        message = rest.to_string();
    }
    let field = text
        .lines()
        .nth(line.saturating_sub(1) as usize)
        .and_then(|l| key_at(l, column))
        .unwrap_or_else(|| "document".to_string());
    FieldError {
        line,
        column,
        field,
        message,
    }
}

/// The mapping key an error at `column` (1-based) sits under: the last key
/// on the line that starts at or before it, else the line's first key.
/// Flow mappings hold several (`- {mode: x, for: 0s}` at `0s` gives `for`).
fn key_at(line: &str, column: u64) -> Option<String> {
    let keys = keys_on_line(line);
    let col = column.saturating_sub(1) as usize;
    keys.iter()
        .rev()
        .find(|(start, _)| *start <= col)
        .or(keys.first())
        .map(|(_, key)| key.clone())
}

/// Plain or quoted `word:` keys on a line with their (0-based) columns. A key
/// starts the line's content or follows `{`, `,` or `- `, and its colon is
/// followed by a space or the line end: `http://x`, `a b: c`, `a-b: c` hold none.
fn keys_on_line(line: &str) -> Vec<(usize, String)> {
    let chars: Vec<char> = line.chars().collect();
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut keys = Vec::new();
    for (i, &c) in chars.iter().enumerate() {
        if c != ':' || chars.get(i + 1).is_some_and(|n| !n.is_whitespace()) {
            continue;
        }
        let mut end = i;
        let quote = end > 0 && matches!(chars[end - 1], '"' | '\'');
        if quote {
            end -= 1;
        }
        let mut start = end;
        while start > 0 && is_word(chars[start - 1]) {
            start -= 1;
        }
        if start == end {
            continue;
        }
        let key: String = chars[start..end].iter().collect();
        if quote {
            if start == 0 || chars[start - 1] != chars[end] {
                continue;
            }
            start -= 1;
        }
        let before = chars[..start].iter().rposition(|c| !c.is_whitespace());
        let ok = match before {
            None => true,
            Some(j) => matches!(chars[j], '{' | ',') || (chars[j] == '-' && j + 1 < start),
        };
        if ok {
            keys.push((start, key));
        }
    }
    keys
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Checks a name that becomes the `label` metric label and records valid ones
/// in `seen` (name to line), which is what duplicates and routes look up.
fn check_name(
    name: &Spanned<String>,
    field: String,
    label: &str,
    seen: &mut HashMap<String, u64>,
    errs: &mut Errors,
) {
    let v = &name.value;
    if !valid_name(v) {
        errs.at(
            name,
            field,
            format!("{v:?} must match [a-z0-9_-]+ (it becomes the `{label}` label)"),
        );
    } else if let Some(&first) = seen.get(v) {
        errs.at(
            name,
            field,
            format!("duplicate {label} name {v:?} (first defined on line {first})"),
        );
    } else {
        seen.insert(v.clone(), name.referenced.line());
    }
}

/// A duration within `b`, else an error and `fallback`.
fn duration(
    errs: &mut Errors,
    v: &Option<Spanned<HumanDuration>>,
    field: &str,
    fallback: Duration,
    b: Bounds<Duration>,
) -> Duration {
    match v {
        None => fallback,
        Some(s) if !b.contains(&s.value.0) => {
            errs.at(
                s,
                field,
                format!(
                    "must be between {} and {}",
                    format_bound(b.min),
                    format_bound(b.max)
                ),
            );
            fallback
        }
        Some(s) => s.value.0,
    }
}

/// A count or size within `b`, else an error and None.
fn bounded<T: PartialOrd + Copy + fmt::Display>(
    errs: &mut Errors,
    v: &Option<Spanned<T>>,
    field: &str,
    b: Bounds<T>,
) -> Option<T> {
    let s = v.as_ref()?;
    if b.contains(&s.value) {
        return Some(s.value);
    }
    errs.at(s, field, format!("must be between {} and {}", b.min, b.max));
    None
}

/// Applies `raw` over `base`; `prefix` is the field path of the breaker block.
fn resolve_breaker(
    raw: &RawBreaker,
    base: &BreakerBase,
    prefix: &str,
    errs: &mut Errors,
) -> BreakerBase {
    let mut b = base.cfg.clone();
    let f = |name: &str| format!("{prefix}.{name}");
    for (v, name, target, range) in [
        (
            &raw.failure_threshold,
            "failure_threshold",
            &mut b.failure_threshold,
            bounds::FAILURE_THRESHOLD,
        ),
        (&raw.window, "window", &mut b.window, bounds::WINDOW),
        (
            &raw.min_calls,
            "min_calls",
            &mut b.min_calls,
            bounds::MIN_CALLS,
        ),
        (
            &raw.success_threshold,
            "success_threshold",
            &mut b.success_threshold,
            bounds::SUCCESS_THRESHOLD,
        ),
    ] {
        if let Some(n) = bounded(errs, v, &f(name), range) {
            *target = n;
        }
    }
    let mut ratio = |v: &Option<Spanned<f64>>, name: &str, target: &mut f64| {
        if let Some(s) = v {
            if !(s.value > 0.0 && s.value <= 1.0) {
                errs.at(s, f(name), "must be a ratio in (0, 1], e.g. 0.5");
            } else {
                *target = s.value;
            }
        }
    };
    ratio(
        &raw.failure_rate_threshold,
        "failure_rate_threshold",
        &mut b.failure_rate_threshold,
    );
    ratio(
        &raw.slow_call_rate_threshold,
        "slow_call_rate_threshold",
        &mut b.slow_call_rate_threshold,
    );
    for (v, name, target, range) in [
        (
            &raw.open_duration,
            "open_duration",
            &mut b.open_duration,
            bounds::OPEN_DURATION,
        ),
        (
            &raw.max_open_duration,
            "max_open_duration",
            &mut b.max_open_duration,
            bounds::MAX_OPEN_DURATION,
        ),
    ] {
        *target = duration(errs, v, &f(name), *target, range);
    }
    let mut auto = base.auto;
    match &raw.slow_call_duration {
        Some(s) if s.value == SlowCallDuration::Auto => auto = true,
        Some(s) => {
            let SlowCallDuration::Fixed(fixed) = s.value else {
                unreachable!()
            };
            let b2 = bounds::SLOW_CALL_DURATION;
            if b2.contains(&fixed.0) {
                b.slow_call_duration = fixed.0;
            } else {
                let (lo, hi) = (format_bound(b2.min), format_bound(b2.max));
                errs.at(
                    s,
                    f("slow_call_duration"),
                    format!("must be between {lo} and {hi}"),
                );
            }
            auto = false;
        }
        None => {}
    }
    check_breaker_limits(raw, &mut b, prefix, errs);
    let (knobs, max_set) = resolve_adaptive(&raw.adaptive, base, &f("adaptive"), errs);
    BreakerBase {
        cfg: b,
        enforce: raw.enforce.unwrap_or(base.enforce),
        auto,
        knobs,
        max_set,
        rate_set: base.rate_set || raw.slow_call_rate_threshold.is_some(),
    }
}

/// A breaker block as an endpoint inherits it: the thresholds, and what
/// `auto` needs until the endpoint's timeout is known.
#[derive(Clone, Debug)]
struct BreakerBase {
    cfg: BreakerConfig,
    enforce: bool,
    /// `slow_call_duration: auto` here or inherited.
    auto: bool,
    knobs: AdaptiveConfig,
    /// `adaptive.max` was written (else it is the probe timeout).
    max_set: bool,
    /// `slow_call_rate_threshold` was written (else `auto` turns it on).
    rate_set: bool,
}

impl Default for BreakerBase {
    fn default() -> Self {
        BreakerBase {
            cfg: BreakerConfig::default(),
            enforce: true,
            auto: false,
            knobs: default_adaptive(),
            max_set: false,
            rate_set: false,
        }
    }
}

impl BreakerBase {
    /// The endpoint's breaker: with `auto`, `adaptive.max` is never above
    /// the probe `timeout` (a slower probe is a failure, not a slow call).
    fn finish(&self, timeout: Duration) -> BreakerConfig {
        let mut cfg = self.cfg.clone();
        if self.auto {
            let mut k = self.knobs;
            if !self.max_set || k.max > timeout {
                k.max = timeout;
            }
            cfg.adaptive = Some(k);
            if !self.rate_set {
                cfg.slow_call_rate_threshold = default_auto_slow_call_rate_threshold();
            }
        }
        cfg
    }
}

/// With `auto`, `adaptive.min` above the probe timeout would put the learned
/// threshold above the timeout, where a probe is a failure and never a slow
/// call: the slow-call rule would be off without a word. The error goes to
/// what this level (`p`: `global` or an endpoint) wrote that makes the
/// conflict: its `adaptive.min`, else its `timeout`, else its
/// `slow_call_duration: auto`; a conflict it only inherits is reported
/// where it was written.
fn check_min_below_timeout(
    raw: &RawBreaker,
    b: &BreakerBase,
    timeout: Duration,
    raw_timeout: &Option<Spanned<HumanDuration>>,
    p: &str,
    errs: &mut Errors,
) {
    if !b.auto || b.knobs.min <= timeout {
        return;
    }
    let (min, t) = (format_bound(b.knobs.min), format_bound(timeout));
    if let Some(s) = &raw.adaptive.min {
        errs.at(
            s,
            format!("{p}.breaker.adaptive.min"),
            format!("must not be above the probe timeout ({t})"),
        );
    } else if let Some(s) = raw_timeout {
        errs.at(
            s,
            format!("{p}.timeout"),
            format!("must not be below breaker.adaptive.min ({min}) with slow_call_duration: auto"),
        );
    } else if let Some(s) = &raw.slow_call_duration {
        errs.at(
            s,
            format!("{p}.breaker.slow_call_duration"),
            format!("auto needs breaker.adaptive.min ({min}) not above the probe timeout ({t})"),
        );
    }
}

/// `breaker.adaptive` over the inherited knobs; whether `max` is written.
fn resolve_adaptive(
    raw: &RawAdaptive,
    base: &BreakerBase,
    prefix: &str,
    errs: &mut Errors,
) -> (AdaptiveConfig, bool) {
    let mut k = base.knobs;
    let f = |name: &str| format!("{prefix}.{name}");
    if let Some(v) = bounded(errs, &raw.factor, &f("factor"), bounds::ADAPTIVE_FACTOR) {
        k.factor = v;
    }
    k.min = duration(errs, &raw.min, &f("min"), k.min, bounds::ADAPTIVE_MIN);
    k.max = duration(errs, &raw.max, &f("max"), k.max, bounds::ADAPTIVE_MAX);
    let warmup = bounded(
        errs,
        &raw.warmup_calls,
        &f("warmup_calls"),
        bounds::ADAPTIVE_WARMUP_CALLS,
    );
    k.warmup_calls = warmup.unwrap_or(k.warmup_calls);
    let hl = &raw.half_life;
    k.half_life = duration(
        errs,
        hl,
        &f("half_life"),
        k.half_life,
        bounds::ADAPTIVE_HALF_LIFE,
    );
    let max_set = base.max_set || raw.max.is_some();
    if max_set
        && k.min > k.max
        && let Some(s) = raw.min.as_ref().or(raw.max.as_ref())
    {
        errs.at(s, f("min"), "must not be above adaptive.max");
        k.min = k.max;
    }
    (k, max_set)
}

/// Settings that are each valid but contradict one another; the error goes
/// to whichever of the two fields this block wrote.
fn check_breaker_limits(raw: &RawBreaker, b: &mut BreakerConfig, prefix: &str, errs: &mut Errors) {
    if b.max_open_duration < b.open_duration {
        if let Some(s) = raw
            .max_open_duration
            .as_ref()
            .or(raw.open_duration.as_ref())
        {
            errs.at(
                s,
                format!("{prefix}.max_open_duration"),
                "must not be shorter than open_duration",
            );
        }
        b.max_open_duration = b.open_duration;
    }
    if b.min_calls > b.window
        && let Some(s) = raw.min_calls.as_ref().or(raw.window.as_ref())
    {
        errs.at(
            s,
            format!("{prefix}.min_calls"),
            format!(
                "{} exceeds window {}: the failure rate could never trip",
                b.min_calls, b.window
            ),
        );
    }
}

/// What an endpoint inherits unless it says otherwise.
struct Defaults {
    global: Global,
    breaker: BreakerBase,
}

fn resolve(raw: RawFile, errs: &mut Errors, env: &dyn EnvSource) -> Config {
    let global = resolve_global(&raw.global, env, errs);
    let breaker = resolve_breaker(
        &raw.global.breaker,
        &BreakerBase::default(),
        "global.breaker",
        errs,
    );
    // Reported at the global fields only when an endpoint inherits all three
    // (timeout, adaptive.min, slow_call_duration); an endpoint that writes
    // one of them is checked, and reported, at its own.
    let inherits = |e: &RawEndpoint| {
        e.timeout.is_none()
            && e.breaker.adaptive.min.is_none()
            && e.breaker.slow_call_duration.is_none()
    };
    if raw
        .endpoints
        .as_ref()
        .is_some_and(|e| e.value.iter().any(inherits))
    {
        let (rb, rt) = (&raw.global.breaker, &raw.global.timeout);
        check_min_below_timeout(rb, &breaker, global.timeout, rt, "global", errs);
    }
    let defaults = Defaults { global, breaker };
    check_not_empty(&raw, defaults.global.allow_empty, errs);
    let mut endpoint_names = HashMap::new();
    let mut endpoints = Vec::new();
    let raw_endpoints = raw.endpoints.as_ref().map_or(&[][..], |e| &e.value[..]);
    for (i, e) in raw_endpoints.iter().enumerate() {
        let p = format!("endpoints[{i}]");
        check_name(
            &e.name,
            format!("{p}.name"),
            "endpoint",
            &mut endpoint_names,
            errs,
        );
        endpoints.extend(resolve_endpoint(e, &p, &defaults, env, errs));
    }
    let mut route_names = HashMap::new();
    let mut routes = Vec::new();
    for (i, r) in raw.routes.iter().enumerate() {
        let p = format!("routes[{i}]");
        check_name(
            &r.name,
            format!("{p}.name"),
            "route",
            &mut route_names,
            errs,
        );
        routes.push(resolve_route(r, &p, &endpoint_names, errs));
    }
    Config {
        global: defaults.global,
        endpoints,
        routes,
        gateway: resolve_gateway(&raw.gateway, errs),
    }
}

fn resolve_gateway(g: &RawGateway, errs: &mut Errors) -> GatewayConfig {
    let d = GatewayConfig::default();
    let client_keys = g.client_keys_file.as_ref().and_then(|f| {
        read_client_keys(&f.value)
            .map_err(|e| errs.at(f, "gateway.client_keys_file", e))
            .ok()
    });
    GatewayConfig {
        client_keys,
        allow_unauthenticated: g.allow_unauthenticated.unwrap_or(false),
        max_request_bytes: bounded(
            errs,
            &g.max_request_bytes,
            "gateway.max_request_bytes",
            bounds::GATEWAY_MAX_REQUEST_BYTES,
        )
        .unwrap_or(d.max_request_bytes),
        timeout: duration(
            errs,
            &g.timeout,
            "gateway.timeout",
            d.timeout,
            bounds::GATEWAY_TIMEOUT,
        ),
        first_byte_timeout: duration(
            errs,
            &g.first_byte_timeout,
            "gateway.first_byte_timeout",
            d.first_byte_timeout,
            bounds::GATEWAY_FIRST_BYTE_TIMEOUT,
        ),
    }
}

/// One key per line, like a token file: regular, small, UTF-8; the message
/// names the path, never a key.
fn read_client_keys(path: &Path) -> Result<Vec<Secret>, String> {
    let bytes =
        read_regular_file(path, crate::secret::MAX_SECRET_FILE_BYTES).map_err(|e| e.to_string())?;
    let text =
        String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8 text", path.display()))?;
    let keys: Vec<Secret> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(Secret::new)
        .collect();
    if keys.is_empty() {
        return Err(format!("{}: no keys (one per line)", path.display()));
    }
    Ok(keys)
}

/// No endpoints (an empty file, a file of comments, `endpoints: []`) is
/// almost always a truncated or half-written file: applying it would stop
/// all probing while reporting success. Refused unless `allow_empty: true`.
fn check_not_empty(raw: &RawFile, allow_empty: bool, errs: &mut Errors) {
    if allow_empty || raw.endpoints.as_ref().is_some_and(|e| !e.value.is_empty()) {
        return;
    }
    let message = "no endpoints configured (an empty or truncated file?); \
                   set global.allow_empty: true to run without endpoints";
    match &raw.endpoints {
        Some(e) => errs.at(e, "endpoints", message),
        None => errs.0.push(FieldError {
            line: 1,
            column: 1,
            field: "endpoints".to_string(),
            message: message.to_string(),
        }),
    }
}

fn resolve_global(g: &RawGlobal, env: &dyn EnvSource, errs: &mut Errors) -> Global {
    let request = resolve_request(
        &raw_request!(g),
        &RequestOptions::default(),
        "global",
        None,
        env,
        errs,
    );
    Global {
        interval: duration(
            errs,
            &g.interval,
            "global.interval",
            default_interval(),
            bounds::INTERVAL,
        ),
        timeout: duration(
            errs,
            &g.timeout,
            "global.timeout",
            default_timeout(),
            bounds::TIMEOUT,
        ),
        confirm_interval: duration(
            errs,
            &g.confirm_interval,
            "global.confirm_interval",
            default_confirm_interval(),
            bounds::CONFIRM_INTERVAL,
        ),
        max_body_bytes: bounded(
            errs,
            &g.max_body_bytes,
            "global.max_body_bytes",
            bounds::MAX_BODY_BYTES,
        )
        .unwrap_or_else(default_max_body_bytes),
        allow_empty: g.allow_empty.unwrap_or(false),
        request,
    }
}

/// One endpoint (its name is checked by the caller); `p` is its field path.
/// None when it has no usable URL, after every other field has been checked.
fn resolve_endpoint(
    e: &RawEndpoint,
    p: &str,
    d: &Defaults,
    env: &dyn EnvSource,
    errs: &mut Errors,
) -> Option<EndpointConfig> {
    let url = resolve_url(e, p, errs);
    let probe = resolve_probe(e, p, errs);
    check_model(e, probe, p, errs);
    check_status_target(e, p, errs);
    let (token, token_source) = resolve_token(e, p, env, errs).unzip();
    let breaker = resolve_breaker(&e.breaker, &d.breaker, &format!("{p}.breaker"), errs);
    let g = &d.global;
    let request = resolve_request(&raw_request!(e), &g.request, p, Some(probe), env, errs);
    check_headers_vs_token(e, &request, p, errs);
    let interval = duration(
        errs,
        &e.interval,
        &format!("{p}.interval"),
        g.interval,
        bounds::INTERVAL,
    );
    let timeout = duration(
        errs,
        &e.timeout,
        &format!("{p}.timeout"),
        g.timeout,
        bounds::TIMEOUT,
    );
    let confirm_interval = duration(
        errs,
        &e.confirm_interval,
        &format!("{p}.confirm_interval"),
        g.confirm_interval,
        bounds::CONFIRM_INTERVAL,
    );
    check_min_below_timeout(&e.breaker, &breaker, timeout, &e.timeout, p, errs);
    Some(EndpointConfig {
        name: e.name.value.clone(),
        kind: e.kind.value,
        url: url?,
        probe,
        model: e.model.as_ref().map(|m| m.value.trim().to_string()),
        namespace: e.namespace.as_ref().map(|s| s.value.clone()),
        endpoint_name: e.endpoint_name.as_ref().map(|s| s.value.clone()),
        token,
        token_source,
        interval,
        timeout,
        confirm_interval,
        max_body_bytes: g.max_body_bytes,
        request,
        breaker: breaker.finish(timeout),
        enforce: breaker.enforce,
        ignore: e.ignore.iter().copied().collect(),
        max_in_flight: bounded(
            errs,
            &e.max_in_flight,
            &format!("{p}.max_in_flight"),
            bounds::MAX_IN_FLIGHT,
        ),
    })
}

/// The written URL, else the router default for the kind. A default URL has
/// no position of its own, so its errors point at the endpoint's name.
fn resolve_url(e: &RawEndpoint, p: &str, errs: &mut Errors) -> Option<reqwest::Url> {
    let kind = e.kind.value;
    let field = format!("{p}.url");
    let (text, at) = match (&e.url, default_router_url(kind)) {
        (Some(u), _) => (u.value.as_str(), u),
        (None, Some(d)) => (d, &e.name),
        (None, None) => {
            errs.at(
                &e.kind,
                field,
                format!("kind {} needs a url", kind.as_str()),
            );
            return None;
        }
    };
    match reqwest::Url::parse(text) {
        Ok(u) if !matches!(u.scheme(), "http" | "https") => {
            errs.at(at, field, "scheme must be http or https")
        }
        Ok(u) if !u.username().is_empty() || u.password().is_some() => errs.at(
            at,
            field,
            "credentials in the URL are not allowed; use token_env or token_file",
        ),
        Ok(u) => return Some(u),
        Err(err) => errs.at(at, field, format!("not a valid URL: {err}")),
    }
    None
}

/// The written probe if the kind supports it, else the kind's default.
fn resolve_probe(e: &RawEndpoint, p: &str, errs: &mut Errors) -> ProbeKind {
    let kind = e.kind.value;
    match &e.probe {
        Some(s) if !kind.probes().contains(&s.value) => {
            let allowed: Vec<_> = kind.probes().iter().map(|p| p.as_str()).collect();
            errs.at(
                s,
                format!("{p}.probe"),
                format!(
                    "kind {} does not support probe {}; use one of: {}",
                    kind.as_str(),
                    s.value.as_str(),
                    allowed.join(", ")
                ),
            );
            kind.probes()[0]
        }
        Some(s) => s.value,
        None => kind.probes()[0],
    }
}

/// hf-inference and OpenAI chat probes name the model in every request.
fn check_model(e: &RawEndpoint, probe: ProbeKind, p: &str, errs: &mut Errors) {
    let kind = e.kind.value;
    let needs_model = matches!(kind, Kind::HfInference)
        || (kind == Kind::Openai && matches!(probe, ProbeKind::Chat | ProbeKind::ChatStream));
    if needs_model && e.model.is_none() {
        errs.at(
            &e.kind,
            format!("{p}.model"),
            format!(
                "kind {} with probe {} needs a model",
                kind.as_str(),
                probe.as_str()
            ),
        );
    }
    let Some(m) = &e.model else { return };
    let v = m.value.trim();
    let field = format!("{p}.model");
    if v.is_empty() {
        errs.at(m, field, "must not be empty");
    } else if v.len() > bounds::MAX_MODEL_BYTES {
        let msg = format!("at most {} bytes", bounds::MAX_MODEL_BYTES);
        errs.at(m, field, msg);
    } else if kind == Kind::HfInference
        && (v.contains(['?', '#', '\\']) || v.split('/').any(|seg| matches!(seg, "" | "." | "..")))
    {
        // hf-inference puts the model in the URL path: it must stay one resource.
        errs.at(
            m,
            field,
            "must be a model id such as org/name: no empty, \".\" or \"..\" segment, no ?, # or \\",
        );
    }
}

/// A Hub namespace, repository or endpoint name: it goes into a URL path, so
/// `..` or a `/` would change which resource is read.
fn hf_name(s: &str) -> bool {
    s.len() <= bounds::MAX_HF_NAME_BYTES
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !s.contains("..")
}

/// namespace and endpoint_name: required by endpoint-status, which puts them
/// in the management API path, and refused elsewhere.
fn check_status_target(e: &RawEndpoint, p: &str, errs: &mut Errors) {
    let status = e.kind.value == Kind::EndpointStatus;
    for (field, v) in [
        ("namespace", &e.namespace),
        ("endpoint_name", &e.endpoint_name),
    ] {
        let f = format!("{p}.{field}");
        match v {
            None if status => errs.at(&e.kind, f, format!("kind endpoint-status needs {field}")),
            None => {}
            Some(s) if !status => errs.at(s, f, "only kind endpoint-status uses this field"),
            Some(s) if !hf_name(&s.value) => errs.at(
                s,
                f,
                format!(
                    "must match [A-Za-z0-9][A-Za-z0-9._-]* without \"..\", at most {} characters",
                    bounds::MAX_HF_NAME_BYTES
                ),
            ),
            Some(_) => {}
        }
    }
}

/// The endpoint's token and where it came from; at most one source is allowed.
fn resolve_token(
    e: &RawEndpoint,
    p: &str,
    env: &dyn EnvSource,
    errs: &mut Errors,
) -> Option<(Secret, TokenSource)> {
    match (&e.token_env, &e.token_file) {
        (Some(a), Some(_)) => {
            errs.at(
                a,
                format!("{p}.token_env"),
                "set token_env or token_file, not both",
            );
            None
        }
        (Some(var), None) => token_from_env(var, p, env, errs),
        (None, Some(file)) => token_from_file(file, p, errs),
        (None, None) => None,
    }
}

fn token_from_env(
    var: &Spanned<String>,
    p: &str,
    env: &dyn EnvSource,
    errs: &mut Errors,
) -> Option<(Secret, TokenSource)> {
    let field = format!("{p}.token_env");
    match env.var(&var.value) {
        Some(v) if !v.trim().is_empty() => {
            return Some((Secret::new(v.trim()), TokenSource::Env(var.value.clone())));
        }
        Some(_) => errs.at(
            var,
            field,
            format!("environment variable {} is empty", var.value),
        ),
        None => errs.at(
            var,
            field,
            format!("environment variable {} is not set", var.value),
        ),
    }
    None
}

fn token_from_file(
    file: &Spanned<PathBuf>,
    p: &str,
    errs: &mut Errors,
) -> Option<(Secret, TokenSource)> {
    match read_secret_file(&file.value) {
        Ok(v) => Some((v, TokenSource::File(file.value.clone()))),
        // The error names the path and the failure, never the content.
        Err(err) => {
            errs.at(file, format!("{p}.token_file"), err.to_string());
            None
        }
    }
}

/// Request options of `global` over the defaults (`probe` None), or of one
/// endpoint over the global ones.
fn resolve_request(
    r: &RawRequest,
    base: &RequestOptions,
    p: &str,
    probe: Option<ProbeKind>,
    env: &dyn EnvSource,
    errs: &mut Errors,
) -> RequestOptions {
    let mut out = base.clone();
    let field = format!("{p}.max_tokens");
    if let Some(n) = bounded(errs, r.max_tokens, &field, bounds::MAX_TOKENS) {
        out.max_tokens = n;
    }
    if let (Some(s), Some(probe)) = (r.max_tokens, probe)
        && !matches!(
            probe,
            ProbeKind::Generate | ProbeKind::Chat | ProbeKind::ChatStream
        )
    {
        let msg = format!("probe {} generates no tokens", probe.as_str());
        errs.at(s, field, msg);
    }
    if let Some(tls) = r.tls {
        resolve_tls(tls, &mut out.upstream, p, errs);
    }
    if let Some(u) = r.proxy_url {
        out.upstream.proxy_url = check_proxy_url(u, &format!("{p}.proxy_url"), errs);
    }
    if let Some(h) = r.headers {
        merge_headers(h, &mut out.headers, p, env, errs);
    }
    out
}

/// `tls:` fields override the inherited ones one by one.
fn resolve_tls(t: &RawTls, up: &mut Upstream, p: &str, errs: &mut Errors) {
    if let Some(f) = &t.ca_file {
        let field = format!("{p}.tls.ca_file");
        match read_regular_file(&f.value, bounds::MAX_CA_FILE_BYTES) {
            Ok(pem) if usable_ca(&pem) => {
                up.ca_file = Some(f.value.clone());
                up.ca_pem = Some(pem);
            }
            Ok(_) => errs.at(
                f,
                field,
                format!("{}: no usable PEM certificate in it", f.value.display()),
            ),
            Err(e) => errs.at(f, field, e.to_string()),
        }
    }
    if let Some(b) = &t.insecure_skip_verify {
        up.insecure_skip_verify = b.value;
    }
    if let Some(n) = &t.server_name {
        if dns_name(&n.value) {
            up.server_name = Some(n.value.to_ascii_lowercase());
        } else {
            errs.at(
                n,
                format!("{p}.tls.server_name"),
                "must be a DNS name such as tgi.internal",
            );
        }
    }
}

/// At least one certificate, and one a TLS client accepts as a root (the
/// client is built here only to check, so check-config catches a bad file).
fn usable_ca(pem: &[u8]) -> bool {
    let Ok(certs) = reqwest::Certificate::from_pem_bundle(pem) else {
        return false;
    };
    !certs.is_empty()
        && certs
            .into_iter()
            .fold(
                reqwest::Client::builder().tls_built_in_root_certs(false),
                |b, c| b.add_root_certificate(c),
            )
            .build()
            .is_ok()
}

fn dns_name(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// An http(s) proxy. Messages never repeat the value: it may hold credentials.
fn check_proxy_url(u: &Spanned<String>, field: &str, errs: &mut Errors) -> Option<Secret> {
    let v = u.value.trim();
    match reqwest::Url::parse(v) {
        Ok(url) if !matches!(url.scheme(), "http" | "https") => {
            errs.at(u, field, "scheme must be http or https")
        }
        Ok(url) if url.host_str().is_none_or(str::is_empty) => errs.at(u, field, "needs a host"),
        Ok(_) if reqwest::Proxy::all(v).is_err() => errs.at(u, field, "not a usable proxy URL"),
        Ok(_) => return Some(Secret::new(v)),
        Err(_) => errs.at(
            u,
            field,
            "not a valid URL (e.g. http://proxy.internal:3128)",
        ),
    }
    None
}

/// Headers the client sets itself, or that would break the request's framing.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
];

/// `headers:` over the inherited ones; a name written again (in any case) replaces.
fn merge_headers(
    raw: &BTreeMap<String, Spanned<RawHeaderValue>>,
    out: &mut Vec<(String, Secret)>,
    p: &str,
    env: &dyn EnvSource,
    errs: &mut Errors,
) {
    for (name, v) in raw {
        let field = format!("{p}.headers.{name}");
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if name.is_empty() || name.len() > bounds::MAX_HEADER_NAME_BYTES || !name.chars().all(token)
        {
            errs.at(v, field, "not a valid header name");
            continue;
        }
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            errs.at(v, field, "set by hfbreaker itself; cannot be overridden");
            continue;
        }
        if let Some(value) = header_value(v, &field, env, errs) {
            out.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            out.push((name.clone(), value));
        }
    }
    if out.len() > bounds::MAX_HEADERS
        && let Some(v) = raw.values().next()
    {
        let msg = format!("at most {} headers", bounds::MAX_HEADERS);
        errs.at(v, format!("{p}.headers"), msg);
    }
}

/// The value of one header. Errors name the source, never the value.
fn header_value(
    v: &Spanned<RawHeaderValue>,
    field: &str,
    env: &dyn EnvSource,
    errs: &mut Errors,
) -> Option<Secret> {
    let value = match &v.value {
        RawHeaderValue::Literal(s) => s.clone(),
        RawHeaderValue::Env(value_env) => match env.var(value_env) {
            Some(s) => s.trim().to_string(),
            None => {
                let msg = format!("environment variable {value_env} is not set");
                errs.at(v, field, msg);
                return None;
            }
        },
        RawHeaderValue::File(value_file) => match read_secret_file(value_file) {
            Ok(s) => s.expose().to_string(),
            Err(e) => {
                errs.at(v, field, e.to_string());
                return None;
            }
        },
    };
    let printable = |c: char| c == '\t' || (' '..='~').contains(&c);
    if value.is_empty()
        || value.len() > bounds::MAX_HEADER_VALUE_BYTES
        || !value.chars().all(printable)
    {
        let msg = format!(
            "value must be 1 to {} printable ASCII characters",
            bounds::MAX_HEADER_VALUE_BYTES
        );
        errs.at(v, field, msg);
        return None;
    }
    Some(Secret::new(value))
}

/// A token is sent as `Authorization: Bearer`; a second Authorization would be ambiguous.
fn check_headers_vs_token(e: &RawEndpoint, r: &RequestOptions, p: &str, errs: &mut Errors) {
    let auth = r
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("authorization"));
    let token = e
        .token_env
        .as_ref()
        .or(e.token_file.as_ref().map(|_| &e.name));
    if auth && let Some(at) = token {
        errs.at(
            at,
            format!("{p}.headers"),
            "an Authorization header and a token are exclusive; drop one",
        );
    }
}

/// One route (its name is checked by the caller); `endpoints` maps the
/// valid endpoint names.
fn resolve_route(
    r: &RawRoute,
    p: &str,
    endpoints: &HashMap<String, u64>,
    errs: &mut Errors,
) -> RouteConfig {
    if r.endpoints.value.is_empty() {
        errs.at(
            &r.endpoints,
            format!("{p}.endpoints"),
            "a route needs at least one endpoint",
        );
    }
    let mut chain: Vec<String> = Vec::new();
    for (j, ep) in r.endpoints.value.iter().enumerate() {
        if !endpoints.contains_key(&ep.value) {
            errs.at(
                ep,
                format!("{p}.endpoints[{j}]"),
                format!("unknown endpoint {:?}", ep.value),
            );
        } else if chain.contains(&ep.value) {
            errs.at(
                ep,
                format!("{p}.endpoints[{j}]"),
                format!("endpoint {:?} appears twice in the chain", ep.value),
            );
        }
        chain.push(ep.value.clone());
    }
    RouteConfig {
        name: r.name.value.clone(),
        endpoints: chain,
        cache: r.cache.as_ref().map(|c| resolve_cache(c, p, errs)),
    }
}

fn resolve_cache(c: &RawCache, p: &str, errs: &mut Errors) -> CacheConfig {
    let d = CacheConfig::default();
    CacheConfig {
        ttl: duration(
            errs,
            &c.ttl,
            &format!("{p}.cache.ttl"),
            d.ttl,
            bounds::CACHE_TTL,
        ),
        max_entries: bounded(
            errs,
            &c.max_entries,
            &format!("{p}.cache.max_entries"),
            bounds::CACHE_MAX_ENTRIES,
        )
        .unwrap_or(d.max_entries),
        max_bytes: bounded(
            errs,
            &c.max_bytes,
            &format!("{p}.cache.max_bytes"),
            bounds::CACHE_MAX_BYTES,
        )
        .unwrap_or(d.max_bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> HashMap<String, String> {
        HashMap::from([("HF_TOKEN".to_string(), "hf_abcdefsecret".to_string())])
    }

    fn errors(yaml: &str) -> Vec<FieldError> {
        match parse(yaml, "test.yml", &env()) {
            Ok(_) => panic!("expected an error for:\n{yaml}"),
            Err(e) => e.errors().to_vec(),
        }
    }

    const EXAMPLE: &str = r#"
global:
  interval: 15s
  timeout: 10s
  confirm_interval: 2s
  breaker:
    failure_threshold: 5
    open_duration: 60s
    max_open_duration: 10m
endpoints:
  - name: zephyr-dedicated
    kind: tgi
    url: https://xyz.endpoints.huggingface.cloud
    token_env: HF_TOKEN
    probe: generate
    interval: 10s
    breaker:
      failure_threshold: 3
  - name: zephyr-serverless
    kind: openai
    model: HuggingFaceH4/zephyr-7b-beta
    probe: chat
    token_env: HF_TOKEN
    ignore: [rate_limited]
  - name: zephyr-status
    kind: endpoint-status
    namespace: my-org
    endpoint_name: zephyr-7b
    token_env: HF_TOKEN
routes:
  - name: assistant
    endpoints: [zephyr-dedicated, zephyr-serverless]
"#;

    #[test]
    fn gateway_section_defaults_bounds_and_positions() {
        let c = parse(EXAMPLE, "x", &env()).unwrap();
        assert_eq!(c.gateway, GatewayConfig::default());
        assert_eq!(c.endpoints[0].max_in_flight, None);
        let yaml = format!(
            "{EXAMPLE}gateway:\n  timeout: 2h\n  first_byte_timeout: 1ms\n  max_request_bytes: 10\n  client_keys_file: /nonexistent/keys\n"
        );
        let errs = errors(&yaml);
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "gateway.timeout",
                "gateway.first_byte_timeout",
                "gateway.max_request_bytes",
                "gateway.client_keys_file"
            ]
        );
        assert!(errs.iter().all(|e| e.line > 30 && e.column > 1), "{errs:?}");
        let errs = errors(&format!("{EXAMPLE}gateway:\n  keys: x\n"));
        assert!(errs[0].message.contains("keys"), "{errs:?}");
        let errs = errors(&EXAMPLE.replace(
            "    interval: 10s\n",
            "    interval: 10s\n    max_in_flight: 0\n",
        ));
        assert_eq!(errs[0].field, "endpoints[0].max_in_flight");
    }

    #[test]
    fn parses_the_example_with_defaults_and_overrides() {
        let c = parse(EXAMPLE, "x", &env()).unwrap();
        assert_eq!(c.endpoints.len(), 3);
        let d = &c.endpoints[0];
        assert_eq!(d.interval, Duration::from_secs(10));
        assert_eq!(d.timeout, Duration::from_secs(10));
        assert_eq!(d.breaker.failure_threshold, 3);
        assert_eq!(d.breaker.max_open_duration, Duration::from_secs(600));
        assert_eq!(d.token.as_ref().unwrap().expose(), "hf_abcdefsecret");
        let s = &c.endpoints[1];
        assert_eq!(s.url.as_str(), "https://router.huggingface.co/v1");
        assert_eq!(s.breaker.failure_threshold, 5);
        assert!(s.ignore.contains(&Reason::RateLimited));
        assert_eq!(
            c.endpoints[2].url.host_str(),
            Some("api.endpoints.huggingface.cloud")
        );
        assert_eq!(
            c.routes[0].endpoints,
            vec!["zephyr-dedicated", "zephyr-serverless"]
        );
        assert!(
            !format!("{c:?}").contains("abcdefsecret"),
            "Debug never shows tokens"
        );
    }

    #[test]
    fn unknown_key_names_line_and_field() {
        let e = errors(
            "endpoints:\n  - name: a\n    kind: tgi\n    url: http://x\n    intervall: 5s\n",
        );
        assert_eq!(e[0].line, 5);
        assert_eq!(e[0].field, "intervall");
        assert!(e[0].message.contains("unknown field"), "{:?}", e[0]);
    }

    #[test]
    fn malformed_duration_names_line() {
        let e = errors("global:\n  interval: 15 parsecs\n");
        assert_eq!(e[0].line, 2);
        assert_eq!(e[0].field, "interval");
        assert!(e[0].message.contains("invalid duration"), "{:?}", e[0]);
    }

    #[test]
    fn semantic_errors_are_all_reported_with_lines() {
        let yaml = "endpoints:\n  - name: a\n    kind: tgi\n    url: http://x\n  - name: a\n    kind: tei\n    url: http://y\n    token_env: NOPE_NOT_SET\nroutes:\n  - name: r\n    endpoints: [a, ghost]\n";
        let e = errors(yaml);
        let lines: Vec<(u64, &str)> = e.iter().map(|e| (e.line, e.field.as_str())).collect();
        assert!(lines.contains(&(5, "endpoints[1].name")), "{e:?}");
        assert!(lines.contains(&(8, "endpoints[1].token_env")), "{e:?}");
        assert!(lines.contains(&(11, "routes[0].endpoints[1]")), "{e:?}");
        assert!(
            e.iter()
                .any(|e| e.message.contains("duplicate endpoint name"))
        );
        assert!(
            e.iter()
                .any(|e| e.message.contains("NOPE_NOT_SET is not set"))
        );
        assert!(
            e.iter()
                .any(|e| e.message.contains("unknown endpoint \"ghost\""))
        );
    }

    #[test]
    fn rendered_error_names_file_line_and_field() {
        let err = parse(
            "global:\n  timeout: 0s\n  allow_empty: true\n",
            "conf/h.yml",
            &env(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "conf/h.yml:2:12: global.timeout: must be between 10ms and 5m"
        );
    }

    #[test]
    fn probe_must_fit_kind_and_model_required() {
        let e = errors(
            "endpoints:\n  - name: a\n    kind: tei\n    url: http://x\n    probe: generate\n  - name: b\n    kind: hf-inference\n",
        );
        assert!(
            e.iter()
                .any(|e| e.line == 5 && e.message.contains("does not support probe generate")),
            "{e:?}"
        );
        assert!(e.iter().any(|e| e.field == "endpoints[1].model"), "{e:?}");
    }

    #[test]
    fn url_credentials_and_bad_scheme_rejected() {
        let e = errors(
            "endpoints:\n  - name: a\n    kind: http\n    url: https://u:p@x\n  - name: b\n    kind: http\n    url: ftp://x\n",
        );
        assert!(e[0].message.contains("credentials"), "{e:?}");
        assert!(
            !e[0].message.contains("u:p"),
            "the message does not repeat credentials"
        );
        assert!(e[1].message.contains("scheme"));
    }

    #[test]
    fn breaker_values_checked() {
        let e = errors(
            "global:\n  breaker:\n    failure_rate_threshold: 1.5\n    window: 5\n    min_calls: 10\n",
        );
        assert!(
            e.iter()
                .any(|e| e.line == 3 && e.field == "global.breaker.failure_rate_threshold"),
            "{e:?}"
        );
        assert!(
            e.iter().any(|e| e.field == "global.breaker.min_calls"),
            "{e:?}"
        );
    }

    #[test]
    fn token_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("tok");
        std::fs::write(&f, "hf_fromfile\n").unwrap();
        let yaml = format!(
            "endpoints:\n  - name: a\n    kind: tgi\n    url: http://x\n    token_file: {}\n",
            f.display()
        );
        let c = parse(&yaml, "x", &env()).unwrap();
        assert_eq!(
            c.endpoints[0].token.as_ref().unwrap().expose(),
            "hf_fromfile"
        );
        let e = errors(
            "endpoints:\n  - name: a\n    kind: tgi\n    url: http://x\n    token_file: /nonexistent/tok\n",
        );
        assert_eq!(e[0].line, 5);
    }

    #[test]
    fn bad_ignore_reason_and_yaml_syntax() {
        let e = errors(
            "endpoints:\n  - name: a\n    kind: tgi\n    url: http://x\n    ignore: [sunspots]\n",
        );
        assert_eq!(e[0].line, 5, "{e:?}");
        let e = errors("endpoints:\n  - name: [a\n");
        assert_eq!(e[0].line, 2, "{e:?}");
    }

    #[test]
    fn syntax_errors_carry_the_position_once() {
        let err = parse("global:\n  intervall: 5s\n", "c.yml", &env()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.yml:2:3: intervall: unknown field `intervall`, expected one of interval, \
             timeout, confirm_interval, max_body_bytes, breaker, allow_empty, max_tokens, tls, \
             proxy_url, headers"
        );
    }

    #[test]
    fn flow_mapping_errors_name_the_key_at_the_column() {
        let e = errors("endpoints:\n  - {name: a, kind: tgi, url: 'http://x', probe: sideways}\n");
        assert_eq!((e[0].line, e[0].column), (2, 50), "{e:?}");
        assert_eq!(e[0].field, "probe");
    }

    #[test]
    fn key_at_finds_the_key_an_error_sits_under() {
        assert_eq!(
            key_at("  interval: 15 parsecs", 13).as_deref(),
            Some("interval")
        );
        assert_eq!(key_at("  - name: x", 3).as_deref(), Some("name"));
        assert_eq!(
            key_at("  - {mode: ok, for: 0s}", 21).as_deref(),
            Some("for")
        );
        assert_eq!(
            key_at("  - {mode: ok, for: 0s}", 11).as_deref(),
            Some("mode")
        );
        assert_eq!(key_at("    url: http://x:80", 20).as_deref(), Some("url"));
        assert_eq!(key_at("  \"quoted\": 1", 13).as_deref(), Some("quoted"));
        assert_eq!(key_at("  a b: 1", 7), None);
        assert_eq!(key_at("  a-b: 1", 7), None);
        assert_eq!(key_at("  - [a, b]", 5), None);
    }

    /// Pins the complete output across every section, in order: the split
    /// of `resolve` into per-section functions must not change a byte.
    #[test]
    fn a_third_copy_of_a_name_points_at_the_first() {
        let e = errors(
            "endpoints:\n  - {name: a, kind: http, url: 'http://h'}\n  - {name: a, kind: http, url: 'http://h'}\n  - {name: a, kind: http, url: 'http://h'}\n",
        );
        let messages: Vec<(u64, &str)> = e.iter().map(|e| (e.line, e.message.as_str())).collect();
        assert_eq!(
            messages,
            [
                (3, "duplicate endpoint name \"a\" (first defined on line 2)"),
                (4, "duplicate endpoint name \"a\" (first defined on line 2)"),
            ]
        );
    }

    #[test]
    fn every_section_reports_in_file_order() {
        let yaml = "global:
  interval: 0s
  max_body_bytes: 10
  breaker:
    open_duration: 10m
    max_open_duration: 1m
endpoints:
  - name: A
    kind: http
  - name: s
    kind: endpoint-status
    namespace: 'a b'
  - name: s
    kind: tgi
    url: 'https://u:p@x'
    probe: embed
    endpoint_name: e
    token_env: NOPE
    token_file: /x
    timeout: 0s
    breaker:
      window: 3
      min_calls: 4
routes:
  - name: r
    endpoints: []
  - name: r
    endpoints: [s, s, A]
";
        let err = parse(yaml, "t.yml", &env()).unwrap_err().to_string();
        let want = [
            "t.yml:2:13: global.interval: must be between 100ms and 24h",
            "t.yml:3:19: global.max_body_bytes: must be between 1024 and 67108864",
            "t.yml:6:24: global.breaker.max_open_duration: must not be shorter than open_duration",
            "t.yml:8:11: endpoints[0].name: \"A\" must match [a-z0-9_-]+ (it becomes the `endpoint` label)",
            "t.yml:9:11: endpoints[0].url: kind http needs a url",
            "t.yml:11:11: endpoints[1].endpoint_name: kind endpoint-status needs endpoint_name",
            "t.yml:12:16: endpoints[1].namespace: must match [A-Za-z0-9][A-Za-z0-9._-]* without \"..\", at most 96 characters",
            "t.yml:13:11: endpoints[2].name: duplicate endpoint name \"s\" (first defined on line 10)",
            "t.yml:15:10: endpoints[2].url: credentials in the URL are not allowed; use token_env or token_file",
            "t.yml:16:12: endpoints[2].probe: kind tgi does not support probe embed; use one of: generate, health, chat, chat_stream",
            "t.yml:17:20: endpoints[2].endpoint_name: only kind endpoint-status uses this field",
            "t.yml:18:16: endpoints[2].token_env: set token_env or token_file, not both",
            "t.yml:20:14: endpoints[2].timeout: must be between 10ms and 5m",
            "t.yml:23:18: endpoints[2].breaker.min_calls: 4 exceeds window 3: the failure rate could never trip",
            "t.yml:26:16: routes[0].endpoints: a route needs at least one endpoint",
            "t.yml:27:11: routes[1].name: duplicate route name \"r\" (first defined on line 25)",
            "t.yml:28:20: routes[1].endpoints[1]: endpoint \"s\" appears twice in the chain",
            "t.yml:28:23: routes[1].endpoints[2]: unknown endpoint \"A\"",
        ];
        assert_eq!(err, want.join("\n"));
    }
}
