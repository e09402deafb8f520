//! Verification of Amazon Cognito tokens against the user pool's JWKS (SPEC §3.1), locally: RS256 only;
//! the keys are fetched once and cached; a token with an unknown `kid` (the pool rotated its keys)
//! refreshes them — at most once per [`MIN_REFRESH`], so a flood of made-up kids cannot hammer the
//! JWKS endpoint; then `exp`, the issuer, `token_use` and the audience (`aud` of an ID token,
//! `client_id` of an access token) against the configured app client ids. The JWKS URL and the
//! expected issuer are separate settings (a proxy or an emulator serves the keys elsewhere).
//!
//! The verifying half of the Cognito identity provider (`cognito.rs`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::error::AppError;

/// Least time between two JWKS fetches caused by unknown key ids.
pub const MIN_REFRESH: Duration = Duration::from_secs(60);

/// Which token a caller must present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenUse {
    Access,
    Id,
}

impl TokenUse {
    fn as_str(self) -> &'static str {
        match self {
            TokenUse::Access => "access",
            TokenUse::Id => "id",
        }
    }
}

/// The claims Turumba reads from a Cognito token (the e-mail never: it comes from our users table).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct CognitoClaims {
    /// The Cognito user's id: our users are linked by it.
    pub sub: String,
    pub token_use: String,
    pub exp: i64,
    pub iss: String,
    /// ID tokens: the app client id.
    #[serde(default)]
    pub aud: Option<String>,
    /// Access tokens: the app client id.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Issued at (seconds since the epoch).
    #[serde(default)]
    pub iat: Option<i64>,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kid: String,
    kty: String,
    #[serde(default)]
    alg: Option<String>,
    n: String,
    e: String,
}

#[derive(Default)]
struct KeySet {
    keys: HashMap<String, DecodingKey>,
    fetched: Option<Instant>,
}

pub struct CognitoVerifier {
    jwks_url: String,
    issuer: String,
    client_ids: Vec<String>,
    http: reqwest::Client,
    keys: tokio::sync::Mutex<KeySet>,
    min_refresh: Duration,
}

fn invalid(why: &str) -> AppError {
    tracing::debug!(why, "Cognito token refused");
    AppError::Unauthorized("invalid or expired token".into())
}

impl CognitoVerifier {
    pub fn new(jwks_url: &str, issuer: &str, client_ids: Vec<String>) -> Self {
        CognitoVerifier {
            jwks_url: jwks_url.to_string(),
            issuer: issuer.to_string(),
            client_ids,
            http: reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("an HTTP client"),
            keys: Default::default(),
            min_refresh: MIN_REFRESH,
        }
    }

    /// Verifies `token` as a token of kind `want`: 401 for anything wrong with it, 503 when the keys
    /// cannot be fetched.
    pub async fn verify(&self, token: &str, want: TokenUse) -> Result<CognitoClaims, AppError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("not a JWT"))?;
        if header.alg != Algorithm::RS256 {
            return Err(invalid("not RS256"));
        }
        let kid = header.kid.ok_or_else(|| invalid("no kid"))?;
        let key = self.key(&kid).await?.ok_or_else(|| invalid("unknown kid"))?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&self.issuer]);
        validation.validate_aud = false; // access tokens carry `client_id`, not `aud`: checked below
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = 5;
        let claims = jsonwebtoken::decode::<CognitoClaims>(token, &key, &validation)
            .map_err(|_| invalid("signature, expiry or issuer"))?
            .claims;
        if claims.token_use != want.as_str() {
            return Err(invalid("token_use"));
        }
        let client = match want {
            TokenUse::Id => claims.aud.as_deref(),
            TokenUse::Access => claims.client_id.as_deref(),
        };
        if !client.is_some_and(|c| self.client_ids.iter().any(|id| id == c)) {
            return Err(invalid("audience"));
        }
        Ok(claims)
    }

    /// The key with this id: from the cache, else after one refresh (if none happened lately).
    async fn key(&self, kid: &str) -> Result<Option<DecodingKey>, AppError> {
        let mut set = self.keys.lock().await;
        if let Some(k) = set.keys.get(kid) {
            return Ok(Some(k.clone()));
        }
        if set.fetched.is_some_and(|at| at.elapsed() < self.min_refresh) {
            return Ok(None);
        }
        *set = self.fetch().await?;
        Ok(set.keys.get(kid).cloned())
    }

    async fn fetch(&self) -> Result<KeySet, AppError> {
        let unavailable = |e: String| AppError::ServiceUnavailable(format!("the Cognito JWKS cannot be read: {e}"));
        let resp = self.http.get(&self.jwks_url).send().await.map_err(|e| unavailable(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(unavailable(format!("HTTP {}", resp.status())));
        }
        let jwks: Jwks = resp.json().await.map_err(|e| unavailable(e.to_string()))?;
        let keys = jwks
            .keys
            .into_iter()
            .filter(|k| k.kty == "RSA" && k.alg.as_deref().is_none_or(|a| a == "RS256"))
            .filter_map(|k| DecodingKey::from_rsa_components(&k.n, &k.e).ok().map(|d| (k.kid, d)))
            .collect();
        Ok(KeySet { keys, fetched: Some(Instant::now()) })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::{Value, json};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Test-only RSA keys (PKCS#1 DER), never used outside these tests.
    const KEY: &[u8] = include_bytes!("../../../tests/fixtures/cognito-test-rsa.der");
    const OTHER_KEY: &[u8] = include_bytes!("../../../tests/fixtures/cognito-test-rsa-other.der");
    /// The modulus of `KEY` (base64url), as a pool's JWKS publishes it.
    const N: &str = "i6tnT98PneXJxh8gvuWHO4VkuLWyXIu5GMM2GrNHx8fTPgJRDcx3A91pj7l2a8rigFWDfNentkYbeoaYbtXNDihf-yz36bKIFXkBkaWdqEZWLGut8Ei1EH2zyfz0uIopn0WX1dsInJfF8A5LDn-MHCcr-3ICxYLPqWguoZj3wgcmiWS3Mrz2D1X5MrAIYp03C3mU0dQXLX8vycZCSyA1CHuXkScjm5yIigTo_qdPNGweuqMxyTuSE5ymVCIQdJCu_VonxnO0zjz5X10AFfL1tUbbWAtI_gHtwrLlIXjjQlCSmny1k-0IMy6-9Nj9RFbnKMm2fj0axBQz7NrUdem7UQ";
    const ISS: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_TEST";
    const CLIENT: &str = "app-client-1";

    /// A JWKS endpoint on a free local port that counts its requests; `kids` are served with KEY.
    async fn jwks_server(kids: Arc<std::sync::Mutex<Vec<&'static str>>>) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else { break };
                counter.fetch_add(1, Ordering::SeqCst);
                let mut buf = [0u8; 2048];
                let _ = sock.read(&mut buf).await;
                let keys: Vec<Value> = kids
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|kid| json!({"kid": kid, "kty": "RSA", "alg": "RS256", "use": "sig", "n": N, "e": "AQAB"}))
                    .collect();
                let body = json!({ "keys": keys }).to_string();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            }
        });
        (url, hits)
    }

    fn token(key: &[u8], kid: &str, claims: Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_rsa_der(key)).unwrap()
    }

    fn access(extra: Value) -> Value {
        let mut c = json!({"sub": "c0ffee", "token_use": "access", "client_id": CLIENT, "iss": ISS,
                           "exp": chrono::Utc::now().timestamp() + 600, "username": "c0ffee"});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }

    #[tokio::test]
    async fn tokens_are_checked_for_signature_issuer_use_and_audience() {
        let kids = Arc::new(std::sync::Mutex::new(vec!["k1"]));
        let (url, _) = jwks_server(kids).await;
        let v = CognitoVerifier::new(&url, ISS, vec![CLIENT.into()]);
        let ok = v.verify(&token(KEY, "k1", access(json!({}))), TokenUse::Access).await.unwrap();
        assert_eq!((ok.sub.as_str(), ok.client_id.as_deref()), ("c0ffee", Some(CLIENT)));
        let id = json!({"token_use": "id", "aud": CLIENT, "client_id": null});
        assert!(v.verify(&token(KEY, "k1", access(id.clone())), TokenUse::Id).await.is_ok());

        let refused = |t: String, want: TokenUse| {
            let v = &v;
            async move { matches!(v.verify(&t, want).await, Err(AppError::Unauthorized(_))) }
        };
        assert!(
            refused(token(KEY, "k1", access(id)), TokenUse::Access).await,
            "an ID token where an access token is needed"
        );
        assert!(
            refused(
                token(KEY, "k1", access(json!({"iss": "https://cognito-idp.eu-west-1.amazonaws.com/other"}))),
                TokenUse::Access
            )
            .await,
            "another pool"
        );
        assert!(
            refused(token(KEY, "k1", access(json!({"client_id": "another-client"}))), TokenUse::Access).await,
            "another client"
        );
        assert!(
            refused(token(KEY, "k1", access(json!({"token_use": "id", "aud": "another-client"}))), TokenUse::Id).await,
            "another audience"
        );
        assert!(
            refused(token(KEY, "k1", access(json!({"exp": chrono::Utc::now().timestamp() - 60}))), TokenUse::Access)
                .await,
            "expired"
        );
        assert!(refused(token(OTHER_KEY, "k1", access(json!({}))), TokenUse::Access).await, "signed with another key");
        // alg none and HS256 with the public modulus as the secret never pass.
        let mut parts: Vec<String> = token(KEY, "k1", access(json!({}))).split('.').map(str::to_string).collect();
        parts[0] = base64_url(r#"{"alg":"none","kid":"k1"}"#);
        assert!(refused(format!("{}.{}.", parts[0], parts[1]), TokenUse::Access).await, "alg none");
        let mut hs = Header::new(Algorithm::HS256);
        hs.kid = Some("k1".into());
        let forged = jsonwebtoken::encode(&hs, &access(json!({})), &EncodingKey::from_secret(N.as_bytes())).unwrap();
        assert!(refused(forged, TokenUse::Access).await, "HS256 confusion");
        assert!(refused("not.a.token".into(), TokenUse::Access).await);
    }

    fn base64_url(s: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    #[tokio::test]
    async fn an_unknown_kid_refreshes_the_keys_once_per_interval() {
        let kids = Arc::new(std::sync::Mutex::new(vec!["k1"]));
        let (url, hits) = jwks_server(kids.clone()).await;
        let mut v = CognitoVerifier::new(&url, ISS, vec![CLIENT.into()]);
        v.min_refresh = Duration::from_millis(300);
        assert!(v.verify(&token(KEY, "k1", access(json!({}))), TokenUse::Access).await.is_ok());
        assert!(v.verify(&token(KEY, "k1", access(json!({}))), TokenUse::Access).await.is_ok());
        assert_eq!(hits.load(Ordering::SeqCst), 1, "the keys are cached");
        // A flood of made-up kids costs one fetch per interval, not one per token.
        for i in 0..50 {
            let t = token(KEY, &format!("bogus-{i}"), access(json!({})));
            assert!(v.verify(&t, TokenUse::Access).await.is_err());
        }
        assert_eq!(hits.load(Ordering::SeqCst), 1, "inside the interval nothing is fetched");
        // The pool rotates its keys: after the interval the new kid is fetched once and then cached.
        kids.lock().unwrap().push("k2");
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(v.verify(&token(KEY, "k2", access(json!({}))), TokenUse::Access).await.is_ok());
        assert!(v.verify(&token(KEY, "k2", access(json!({}))), TokenUse::Access).await.is_ok());
        assert_eq!(hits.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_unreachable_jwks_is_503_not_401() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let v = CognitoVerifier::new(&format!("http://127.0.0.1:{port}/jwks"), ISS, vec![CLIENT.into()]);
        let err = v.verify(&token(KEY, "k1", access(json!({}))), TokenUse::Access).await.unwrap_err();
        assert!(matches!(err, AppError::ServiceUnavailable(_)), "{err:?}");
    }
}
