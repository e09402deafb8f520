//! The [`IdentityProvider`] interface (SPEC §3.1): who owns a user's password, codes and tokens. Two
//! implementations: [`super::local_identity::LocalIdentity`] (argon2id hashes, our own codes and EdDSA
//! tokens; the default) and [`super::cognito::CognitoIdentity`] (Amazon Cognito through the AWS SDK,
//! tokens verified against the pool's JWKS).
//!
//! Whichever runs, Turumba's own users table, accounts, memberships, the login lockout and the
//! `/v1/auth/*` API stay in [`super::service::Accounts`] (`identity.rs`), which calls a provider for the
//! credential steps only. A Cognito user is linked to our row by its `sub` (`users.provider_subject`);
//! the e-mail always comes from our table.

use async_trait::async_trait;
use serde_json::Value;
use uuid::Uuid;

use super::entity::user;
use crate::error::AppResult;

/// What a provider keeps of a new user on our side.
pub struct Credential {
    /// The argon2id hash (local provider).
    pub password_hash: Option<String>,
    /// The user's id at the provider (Cognito `sub`).
    pub subject: Option<String>,
}

/// Tokens a provider issued itself when it checked a password or a refresh token (Cognito).
pub struct IssuedTokens {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
    /// The provider's id of the user the tokens are for.
    pub subject: String,
}

/// The outcome of a successful password or refresh-token check.
pub enum Proof {
    /// Proven; the provider issues the session when asked (local: a refresh family to continue or start).
    Pending { family: Option<Uuid> },
    /// Proven, and the provider already issued these tokens.
    Issued(IssuedTokens),
}

/// A session handed to the client.
pub struct Session {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
}

/// Who a verified access token is for.
pub struct TokenSubject {
    pub user_id: Uuid,
    /// Seconds since the epoch (compared with `users.tokens_valid_after`).
    pub issued_at: i64,
}

#[async_trait]
pub trait IdentityProvider: Send + Sync {
    /// `local` or `cognito`.
    fn name(&self) -> &'static str;

    /// Creates the credential of a new, unverified user whose code the provider delivers
    /// ([`Self::send_verification_code`]).
    async fn sign_up(&self, email: &str, password: &str, full_name: &str) -> AppResult<Credential>;

    /// Creates the credential of a user whose e-mail is already proven (an invitation's link, the
    /// operator's CLI).
    async fn create_verified(&self, email: &str, password: &str, full_name: &str) -> AppResult<Credential>;

    /// Delivers a verification code to a user who is not verified yet: `first` right after sign-up
    /// (Cognito sent it already), otherwise a resend.
    async fn send_verification_code(&self, user: &user::Model, first: bool) -> AppResult<()>;

    /// Checks `user`'s verification code; the provider's side of the user is confirmed after it.
    async fn confirm_sign_up(&self, user: &user::Model, code: &str) -> AppResult<()>;

    /// Whether a user can sign in only once the provider's own code confirmed their address (Cognito):
    /// an address proven otherwise (an invitation's link) still needs that code.
    fn confirms_email_itself(&self) -> bool;

    /// Whether verifying an e-mail needs the password to sign the user in (Cognito cannot issue tokens
    /// on a confirmation code alone).
    fn verification_needs_password(&self) -> bool;

    /// Checks an e-mail's password; `user` is our row for that e-mail, if any. Wrong → 401.
    async fn check_password(&self, email: &str, password: &str, user: Option<&user::Model>) -> AppResult<Proof>;

    /// The session of a proven user.
    async fn start_session(&self, user_id: Uuid, proof: Proof) -> AppResult<Session>;

    /// Checks a refresh token: the user it belongs to and the proof to continue the session with.
    async fn redeem_refresh_token(&self, refresh_token: &str) -> AppResult<(Uuid, Proof)>;

    /// Ends the session of a refresh token (and, where the provider signs out globally, every session
    /// of the user: the access token of the request names the user then).
    async fn sign_out(&self, refresh_token: &str, access_token: Option<&str>) -> AppResult<Option<Uuid>>;

    /// Delivers a password-reset code.
    async fn send_reset_code(&self, user: &user::Model) -> AppResult<()>;

    /// Checks a reset code and sets the new password; the new hash to store, if the provider keeps one
    /// with us.
    async fn confirm_reset(&self, user: &user::Model, code: &str, new_password: &str) -> AppResult<Option<String>>;

    /// Changes a signed-in user's password (`access_token` is the request's); the new hash to store, if
    /// any. A wrong current password → 422 on `current_password`.
    async fn change_password(
        &self,
        user: &user::Model,
        access_token: &str,
        current: &str,
        new_password: &str,
    ) -> AppResult<Option<String>>;

    /// Verifies an access token and names its user (401 for any fault of the token).
    async fn token_subject(&self, access_token: &str) -> AppResult<TokenSubject>;

    /// The keys that verify this provider's access tokens at `/.well-known/jwks.json` (Cognito's are
    /// the pool's: none of ours).
    fn jwks(&self) -> Value;
}

/// Access tokens whose signature a provider checked, with their user, `iat` and `exp`: a client sends the
/// same token for its whole lifetime, and the signature check was the largest cost of an authenticated
/// read. Only valid tokens enter; each is used only until its `exp`. Revocation does not depend on it
/// (`tokens_valid_after` is read with the user row every request loads).
pub struct VerifiedTokens(moka::sync::Cache<String, (Uuid, i64, i64)>);

impl VerifiedTokens {
    /// Tokens remembered per process.
    const CAPACITY: u64 = 100_000;

    /// `longest`: the longest lifetime a token can have (entries go at the latest then).
    pub fn new(longest: std::time::Duration) -> Self {
        VerifiedTokens(moka::sync::Cache::builder().max_capacity(Self::CAPACITY).time_to_live(longest).build())
    }

    /// The subject of a token checked before, unless it has expired since.
    pub fn get(&self, token: &str) -> Option<TokenSubject> {
        let (user_id, issued_at, exp) = self.0.get(token)?;
        (exp > chrono::Utc::now().timestamp()).then_some(TokenSubject { user_id, issued_at })
    }

    /// Remembers a token just checked (valid until `exp`).
    pub fn remember(&self, token: &str, subject: &TokenSubject, exp: i64) {
        self.0.insert(token.to_string(), (subject.user_id, subject.issued_at, exp));
    }
}
