//! A token that cannot leak by accident: its `Debug` and `Display` print a
//! placeholder, and it is never serialized. Also the one safe way to read a
//! secret from a file: never blocks, never reads more than a small bound,
//! and never repeats the content in an error.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest secret file: tokens are well under 1 KiB; a bigger file is a mistake
/// (`/dev/zero`, a log file) and is refused rather than read.
pub const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

// Hash: clients are cached by upstream options, which may hold a proxy URL with credentials.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The only way to the value: call sites are easy to audit.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compare in time independent of where the first difference is.
    pub fn constant_time_eq(&self, other: &str) -> bool {
        let a = self.0.as_bytes();
        let b = other.as_bytes();
        let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
        for i in 0..a.len().max(b.len()) {
            let x = a.get(i).copied().unwrap_or(0);
            let y = b.get(i).copied().unwrap_or(0);
            diff |= x ^ y;
        }
        diff == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why a file could not be read. Names the path, never the content.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{}: cannot open: {kind}", path.display())]
    Open {
        path: PathBuf,
        kind: std::io::ErrorKind,
    },
    #[error("{}: not a regular file ({what})", path.display())]
    NotRegular { path: PathBuf, what: &'static str },
    #[error("{}: larger than {max} bytes", path.display())]
    TooLarge { path: PathBuf, max: u64 },
    #[error("{}: cannot read: {kind}", path.display())]
    Read {
        path: PathBuf,
        kind: std::io::ErrorKind,
    },
    #[error("{}: not UTF-8 text", path.display())]
    NotText { path: PathBuf },
    #[error("{}: is empty", path.display())]
    Empty { path: PathBuf },
}

/// What a non-regular file is, for the error message.
fn file_type_name(ft: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else {
        "not a plain file"
    }
}

/// Read a regular file of at most `max` bytes. Opening is non-blocking (a
/// FIFO with no writer would otherwise hang the open, and so a reload, forever)
/// and the type is checked on the open descriptor, so nothing can be swapped
/// in between the check and the read.
pub fn read_regular_file(path: &Path, max: u64) -> Result<Vec<u8>, FileError> {
    use std::os::unix::fs::OpenOptionsExt;
    let p = || path.to_path_buf();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| FileError::Open {
            path: p(),
            kind: e.kind(),
        })?;
    let meta = file.metadata().map_err(|e| FileError::Read {
        path: p(),
        kind: e.kind(),
    })?;
    if !meta.file_type().is_file() {
        return Err(FileError::NotRegular {
            path: p(),
            what: file_type_name(meta.file_type()),
        });
    }
    let mut buf = Vec::new();
    // One byte past the bound tells "exactly max" from "larger".
    file.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| FileError::Read {
            path: p(),
            kind: e.kind(),
        })?;
    if buf.len() as u64 > max {
        return Err(FileError::TooLarge { path: p(), max });
    }
    Ok(buf)
}

/// A secret from a file: regular, at most [`MAX_SECRET_FILE_BYTES`], UTF-8,
/// trimmed, not empty. Used for `token_file` and `--web.admin-token-file`.
pub fn read_secret_file(path: &Path) -> Result<Secret, FileError> {
    let bytes = read_regular_file(path, MAX_SECRET_FILE_BYTES)?;
    let text = String::from_utf8(bytes).map_err(|_| FileError::NotText {
        path: path.to_path_buf(),
    })?;
    let t = text.trim();
    if t.is_empty() {
        return Err(FileError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(Secret::new(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_formats_its_value() {
        let s = Secret::new("hf_supersecret");
        assert!(!format!("{s:?} {s}").contains("supersecret"));
    }

    #[test]
    fn compares() {
        let s = Secret::new("abc");
        assert!(s.constant_time_eq("abc"));
        assert!(!s.constant_time_eq("abd"));
        assert!(!s.constant_time_eq("ab"));
        assert!(!s.constant_time_eq("abcd"));
        assert!(!s.constant_time_eq(""));
    }

    const TOKEN: &str = "hf_topsecretvalue";

    fn err_of(path: &Path) -> String {
        match read_secret_file(path) {
            Ok(_) => panic!("{} should be refused", path.display()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn reads_and_trims_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("tok");
        std::fs::write(&f, format!("  {TOKEN}\n")).unwrap();
        assert_eq!(read_secret_file(&f).unwrap().expose(), TOKEN);
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("fifo");
        let c = std::ffi::CString::new(f.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo touches nothing else.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // No writer ever opens it: a blocking open would hang this test.
        let e = err_of(&f);
        assert!(e.contains("not a regular file (a FIFO)"), "{e}");
        assert!(e.contains(&f.display().to_string()), "{e}");
    }

    #[test]
    fn devices_directories_and_sockets_are_refused() {
        let e = err_of(Path::new("/dev/zero"));
        assert_eq!(e, "/dev/zero: not a regular file (a character device)");
        let dir = tempfile::tempdir().unwrap();
        let e = err_of(dir.path());
        assert!(e.ends_with("not a regular file (a directory)"), "{e}");
        let sock = dir.path().join("s");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        // open(2) itself refuses a socket (ENXIO): an error naming the path.
        let e = err_of(&sock);
        assert!(
            e.starts_with(&format!("{}: cannot open", sock.display())),
            "{e}"
        );
    }

    #[test]
    fn oversized_empty_missing_and_binary_files_are_refused_without_content() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        let exact = dir.path().join("exact");
        let mut content = TOKEN.repeat(5000).into_bytes();
        content.truncate(MAX_SECRET_FILE_BYTES as usize);
        std::fs::write(&exact, &content).unwrap();
        assert!(
            read_secret_file(&exact).is_ok(),
            "exactly the bound is fine"
        );
        content.push(b'x');
        std::fs::write(&big, &content).unwrap();
        let e = err_of(&big);
        assert!(e.ends_with("larger than 65536 bytes"), "{e}");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, " \n\t").unwrap();
        assert!(err_of(&empty).ends_with(": is empty"));
        assert!(err_of(&dir.path().join("nope")).ends_with("cannot open: entity not found"));
        let bin = dir.path().join("bin");
        std::fs::write(&bin, [0xff, 0xfe, b'h', b'f']).unwrap();
        assert!(err_of(&bin).ends_with("not UTF-8 text"));
        for e in [err_of(&big), err_of(&empty)] {
            assert!(!e.contains("topsecret"), "{e}");
        }
    }
}
