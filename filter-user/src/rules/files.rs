//! Where a ruleset's table files may come from. A file on disk names its tables
//! relative to its own directory, anywhere; a ruleset sent over the API is confined to
//! one directory: a relative path without `..` that, once symbolic links are resolved,
//! is still inside it, so a remote client cannot make the daemon read other files.
//! Every file a ruleset names (an `include`, when the language has one) must be
//! resolved through [`TableFiles::resolve`].

use std::path::{Component, Path, PathBuf};

/// How table file paths resolve.
#[derive(Debug, Clone, Copy)]
pub struct TableFiles<'a> {
    /// Relative paths are relative to this directory.
    pub base_dir: &'a Path,
    /// Only paths inside `base_dir` are allowed.
    pub confined: bool,
}

impl TableFiles<'_> {
    /// The file to read for `written`, or why it may not be read.
    pub(super) fn resolve(&self, written: &str) -> Result<PathBuf, String> {
        if !self.confined {
            return Ok(self.base_dir.join(written));
        }
        let outside = || {
            format!(
                "table files must be inside the table directory {} (a relative path without `..`)",
                self.base_dir.display()
            )
        };
        if !Path::new(written).components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)) {
            return Err(outside());
        }
        let root =
            self.base_dir.canonicalize().map_err(|e| format!("table directory {}: {e}", self.base_dir.display()))?;
        let path = root.join(written);
        // A symbolic link inside the directory may point out of it.
        match path.canonicalize() {
            Ok(real) if real.starts_with(&root) => Ok(real),
            Ok(_) => Err(outside()),
            // Missing: reading it gives the usual message.
            Err(_) => Ok(path),
        }
    }
}
