//! The YAML configuration: what users write, its defaults, and validation
//! that names the file, line and field of every mistake.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;

use crate::breaker::BreakerConfig;
use crate::classify::Reason;
use crate::label::label_enum;
use crate::secret::Secret;

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
    #[serde(default)]
    endpoints: Vec<RawEndpoint>,
    #[serde(default)]
    routes: Vec<RawRoute>,
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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBreaker {
    failure_threshold: Option<Spanned<u32>>,
    failure_rate_threshold: Option<Spanned<f64>>,
    window: Option<Spanned<u32>>,
    min_calls: Option<Spanned<u32>>,
    slow_call_duration: Option<Spanned<HumanDuration>>,
    slow_call_rate_threshold: Option<Spanned<f64>>,
    open_duration: Option<Spanned<HumanDuration>>,
    max_open_duration: Option<Spanned<HumanDuration>>,
    success_threshold: Option<Spanned<u32>>,
    enforce: Option<bool>,
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: Spanned<String>,
    endpoints: Spanned<Vec<Spanned<String>>>,
}

// ---------------------------------------------------------------- resolved

/// Global settings after defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct Global {
    pub interval: Duration,
    pub timeout: Duration,
    pub confirm_interval: Duration,
    pub max_body_bytes: u64,
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
pub fn default_max_body_bytes() -> u64 {
    256 * 1024
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
    pub breaker: BreakerConfig,
    /// false = observe-only: states are computed and exported, routes ignore them.
    pub enforce: bool,
    /// Failure reasons moved to "ignored" for this endpoint.
    pub ignore: BTreeSet<Reason>,
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

    /// Equal in all that shapes probing and the breaker; a token change alone
    /// keeps the breaker state across a reload.
    pub fn same_probe_and_breaker(&self, other: &EndpointConfig) -> bool {
        let strip = |c: &EndpointConfig| EndpointConfig {
            token: None,
            token_source: None,
            ..c.clone()
        };
        strip(self) == strip(other)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct RouteConfig {
    pub name: String,
    /// Fallback chain, first = primary.
    pub endpoints: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub global: Global,
    pub endpoints: Vec<EndpointConfig>,
    pub routes: Vec<RouteConfig>,
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
}

impl ConfigError {
    pub fn errors(&self) -> &[FieldError] {
        match self {
            ConfigError::Read { .. } => &[],
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
    let raw: RawFile = if text.trim().is_empty() {
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

fn duration(
    errs: &mut Errors,
    v: &Option<Spanned<HumanDuration>>,
    field: &str,
    fallback: Duration,
) -> Duration {
    match v {
        None => fallback,
        Some(s) if s.value.0.is_zero() => {
            errs.at(s, field, "must be greater than zero");
            fallback
        }
        Some(s) => s.value.0,
    }
}

/// Applies `raw` over `base`; `prefix` is the field path of the breaker block.
fn resolve_breaker(
    raw: &RawBreaker,
    base: &BreakerConfig,
    base_enforce: bool,
    prefix: &str,
    errs: &mut Errors,
) -> (BreakerConfig, bool) {
    let mut b = base.clone();
    let f = |name: &str| format!("{prefix}.{name}");
    let mut count = |v: &Option<Spanned<u32>>, name: &str, target: &mut u32| {
        if let Some(s) = v {
            if s.value == 0 {
                errs.at(s, f(name), "must be at least 1");
            } else {
                *target = s.value;
            }
        }
    };
    count(
        &raw.failure_threshold,
        "failure_threshold",
        &mut b.failure_threshold,
    );
    count(&raw.window, "window", &mut b.window);
    count(&raw.min_calls, "min_calls", &mut b.min_calls);
    count(
        &raw.success_threshold,
        "success_threshold",
        &mut b.success_threshold,
    );
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
    for (v, name, target) in [
        (
            &raw.slow_call_duration,
            "slow_call_duration",
            &mut b.slow_call_duration,
        ),
        (&raw.open_duration, "open_duration", &mut b.open_duration),
        (
            &raw.max_open_duration,
            "max_open_duration",
            &mut b.max_open_duration,
        ),
    ] {
        *target = duration(errs, v, &f(name), *target);
    }
    check_breaker_limits(raw, &mut b, prefix, errs);
    (b, raw.enforce.unwrap_or(base_enforce))
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
    breaker: BreakerConfig,
    enforce: bool,
}

fn resolve(raw: RawFile, errs: &mut Errors, env: &dyn EnvSource) -> Config {
    let global = resolve_global(&raw.global, errs);
    let (breaker, enforce) = resolve_breaker(
        &raw.global.breaker,
        &BreakerConfig::default(),
        true,
        "global.breaker",
        errs,
    );
    let defaults = Defaults {
        global,
        breaker,
        enforce,
    };
    let mut endpoint_names = HashMap::new();
    let mut endpoints = Vec::new();
    for (i, e) in raw.endpoints.iter().enumerate() {
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
    }
}

fn resolve_global(g: &RawGlobal, errs: &mut Errors) -> Global {
    Global {
        interval: duration(errs, &g.interval, "global.interval", default_interval()),
        timeout: duration(errs, &g.timeout, "global.timeout", default_timeout()),
        confirm_interval: duration(
            errs,
            &g.confirm_interval,
            "global.confirm_interval",
            default_confirm_interval(),
        ),
        max_body_bytes: match &g.max_body_bytes {
            Some(s) if s.value < 1024 => {
                errs.at(s, "global.max_body_bytes", "must be at least 1024");
                default_max_body_bytes()
            }
            Some(s) => s.value,
            None => default_max_body_bytes(),
        },
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
    let (breaker, enforce) = resolve_breaker(
        &e.breaker,
        &d.breaker,
        d.enforce,
        &format!("{p}.breaker"),
        errs,
    );
    let g = &d.global;
    let interval = duration(errs, &e.interval, &format!("{p}.interval"), g.interval);
    let timeout = duration(errs, &e.timeout, &format!("{p}.timeout"), g.timeout);
    let confirm_interval = duration(
        errs,
        &e.confirm_interval,
        &format!("{p}.confirm_interval"),
        g.confirm_interval,
    );
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
        breaker,
        enforce,
        ignore: e.ignore.iter().copied().collect(),
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
    if let Some(m) = &e.model
        && m.value.trim().is_empty()
    {
        errs.at(m, format!("{p}.model"), "must not be empty");
    }
}

/// namespace and endpoint_name: required by endpoint-status, which puts them
/// in the management API path, and refused elsewhere.
fn check_status_target(e: &RawEndpoint, p: &str, errs: &mut Errors) {
    let status = e.kind.value == Kind::EndpointStatus;
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    for (field, v) in [
        ("namespace", &e.namespace),
        ("endpoint_name", &e.endpoint_name),
    ] {
        let f = format!("{p}.{field}");
        match v {
            None if status => errs.at(&e.kind, f, format!("kind endpoint-status needs {field}")),
            None => {}
            Some(s) if !status => errs.at(s, f, "only kind endpoint-status uses this field"),
            Some(s) if !plain(&s.value) => errs.at(s, f, "must be a plain name ([A-Za-z0-9._-])"),
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
    let field = format!("{p}.token_file");
    let path = file.value.display();
    match std::fs::read_to_string(&file.value) {
        Ok(v) if !v.trim().is_empty() => {
            return Some((Secret::new(v.trim()), TokenSource::File(file.value.clone())));
        }
        Ok(_) => errs.at(file, field, format!("{path} is empty")),
        // io::Error text names the failure kind only, never the file content.
        Err(err) => errs.at(file, field, format!("cannot read {path}: {}", err.kind())),
    }
    None
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
        let err = parse("global:\n  timeout: 0s\n", "conf/h.yml", &env()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "conf/h.yml:2:12: global.timeout: must be greater than zero"
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
             timeout, confirm_interval, max_body_bytes, breaker"
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
            "t.yml:2:13: global.interval: must be greater than zero",
            "t.yml:3:19: global.max_body_bytes: must be at least 1024",
            "t.yml:6:24: global.breaker.max_open_duration: must not be shorter than open_duration",
            "t.yml:8:11: endpoints[0].name: \"A\" must match [a-z0-9_-]+ (it becomes the `endpoint` label)",
            "t.yml:9:11: endpoints[0].url: kind http needs a url",
            "t.yml:11:11: endpoints[1].endpoint_name: kind endpoint-status needs endpoint_name",
            "t.yml:12:16: endpoints[1].namespace: must be a plain name ([A-Za-z0-9._-])",
            "t.yml:13:11: endpoints[2].name: duplicate endpoint name \"s\" (first defined on line 10)",
            "t.yml:15:10: endpoints[2].url: credentials in the URL are not allowed; use token_env or token_file",
            "t.yml:16:12: endpoints[2].probe: kind tgi does not support probe embed; use one of: generate, health, chat, chat_stream",
            "t.yml:17:20: endpoints[2].endpoint_name: only kind endpoint-status uses this field",
            "t.yml:18:16: endpoints[2].token_env: set token_env or token_file, not both",
            "t.yml:20:14: endpoints[2].timeout: must be greater than zero",
            "t.yml:23:18: endpoints[2].breaker.min_calls: 4 exceeds window 3: the failure rate could never trip",
            "t.yml:26:16: routes[0].endpoints: a route needs at least one endpoint",
            "t.yml:27:11: routes[1].name: duplicate route name \"r\" (first defined on line 25)",
            "t.yml:28:20: routes[1].endpoints[1]: endpoint \"s\" appears twice in the chain",
            "t.yml:28:23: routes[1].endpoints[2]: unknown endpoint \"A\"",
        ];
        assert_eq!(err, want.join("\n"));
    }

    #[test]
    fn same_probe_and_breaker_ignores_token() {
        let a = parse(EXAMPLE, "x", &env()).unwrap();
        let other_env = HashMap::from([("HF_TOKEN".to_string(), "hf_rotated".to_string())]);
        let b = parse(EXAMPLE, "x", &other_env).unwrap();
        assert_ne!(a.endpoints[0], b.endpoints[0]);
        assert!(a.endpoints[0].same_probe_and_breaker(&b.endpoints[0]));
        assert!(!a.endpoints[0].same_probe_and_breaker(&a.endpoints[1]));
    }
}
