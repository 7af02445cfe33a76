//! The bearer token that every request to a non-loopback TCP listener must carry:
//! read from a file only its owner (root) may read, compared in constant time.

use std::{
    os::unix::fs::{MetadataExt as _, OpenOptionsExt as _},
    path::Path,
};

use anyhow::{Context, Result, bail};
use subtle::ConstantTimeEq as _;

/// Fewest bytes a token may have: shorter ones are guessable.
const MIN_TOKEN_BYTES: usize = 16;

/// A bearer token.
#[derive(Clone)]
pub struct Token(Vec<u8>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// Reads the token from `path`: a regular file of this user, mode 0600 or stricter,
    /// holding at least [`MIN_TOKEN_BYTES`] bytes (surrounding whitespace ignored).
    pub fn read(path: &Path) -> Result<Token> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(path)
            .with_context(|| format!("token file {}", path.display()))?;
        let meta = file.metadata().with_context(|| format!("token file {}", path.display()))?;
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        if !meta.is_file() {
            bail!("token file {}: not a regular file", path.display());
        }
        if meta.uid() != me || meta.mode() & 0o077 != 0 {
            bail!(
                "token file {}: must belong to this user and be readable by no one else (chmod 600), it is {:o}",
                path.display(),
                meta.mode() & 0o777
            );
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(file, 4096), &mut bytes)
            .with_context(|| format!("reading token file {}", path.display()))?;
        let token = String::from_utf8_lossy(&bytes).trim().as_bytes().to_vec();
        if token.len() < MIN_TOKEN_BYTES {
            bail!("token file {}: the token must have at least {MIN_TOKEN_BYTES} bytes", path.display());
        }
        Ok(Token(token))
    }

    /// Whether an `Authorization` header value is `Bearer <this token>`, in time that
    /// does not depend on where a wrong token differs.
    pub fn accepts(&self, header: Option<&[u8]>) -> bool {
        let Some(given) = header.and_then(|h| h.strip_prefix(b"Bearer ")) else { return false };
        bool::from(given.ct_eq(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn tokens_must_be_private_and_long() {
        let dir = std::env::temp_dir().join(format!("xdpwall-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "s3cret-s3cret-s3cret\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(Token::read(&file).unwrap_err().to_string().contains("chmod 600"));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let t = Token::read(&file).unwrap();
        assert!(t.accepts(Some(b"Bearer s3cret-s3cret-s3cret")));
        assert!(!t.accepts(Some(b"Bearer s3cret-s3cret-s3creT")));
        assert!(!t.accepts(Some(b"s3cret-s3cret-s3cret")));
        assert!(!t.accepts(None));
        std::fs::write(&file, "short").unwrap();
        assert!(Token::read(&file).unwrap_err().to_string().contains("at least 16 bytes"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
