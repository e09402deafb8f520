//! The server secret key: 32 bytes from `TURUMBA_SECRET_KEY` (base64) or generated on first start into
//! `<data dir>/secret.key` (mode 0600). Purpose-specific keys (JWT signing, later credential
//! encryption) are derived from it with HMAC-SHA256, so one secret serves every use without reuse.

use std::path::Path;

use aws_lc_rs::{hmac, rand::SecureRandom};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}

impl SecretKey {
    pub fn from_base64(value: &str) -> Result<Self, String> {
        let bytes = STANDARD.decode(value.trim()).map_err(|_| "TURUMBA_SECRET_KEY is not valid base64".to_string())?;
        let key: [u8; 32] =
            bytes.try_into().map_err(|_| "TURUMBA_SECRET_KEY must decode to exactly 32 bytes".to_string())?;
        Ok(SecretKey(key))
    }

    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        aws_lc_rs::rand::SystemRandom::new().fill(&mut key).expect("system randomness is available");
        SecretKey(key)
    }

    /// The configured key, else the one stored in the data dir, else a new one written there.
    pub fn load_or_create(configured: Option<&str>, data_dir: &Path) -> Result<Self, String> {
        if let Some(value) = configured {
            return Self::from_base64(value);
        }
        let path = data_dir.join("secret.key");
        if path.exists() {
            let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            return Self::from_base64(&text).map_err(|e| format!("{}: {e}", path.display()));
        }
        std::fs::create_dir_all(data_dir).map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
        let key = Self::generate();
        write_private(&path, &STANDARD.encode(key.0)).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        tracing::info!(path = %path.display(), "generated a new secret key");
        Ok(key)
    }

    /// A 32-byte key for one purpose, e.g. `derive("jwt-ed25519")`.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.0);
        let tag = hmac::sign(&key, purpose.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(contents.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_is_persisted_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = SecretKey::load_or_create(None, dir.path()).unwrap();
        let b = SecretKey::load_or_create(None, dir.path()).unwrap();
        assert_eq!(a.0, b.0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("secret.key")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn configured_key_must_be_32_bytes_of_base64() {
        assert!(SecretKey::from_base64("not base64!").is_err());
        assert!(SecretKey::from_base64(&STANDARD.encode([1u8; 16])).is_err());
        let k = SecretKey::from_base64(&STANDARD.encode([7u8; 32])).unwrap();
        assert_ne!(k.derive("a"), k.derive("b"));
        assert!(!format!("{k:?}").contains('7'));
    }
}
