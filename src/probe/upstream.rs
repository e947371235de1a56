//! HTTP clients per set of upstream options (TLS, proxy, server name).
//! Endpoints with equal options share one client, and so one connection pool;
//! endpoints with none use the daemon's shared client.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::config::Upstream;

/// Where a `server_name` endpoint really connects: the URL's host and port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct ConnectTo {
    pub host: String,
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    upstream: Upstream,
    connect_to: Option<ConnectTo>,
}

/// Distinct option sets seen; reloads rarely add any. Past this the cache is
/// dropped (clients in use live on in their endpoints) so it cannot grow forever.
const MAX_CACHED: usize = 256;

static CLIENTS: LazyLock<Mutex<HashMap<Key, reqwest::Client>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Settings every probe client has: no cookies, a few redirects, a warm pool.
///
/// A connection unused this long is closed (hyper checks every period, so
/// it goes within two). Short, because a peak of probes in flight (a slow
/// scheduler tick, a burst of confirmations) opens connections that the
/// steady rate never needs again: with 90 s the soak's 10,000 endpoints
/// kept hundreds of them, and their buffers, for up to three minutes.
/// Endpoints probed less often than this reconnect each time, which at
/// such intervals costs nothing that matters.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The idle pool per host has no cap. Every endpoint on one host (the
/// serverless router, a gateway, the benches' single target) shares that
/// host's pool, so a cap below the probes in flight at a peak closed the
/// surplus connections as they came back and reopened them at the next
/// peak: with 32, a third of the probes at 2,000/s paid a TCP connect and
/// close (docs/performance.md, "Probe cost"). Uncapped, the pool holds at
/// most the peak of probes in flight to the host, which the scheduler
/// bounds, and [`POOL_IDLE_TIMEOUT`] closes what a peak left.
pub(super) fn base_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(5))
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_max_idle_per_host(usize::MAX)
        .tcp_nodelay(true)
        .dns_resolver(Arc::new(SystemResolver))
}

/// Name resolution of every probe client: `localhost` and `*.localhost`
/// are the loopback addresses (RFC 6761 section 6.3) without asking
/// anyone, so that they work in an empty root (a `FROM scratch` image) with
/// no /etc/hosts; every other name goes to getaddrinfo, which in the static
/// build reads /etc/hosts and /etc/resolv.conf (provided by container
/// runtimes) itself. IP literals never get here (the connector parses them).
struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = lookup(host, 0).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The addresses of `host` (see [`SystemResolver`]), with `port`; the
/// gateway's own connections resolve through it too.
pub async fn lookup(host: String, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    if is_localhost(&host) {
        let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port);
        return Ok(vec![v4, v6]);
    }
    Ok(tokio::net::lookup_host((host, port)).await?.collect())
}

/// `localhost`, `localhost.` or a name under it, in any case.
fn is_localhost(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    h == "localhost" || h.ends_with(".localhost")
}

/// Build with the system roots and the bundled ones; if the system store is
/// unusable (only broken certificates), the bundled roots alone.
pub(super) fn build(
    builder: impl Fn() -> reqwest::ClientBuilder,
) -> reqwest::Result<reqwest::Client> {
    builder().build().or_else(|e| {
        tracing::warn!(
            error = %e,
            "system root certificates unusable; trusting the bundled roots only"
        );
        builder().tls_built_in_native_certs(false).build()
    })
}

/// The client for these options, shared with every endpoint that has the same.
pub(super) fn client_for(
    upstream: &Upstream,
    connect_to: Option<ConnectTo>,
) -> Result<reqwest::Client, String> {
    let key = Key {
        upstream: upstream.clone(),
        connect_to,
    };
    let mut cache = CLIENTS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = cache.get(&key) {
        return Ok(c.clone());
    }
    // Messages name the failing part only: the proxy URL may hold credentials.
    let client = build(|| configure(&key)).map_err(|e| match e.is_builder() {
        true if key.upstream.proxy_url.is_some() => {
            "cannot build the client (TLS or proxy settings)".to_string()
        }
        _ => "cannot build the client (TLS settings)".to_string(),
    })?;
    if cache.len() >= MAX_CACHED {
        cache.clear();
    }
    cache.insert(key, client.clone());
    Ok(client)
}

fn configure(key: &Key) -> reqwest::ClientBuilder {
    let up = &key.upstream;
    let mut b = base_builder();
    if let Some(pem) = &up.ca_pem {
        // Checked at config load; a bundle that fails here adds nothing and
        // the probe fails with a TLS error, which is what it would be.
        for cert in reqwest::Certificate::from_pem_bundle(pem).unwrap_or_default() {
            b = b.add_root_certificate(cert);
        }
    }
    if up.insecure_skip_verify {
        b = b.danger_accept_invalid_certs(true);
    }
    if let Some(p) = up
        .proxy_url
        .as_ref()
        .and_then(|u| reqwest::Proxy::all(u.expose()).ok())
    {
        // An explicit proxy replaces the environment's (and its NO_PROXY).
        b = b.proxy(p);
    }
    if let (Some(name), Some(to)) = (&up.server_name, &key.connect_to) {
        b = b.dns_resolver(Arc::new(ConnectToResolver {
            name: name.clone(),
            to: to.clone(),
        }));
    }
    b
}

/// Resolves `server_name` to the addresses of the URL's real host, like curl's
/// `--connect-to`; every other name resolves as usual ([`lookup`]).
struct ConnectToResolver {
    name: String,
    to: ConnectTo,
}

impl Resolve for ConnectToResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let target = if name.as_str().eq_ignore_ascii_case(&self.name) {
            (self.to.host.clone(), self.to.port)
        } else {
            (name.as_str().to_string(), 0)
        };
        Box::pin(async move {
            let addrs = lookup(target.0, target.1).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localhost_names_are_recognised() {
        for h in ["localhost", "LOCALHOST", "localhost.", "api.localhost"] {
            assert!(is_localhost(h), "{h}");
        }
        for h in [
            "localhost.example.com",
            "mylocalhost",
            "127.0.0.1",
            "example.com",
        ] {
            assert!(!is_localhost(h), "{h}");
        }
    }

    #[tokio::test]
    async fn localhost_is_loopback_without_a_lookup() {
        let addrs = lookup("Localhost".into(), 8080).await.unwrap();
        assert_eq!(
            addrs,
            vec![
                "127.0.0.1:8080".parse::<SocketAddr>().unwrap(),
                "[::1]:8080".parse().unwrap()
            ]
        );
    }
}
