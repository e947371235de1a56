//! `--web.config.file`: TLS, basic auth and extra response headers for every
//! listener, in the format of Prometheus' exporter-toolkit, so that an
//! existing file works as it is:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt        # or inline `cert:`; paths are relative to this file
//!   key_file: server.key         # or inline `key:`
//!   client_auth_type: RequireAndVerifyClientCert   # default NoClientCert
//!   client_ca_file: ca.crt
//!   min_version: TLS12           # TLS12 (default) or TLS13; max_version likewise
//! http_server_config:
//!   headers:
//!     Strict-Transport-Security: max-age=31536000
//! basic_auth_users:
//!   prometheus: $2y$10$...       # bcrypt, e.g. `htpasswd -nBC 10 prometheus`
//! ```
//!
//! Unknown keys are errors with `file:line:col`, as in the main config. The
//! file and the files it names are re-read when one of them changes (checked
//! at most once a second, on new connections and requests); a bad new file
//! keeps the running settings and logs the error. Passwords and hashes are
//! never logged.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use axum::http::{HeaderName, HeaderValue};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_saphyr::{Location, Spanned};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_rustls::rustls::server::{ServerConfig, WebPkiClientVerifier};

use crate::config::{Errors, FieldError, render_errors, syntax_error};

#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("{path}: cannot read web config file: {source}")]
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

impl WebConfigError {
    pub fn errors(&self) -> &[FieldError] {
        match self {
            WebConfigError::Read { .. } => &[],
            WebConfigError::Invalid { errors, .. } => errors,
        }
    }
}

// ------------------------------------------------------------- the format

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    tls_server_config: Option<Spanned<RawTls>>,
    http_server_config: Option<RawHttp>,
    basic_auth_users: Option<BTreeMap<String, Spanned<String>>>,
    rate_limit: Option<Spanned<IgnoredAny>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: Option<Spanned<PathBuf>>,
    key_file: Option<Spanned<PathBuf>>,
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    client_auth_type: Option<Spanned<ClientAuth>>,
    client_ca_file: Option<Spanned<PathBuf>>,
    min_version: Option<Spanned<TlsVersion>>,
    max_version: Option<Spanned<TlsVersion>>,
    cipher_suites: Option<Spanned<IgnoredAny>>,
    curve_preferences: Option<Spanned<IgnoredAny>>,
    /// Accepted for compatibility; rustls picks from its own safe list.
    #[allow(dead_code)]
    prefer_server_cipher_suites: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    /// Accepted for compatibility; the listeners speak HTTP/1.1.
    #[allow(dead_code)]
    http2: Option<bool>,
    headers: Option<BTreeMap<String, Spanned<String>>>,
}

/// `client_auth_type`, as Go's crypto/tls names the policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum ClientAuth {
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum TlsVersion {
    TLS10,
    TLS11,
    TLS12,
    TLS13,
}

/// The headers exporter-toolkit lets a file set, with the values allowed
/// (none listed: any). Others could break the API (Content-Type) and are refused.
const EXTRA_HEADERS: &[(&str, &[&str])] = &[
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

// --------------------------------------------------------------- settings

/// The settings of one version of the file, ready to serve with.
pub struct WebState {
    pub tls: Option<TlsAcceptor>,
    /// User → bcrypt hash.
    users: BTreeMap<String, String>,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// The password that last passed bcrypt for each user, so that a scrape
    /// every few seconds does not cost a bcrypt each. Dropped with the state
    /// when the file changes.
    verified: Mutex<HashMap<String, Vec<u8>>>,
    /// Files whose change means a reload: the web config and those it names.
    files: Vec<PathBuf>,
}

impl std::fmt::Debug for WebState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the hashes.
        f.debug_struct("WebState")
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("headers", &self.headers)
            .finish()
    }
}

/// bcrypt runs on blocking threads, at most this many at once, so that a
/// flood of wrong passwords cannot take every core.
static BCRYPT_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// A hash checked for unknown users, so that their answer takes as long as
/// a known user's (cost 10, as `htpasswd -nBC 10` makes them). Made on
/// first use, from a random salt: it matches no password anyone sends.
static DUMMY_HASH: std::sync::LazyLock<Option<String>> =
    std::sync::LazyLock::new(|| bcrypt::hash("hfbreaker: no such user", 10).ok());

impl WebState {
    fn empty() -> Self {
        WebState {
            tls: None,
            users: BTreeMap::new(),
            headers: Vec::new(),
            verified: Mutex::new(HashMap::new()),
            files: Vec::new(),
        }
    }

    pub fn requires_auth(&self) -> bool {
        !self.users.is_empty()
    }

    pub fn user_names(&self) -> impl Iterator<Item = &str> {
        self.users.keys().map(String::as_str)
    }

    pub fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.headers
    }

    /// Whether `password` is `user`'s. Constant time where it matters: the
    /// cache compare, and a bcrypt for unknown users too.
    pub async fn verify(self: Arc<Self>, user: String, password: Vec<u8>) -> bool {
        let cached = self
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&user)
            .is_some_and(|p| constant_time_eq(p, &password));
        if cached {
            return true;
        }
        let Ok(_permit) = BCRYPT_SLOTS.acquire().await else {
            return false;
        };
        let state = self.clone();
        let (u, p) = (user.clone(), password.clone());
        let ok = tokio::task::spawn_blocking(move || {
            let known = state.users.get(&u);
            let hash = known.or(DUMMY_HASH.as_ref());
            hash.is_some_and(|h| bcrypt::verify(&p, h).unwrap_or(false)) && known.is_some()
        })
        .await
        .unwrap_or(false);
        if ok {
            self.verified
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(user, password);
        }
        ok
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // The length of a password is not the secret worth hiding here.
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

// ------------------------------------------------------------------ loading

/// Parse and check a web config file, loading the certificates it names.
pub fn load(path: &Path) -> Result<WebState, WebConfigError> {
    let display = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
        path: display.clone(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, &display, base).map(|mut s| {
        s.files.insert(0, path.to_path_buf());
        s
    })
}

/// Parse YAML `text`; `origin` names it in errors, relative paths are
/// resolved against `base`.
pub fn parse(text: &str, origin: &str, base: &Path) -> Result<WebState, WebConfigError> {
    let invalid = |errors| WebConfigError::Invalid {
        path: origin.to_string(),
        errors,
    };
    let raw: RawFile = if text.trim().is_empty() {
        RawFile::default()
    } else {
        serde_saphyr::from_str(text).map_err(|e| invalid(vec![syntax_error(&e, text)]))?
    };
    let mut errs = Errors::new();
    let mut state = WebState::empty();
    if let Some(r) = &raw.rate_limit {
        errs.at(r, "rate_limit", "not supported by hfbreaker; remove it");
    }
    if let Some(tls) = &raw.tls_server_config {
        state.tls = tls_acceptor(tls, base, &mut errs, &mut state.files).map(TlsAcceptor::from);
    }
    if let Some(headers) = raw.http_server_config.and_then(|h| h.headers) {
        state.headers = extra_headers(&headers, &mut errs);
    }
    for (user, hash) in raw.basic_auth_users.unwrap_or_default() {
        let field = format!("basic_auth_users.{user}");
        if user.is_empty() || user.contains(':') {
            errs.at(
                &hash,
                field,
                "a user name must be non-empty and without ':'",
            );
        } else if hash.value.parse::<bcrypt::HashParts>().is_err() {
            // Never echo the value: it may be a password pasted by mistake.
            errs.at(
                &hash,
                field,
                "not a bcrypt hash (make one with htpasswd -nBC 10 USER)",
            );
        } else {
            state.users.insert(user, hash.value);
        }
    }
    errs.finish().map(|()| state).map_err(invalid)
}

fn extra_headers(
    headers: &BTreeMap<String, Spanned<String>>,
    errs: &mut Errors,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    for (name, value) in headers {
        let field = format!("http_server_config.headers.{name}");
        let Some((_, allowed)) = EXTRA_HEADERS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        else {
            let names: Vec<&str> = EXTRA_HEADERS.iter().map(|(n, _)| *n).collect();
            errs.at(
                value,
                field,
                format!(
                    "this header cannot be configured; allowed: {}",
                    names.join(", ")
                ),
            );
            continue;
        };
        if !allowed.is_empty() && !allowed.iter().any(|a| a.eq_ignore_ascii_case(&value.value)) {
            errs.at(
                value,
                field,
                format!("must be one of: {}", allowed.join(", ")),
            );
            continue;
        }
        match (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.value.as_str()),
        ) {
            (Ok(n), Ok(v)) => out.push((n, v)),
            _ => errs.at(value, field, "not a valid header value"),
        }
    }
    out
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// PEM text of a `*_file` field, or of its inline twin.
fn pem_source(
    file: &Option<Spanned<PathBuf>>,
    inline: &Option<Spanned<String>>,
    name: &str,
    base: &Path,
    errs: &mut Errors,
    files: &mut Vec<PathBuf>,
) -> Option<(Vec<u8>, Location)> {
    match (file, inline) {
        (Some(f), Some(_)) => {
            errs.at(
                f,
                format!("tls_server_config.{name}_file"),
                format!("set {name}_file or {name}, not both"),
            );
            None
        }
        (Some(f), None) => {
            let path = resolve(base, &f.value);
            files.push(path.clone());
            match std::fs::read(&path) {
                Ok(b) => Some((b, f.referenced)),
                Err(e) => {
                    errs.at(
                        f,
                        format!("tls_server_config.{name}_file"),
                        format!("cannot read {}: {e}", path.display()),
                    );
                    None
                }
            }
        }
        (None, Some(i)) => Some((i.value.clone().into_bytes(), i.referenced)),
        (None, None) => None,
    }
}

/// An error at a position kept from a field parsed earlier.
fn at_pos(errs: &mut Errors, at: Location, field: &str, message: String) {
    errs.at(&Spanned::new((), at, at), field, message);
}

fn tls_acceptor(
    tls: &Spanned<RawTls>,
    base: &Path,
    errs: &mut Errors,
    files: &mut Vec<PathBuf>,
) -> Option<Arc<ServerConfig>> {
    let t = &tls.value;
    for (v, name) in [
        (&t.cipher_suites, "cipher_suites"),
        (&t.curve_preferences, "curve_preferences"),
    ] {
        if let Some(v) = v {
            errs.at(
                v,
                format!("tls_server_config.{name}"),
                "not supported: rustls uses its own list of safe choices; remove it",
            );
        }
    }
    let versions = tls_versions(t, errs);
    let cert = pem_source(&t.cert_file, &t.cert, "cert", base, errs, files);
    let key = pem_source(&t.key_file, &t.key, "key", base, errs, files);
    let verifier = client_verifier(tls, base, errs, files);
    let (Some((cert, cert_at)), Some((key, key_at))) = (cert, key) else {
        if t.cert_file.is_none() && t.cert.is_none() {
            errs.at(
                tls,
                "tls_server_config.cert_file",
                "required with tls_server_config",
            );
        }
        if t.key_file.is_none() && t.key.is_none() {
            errs.at(
                tls,
                "tls_server_config.key_file",
                "required with tls_server_config",
            );
        }
        return None;
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert)
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    if certs.is_empty() {
        at_pos(
            errs,
            cert_at,
            "tls_server_config.cert_file",
            "no PEM certificate found".into(),
        );
    }
    let key = PrivateKeyDer::from_pem_slice(&key).ok();
    if key.is_none() {
        at_pos(
            errs,
            key_at,
            "tls_server_config.key_file",
            "no PEM private key found".into(),
        );
    }
    let (key, verifier, versions) = (key?, verifier?, versions?);
    if certs.is_empty() {
        return None;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let built = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| e.to_string())
        .and_then(|b| {
            b.with_client_cert_verifier(verifier)
                .with_single_cert(certs, key)
                .map_err(|e| e.to_string())
        });
    match built {
        Ok(mut c) => {
            c.alpn_protocols = vec![b"http/1.1".to_vec()];
            Some(Arc::new(c))
        }
        Err(e) => {
            at_pos(
                errs,
                key_at,
                "tls_server_config.key_file",
                format!("certificate and key do not make a TLS config: {e}"),
            );
            None
        }
    }
}

fn tls_versions(
    t: &RawTls,
    errs: &mut Errors,
) -> Option<Vec<&'static rustls::SupportedProtocolVersion>> {
    let mut ok = true;
    for (v, name) in [
        (&t.min_version, "min_version"),
        (&t.max_version, "max_version"),
    ] {
        if let Some(v) = v
            && v.value < TlsVersion::TLS12
        {
            errs.at(
                v,
                format!("tls_server_config.{name}"),
                "TLS 1.0 and 1.1 are not supported; use TLS12 or TLS13",
            );
            ok = false;
        }
    }
    let min = t
        .min_version
        .as_ref()
        .map_or(TlsVersion::TLS12, |v| v.value);
    let max = t
        .max_version
        .as_ref()
        .map_or(TlsVersion::TLS13, |v| v.value);
    if let Some(v) = &t.max_version
        && max < min
    {
        errs.at(v, "tls_server_config.max_version", "below min_version");
        ok = false;
    }
    let mut versions = Vec::new();
    if min <= TlsVersion::TLS12 && max >= TlsVersion::TLS12 {
        versions.push(&rustls::version::TLS12);
    }
    if max >= TlsVersion::TLS13 {
        versions.push(&rustls::version::TLS13);
    }
    (ok && !versions.is_empty()).then_some(versions)
}

fn client_verifier(
    tls: &Spanned<RawTls>,
    base: &Path,
    errs: &mut Errors,
    files: &mut Vec<PathBuf>,
) -> Option<Arc<dyn ClientCertVerifier>> {
    let t = &tls.value;
    let auth = t
        .client_auth_type
        .as_ref()
        .map_or(ClientAuth::NoClientCert, |a| a.value);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let algs = provider.signature_verification_algorithms;
    let verifying = matches!(
        auth,
        ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
    );
    let roots = match (&t.client_ca_file, verifying) {
        (Some(f), false) => {
            errs.at(f, "tls_server_config.client_ca_file", "client CAs are set but client_auth_type does not verify client certificates (use RequireAndVerifyClientCert)");
            return None;
        }
        (None, true) => {
            let at = t
                .client_auth_type
                .as_ref()
                .map_or(Location::UNKNOWN, |a| a.referenced);
            at_pos(
                errs,
                at,
                "tls_server_config.client_ca_file",
                "required to verify client certificates".into(),
            );
            return None;
        }
        (Some(f), true) => Some(ca_roots(f, base, errs, files)?),
        (None, false) => None,
    };
    match (auth, roots) {
        (ClientAuth::NoClientCert, _) => Some(Arc::new(rustls::server::NoClientAuth)),
        (ClientAuth::RequestClientCert, _) => Some(Arc::new(AnyClientCert {
            mandatory: false,
            algs,
        })),
        (ClientAuth::RequireAnyClientCert, _) => Some(Arc::new(AnyClientCert {
            mandatory: true,
            algs,
        })),
        (_, Some(roots)) => {
            let b = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let b = if auth == ClientAuth::VerifyClientCertIfGiven {
                b.allow_unauthenticated()
            } else {
                b
            };
            match b.build() {
                Ok(v) => Some(v),
                Err(e) => {
                    if let Some(f) = &t.client_ca_file {
                        errs.at(f, "tls_server_config.client_ca_file", e.to_string());
                    }
                    None
                }
            }
        }
        (_, None) => None,
    }
}

fn ca_roots(
    f: &Spanned<PathBuf>,
    base: &Path,
    errs: &mut Errors,
    files: &mut Vec<PathBuf>,
) -> Option<rustls::RootCertStore> {
    let path = resolve(base, &f.value);
    files.push(path.clone());
    let field = "tls_server_config.client_ca_file";
    let pem = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            errs.at(f, field, format!("cannot read {}: {e}", path.display()));
            return None;
        }
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&pem).flatten() {
        if roots.add(c).is_err() {
            errs.at(f, field, "holds a certificate that is not a valid CA");
            return None;
        }
    }
    if roots.is_empty() {
        errs.at(f, field, "no PEM certificate found");
        return None;
    }
    Some(roots)
}

/// `RequestClientCert` / `RequireAnyClientCert`: a certificate is asked for
/// (or required) but not checked against any CA, as Go does. The handshake
/// signature is still checked, so the client holds the certificate's key.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    algs: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algs.supported_schemes()
    }
}

// ---------------------------------------------------------------- watching

/// The web config of the process, shared by its listeners, reloaded when
/// its files change.
pub struct WebConfig {
    path: Option<PathBuf>,
    state: RwLock<Arc<WebState>>,
    check: Mutex<Check>,
}

struct Check {
    at: Instant,
    stamps: Vec<Stamp>,
}

/// What tells that a file changed.
type Stamp = Option<(SystemTime, u64)>;

/// Files are looked at no more often than this.
const CHECK_EVERY: Duration = Duration::from_secs(1);

fn stamps(files: &[PathBuf]) -> Vec<Stamp> {
    files
        .iter()
        .map(|f| {
            let m = std::fs::metadata(f).ok()?;
            Some((m.modified().ok()?, m.len()))
        })
        .collect()
}

impl WebConfig {
    /// No file: plain HTTP, no auth, no extra headers.
    pub fn none() -> Arc<Self> {
        Arc::new(WebConfig {
            path: None,
            state: RwLock::new(Arc::new(WebState::empty())),
            check: Mutex::new(Check {
                at: Instant::now(),
                stamps: Vec::new(),
            }),
        })
    }

    /// Load `path`; an error here should stop the process from starting.
    pub fn load(path: &Path) -> Result<Arc<Self>, WebConfigError> {
        let state = load(path)?;
        let stamps = stamps(&state.files);
        Ok(Arc::new(WebConfig {
            path: Some(path.to_path_buf()),
            state: RwLock::new(Arc::new(state)),
            check: Mutex::new(Check {
                at: Instant::now(),
                stamps,
            }),
        }))
    }

    /// The settings in force, re-read first if a file changed.
    pub fn current(&self) -> Arc<WebState> {
        if let Some(path) = &self.path {
            self.reload_if_changed(path);
        }
        self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn reload_if_changed(&self, path: &Path) {
        let mut check = self.check.lock().unwrap_or_else(|p| p.into_inner());
        if check.at.elapsed() < CHECK_EVERY {
            return;
        }
        check.at = Instant::now();
        let files = self
            .state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .files
            .clone();
        let now = stamps(&files);
        if now == check.stamps {
            return;
        }
        // Remembered even on failure, so a bad file is reported once.
        check.stamps = now;
        match load(path) {
            Ok(s) => {
                check.stamps = stamps(&s.files);
                tracing::info!(file = %path.display(), tls = s.tls.is_some(), users = s.users.len(), "web config reloaded");
                *self.state.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(s);
            }
            Err(e) => {
                tracing::error!(error = %e, "web config reload failed; the running settings are kept")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Certs {
        dir: tempfile::TempDir,
    }

    /// A CA, and a server certificate for 127.0.0.1 signed by it, as
    /// `ca.crt`, `server.crt`, `server.key` in a fresh folder.
    fn certs() -> Certs {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let server = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        std::fs::write(dir.path().join("ca.crt"), ca_cert.pem()).unwrap();
        std::fs::write(dir.path().join("server.crt"), server.pem()).unwrap();
        std::fs::write(dir.path().join("server.key"), key.serialize_pem()).unwrap();
        Certs { dir }
    }

    fn parse_in(dir: &Path, yaml: &str) -> Result<WebState, WebConfigError> {
        parse(yaml, "web.yml", dir)
    }

    fn errors_of(dir: &Path, yaml: &str) -> String {
        match parse_in(dir, yaml) {
            Ok(s) => panic!("accepted: {s:?}\n{yaml}"),
            Err(e) => e.to_string(),
        }
    }

    /// Cost 4, the cheapest bcrypt, keeps the tests fast.
    fn hash(password: &str) -> String {
        bcrypt::hash(password, 4).unwrap()
    }

    #[test]
    fn an_empty_file_changes_nothing() {
        let s = parse_in(Path::new("."), "").unwrap();
        assert!(s.tls.is_none() && !s.requires_auth() && s.headers().is_empty());
    }

    #[test]
    fn the_exporter_toolkit_example_loads_with_paths_relative_to_the_file() {
        let c = certs();
        let yaml = format!(
            "tls_server_config:
  cert_file: server.crt
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.crt
  min_version: TLS13
  prefer_server_cipher_suites: true
http_server_config:
  http2: false
  headers:
    X-Frame-Options: deny
    Strict-Transport-Security: max-age=31536000
basic_auth_users:
  alice: {}
  bob: '{}'
",
            hash("a"),
            hash("b")
        );
        let s = parse_in(c.dir.path(), &yaml).unwrap();
        assert!(s.tls.is_some());
        assert_eq!(s.user_names().collect::<Vec<_>>(), ["alice", "bob"]);
        let names: Vec<&str> = s.headers().iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["strict-transport-security", "x-frame-options"]);
        // Every client-auth policy builds.
        for (policy, ca) in [
            ("NoClientCert", ""),
            ("RequestClientCert", ""),
            ("RequireAnyClientCert", ""),
            ("VerifyClientCertIfGiven", "\n  client_ca_file: ca.crt"),
        ] {
            let y = format!(
                "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: {policy}{ca}\n"
            );
            assert!(
                parse_in(c.dir.path(), &y).unwrap().tls.is_some(),
                "{policy}"
            );
        }
        // Inline PEM works too.
        let pem = |f: &str| std::fs::read_to_string(c.dir.path().join(f)).unwrap();
        let inline = format!(
            "tls_server_config:\n  cert: |\n{}\n  key: |\n{}\n",
            indent(&pem("server.crt")),
            indent(&pem("server.key"))
        );
        assert!(parse_in(Path::new("/"), &inline).unwrap().tls.is_some());
    }

    fn indent(s: &str) -> String {
        s.lines()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn unknown_keys_are_errors_with_line_and_column() {
        let e = errors_of(
            Path::new("."),
            "tls_server_config:\n  cert_file: a\n  certfile: b\n",
        );
        assert!(e.starts_with("web.yml:3:3: certfile: unknown field"), "{e}");
        let e = errors_of(Path::new("."), "basic_auth:\n  a: b\n");
        assert!(
            e.starts_with("web.yml:1:1: basic_auth: unknown field"),
            "{e}"
        );
        let e = errors_of(
            Path::new("."),
            "tls_server_config:\n  client_auth_type: Sometimes\n",
        );
        assert!(e.starts_with("web.yml:2:"), "{e}");
        assert!(e.contains("client_auth_type"), "{e}");
    }

    #[test]
    fn every_semantic_error_is_reported_with_its_place() {
        let c = certs();
        let pasted = "hunter2-not-a-hash";
        let yaml = format!(
            "tls_server_config:
  cert_file: missing.crt
  key_file: server.key
  min_version: TLS11
  client_ca_file: ca.crt
  cipher_suites: [TLS_AES_128_GCM_SHA256]
http_server_config:
  headers:
    Content-Type: text/html
    X-Frame-Options: allow
basic_auth_users:
  alice: {pasted}
  'bo:b': {}
rate_limit:
  interval: 1s
",
            hash("x")
        );
        let e = errors_of(c.dir.path(), &yaml);
        let lines: Vec<&str> = e.lines().collect();
        let expect = [
            "web.yml:2:14: tls_server_config.cert_file: cannot read ",
            "web.yml:4:16: tls_server_config.min_version: TLS 1.0 and 1.1 are not supported",
            "web.yml:5:19: tls_server_config.client_ca_file: client CAs are set but client_auth_type does not verify",
            "web.yml:6:18: tls_server_config.cipher_suites: not supported",
            "web.yml:9:19: http_server_config.headers.Content-Type: this header cannot be configured",
            "web.yml:10:22: http_server_config.headers.X-Frame-Options: must be one of: deny, sameorigin",
            "web.yml:12:10: basic_auth_users.alice: not a bcrypt hash",
            "web.yml:13:11: basic_auth_users.bo:b: a user name must be non-empty and without ':'",
            "web.yml:15:3: rate_limit: not supported",
        ];
        assert_eq!(lines.len(), expect.len(), "{e}");
        for (line, want) in lines.iter().zip(expect) {
            assert!(line.starts_with(want), "{line}\nwanted {want}");
        }
        assert!(!e.contains(pasted), "a pasted password is never echoed");
    }

    #[test]
    fn tls_needs_a_key_and_verification_needs_a_ca() {
        let c = certs();
        let e = errors_of(
            c.dir.path(),
            "tls_server_config:\n  cert_file: server.crt\n",
        );
        assert!(e.contains("tls_server_config.key_file: required"), "{e}");
        let e = errors_of(
            c.dir.path(),
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n",
        );
        assert!(
            e.starts_with("web.yml:4:21: tls_server_config.client_ca_file: required"),
            "{e}"
        );
        let e = errors_of(
            c.dir.path(),
            "tls_server_config:\n  cert_file: server.key\n  key_file: server.key\n",
        );
        assert!(e.contains("no PEM certificate found"), "{e}");
        let e = errors_of(
            c.dir.path(),
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS13\n  max_version: TLS12\n",
        );
        assert!(e.contains("max_version: below min_version"), "{e}");
    }

    #[tokio::test]
    async fn passwords_are_checked_against_the_hashes() {
        let yaml = format!("basic_auth_users:\n  alice: {}\n", hash("s3cret"));
        let s = Arc::new(parse_in(Path::new("."), &yaml).unwrap());
        let check = |u: &str, p: &str| s.clone().verify(u.into(), p.as_bytes().to_vec());
        assert!(check("alice", "s3cret").await);
        assert!(check("alice", "s3cret").await, "again, from the cache");
        assert!(!check("alice", "s3cre").await);
        assert!(!check("alice", "s3crett").await);
        assert!(!check("bob", "s3cret").await);
        assert!(!check("", "").await);
    }

    #[test]
    fn a_changed_file_is_reloaded_and_a_bad_one_keeps_the_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.yml");
        std::fs::write(&path, format!("basic_auth_users:\n  a: {}\n", hash("x"))).unwrap();
        let w = WebConfig::load(&path).unwrap();
        assert_eq!(w.current().user_names().collect::<Vec<_>>(), ["a"]);
        let next = format!(
            "basic_auth_users:\n  a: {}\n  bb: {}\n",
            hash("x"),
            hash("y")
        );
        std::fs::write(&path, next).unwrap();
        std::thread::sleep(CHECK_EVERY + Duration::from_millis(50));
        assert_eq!(w.current().user_names().collect::<Vec<_>>(), ["a", "bb"]);
        std::fs::write(&path, "basic_auth_users: [nonsense, that, is, longer]\n").unwrap();
        std::thread::sleep(CHECK_EVERY + Duration::from_millis(50));
        assert_eq!(w.current().user_names().collect::<Vec<_>>(), ["a", "bb"]);
        // Missing at start is an error naming the file.
        let e = WebConfig::load(&dir.path().join("nope.yml")).err().unwrap();
        assert!(
            e.to_string()
                .contains("nope.yml: cannot read web config file"),
            "{e}"
        );
    }
}
