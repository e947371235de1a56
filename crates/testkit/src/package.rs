//! What `scripts/package` builds: the static release binary and the Debian
//! package around it. Tests get them through [`static_binary`] and
//! [`deb_package`], which run the script once per test binary: a no-op cargo
//! build when the binary is up to date (so `scripts/test`, which runs it
//! before the tests, pays for the release build once), a rebuild when the
//! sources changed, so a test never looks at a stale artifact.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The only Rust target here, and the one the static build uses.
pub const TARGET: &str = "x86_64-unknown-linux-gnu";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Run `scripts/package static` (level 1: the binary) or `scripts/package`
/// (level 2: the binary and the .deb), once per process; tests that ask at
/// the same time wait for the one run.
fn package(level: u8) {
    static DONE: Mutex<u8> = Mutex::new(0);
    let mut done = DONE.lock().unwrap_or_else(|p| p.into_inner());
    if *done >= level {
        return;
    }
    let args: &[&str] = if level == 1 { &["static"] } else { &[] };
    let out = Command::new(root().join("scripts/package"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("scripts/package runs");
    assert!(
        out.status.success(),
        "scripts/package {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    *done = level;
}

/// `target/x86_64-unknown-linux-gnu/release/hfbreaker`, built statically.
pub fn static_binary() -> PathBuf {
    package(1);
    let p = root().join(format!("target/{TARGET}/release/hfbreaker"));
    assert!(p.is_file(), "scripts/package did not leave {}", p.display());
    p
}

/// The `.deb` of this version in `target/debian/` (built with the static binary).
pub fn deb_package() -> PathBuf {
    package(2);
    let dir = root().join("target/debian");
    let prefix = format!("hfbreaker_{}-", env!("CARGO_PKG_VERSION"));
    let debs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("target/debian exists after scripts/package")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            n.starts_with(&prefix) && n.ends_with("_amd64.deb")
        })
        .collect();
    assert_eq!(
        debs.len(),
        1,
        "one {prefix}*_amd64.deb in {}: {debs:?}",
        dir.display()
    );
    debs.into_iter().next().unwrap_or_default()
}

/// Whether the ELF file at `path` is statically linked: it has no program
/// interpreter (`PT_INTERP`), so the kernel runs it without ld.so and it
/// loads no shared library. Static-pie binaries count (they have a
/// `PT_DYNAMIC` for relocating themselves, but no interpreter).
pub fn is_static_elf(path: &Path) -> bool {
    let b = std::fs::read(path).expect("the binary is readable");
    assert!(
        b.len() > 64 && &b[..4] == b"\x7fELF" && b[4] == 2 && b[5] == 1,
        "a 64-bit little-endian ELF file"
    );
    let u = |at: usize, n: usize| -> u64 {
        b[at..at + n]
            .iter()
            .rev()
            .fold(0, |acc, &x| (acc << 8) | u64::from(x))
    };
    let (phoff, phentsize, phnum) = (
        u(0x20, 8) as usize,
        u(0x36, 2) as usize,
        u(0x38, 2) as usize,
    );
    const PT_INTERP: u64 = 3;
    !(0..phnum).any(|i| u(phoff + i * phentsize, 4) == PT_INTERP)
}
