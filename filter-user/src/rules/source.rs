//! Reading source files: regular files only, through a bounded reader, with readable
//! I/O reasons; and UTF-8 decoding whose error points at the first bad byte.
//!
//! A ruleset or table file is read whole, so a file that never ends (`/dev/zero`), one
//! that blocks (a FIFO with no writer) or one that is simply too big must be refused
//! before it can take the machine's memory or hang the tool: the file's type and size
//! are checked before it is opened, the open does not block (`O_NONBLOCK`, which also
//! keeps a FIFO swapped in after the check from blocking), the opened file is checked
//! again, and the read stops one byte past the cap.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use super::ast::Pos;
use super::error::RulesError;

/// Largest ruleset file, in bytes (16 MiB): 4096 rules take well under 1 MiB; big
/// address lists belong in table files.
pub const MAX_RULESET_BYTES: u64 = 16 << 20;

/// Largest table file, in bytes (128 MiB): a table holds at most 1,000,000 entries, and
/// a million IPv6 prefixes written out in full (`2001:0db8:...:0000/128`, 43 bytes) with
/// a comment of 80 bytes on every line take about 125 MB.
pub const MAX_TABLE_FILE_BYTES: u64 = 128 << 20;

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub(super) enum ReadError {
    /// Opening, inspecting or reading failed.
    #[error("{}", io_reason(.0))]
    Io(#[from] io::Error),
    /// A FIFO, device, directory or socket.
    #[error("it is {0}, not a regular file")]
    NotRegular(&'static str),
    /// Larger than the cap (by its size, or it grew past the cap while being read).
    #[error("it is {size} bytes; the limit is {}", size_text(*.limit))]
    TooBig {
        /// The file's size, or the bytes read when it grew while being read.
        size: u64,
        /// The cap.
        limit: u64,
    },
}

/// A size limit as the operator would write it: `16 MiB`, else in bytes.
pub(super) fn size_text(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

/// What a file of type `t` is, for the "not a regular file" message; `None` for a
/// regular file.
fn not_regular(t: std::fs::FileType) -> Option<&'static str> {
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a named pipe (FIFO)")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("not a file")
    }
}

/// Checks the type and size of what `meta` describes.
fn check(meta: &std::fs::Metadata, limit: u64) -> Result<(), ReadError> {
    if let Some(what) = not_regular(meta.file_type()) {
        return Err(ReadError::NotRegular(what));
    }
    if meta.len() > limit {
        return Err(ReadError::TooBig { size: meta.len(), limit });
    }
    Ok(())
}

/// Reads a whole regular file of at most `limit` bytes (symbolic links are followed).
pub(super) fn read(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    check(&std::fs::metadata(path)?, limit)?;
    read_checked_again(path, limit)
}

/// Opens for reading with `O_NONBLOCK` (a FIFO without a writer opens at once instead
/// of waiting for one) and `O_NOCTTY`. Reads from a regular file ignore `O_NONBLOCK`.
fn open_without_blocking(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY).open(path)
}

/// The part of [`read`] after the first check: what it opens may no longer be what was
/// checked, so the open must not block and the opened file is checked again.
fn read_checked_again(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let file = open_without_blocking(path)?;
    // The path may have been replaced between the check and the open.
    let meta = file.metadata()?;
    check(&meta, limit)?;
    // The size is a hint (files under /proc say 0); the reader enforces the cap.
    let hint = usize::try_from(meta.len()).unwrap_or(0);
    let mut bytes = Vec::with_capacity(hint.saturating_add(1));
    file.take(limit + 1).read_to_end(&mut bytes)?;
    let size = bytes.len() as u64;
    if size > limit {
        return Err(ReadError::TooBig { size, limit });
    }
    Ok(bytes)
}

/// The OS's description of an I/O error without the "(os error N)" suffix, which
/// means nothing to an operator ("No such file or directory").
pub(super) fn io_reason(e: &io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(i) if text.ends_with(')') => text[..i].to_owned(),
        _ => text,
    }
}

/// Decodes `bytes` as UTF-8; the error names the line and column of the first
/// invalid byte so the operator can find it.
pub(super) fn utf8<'a>(bytes: &'a [u8], file: &str) -> Result<&'a str, RulesError> {
    std::str::from_utf8(bytes).map_err(|e| {
        // The prefix before the bad byte is valid UTF-8 by definition.
        let good = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default();
        let line_start = good.rfind('\n').map_or(0, |i| i + 1);
        let pos = Pos {
            line: saturate(good.matches('\n').count() + 1),
            col: saturate(good[line_start..].chars().count() + 1),
        };
        RulesError::at(file, pos, "the file is not valid UTF-8 text")
    })
}

/// Converts a count to a line or column number; files with more than 4 billion
/// lines are not a practical concern, but must not panic either.
pub(super) fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The name of a control character that has no place in a ruleset or table file: C0
/// controls other than tab, line feed and carriage return, DEL, and C1 controls.
/// `None` for every other character.
pub(super) fn control_name(ch: char) -> Option<String> {
    const C0: [&str; 32] = [
        "NUL", "SOH", "STX", "ETX", "EOT", "ENQ", "ACK", "BEL", "BS", "HT", "LF", "VT", "FF", "CR", "SO", "SI", "DLE",
        "DC1", "DC2", "DC3", "DC4", "NAK", "SYN", "ETB", "CAN", "EM", "SUB", "ESC", "FS", "GS", "RS", "US",
    ];
    let code = u32::from(ch);
    match ch {
        '\t' | '\n' | '\r' => None,
        _ if code < 0x20 => Some(format!("U+{code:04X} ({})", C0[code as usize])),
        '\u{7f}' => Some("U+007F (DEL)".to_owned()),
        '\u{80}'..='\u{9f}' => Some(format!("U+{code:04X}")),
        _ => None,
    }
}

/// Whether a byte starts a character [`control_name`] refuses (a C1 control is encoded
/// as 0xC2 0x80..=0x9F; `next` is the byte after `b`).
pub(super) fn is_control_start(b: u8, next: Option<u8>) -> bool {
    // Form feeds are whitespace: pf.conf files use them to separate sections.
    (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0c))
        || b == 0x7f
        || (b == 0xc2 && next.is_some_and(|n| (0x80..=0x9f).contains(&n)))
}

/// The first refused control character of `line` and its column (in characters, from 1).
pub(super) fn find_control(line: &str) -> Option<(u32, String)> {
    let bytes = line.as_bytes();
    let at = (0..bytes.len()).find(|&i| is_control_start(bytes[i], bytes.get(i + 1).copied()))?;
    let ch = line[at..].chars().next()?;
    Some((saturate(line[..at].chars().count() + 1), control_name(ch)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_named() {
        assert_eq!(control_name('\0').as_deref(), Some("U+0000 (NUL)"));
        assert_eq!(control_name('\u{1b}').as_deref(), Some("U+001B (ESC)"));
        assert_eq!(control_name('\u{7f}').as_deref(), Some("U+007F (DEL)"));
        assert_eq!(control_name('\u{85}').as_deref(), Some("U+0085"));
        assert_eq!(control_name('\t'), None);
        assert_eq!(control_name('é'), None);
        assert_eq!(find_control("ab\u{0}c").map(|(c, _)| c), Some(3));
        assert_eq!(find_control("é\u{85}").map(|(c, _)| c), Some(2));
        assert_eq!(find_control("a\tb\r"), None);
    }

    #[test]
    fn only_regular_files_within_the_cap() {
        let dir = std::env::temp_dir().join(format!("xdpwall-source-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("f");
        std::fs::write(&file, b"12345").unwrap();
        assert_eq!(read(&file, 5).unwrap(), b"12345");
        assert_eq!(read(&file, 4).unwrap_err().to_string(), "it is 5 bytes; the limit is 4 bytes");
        assert_eq!(read(&dir, 5).unwrap_err().to_string(), "it is a directory, not a regular file");
        assert_eq!(
            read(Path::new("/dev/zero"), 5).unwrap_err().to_string(),
            "it is a character device, not a regular file"
        );
        assert_eq!(read(&dir.join("missing"), 5).unwrap_err().to_string(), "No such file or directory");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn files_are_opened_without_blocking() {
        use std::os::fd::AsRawFd;
        let path = std::env::temp_dir().join(format!("xdpwall-nb-{}", std::process::id()));
        std::fs::write(&path, b"x").unwrap();
        let file = open_without_blocking(&path).unwrap();
        // SAFETY: F_GETFL on an open descriptor.
        let flags = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) };
        assert_ne!(flags & libc::O_NONBLOCK, 0, "flags {flags:#x}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_fifo_swapped_in_after_the_check_does_not_block() {
        let dir = std::env::temp_dir().join(format!("xdpwall-swap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("rules.conf");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // No writer: a blocking open would wait here. Should it (a regression), the
        // helper opens the write end, which ends the wait, and the assertion fails
        // instead of the test hanging.
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let helper = {
            let (done, fifo) = (done.clone(), fifo.clone());
            std::thread::spawn(move || {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(&fifo);
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            })
        };
        let result = read_checked_again(&fifo, 100);
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        helper.join().unwrap();
        assert_eq!(result.unwrap_err().to_string(), "it is a named pipe (FIFO), not a regular file");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
