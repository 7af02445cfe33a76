//! Reading source files: whole-file reads, readable I/O reasons, and UTF-8 decoding
//! whose error points at the first bad byte.

use std::io;
use std::path::Path;

use super::ast::Pos;
use super::error::RulesError;

/// Reads a whole file; on failure returns the reason as a short phrase.
pub(super) fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| io_reason(&e))
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
