//! Breaker state on disk (`--storage.path`), so that a restart keeps open
//! circuits open, forced states forced and backoffs where they were.
//!
//! One JSON file, `breakers.json`, rewritten whole and atomically (a temp
//! file in the same directory, fsync, rename, fsync of the directory), so a
//! crash at any moment leaves either the previous or the next version. Times
//! are wall-clock (the monotonic clock does not survive a restart) and are
//! converted back to the monotonic clock on load.
//!
//! Writes happen on a thread of their own: probing never waits for the disk.
//! [`Store::mark`] asks for a write and returns a generation; the writer
//! writes everything that was marked before it started collecting, so a
//! burst of transitions costs one or two writes. [`Store::durable`] waits
//! until a generation is on disk (the admin API answers only then).

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::baseline::BaselineState;
use crate::breaker::{Breaker, Call, Snapshot, State};
use crate::config::EndpointConfig;

/// The file in the storage directory.
pub const FILE_NAME: &str = "breakers.json";
const TEMP_NAME: &str = ".breakers.json.tmp";
const FORMAT: &str = "hfbreaker-breakers";
const VERSION: u32 = 1;
/// Larger files are not read: 10,000 endpoints take about 3 MB.
pub const MAX_FILE_BYTES: u64 = 64 << 20;
/// Changes that are not transitions (a failure count, the window) are
/// written at most this long after they happen.
pub const LAZY_WRITE: Duration = Duration::from_secs(5);
/// After a failed write, the next attempt (unless a new change comes first),
/// doubling up to a minute so that a read-only disk does not flood the log.
const RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(60);

/// What identifies an endpoint across reloads and restarts: what it probes.
/// Thresholds, intervals and the token are not part of it.
pub fn identity(cfg: &EndpointConfig) -> String {
    format!(
        "{}\0{}\0{}\0{}\0{}\0{}\0{}",
        cfg.name,
        cfg.kind.as_str(),
        cfg.url,
        cfg.probe.as_str(),
        cfg.model.as_deref().unwrap_or(""),
        cfg.namespace.as_deref().unwrap_or(""),
        cfg.endpoint_name.as_deref().unwrap_or(""),
    )
}

/// The identity as stored: a hash, so that nothing of a URL (a query string)
/// lands in the file. FNV-1a, stable across Rust versions unlike `Hash`.
fn identity_hash(cfg: &EndpointConfig) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in identity(cfg).bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("fnv1a64:{h:016x}")
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: larger than {MAX_FILE_BYTES} bytes")]
    TooLarge { path: String },
    #[error("{path}: not a breaker state file: {source}")]
    Parse {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: format {format:?} version {version}, expected {FORMAT:?} version {VERSION}")]
    Foreign {
        path: String,
        format: String,
        version: u32,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("breaker state not saved within {0:?}")]
    Timeout(Duration),
    #[error("breaker state not saved: the last write failed (see the log)")]
    Failed,
}

/// The file.
#[derive(Serialize, Deserialize)]
struct Document {
    format: String,
    version: u32,
    /// For people reading the file; not used on load.
    #[serde(default)]
    written_at: String,
    endpoints: BTreeMap<String, Entry>,
}

/// One breaker. Unix times in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    identity: String,
    state: State,
    since_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    open_until_ms: Option<u64>,
    open_duration_ms: u64,
    backoff_step: u32,
    consecutive_failures: u32,
    #[serde(default)]
    half_open_successes: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    half_open_slow: u32,
    /// Oldest first: `.` success, `s` slow success, `F` failure.
    window: String,
    /// The last probes, as `window`, when they differ from its calls (a
    /// gateway request among them); absent: the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    probe_window: Option<String>,
    /// The jitter generator's state.
    rng: u64,
    /// The learned probe latency, once warmed up (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    latency_baseline_ms: Option<f64>,
    /// Until then, the warm-up samples seen so far (ms, oldest first; fewer
    /// than `warmup_calls`, so at most `baseline::MAX_WARMUP`), so that a
    /// restart does not lose a partly learned baseline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    latency_warmup_ms: Vec<f64>,
}

fn calls_text(calls: &[Call]) -> String {
    calls
        .iter()
        .map(|c| match c {
            Call::Success => '.',
            Call::Slow => 's',
            Call::Failure => 'F',
        })
        .collect()
}

fn calls_of(text: &str) -> Vec<Call> {
    text.chars()
        .map(|c| match c {
            'F' => Call::Failure,
            's' => Call::Slow,
            _ => Call::Success,
        })
        .collect()
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn from_unix_ms(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH
        .checked_add(Duration::from_millis(ms))
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Entry {
    /// The breaker of `cfg` as it is at `now` (= `now_wall`), entered its
    /// state at `since_wall`.
    pub fn capture(
        cfg: &EndpointConfig,
        breaker: &Breaker,
        since_wall: SystemTime,
        now: Instant,
        now_wall: SystemTime,
    ) -> Entry {
        let s = breaker.snapshot(now);
        Entry {
            identity: identity_hash(cfg),
            state: s.state,
            since_ms: unix_ms(since_wall),
            open_until_ms: s.open_remaining.map(|r| unix_ms(now_wall + r)),
            open_duration_ms: millis(s.open_duration),
            backoff_step: s.backoff_step,
            consecutive_failures: s.consecutive_failures,
            half_open_successes: s.half_open_successes,
            half_open_slow: s.half_open_slow,
            window: calls_text(&s.window),
            probe_window: s.probe_window.as_deref().map(calls_text),
            rng: s.rng,
            latency_baseline_ms: s.baseline.log_seconds.map(|l| l.exp() * 1000.0),
            latency_warmup_ms: s.baseline.warmup.iter().map(|l| l.exp() * 1000.0).collect(),
        }
    }

    /// Whether this entry was written for the endpoint `cfg`.
    pub fn matches(&self, cfg: &EndpointConfig) -> bool {
        self.identity == identity_hash(cfg)
    }

    /// The breaker for `cfg` at `now` (= `now_wall`), and since when it is in
    /// its state. Probes that were in flight when it was written are gone:
    /// a half-open breaker sends a new trial.
    pub fn restore(
        &self,
        cfg: &EndpointConfig,
        now: Instant,
        now_wall: SystemTime,
    ) -> (Breaker, SystemTime) {
        let since = from_unix_ms(self.since_ms).min(now_wall);
        let snap = Snapshot {
            state: self.state,
            since_ago: now_wall.duration_since(since).unwrap_or_default(),
            // A period already over is due for its trial now.
            open_remaining: self
                .open_until_ms
                .map(|u| from_unix_ms(u).duration_since(now_wall).unwrap_or_default()),
            backoff_step: self.backoff_step,
            open_duration: Duration::from_millis(self.open_duration_ms),
            consecutive_failures: self.consecutive_failures,
            half_open_successes: self.half_open_successes,
            half_open_slow: self.half_open_slow,
            window: calls_of(&self.window),
            probe_window: self.probe_window.as_deref().map(calls_of),
            rng: self.rng,
            epoch: 0,
            trial_in_flight: false,
            // Damaged samples (not positive, not finite, absurd) are
            // dropped and at most `MAX_WARMUP` kept by `Baseline::restore`.
            baseline: BaselineState {
                seen: 0,
                log_seconds: self
                    .latency_baseline_ms
                    .filter(|ms| *ms > 0.0)
                    .map(|ms| (ms / 1000.0).ln()),
                warmup: (self.latency_warmup_ms.iter())
                    .map(|ms| (ms / 1000.0).ln())
                    .collect(),
                last_ago: None,
            },
        };
        (Breaker::restore(cfg.breaker.clone(), &snap, now), since)
    }
}

/// Read the saved entries in `dir`. A missing file is `Ok` and empty.
pub fn load(dir: &Path) -> Result<HashMap<String, Entry>, StorageError> {
    let path = dir.join(FILE_NAME);
    let shown = path.display().to_string();
    let read_err = |source| StorageError::Read {
        path: shown.clone(),
        source,
    };
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(read_err(e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(StorageError::TooLarge { path: shown });
    }
    // The header first, so that another format or version is named as such.
    #[derive(Deserialize)]
    struct Header {
        format: String,
        version: u32,
    }
    let parse = |source| StorageError::Parse {
        path: shown.clone(),
        source,
    };
    let h: Header = serde_json::from_slice(&bytes).map_err(parse)?;
    if h.format != FORMAT || h.version != VERSION {
        return Err(StorageError::Foreign {
            path: shown.clone(),
            format: h.format,
            version: h.version,
        });
    }
    let doc: Document = serde_json::from_slice(&bytes).map_err(parse)?;
    Ok(doc.endpoints.into_iter().collect())
}

/// Write `entries` to `dir` atomically.
pub fn save(dir: &Path, entries: BTreeMap<String, Entry>) -> Result<(), StorageError> {
    let doc = Document {
        format: FORMAT.into(),
        version: VERSION,
        written_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        endpoints: entries,
    };
    let path = dir.join(FILE_NAME);
    let err = |source| StorageError::Write {
        path: path.display().to_string(),
        source,
    };
    let bytes = serde_json::to_vec_pretty(&doc).map_err(|e| err(e.into()))?;
    let temp = dir.join(TEMP_NAME);
    let mut f = std::fs::File::create(&temp).map_err(err)?;
    f.write_all(&bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    std::fs::rename(&temp, &path).map_err(err)?;
    // The rename itself is durable only once the directory is.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err)
}

/// What the writer has done: the last generation written and the last one
/// whose write failed.
#[derive(Clone, Copy, Debug, Default)]
struct Progress {
    written: u64,
    failed: u64,
}

struct Requests {
    /// Generation of the last requested write.
    wanted: u64,
    stop: bool,
}

struct Shared {
    requests: Mutex<Requests>,
    wake: Condvar,
    /// A change that may wait for [`LAZY_WRITE`].
    lazy: AtomicBool,
}

/// The storage directory and its writer thread.
pub struct Store {
    dir: PathBuf,
    shared: Arc<Shared>,
    progress: watch::Receiver<Progress>,
}

impl Store {
    /// Start the writer for `dir`. `collect` gives every entry to write (None
    /// when the daemon is gone); `failed` is called on each failed write.
    pub fn start(
        dir: PathBuf,
        collect: impl FnMut() -> Option<BTreeMap<String, Entry>> + Send + 'static,
        failed: impl Fn() + Send + 'static,
    ) -> Store {
        // Left by a crash during a write; never read.
        let _ = std::fs::remove_file(dir.join(TEMP_NAME));
        if let Err(e) = std::fs::create_dir_all(&dir) {
            tracing::error!(path = %dir.display(), error = %e, "cannot create the storage directory; breaker state will not be saved");
        }
        let shared = Arc::new(Shared {
            requests: Mutex::new(Requests {
                wanted: 0,
                stop: false,
            }),
            wake: Condvar::new(),
            lazy: AtomicBool::new(false),
        });
        let (tx, progress) = watch::channel(Progress::default());
        let (d, s) = (dir.clone(), shared.clone());
        let spawned = std::thread::Builder::new()
            .name("hfbreaker-storage".into())
            .spawn(move || writer(&d, &s, tx, collect, failed));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the storage writer; breaker state will not be saved");
        }
        Store {
            dir,
            shared,
            progress,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Ask for a write: now (`urgent`) or within [`LAZY_WRITE`]. Returns the
    /// generation to pass to [`Store::durable`].
    pub fn mark(&self, urgent: bool) -> u64 {
        if !urgent {
            self.shared.lazy.store(true, Ordering::Relaxed);
            return 0;
        }
        let mut r = self
            .shared
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        r.wanted += 1;
        self.shared.wake.notify_one();
        r.wanted
    }

    /// Wait until generation `generation` is on disk, at most `limit`.
    pub async fn durable(&self, generation: u64, limit: Duration) -> Result<(), StorageError> {
        let mut rx = self.progress.clone();
        let waited = tokio::time::timeout(
            limit,
            rx.wait_for(|p| p.written >= generation || p.failed >= generation),
        )
        .await;
        match waited {
            Ok(Ok(p)) if p.written >= generation => Ok(()),
            Ok(_) => Err(StorageError::Failed),
            Err(_) => Err(StorageError::Timeout(limit)),
        }
    }

    /// Write now and wait for it (at shutdown), at most `limit`.
    pub fn flush(&self, limit: Duration) -> Result<(), StorageError> {
        let generation = self.mark(true);
        let start = Instant::now();
        loop {
            let p = *self.progress.borrow();
            if p.written >= generation {
                return Ok(());
            }
            if p.failed >= generation {
                return Err(StorageError::Failed);
            }
            if start.elapsed() >= limit {
                return Err(StorageError::Timeout(limit));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Not joined: the writer may be the one dropping the daemon.
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .stop = true;
        self.shared.wake.notify_one();
    }
}

/// The writer thread: wait for a request (or a lazy change), collect, write.
fn writer(
    dir: &Path,
    shared: &Shared,
    progress: watch::Sender<Progress>,
    mut collect: impl FnMut() -> Option<BTreeMap<String, Entry>>,
    failed: impl Fn(),
) {
    let mut done = 0;
    let mut last_write = Instant::now();
    let mut retry: Option<Duration> = None;
    loop {
        let target = {
            let mut r = shared.requests.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if r.stop {
                    return;
                }
                if r.wanted > done {
                    break r.wanted;
                }
                let pause = retry.unwrap_or(LAZY_WRITE);
                if last_write.elapsed() >= pause
                    && (retry.is_some() || shared.lazy.load(Ordering::Relaxed))
                {
                    break r.wanted;
                }
                let left = pause.saturating_sub(last_write.elapsed());
                r = shared
                    .wake
                    .wait_timeout(r, left.max(Duration::from_millis(10)))
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        };
        // Cleared before collecting: a change after this point is seen by the
        // next round, not lost.
        shared.lazy.store(false, Ordering::Relaxed);
        let Some(entries) = collect() else { return };
        let started = Instant::now();
        let result = save(dir, entries);
        last_write = Instant::now();
        done = target;
        match result {
            Ok(()) => {
                retry = None;
                tracing::debug!(
                    generation = target,
                    took_ms = started.elapsed().as_secs_f64() * 1e3,
                    "breaker state saved"
                );
                progress.send_modify(|p| p.written = target);
            }
            Err(e) => {
                retry = Some(retry.map_or(RETRY, |r| (r * 2).min(MAX_RETRY)));
                failed();
                tracing::error!(error = %e, "cannot save breaker state; retrying");
                progress.send_modify(|p| p.failed = target);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::breaker::{BreakerConfig, Outcome};

    fn cfg(name: &str, url: &str) -> EndpointConfig {
        let yaml = format!("endpoints:\n  - {{name: {name}, kind: http, url: '{url}'}}\n");
        crate::config::parse(&yaml, "x", &HashMap::<String, String>::new())
            .unwrap()
            .endpoints
            .remove(0)
    }

    fn tripped(c: &EndpointConfig, now: Instant) -> Breaker {
        let mut b = Breaker::new(c.breaker.clone(), now, 5);
        for _ in 0..c.breaker.failure_threshold {
            let (p, _) = b.try_acquire(now);
            b.record(p.unwrap(), Outcome::Failure, now);
        }
        assert_eq!(b.state(), State::Open);
        b
    }

    #[test]
    fn entry_round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg("a", "http://127.0.0.1:1/x?q=secretish");
        let now = Instant::now();
        let wall = SystemTime::now();
        let b = tripped(&c, now);
        let e = Entry::capture(&c, &b, wall, now, wall);
        save(dir.path(), BTreeMap::from([("a".to_string(), e.clone())])).unwrap();
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert!(!text.contains("secretish"), "{text}");
        let loaded = load(dir.path()).unwrap();
        assert_eq!(loaded["a"], e);
        assert!(loaded["a"].matches(&c));
        assert!(!loaded["a"].matches(&cfg("a", "http://127.0.0.1:2/")));
        // restored 3 s later on another clock: 3 s less of the period is left
        let later = Instant::now() + Duration::from_secs(100);
        let (r, since) = loaded["a"].restore(&c, later, wall + Duration::from_secs(3));
        assert_eq!(r.state(), State::Open);
        assert_eq!(unix_ms(since), unix_ms(wall));
        let left = r.open_until().unwrap() - later;
        let want = b.open_until().unwrap() - now - Duration::from_secs(3);
        assert!(
            left.abs_diff(want) <= Duration::from_millis(1),
            "{left:?} {want:?}"
        );
        assert_eq!(r.consecutive_failures(), b.consecutive_failures());
        assert_eq!(r.window_len(), b.window_len());
        // a period over while stopped: the trial is due at once
        let (mut r, _) = loaded["a"].restore(&c, later, wall + Duration::from_secs(3600));
        assert!(r.try_acquire(later).0.unwrap().is_trial());
    }

    #[test]
    fn the_learned_baseline_is_saved_and_restored() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg("a", "http://127.0.0.1:1/");
        let now = Instant::now();
        let wall = SystemTime::now();
        let mut b = Breaker::new(c.breaker.clone(), now, 5);
        let e = Entry::capture(&c, &b, wall, now, wall);
        assert_eq!(e.latency_baseline_ms, None, "nothing learned yet");
        for i in 0..20 {
            let (p, _) = b.try_acquire(now);
            let d = Duration::from_millis(250);
            b.record(
                p.unwrap(),
                Outcome::Success { duration: d },
                now + Duration::from_secs(i),
            );
        }
        let e = Entry::capture(&c, &b, wall, now, wall);
        save(dir.path(), BTreeMap::from([("a".to_string(), e)])).unwrap();
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert!(text.contains("\"latency_baseline_ms\": 250"), "{text}");
        let loaded = load(dir.path()).unwrap();
        let (r, _) = loaded["a"].restore(&c, now, wall);
        let got = r.latency_baseline().unwrap().as_secs_f64();
        assert!((got - 0.25).abs() < 1e-9, "{got}");
    }

    #[test]
    fn the_probe_window_is_saved_when_requests_are_among_the_calls() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg("a", "http://127.0.0.1:1/");
        let now = Instant::now();
        let wall = SystemTime::now();
        let mut b = Breaker::new(c.breaker.clone(), now, 5);
        let slow = Outcome::Success {
            duration: Duration::from_secs(6),
        };
        for o in [slow, Outcome::RequestSuccess, Outcome::RequestFailure, slow] {
            let (p, _) = b.try_acquire(now);
            b.record(p.unwrap(), o, now);
        }
        let e = Entry::capture(&c, &b, wall, now, wall);
        assert_eq!(e.window, "s.Fs");
        assert_eq!(e.probe_window.as_deref(), Some("ss"));
        save(dir.path(), BTreeMap::from([("a".to_string(), e)])).unwrap();
        let (r, _) = load(dir.path()).unwrap()["a"].restore(&c, now, wall);
        assert_eq!(r.slow_call_ratio(), 1.0);
        assert_eq!(r.failure_ratio(), 0.25);
        // only probes: nothing more is written
        let mut b = Breaker::new(c.breaker.clone(), now, 5);
        let (p, _) = b.try_acquire(now);
        b.record(p.unwrap(), slow, now);
        let e = Entry::capture(&c, &b, wall, now, wall);
        assert_eq!(e.probe_window, None);
    }

    /// Record `n` probes of `ms` each, a second apart from `from`.
    fn probes(b: &mut Breaker, n: u64, ms: u64, from: Instant) {
        for i in 0..n {
            let (p, _) = b.try_acquire(from);
            let d = Duration::from_millis(ms);
            let at = from + Duration::from_secs(i);
            b.record(p.unwrap(), Outcome::Success { duration: d }, at);
        }
    }

    #[test]
    fn a_partly_learned_baseline_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg("a", "http://127.0.0.1:1/");
        let now = Instant::now();
        let wall = SystemTime::now();
        // 12 of the 20 warm-up probes: 6 at 200 ms, 6 at 300 ms
        let mut b = Breaker::new(c.breaker.clone(), now, 5);
        probes(&mut b, 6, 200, now);
        probes(&mut b, 6, 300, now);
        assert_eq!(b.latency_baseline(), None);
        let e = Entry::capture(&c, &b, wall, now, wall);
        save(dir.path(), BTreeMap::from([("a".to_string(), e)])).unwrap();
        let path = dir.path().join(FILE_NAME);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"latency_warmup_ms\""), "{text}");
        let later = now + Duration::from_secs(60);
        let (mut r, _) = load(dir.path()).unwrap()["a"].restore(&c, later, wall);
        assert_eq!(r.latency_baseline(), None, "still warming up");
        // 8 more after the restart complete the warm-up: the median of all 20
        probes(&mut r, 8, 300, later);
        let got = r.latency_baseline().expect("warmed up").as_secs_f64();
        assert!((got - 0.3).abs() < 1e-9, "{got}");

        // A file from before the warm-up was saved still loads, and warms up
        // again from scratch.
        let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        let entry = doc["endpoints"]["a"].as_object_mut().unwrap();
        assert!(entry.remove("latency_warmup_ms").is_some());
        std::fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
        let (mut r, _) = load(dir.path()).unwrap()["a"].restore(&c, later, wall);
        probes(&mut r, 19, 300, later);
        assert_eq!(r.latency_baseline(), None);
        probes(&mut r, 1, 300, later);
        assert!(r.latency_baseline().is_some());
    }

    #[test]
    fn saved_warm_up_samples_are_bounded_and_checked() {
        let c = cfg("a", "http://127.0.0.1:1/");
        let now = Instant::now();
        let wall = SystemTime::now();
        let b = Breaker::new(c.breaker.clone(), now, 5);
        let mut e = Entry::capture(&c, &b, wall, now, wall);
        assert!(e.latency_warmup_ms.is_empty(), "nothing to save");
        let mut samples = vec![f64::NAN, -1.0, 0.0, f64::INFINITY, 1e300];
        samples.extend(std::iter::repeat_n(250.0, 500));
        e.latency_warmup_ms = samples;
        let (r, _) = e.restore(&c, now, wall);
        let kept = r.snapshot(now).baseline.warmup;
        assert_eq!(kept.len(), crate::baseline::MAX_WARMUP as usize);
        assert!(kept.iter().all(|l| (l - 0.25f64.ln()).abs() < 1e-9));
    }

    #[test]
    fn bad_files_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_empty(), "missing file");
        let path = dir.path().join(FILE_NAME);
        let good = {
            let c = cfg("a", "http://127.0.0.1:1/");
            let now = Instant::now();
            let e = Entry::capture(
                &c,
                &tripped(&c, now),
                SystemTime::now(),
                now,
                SystemTime::now(),
            );
            save(dir.path(), BTreeMap::from([("a".to_string(), e)])).unwrap();
            std::fs::read(&path).unwrap()
        };
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("not json", b"\x00\xffgarbage".to_vec()),
            ("truncated", good[..good.len() / 2].to_vec()),
            ("foreign", br#"{"format":"other","version":1,"endpoints":{}}"#.to_vec()),
            ("future version", br#"{"format":"hfbreaker-breakers","version":2}"#.to_vec()),
            ("wrong types", br#"{"format":"hfbreaker-breakers","version":1,"endpoints":{"a":{"state":"melted"}}}"#.to_vec()),
        ];
        for (name, bytes) in cases {
            std::fs::write(&path, bytes).unwrap();
            assert!(load(dir.path()).is_err(), "{name}");
        }
        std::fs::write(&path, vec![b' '; MAX_FILE_BYTES as usize + 1]).unwrap();
        assert!(matches!(
            load(dir.path()),
            Err(StorageError::TooLarge { .. })
        ));
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        assert!(load(dir.path()).is_err(), "a directory");
    }

    #[tokio::test]
    async fn writer_makes_marked_changes_durable_and_reports_failures() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg("a", "http://127.0.0.1:1/");
        let state = Arc::new(Mutex::new(State::Closed));
        let s2 = state.clone();
        let c2 = c.clone();
        let fails = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let f2 = fails.clone();
        let store = Store::start(
            dir.path().join("data"),
            move || {
                let now = Instant::now();
                let mut b = Breaker::new(BreakerConfig::default(), now, 1);
                if *s2.lock().unwrap() == State::ForcedOpen {
                    b.force_open(now);
                }
                let e = Entry::capture(&c2, &b, SystemTime::now(), now, SystemTime::now());
                Some(BTreeMap::from([("a".to_string(), e)]))
            },
            move || {
                f2.fetch_add(1, Ordering::Relaxed);
            },
        );
        *state.lock().unwrap() = State::ForcedOpen;
        let g = store.mark(true);
        store.durable(g, Duration::from_secs(5)).await.unwrap();
        assert_eq!(load(store.dir()).unwrap()["a"].state, State::ForcedOpen);
        // make the directory unwritable for us: a file where the temp file goes
        std::fs::create_dir(store.dir().join(TEMP_NAME)).unwrap();
        let g = store.mark(true);
        assert!(matches!(
            store.durable(g, Duration::from_secs(5)).await,
            Err(StorageError::Failed)
        ));
        assert!(fails.load(Ordering::Relaxed) >= 1);
        std::fs::remove_dir(store.dir().join(TEMP_NAME)).unwrap();
        store.flush(Duration::from_secs(5)).unwrap();
    }
}
