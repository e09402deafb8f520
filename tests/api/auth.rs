//! Local identity: registration, login, throttling, refresh rotation, logout, passwords, JWT attacks.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use crate::helpers::{Backend, TestApp};

async fn registration_validates_and_rejects_duplicates(b: Backend) {
    let app = TestApp::spawn(b).await;
    let r = app
        .post("/v1/auth/register")
        .json(json!({"email": "not-an-email", "password": "short", "full_name": "", "account_name": "Org"}))
        .send()
        .await;
    r.expect(422, Some("validation_error"));
    assert_eq!(r.error_fields(), vec!["email", "full_name", "password"]);

    let body = json!({"email": "New.User@Example.com", "password": "long enough pw", "full_name": "New", "account_name": "Org"});
    let r = app.post("/v1/auth/register").json(body.clone()).send().await;
    r.expect(201, None);
    assert_eq!(r.data()["verification_required"], true);
    assert!(uuid::Uuid::parse_str(r.data()["user_id"].as_str().unwrap()).is_ok());
    // Same address in another case is the same user.
    let mut again = body.clone();
    again["email"] = json!("new.user@example.COM");
    app.post("/v1/auth/register").json(again).send().await.expect(409, Some("conflict"));

    // Unverified users cannot log in.
    let r = app
        .post("/v1/auth/login")
        .json(json!({"email": "new.user@example.com", "password": "long enough pw"}))
        .send()
        .await;
    r.expect(403, Some("email_not_verified"));
    // A wrong code is rejected with a clear error and five wrong tries burn the code.
    let r =
        app.post("/v1/auth/verify-email").json(json!({"email": "new.user@example.com", "code": "000000"})).send().await;
    r.expect(400, Some("invalid_code"));
    // Resending answers the same for unknown addresses.
    app.post("/v1/auth/resend-verification")
        .json(json!({"email": "new.user@example.com"}))
        .send()
        .await
        .expect(202, None);
    app.post("/v1/auth/resend-verification")
        .json(json!({"email": "nobody@example.com"}))
        .send()
        .await
        .expect(202, None);
    let r = app
        .post("/v1/auth/register")
        .json(
            json!({"email": "blank@example.com", "password": "long enough pw", "full_name": " ", "account_name": " "}),
        )
        .send()
        .await;
    r.expect(422, Some("validation_error"));
    assert_eq!(r.error_fields(), vec!["account_name", "full_name"]);
}

async fn wrong_password_and_unknown_email_get_the_same_answer(b: Backend) {
    let app = TestApp::spawn(b).await;
    let u = app.user("wendy").await;
    let wrong = app.post("/v1/auth/login").json(json!({"email": u.email, "password": "not the password"})).send().await;
    let unknown = app
        .post("/v1/auth/login")
        .json(json!({"email": "ghost@example.com", "password": "not the password"}))
        .send()
        .await;
    wrong.expect(401, Some("unauthorized"));
    unknown.expect(401, Some("unauthorized"));
    assert_eq!(wrong.body, unknown.body);
    let ok =
        app.post("/v1/auth/login").json(json!({"email": u.email.to_uppercase(), "password": u.password})).send().await;
    ok.expect(200, None);
    assert_eq!(ok.data()["token_type"], "Bearer");
    assert_eq!(ok.data()["expires_in"], 900);
    assert!(ok.data()["user"].get("password_hash").is_none());
}

async fn ten_failed_logins_in_fifteen_minutes_are_throttled(b: Backend) {
    let app = TestApp::spawn(b).await;
    let u = app.user("tom").await;
    for _ in 0..10 {
        app.post("/v1/auth/login")
            .json(json!({"email": u.email, "password": "wrong password"}))
            .send()
            .await
            .expect(401, None);
    }
    // Even the right password is refused while throttled.
    let r = app.post("/v1/auth/login").json(json!({"email": u.email, "password": u.password})).send().await;
    r.expect(429, Some("rate_limited"));
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 900, "{retry}");
    // Another e-mail is not affected.
    let other = app.user("tina").await;
    app.post("/v1/auth/login")
        .json(json!({"email": other.email, "password": other.password}))
        .send()
        .await
        .expect(200, None);
}

/// The lockout holds under a burst: 60 wrong passwords at once are evaluated at most 10 times (10 × 401,
/// 50 × 429); once locked, 25 parallel attempts that include the right password are all refused.
async fn parallel_logins_cannot_outrun_the_lockout(b: Backend) {
    use futures_util::future::join_all;
    let app = TestApp::spawn(b).await;
    let u = app.user("paula").await;
    let attempt = |password: String| {
        let req = app.post("/v1/auth/login").json(json!({"email": u.email, "password": password}));
        async move { req.send().await.status }
    };
    let statuses = join_all((0..60).map(|_| attempt("wrong password".into()))).await;
    let count = |code: u16| statuses.iter().filter(|s| **s == code).count();
    assert_eq!((count(401), count(429)), (10, 50), "{statuses:?}");
    let statuses =
        join_all((0..25).map(|i| attempt(if i == 12 { u.password.clone() } else { "wrong password".into() }))).await;
    assert!(statuses.iter().all(|s| *s == 429), "{statuses:?}");
}

/// Verification codes hold their 5 attempts under a burst too: 20 wrong codes at once are compared at
/// most 5 times (the code's attempt count ends at exactly 5).
async fn parallel_code_guesses_cannot_outrun_the_limit(b: Backend) {
    use futures_util::future::join_all;
    use sea_orm::ConnectionTrait;
    let app = TestApp::spawn(b).await;
    let body =
        json!({"email": "guess@example.com", "password": "long enough pw", "full_name": "G", "account_name": "Org"});
    app.post("/v1/auth/register").json(body).send().await.expect(201, None);
    let guesses = (0..20).map(|_| {
        let req = app.post("/v1/auth/verify-email").json(json!({"email": "guess@example.com", "code": "000000"}));
        async move { req.send().await }
    });
    for r in join_all(guesses).await {
        r.expect(400, Some("invalid_code"));
    }
    let backend = app.state.db.get_database_backend();
    let row = app
        .state
        .db
        .query_one_raw(sea_orm::Statement::from_string(backend, "SELECT attempts FROM auth_codes".to_string()))
        .await
        .unwrap()
        .unwrap();
    let attempts: i32 = row.try_get("", "attempts").unwrap();
    assert_eq!(attempts, 5);
}

async fn refresh_rotates_and_reuse_revokes_the_family(b: Backend) {
    let app = TestApp::spawn(b).await;
    let u = app.user("rita").await;
    let r1 = app.post("/v1/auth/refresh").json(json!({"refresh_token": u.refresh_token})).send().await;
    r1.expect(200, None);
    let second = r1.data()["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(second, u.refresh_token);
    let access = r1.data()["access_token"].as_str().unwrap().to_string();
    app.get("/v1/users/me").token(&access).send().await.expect(200, None);

    // Replaying the first (rotated) token is reuse: refused, and the whole family dies.
    app.post("/v1/auth/refresh").json(json!({"refresh_token": u.refresh_token})).send().await.expect(401, None);
    app.post("/v1/auth/refresh").json(json!({"refresh_token": second})).send().await.expect(401, None);
    app.post("/v1/auth/refresh").json(json!({"refresh_token": "made-up"})).send().await.expect(401, None);
}

async fn logout_revokes_the_refresh_family(b: Backend) {
    let app = TestApp::spawn(b).await;
    let u = app.user("lou").await;
    let other_session = app.login(&u.email, &u.password).await;
    app.post("/v1/auth/logout").json(json!({"refresh_token": u.refresh_token})).send().await.expect(204, None);
    app.post("/v1/auth/refresh").json(json!({"refresh_token": u.refresh_token})).send().await.expect(401, None);
    // Other logins (other families) keep working.
    app.post("/v1/auth/refresh")
        .json(json!({"refresh_token": other_session.refresh_token}))
        .send()
        .await
        .expect(200, None);
}

async fn change_password_checks_the_current_one(b: Backend) {
    let app = TestApp::spawn(b).await;
    let u = app.user("cara").await;
    let r = app
        .post("/v1/auth/change-password")
        .token(&u.token)
        .json(json!({"current_password": "wrong one here", "new_password": "a brand new password"}))
        .send()
        .await;
    r.expect(422, Some("validation_error"));
    assert_eq!(r.error_fields(), vec!["current_password"]);
    app.post("/v1/auth/change-password")
        .token(&u.token)
        .json(json!({"current_password": u.password, "new_password": "short"}))
        .send()
        .await
        .expect(422, None);
    app.post("/v1/auth/change-password")
        .token(&u.token)
        .json(json!({"current_password": u.password, "new_password": "a brand new password"}))
        .send()
        .await
        .expect(204, None);
    app.post("/v1/auth/login").json(json!({"email": u.email, "password": u.password})).send().await.expect(401, None);
    app.login(&u.email, "a brand new password").await;
    app.post("/v1/auth/change-password")
        .json(json!({"current_password": "x", "new_password": "a brand new password"}))
        .send()
        .await
        .expect(401, Some("unauthorized"));
}

async fn bad_tokens_are_401(b: Backend) {
    let app = TestApp::spawn(b).await;
    let u = app.user("jay").await;
    let parts: Vec<&str> = u.token.split('.').collect();
    // Tampered claims (another user id) with the original signature.
    let mut claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = json!(uuid::Uuid::now_v7());
    let tampered = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(claims.to_string()), parts[2]);
    // alg: none.
    let none = format!("{}.{}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#), parts[1]);
    // HS256 signed with the public key material (algorithm confusion).
    let jwks = app.get("/.well-known/jwks.json").send().await;
    let x = jwks.body["keys"][0]["x"].as_str().unwrap().to_string();
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(x.as_bytes()),
    )
    .unwrap();
    // A token from a server with another secret key.
    let other = TestApp::spawn(Backend::Sqlite).await;
    let foreign = other.user("jay").await;
    for (what, token) in
        [("tampered", tampered), ("none", none), ("hs256", hs), ("foreign", foreign.token), ("garbage", "abc".into())]
    {
        let r = app.get("/v1/users/me").token(&token).send().await;
        assert_eq!(r.status, 401, "{what} token accepted: {}", r.body);
        assert_eq!(r.body["error"], "unauthorized");
    }
    app.get("/v1/users/me").send().await.expect(401, Some("unauthorized"));
    app.get("/v1/users/me").header("Authorization", "Basic abc").send().await.expect(401, None);
    app.get("/v1/users/me").token(&u.token).send().await.expect(200, None);
}

async fn expired_tokens_are_401(b: Backend) {
    let app = TestApp::spawn(b).await;
    let u = app.user("eve").await;
    let user_id: uuid::Uuid = u.user_id.parse().unwrap();
    // Sign with the server's own key (read from its data dir), once valid and once already expired.
    let secret = turumba::secret::SecretKey::load_or_create(None, &app.data_dir()).unwrap();
    let fresh = turumba::modules::accounts::JwtKeys::new(&secret, 60).issue(user_id);
    app.get("/v1/users/me").token(&fresh).send().await.expect(200, None);
    let expired = turumba::modules::accounts::JwtKeys::new(&secret, -120).issue(user_id);
    app.get("/v1/users/me").token(&expired).send().await.expect(401, Some("unauthorized"));
}

async fn profile_can_be_read_and_patched(b: Backend) {
    let app = TestApp::spawn(b).await;
    let u = app.user("pat").await;
    let other = app.user("olga").await;
    let r = app.get("/v1/users/me").token(&u.token).send().await;
    r.expect(200, None);
    assert_eq!(r.data()["email"], u.email);
    let r = app
        .patch("/v1/users/me")
        .token(&u.token)
        .json(json!({"full_name": "Pat Q", "timezone": "Africa/Addis_Ababa", "locale": "am-ET", "phone": "+251911000000"}))
        .send()
        .await;
    r.expect(200, None);
    assert_eq!(r.data()["timezone"], "Africa/Addis_Ababa");
    assert_eq!(r.data()["full_name"], "Pat Q");
    // null clears; absent leaves alone.
    let r = app.patch("/v1/users/me").token(&u.token).json(json!({"phone": null})).send().await;
    r.expect(200, None);
    assert!(r.data()["phone"].is_null());
    assert_eq!(r.data()["locale"], "am-ET");
    let r = app.patch("/v1/users/me").token(&u.token).json(json!({"timezone": "Mars/Olympus"})).send().await;
    r.expect(422, None);
    assert_eq!(r.error_fields(), vec!["timezone"]);
    app.patch("/v1/users/me").token(&u.token).json(json!({"full_name": null})).send().await.expect(422, None);
    // Another tenant's account cannot become my default.
    let r =
        app.patch("/v1/users/me").token(&u.token).json(json!({"default_account_id": other.account_id})).send().await;
    r.expect(422, None);
    assert_eq!(r.error_fields(), vec!["default_account_id"]);
}

both_backends!(
    registration_validates_and_rejects_duplicates,
    wrong_password_and_unknown_email_get_the_same_answer,
    ten_failed_logins_in_fifteen_minutes_are_throttled,
    parallel_logins_cannot_outrun_the_lockout,
    parallel_code_guesses_cannot_outrun_the_limit,
    refresh_rotates_and_reuse_revokes_the_family,
    logout_revokes_the_refresh_family,
    change_password_checks_the_current_one,
    bad_tokens_are_401,
    expired_tokens_are_401,
    profile_can_be_read_and_patched,
);
