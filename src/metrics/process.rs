//! The standard `process_*` families, read from `/proc/self` at scrape time
//! (Linux only; elsewhere they are absent, as in the official clients).

use super::families as f;
use super::text::{Family, TextWriter};

/// What one read of `/proc/self` found.
#[derive(Debug, Default, PartialEq)]
struct Sample {
    cpu_seconds: f64,
    threads: u64,
    start_time: f64,
    virtual_bytes: u64,
    resident_bytes: u64,
    open_fds: u64,
    max_fds: u64,
}

pub(super) fn write(w: &mut TextWriter) {
    let Some(s) = read() else { return };
    let families: [(&Family, f64); 7] = [
        (&f::PROCESS_CPU, s.cpu_seconds),
        (&f::PROCESS_OPEN_FDS, s.open_fds as f64),
        (&f::PROCESS_MAX_FDS, s.max_fds as f64),
        (&f::PROCESS_VIRTUAL_MEMORY, s.virtual_bytes as f64),
        (&f::PROCESS_RESIDENT_MEMORY, s.resident_bytes as f64),
        (&f::PROCESS_START_TIME, s.start_time),
        (&f::PROCESS_THREADS, s.threads as f64),
    ];
    for (family, value) in families {
        w.family(family);
        w.sample(family, &[], value);
    }
    // Beside the process' memory: what of it the allocator holds, and how.
    if let Some(a) = crate::memory::allocator_bytes() {
        w.family(&f::ALLOCATOR_BYTES);
        for (kind, v) in [("in_use", a.in_use), ("free", a.free), ("mapped", a.mapped)] {
            w.sample(&f::ALLOCATOR_BYTES, &[kind], v as f64);
        }
    }
}

#[cfg(target_os = "linux")]
fn read() -> Option<Sample> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    // SAFETY: sysconf only reads configuration values.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let mut s = parse_stat(&stat, &boot, ticks.max(1) as f64, page.max(1) as u64)?;
    s.open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        s.max_fds = limit.rlim_cur;
    }
    Some(s)
}

#[cfg(not(target_os = "linux"))]
fn read() -> Option<Sample> {
    None
}

/// Fields of `/proc/self/stat` (see proc(5)); the command name in
/// parentheses may hold spaces, so fields are counted after its `)`.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_stat(stat: &str, proc_stat: &str, ticks: f64, page: u64) -> Option<Sample> {
    let after = &stat[stat.rfind(')')? + 1..];
    // Field 3 (state) is the first after the name.
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    let btime: u64 = proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(Sample {
        cpu_seconds: (field(14)? + field(15)?) as f64 / ticks,
        threads: field(20)?,
        start_time: btime as f64 + field(22)? as f64 / ticks,
        virtual_bytes: field(23)?,
        resident_bytes: field(24)? * page,
        open_fds: 0,
        max_fds: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_the_name() {
        let stat = "4242 (hf breaker) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 1000 104857600 2560 18446744073709551615";
        let s = parse_stat(stat, "cpu 1 2 3\nbtime 1700000000\n", 100.0, 4096).unwrap();
        assert_eq!(
            s,
            Sample {
                cpu_seconds: 3.0,
                threads: 7,
                start_time: 1_700_000_010.0,
                virtual_bytes: 104_857_600,
                resident_bytes: 2560 * 4096,
                open_fds: 0,
                max_fds: 0,
            }
        );
        assert_eq!(parse_stat("garbage", "btime 1", 100.0, 4096), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let s = read().unwrap();
        assert!(s.resident_bytes > 0 && s.virtual_bytes >= s.resident_bytes);
        assert!(s.threads >= 1 && s.open_fds >= 1 && s.max_fds >= s.open_fds);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(s.start_time <= now + 1.0 && s.start_time > now - 86_400.0 * 365.0);
    }
}
