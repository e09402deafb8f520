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

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// Keys that sealed data before the current one (credential rotation): `TURUMBA_PREVIOUS_SECRET_KEYS`
    /// (base64, comma-separated) and the lines of `<data dir>/secret.key.previous`.
    pub fn load_previous(configured: Option<&str>, data_dir: &Path) -> Result<Vec<Self>, String> {
        let mut keys = Vec::new();
        for part in configured.unwrap_or_default().split(',').map(str::trim).filter(|s| !s.is_empty()) {
            keys.push(Self::from_base64(part).map_err(|e| format!("TURUMBA_PREVIOUS_SECRET_KEYS: {e}"))?);
        }
        let path = data_dir.join("secret.key.previous");
        if path.exists() {
            let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                keys.push(Self::from_base64(line).map_err(|e| format!("{}: {e}", path.display()))?);
            }
        }
        Ok(keys)
    }

    /// Rotates the key file in `data_dir`: the current key is appended to `secret.key.previous` and a new
    /// one written to `secret.key`. Returns the new key.
    pub fn rotate_file(data_dir: &Path) -> Result<Self, String> {
        let path = data_dir.join("secret.key");
        let old = Self::load_or_create(None, data_dir)?;
        let previous = data_dir.join("secret.key.previous");
        let mut text = std::fs::read_to_string(&previous).unwrap_or_default();
        text.push_str(&old.to_base64());
        text.push('\n');
        // The old key is kept before the new one replaces it: a crash in between loses nothing.
        replace_private(&previous, &text).map_err(|e| format!("cannot write {}: {e}", previous.display()))?;
        let new = Self::generate();
        replace_private(&path, &new.to_base64()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(new)
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

/// Writes a private file next to `path` and renames it over `path` (atomic on one file system).
fn replace_private(path: &Path, contents: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    write_private(&tmp, contents)?;
    std::fs::rename(&tmp, path)
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

/// Constant-time equality for secrets, codes and signatures (the one compare every module uses).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// SHA-256 of `input`, lower-case hex (stored digests of codes and tokens, request fingerprints).
pub fn sha256_hex(input: impl AsRef<[u8]>) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(input.as_ref()))
}

/// What replaces a secret in a text.
pub const REDACTED: &str = "[redacted]";

/// Secrets shorter than this are left alone: replacing every `ab` in a text would mangle it without
/// protecting anything a guess could not find.
pub const MIN_REDACTED_LEN: usize = 4;

/// `text` with every occurrence of each secret replaced by [`REDACTED`]: as written, percent-encoded
/// (how a URL path or query carries it), form-encoded and JSON-escaped (how an echoing API quotes it).
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for secret in secrets.iter().filter(|s| s.len() >= MIN_REDACTED_LEN) {
        let forms = [
            secret.to_string(),
            percent_encode(secret),
            form_urlencoded::byte_serialize(secret.as_bytes()).collect::<String>(),
            serde_json::to_string(secret).map(|q| q[1..q.len() - 1].to_string()).unwrap_or_default(),
            secret.replace('/', "\\/"),
        ];
        for form in forms {
            if !form.is_empty() && out.contains(&form) {
                out = out.replace(&form, REDACTED);
            }
            // Encoders differ in the case of their hex digits.
            let upper = form.to_uppercase();
            if form.contains('%') && out.to_uppercase().contains(&upper) {
                out = replace_ignoring_case(&out, &upper);
            }
        }
    }
    out
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Replaces every ASCII-case-insensitive match of `upper` (already upper-cased) in `text`.
fn replace_ignoring_case(text: &str, upper: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.to_ascii_uppercase().find(upper) {
        out.push_str(&rest[..at]);
        out.push_str(REDACTED);
        rest = &rest[at + upper.len()..];
    }
    out.push_str(rest);
    out
}

/// A random token of `len` characters from `[A-Za-z0-9]` (webhook secrets).
pub fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = vec![0u8; len];
    aws_lc_rs::rand::SystemRandom::new().fill(&mut bytes).expect("system randomness is available");
    // 62 symbols: the modulo bias (256 % 62) is irrelevant for a 190-bit token.
    bytes.iter().map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_the_old_key_as_previous() {
        let dir = tempfile::tempdir().unwrap();
        let old = SecretKey::load_or_create(None, dir.path()).unwrap();
        let new = SecretKey::rotate_file(dir.path()).unwrap();
        assert_ne!(old.0, new.0);
        assert_eq!(SecretKey::load_or_create(None, dir.path()).unwrap().0, new.0);
        let previous = SecretKey::load_previous(Some(&SecretKey::generate().to_base64()), dir.path()).unwrap();
        assert_eq!(previous.len(), 2);
        assert_eq!(previous[1].0, old.0);
        assert!(SecretKey::load_previous(Some("not base64!"), dir.path()).is_err());
        assert_eq!(random_token(32).len(), 32);
        assert_ne!(random_token(32), random_token(32));
    }

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
    fn redaction_covers_the_encoded_forms_of_a_secret() {
        let token = "123456:AAH-secret/x y";
        for text in [
            "GET /bot123456:AAH-secret/x y/getMe failed",
            "GET /bot123456%3AAAH-secret%2Fx%20y/getMe failed",
            "GET /bot123456%3aAAH-secret%2fx%20y/getMe failed",
            "body token=123456%3AAAH-secret%2Fx+y",
            r#"{"echo":"123456:AAH-secret\/x y"}"#,
        ] {
            let out = redact(text, &[token]);
            assert!(out.contains(REDACTED), "{text} -> {out}");
            assert!(!out.contains("AAH-secret"), "{text} -> {out}");
        }
        assert_eq!(redact("nothing here", &[token]), "nothing here");
        assert_eq!(redact("a b c", &["b"]), "a b c", "too short to redact");
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
