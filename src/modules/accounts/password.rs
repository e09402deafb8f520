//! argon2id password hashing, always off the async executor (`spawn_blocking`).

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use crate::error::AppError;

pub const MIN_PASSWORD_LEN: u64 = 10;

pub async fn hash(password: String) -> Result<String, AppError> {
    tokio::task::spawn_blocking(move || Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()))
        .await
        .map_err(AppError::internal)?
        .map_err(AppError::internal)
}

/// Verifies against a stored hash. With no hash (unknown user) a dummy hash is checked so that the answer
/// takes the same time either way.
pub async fn verify(password: String, stored: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let stored = stored.unwrap_or_else(|| DUMMY_HASH.to_string());
        match PasswordHash::new(&stored) {
            Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
            Err(_) => false,
        }
    })
    .await
    .unwrap_or(false)
}

/// argon2id hash of a random string nobody knows.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$OLAYkSGQ/mQ6oTZx2vHgTRqVdPmpbbpXvzLgOFmpGms";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_minimum_is_the_enforced_one() {
        // The request schemas say `minLength: 10` (utoipa takes a literal there, not the constant).
        assert_eq!(MIN_PASSWORD_LEN, 10);
    }

    #[tokio::test]
    async fn hashes_verify_and_wrong_passwords_fail() {
        let h = hash("correct horse battery".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse battery".into(), Some(h.clone())).await);
        assert!(!verify("wrong horse battery".into(), Some(h)).await);
        assert!(!verify("anything".into(), None).await);
    }
}
