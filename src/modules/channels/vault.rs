//! The credential vault: AES-256-GCM under a key derived from the server secret. A sealed value is
//! `key id (4 bytes) ‖ nonce (12 bytes) ‖ ciphertext ‖ tag (16 bytes)`, and the channel id is bound in as
//! associated data, so a sealed blob copied onto another channel (or another tenant's) does not open.
//! The key id names which server secret sealed it: the vault holds the current secret and any previous
//! ones (`TURUMBA_PREVIOUS_SECRET_KEYS`), opens with whichever matches and always seals with the current
//! one, which is what `turumba admin rotate-key` relies on.

use std::sync::Arc;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};

use crate::secret::SecretKey;

const ID_LEN: usize = 4;
const TAG_LEN: usize = 16;

struct VaultKey {
    id: [u8; ID_LEN],
    key: LessSafeKey,
}

#[derive(Clone)]
pub struct Vault {
    /// The current key first.
    keys: Arc<Vec<VaultKey>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Vault({} keys, current {})", self.keys.len(), hex::encode(self.keys[0].id))
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum VaultError {
    #[error(
        "the credentials were sealed under an unknown key (id {0}); add the secret that sealed them to TURUMBA_PREVIOUS_SECRET_KEYS"
    )]
    UnknownKey(String),
    #[error("the sealed credentials are damaged or belong to another channel")]
    Corrupt,
}

fn vault_key(secret: &SecretKey) -> VaultKey {
    let material = secret.derive("channel-credentials-aes256gcm-v1");
    let id_material = secret.derive("channel-credentials-key-id-v1");
    let mut id = [0u8; ID_LEN];
    id.copy_from_slice(&id_material[..ID_LEN]);
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &material).expect("a 32-byte AES-256 key"));
    VaultKey { id, key }
}

impl Vault {
    pub fn new(current: &SecretKey, previous: &[SecretKey]) -> Self {
        let mut keys = vec![vault_key(current)];
        keys.extend(previous.iter().map(vault_key));
        Vault { keys: Arc::new(keys) }
    }

    /// Seals `plaintext` under the current key, bound to `context` (the channel id).
    pub fn seal(&self, context: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let current = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).expect("system randomness is available");
        let mut body = plaintext.to_vec();
        current
            .key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(context), &mut body)
            .expect("AES-GCM sealing does not fail for in-memory data");
        let mut out = Vec::with_capacity(ID_LEN + NONCE_LEN + body.len());
        out.extend_from_slice(&current.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        out
    }

    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, VaultError> {
        if sealed.len() < ID_LEN + NONCE_LEN + TAG_LEN {
            return Err(VaultError::Corrupt);
        }
        let (id, rest) = sealed.split_at(ID_LEN);
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let key = self.keys.iter().find(|k| k.id == id).ok_or_else(|| VaultError::UnknownKey(hex::encode(id)))?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| VaultError::Corrupt)?;
        let mut buf = body.to_vec();
        let plain = key.key.open_in_place(nonce, Aad::from(context), &mut buf).map_err(|_| VaultError::Corrupt)?;
        Ok(plain.to_vec())
    }

    /// Whether `sealed` was sealed under an older key (rotation re-seals those).
    pub fn is_current(&self, sealed: &[u8]) -> bool {
        sealed.len() >= ID_LEN && sealed[..ID_LEN] == self.keys[0].id
    }

    pub fn current_key_id(&self) -> String {
        hex::encode(self.keys[0].id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_and_binds_the_context() {
        let v = Vault::new(&SecretKey::generate(), &[]);
        let sealed = v.seal(b"channel-1", b"{\"bot_token\":\"123:abc\"}");
        assert!(!sealed.windows(7).any(|w| w == b"123:abc"), "the plaintext is not visible");
        assert_eq!(v.open(b"channel-1", &sealed).unwrap(), b"{\"bot_token\":\"123:abc\"}");
        assert_eq!(v.open(b"channel-2", &sealed), Err(VaultError::Corrupt), "another channel's context fails");
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(v.open(b"channel-1", &tampered), Err(VaultError::Corrupt));
        assert_eq!(v.open(b"channel-1", &sealed[..10]), Err(VaultError::Corrupt));
        assert_ne!(v.seal(b"c", b"same"), v.seal(b"c", b"same"), "a fresh nonce every time");
    }

    #[test]
    fn rotation_opens_old_blobs_and_seals_with_the_new_key() {
        let (old, new) = (SecretKey::generate(), SecretKey::generate());
        let before = Vault::new(&old, &[]);
        let sealed = before.seal(b"c", b"secret");
        let after_without_old = Vault::new(&new, &[]);
        assert!(matches!(after_without_old.open(b"c", &sealed), Err(VaultError::UnknownKey(_))));
        let after = Vault::new(&new, std::slice::from_ref(&old));
        assert!(!after.is_current(&sealed));
        assert_eq!(after.open(b"c", &sealed).unwrap(), b"secret");
        let resealed = after.seal(b"c", b"secret");
        assert!(after.is_current(&resealed));
        assert_eq!(Vault::new(&new, &[]).open(b"c", &resealed).unwrap(), b"secret");
    }
}
