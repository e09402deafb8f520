//! Access tokens (EdDSA JWTs signed with a key derived from the server secret) and opaque refresh
//! tokens (random, stored only as a SHA-256 hash). The public key is published at
//! `/.well-known/jwks.json`.

use aws_lc_rs::rand::SecureRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::secret::SecretKey;

pub const ISSUER: &str = "turumba";
pub const AUDIENCE: &str = "turumba-api";

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: Uuid,
}

pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    kid: String,
    public_x: String,
    validation: Validation,
    pub access_ttl_secs: i64,
}

impl JwtKeys {
    pub fn new(secret: &SecretKey, access_ttl_secs: i64) -> Self {
        let seed = secret.derive("turumba/jwt/ed25519/v1");
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed).expect("a 32-byte seed is a valid Ed25519 key");
        let pkcs8 = pair.to_pkcs8().expect("Ed25519 keys serialise to PKCS#8");
        let public = pair.public_key().as_ref().to_vec();
        let kid = hex::encode(&Sha256::digest(&public)[..8]);
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        JwtKeys {
            encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
            decoding: DecodingKey::from_ed_der(&public),
            kid,
            public_x: URL_SAFE_NO_PAD.encode(&public),
            validation,
            access_ttl_secs,
        }
    }

    pub fn issue(&self, user_id: Uuid) -> String {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: user_id,
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now,
            exp: now + self.access_ttl_secs,
            jti: Uuid::now_v7(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding).expect("signing with a valid key cannot fail")
    }

    /// Verifies signature, algorithm (EdDSA only: `none` and HS* are rejected), expiry, issuer, audience.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).ok().map(|d| d.claims)
    }

    pub fn jwks(&self) -> Value {
        json!({ "keys": [{ "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": self.kid, "x": self.public_x }] })
    }
}

/// A new opaque refresh token (256 random bits, URL-safe).
pub fn new_refresh_token() -> String {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::SystemRandom::new().fill(&mut bytes).expect("system randomness is available");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A uniformly random 6-digit code.
pub fn new_code() -> String {
    let mut bytes = [0u8; 4];
    let rng = aws_lc_rs::rand::SystemRandom::new();
    loop {
        rng.fill(&mut bytes).expect("system randomness is available");
        let n = u32::from_le_bytes(bytes);
        // Reject the top sliver so every code is equally likely.
        if n < u32::MAX - (u32::MAX % 1_000_000) {
            return format!("{:06}", n % 1_000_000);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> JwtKeys {
        JwtKeys::new(&SecretKey::generate(), 900)
    }

    #[test]
    fn issued_tokens_verify() {
        let k = keys();
        let id = Uuid::now_v7();
        let claims = k.verify(&k.issue(id)).expect("valid");
        assert_eq!(claims.sub, id);
        assert_eq!(claims.exp - claims.iat, 900);
    }

    #[test]
    fn tokens_of_another_key_are_rejected() {
        let token = keys().issue(Uuid::now_v7());
        assert!(keys().verify(&token).is_none());
    }

    #[test]
    fn tampered_and_unsigned_tokens_are_rejected() {
        let k = keys();
        let token = k.issue(Uuid::now_v7());
        let parts: Vec<&str> = token.split('.').collect();
        let forged_claims = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(
                &json!({"sub": Uuid::now_v7(), "iss": ISSUER, "aud": AUDIENCE, "iat": 0, "exp": 4_000_000_000i64}),
            )
            .unwrap(),
        );
        assert!(k.verify(&format!("{}.{}.{}", parts[0], forged_claims, parts[2])).is_none());
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert!(k.verify(&format!("{none_header}.{}.", parts[1])).is_none());
        assert!(k.verify("garbage").is_none());
    }

    #[test]
    fn expired_tokens_are_rejected() {
        let k = keys();
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: Uuid::now_v7(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now - 1000,
            exp: now - 100,
            jti: Uuid::now_v7(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &k.encoding).unwrap();
        assert!(k.verify(&token).is_none());
    }

    #[test]
    fn jwks_publishes_the_verifying_key() {
        let k = keys();
        let jwks = k.jwks();
        let x = jwks["keys"][0]["x"].as_str().unwrap();
        let dk = DecodingKey::from_ed_components(x).unwrap();
        let token = k.issue(Uuid::now_v7());
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_audience(&[AUDIENCE]);
        assert!(jsonwebtoken::decode::<Claims>(&token, &dk, &v).is_ok());
    }

    #[test]
    fn codes_are_six_digits() {
        for _ in 0..100 {
            let c = new_code();
            assert_eq!(c.len(), 6);
            assert!(c.chars().all(|ch| ch.is_ascii_digit()));
        }
    }
}
