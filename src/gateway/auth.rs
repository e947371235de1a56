//! Client keys: `Authorization: Bearer <key>` against `gateway.client_keys_file`.

use axum::http::{HeaderMap, Method, Uri, header};

use crate::config::GatewayConfig;

/// The bearer token of a request, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Whether a request may use the gateway. With keys, one must match
/// (compared in constant time, every key tried); without, only an
/// explicit `allow_unauthenticated` lets anyone in.
pub fn authorized(headers: &HeaderMap, cfg: &GatewayConfig) -> bool {
    let Some(keys) = &cfg.client_keys else {
        return cfg.allow_unauthenticated;
    };
    let Some(presented) = bearer(headers) else {
        return false;
    };
    keys.iter()
        .fold(false, |ok, k| k.constant_time_eq(presented) | ok)
}

/// Requests with a bearer token are checked by the gateway itself, so basic
/// auth of `--web.config.file` (which would need the same header) is not
/// asked of them; requests without one still need it.
pub fn checks_own_auth(_: &Method, _: &Uri, headers: &HeaderMap) -> bool {
    bearer(headers).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn with(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, auth.parse().unwrap());
        h
    }

    #[test]
    fn keys_are_required_when_configured() {
        let cfg = GatewayConfig {
            client_keys: Some(vec![Secret::new("k1"), Secret::new("k2")]),
            allow_unauthenticated: true,
            ..Default::default()
        };
        assert!(authorized(&with("Bearer k2"), &cfg));
        assert!(authorized(&with("bearer k1"), &cfg));
        assert!(!authorized(&with("Bearer k3"), &cfg));
        assert!(!authorized(&with("Basic k1"), &cfg));
        assert!(!authorized(&HeaderMap::new(), &cfg));
        let open = GatewayConfig {
            allow_unauthenticated: true,
            ..Default::default()
        };
        assert!(authorized(&HeaderMap::new(), &open));
        assert!(!authorized(&HeaderMap::new(), &GatewayConfig::default()));
    }
}
