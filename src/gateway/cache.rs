//! The level before the 503: per route (`routes[].cache`), the successful
//! non-streamed answers of chat completions and embeddings, keyed by the
//! canonical request body, served only when no endpoint of the chain could
//! answer. Bounded by a TTL, a number of entries and a number of bytes; the
//! least recently used answers go first.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;

use super::failover::Call;
use super::table::Hop;
use super::upstream::Op;
use crate::config::{CacheConfig, RouteConfig};
use crate::metrics::gateway::Tier;

/// One route's cache. Kept across reloads while the route's `cache`
/// settings stay the same.
pub struct Cache {
    pub settings: CacheConfig,
    lru: Mutex<Lru>,
}

/// A stored answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
    pub content_type: Option<HeaderValue>,
    /// The endpoint that produced it (`X-Hfbreaker-Endpoint`).
    pub endpoint: HeaderValue,
}

/// A stored answer and how old it is.
#[derive(Debug, PartialEq)]
pub struct Hit {
    pub answer: Answer,
    pub age: Duration,
}

struct Entry {
    answer: Answer,
    stored: Instant,
    /// Key and body bytes: what the entry holds in memory.
    size: usize,
    /// Tick of its last use: its key in [`Lru::order`].
    used: u64,
}

#[derive(Default)]
struct Lru {
    entries: HashMap<Arc<[u8]>, Entry>,
    /// Least recently used first.
    order: BTreeMap<u64, Arc<[u8]>>,
    tick: u64,
    bytes: usize,
}

impl Lru {
    fn remove(&mut self, key: &[u8]) {
        if let Some(e) = self.entries.remove(key) {
            self.order.remove(&e.used);
            self.bytes -= e.size;
        }
    }

    /// Drop the least recently used entry; false when there is none.
    fn evict_oldest(&mut self) -> bool {
        let Some((_, key)) = self.order.pop_first() else {
            return false;
        };
        if let Some(e) = self.entries.remove(&key) {
            self.bytes -= e.size;
        }
        true
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }
}

impl Cache {
    pub fn new(settings: CacheConfig) -> Cache {
        Cache {
            settings,
            lru: Mutex::new(Lru::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.lru.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Entries and bytes held now.
    #[cfg(test)]
    pub fn usage(&self) -> (usize, usize) {
        let l = self.lock();
        (l.entries.len(), l.bytes)
    }

    /// Store `answer` under `key`, replacing an older one, then drop the
    /// least recently used answers over the bounds. An answer larger than
    /// `max_bytes` on its own is not stored (false).
    pub fn insert(&self, key: Vec<u8>, answer: Answer, now: Instant) -> bool {
        let size = key.len() + answer.body.len();
        if size as u64 > self.settings.max_bytes {
            return false;
        }
        let mut l = self.lock();
        l.remove(&key);
        let used = l.next_tick();
        let key: Arc<[u8]> = key.into();
        l.order.insert(used, key.clone());
        l.entries.insert(
            key,
            Entry {
                answer,
                stored: now,
                size,
                used,
            },
        );
        l.bytes += size;
        while (l.entries.len() as u64 > self.settings.max_entries
            || l.bytes as u64 > self.settings.max_bytes)
            && l.evict_oldest()
        {}
        true
    }

    /// The answer stored under `key` if it is younger than the TTL; it
    /// becomes the most recently used. An expired one is dropped.
    pub fn get(&self, key: &[u8], now: Instant) -> Option<Hit> {
        let mut l = self.lock();
        let age = now.saturating_duration_since(l.entries.get(key)?.stored);
        if age >= self.settings.ttl {
            l.remove(key);
            return None;
        }
        let used = l.next_tick();
        let e = l.entries.get_mut(key)?;
        let before = std::mem::replace(&mut e.used, used);
        let answer = e.answer.clone();
        if let Some(k) = l.order.remove(&before) {
            l.order.insert(used, k);
        }
        Some(Hit { answer, age })
    }
}

/// The cache key of a request: the operation, then the body as JSON with
/// every object's keys sorted and no whitespace, so that neither key order
/// nor formatting makes two equal requests differ. The body names the
/// route (`model`), and each route has its own cache. None: not JSON.
pub fn key(op: Op, body: &[u8]) -> Option<Vec<u8>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let mut out = Vec::with_capacity(body.len() + 16);
    out.extend_from_slice(op.as_str().as_bytes());
    out.push(b'\n');
    canonical(&v, &mut out);
    Some(out)
}

fn canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                // Serializing a string or a scalar into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *out, k);
                out.push(b':');
                canonical(&m[k], out);
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(x, out);
            }
            out.push(b']');
        }
        scalar => {
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}

/// The route's cache after a reload: the same one while its settings are
/// unchanged, an empty one when they changed, none without `cache`.
/// `kept` holds the caches between reloads.
pub fn for_route(
    kept: &mut HashMap<String, Arc<Cache>>,
    route: &RouteConfig,
) -> Option<Arc<Cache>> {
    let Some(settings) = &route.cache else {
        kept.remove(&route.name);
        return None;
    };
    if let Some(c) = kept.get(&route.name).filter(|c| c.settings == *settings) {
        return Some(c.clone());
    }
    let c = Arc::new(Cache::new(settings.clone()));
    kept.insert(route.name.clone(), c.clone());
    Some(c)
}

/// Keep a successful non-streamed answer of `call`, if its route caches.
pub fn store(call: &Call, hop: &Hop, status: u16, body: &Bytes, ct: Option<&HeaderValue>) {
    let Some(cache) = &call.route.cache else {
        return;
    };
    if call.stream || !(200..300).contains(&status) {
        return;
    }
    let Some(key) = key(call.op, &call.body) else {
        return;
    };
    let answer = Answer {
        status,
        body: body.clone(),
        content_type: ct.cloned(),
        endpoint: hop.name.clone(),
    };
    cache.insert(key, answer, Instant::now());
}

/// The answer for `call` when no endpoint could give one: from the route's
/// cache, with tier `cache`, the endpoint that produced it and its `Age`.
/// None: no cache, a stream, or a miss (then the 503 follows).
pub fn answer(call: &Call) -> Option<Response> {
    let cache = call.route.cache.as_ref()?;
    if call.stream {
        return None;
    }
    let hit = cache.get(&key(call.op, &call.body)?, Instant::now())?;
    let a = hit.answer;
    let route = &call.route;
    let pos = route.chain.iter().position(|h| h.name == a.endpoint);
    route.metrics.cache_hit();
    route.metrics.request(
        pos,
        Tier::Cache,
        a.status,
        call.started.elapsed().as_secs_f64(),
    );
    let code = StatusCode::from_u16(a.status).unwrap_or(StatusCode::OK);
    let mut r = (code, a.body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        a.content_type
            .unwrap_or(HeaderValue::from_static("application/json")),
    );
    h.insert(header::AGE, HeaderValue::from(hit.age.as_secs()));
    h.insert("x-hfbreaker-route", route.header.clone());
    h.insert("x-hfbreaker-endpoint", a.endpoint);
    h.insert(
        "x-hfbreaker-tier",
        HeaderValue::from_static(Tier::Cache.as_str()),
    );
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(ttl: u64, max_entries: u64, max_bytes: u64) -> Cache {
        Cache::new(CacheConfig {
            ttl: Duration::from_secs(ttl),
            max_entries,
            max_bytes,
        })
    }

    fn answer(body: &str) -> Answer {
        Answer {
            status: 200,
            body: Bytes::copy_from_slice(body.as_bytes()),
            content_type: None,
            endpoint: HeaderValue::from_static("primary"),
        }
    }

    fn k(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    #[test]
    fn key_ignores_key_order_and_whitespace_only() {
        let a = br#"{"model":"r","messages":[{"role":"user","content":"hi"}],"max_tokens":3}"#;
        let b = br#"{ "max_tokens": 3,
            "messages": [ { "content": "hi", "role": "user" } ], "model": "r" }"#;
        assert_eq!(key(Op::Chat, a), key(Op::Chat, b));
        let canonical = String::from_utf8(key(Op::Chat, b).unwrap()).unwrap();
        assert_eq!(
            canonical,
            "chat completions\n{\"max_tokens\":3,\"messages\":[{\"content\":\"hi\",\"role\":\"user\"}],\"model\":\"r\"}"
        );
        // Content, array order and the operation all matter.
        let c = br#"{"model":"r","messages":[{"role":"user","content":"ho"}],"max_tokens":3}"#;
        assert_ne!(key(Op::Chat, a), key(Op::Chat, c));
        assert_ne!(key(Op::Chat, b"[1,2]"), key(Op::Chat, b"[2,1]"));
        assert_ne!(key(Op::Chat, a), key(Op::Embeddings, a));
        assert_eq!(key(Op::Chat, b"{not json"), None);
        // Strings are escaped as JSON, so no two values meet.
        assert_ne!(
            key(Op::Chat, br#"{"a":"x\",\"b\":\"y"}"#),
            key(Op::Chat, br#"{"a":"x","b":"y"}"#)
        );
    }

    #[test]
    fn answers_expire_after_the_ttl() {
        let c = cache(60, 10, 1 << 20);
        let t0 = Instant::now();
        assert!(c.insert(k("a"), answer("A"), t0));
        let hit = c.get(b"a", t0 + Duration::from_secs(59)).unwrap();
        assert_eq!(hit.answer, answer("A"));
        assert_eq!(hit.age, Duration::from_secs(59));
        assert_eq!(c.get(b"a", t0 + Duration::from_secs(60)), None);
        // Dropped, not just hidden.
        assert_eq!(c.usage(), (0, 0));
        assert_eq!(c.get(b"b", t0), None);
    }

    #[test]
    fn the_least_recently_used_go_over_max_entries() {
        let c = cache(60, 2, 1 << 20);
        let t0 = Instant::now();
        c.insert(k("a"), answer("A"), t0);
        c.insert(k("b"), answer("B"), t0);
        // Reading `a` makes `b` the least recently used.
        assert!(c.get(b"a", t0).is_some());
        c.insert(k("c"), answer("C"), t0);
        assert!(c.get(b"a", t0).is_some());
        assert_eq!(c.get(b"b", t0), None);
        assert!(c.get(b"c", t0).is_some());
        assert_eq!(c.usage().0, 2);
    }

    #[test]
    fn the_least_recently_used_go_over_max_bytes() {
        // Each entry: a 1-byte key and a 400-byte body.
        let c = cache(60, 100, 1024);
        let t0 = Instant::now();
        let body = "x".repeat(400);
        c.insert(k("a"), answer(&body), t0);
        c.insert(k("b"), answer(&body), t0);
        assert_eq!(c.usage(), (2, 802));
        c.get(b"a", t0);
        c.insert(k("c"), answer(&body), t0);
        assert_eq!(c.usage(), (2, 802));
        assert!(c.get(b"a", t0).is_some());
        assert_eq!(c.get(b"b", t0), None);
        // Replacing an entry counts its bytes once.
        c.insert(k("a"), answer("small"), t0);
        assert_eq!(c.usage(), (2, 401 + 6));
    }

    #[test]
    fn an_answer_over_max_bytes_is_not_stored() {
        let c = cache(60, 100, 1024);
        let t0 = Instant::now();
        c.insert(k("a"), answer("A"), t0);
        assert!(!c.insert(k("big"), answer(&"x".repeat(1024)), t0));
        assert_eq!(c.get(b"big", t0), None);
        // Nothing else was evicted for it.
        assert!(c.get(b"a", t0).is_some());
        // Key and body together: exactly max_bytes fits.
        assert!(c.insert(k("big"), answer(&"x".repeat(1021)), t0));
        assert_eq!(c.usage(), (1, 1024));
    }

    #[test]
    fn a_reload_keeps_a_cache_only_while_its_settings_stay() {
        let settings = CacheConfig::default();
        let route = |cache: Option<CacheConfig>| RouteConfig {
            name: "r".into(),
            endpoints: vec!["a".into()],
            cache,
        };
        let mut kept = HashMap::new();
        let first = for_route(&mut kept, &route(Some(settings.clone()))).unwrap();
        first.insert(k("a"), answer("A"), Instant::now());
        let same = for_route(&mut kept, &route(Some(settings.clone()))).unwrap();
        assert!(Arc::ptr_eq(&first, &same));
        let changed = CacheConfig {
            ttl: Duration::from_secs(1),
            ..settings
        };
        let fresh = for_route(&mut kept, &route(Some(changed))).unwrap();
        assert!(!Arc::ptr_eq(&first, &fresh));
        assert_eq!(fresh.usage(), (0, 0));
        assert!(for_route(&mut kept, &route(None)).is_none());
        assert!(kept.is_empty());
    }
}
