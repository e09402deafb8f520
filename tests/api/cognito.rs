//! The Cognito identity provider against moto's Cognito emulator (`moto_server`, a real HTTP server
//! speaking Cognito's wire protocol), driven through the same `/v1/auth/*` API as the local provider.
//! The pool and app client are created through the emulator's endpoint with the AWS SDK, as an
//! operator would with the AWS CLI.
//!
//! moto accepts any confirmation code, checks `SECRET_HASH` only on the refresh flow and signs with a
//! fixed key: the code checks and the hash are covered by unit tests on our side
//! (`accounts::cognito`, `accounts::cognito_jwks`).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aws_sdk_cognitoidentityprovider as cip;
use base64::Engine;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp};
use turumba::config::Settings;

use crate::invitations::token_from_mail;
use crate::mail::{python, start_smtp_server};

pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// moto's server on a free port; `None` (skipped, with the reason printed) without the test Python.
pub async fn start_moto() -> Option<Moto> {
    let python = python()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(&python)
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto starts (pip install 'moto[server]' into TURUMBA_TEST_PYTHON's venv)");
    let moto = Moto { child, endpoint: format!("http://127.0.0.1:{port}") };
    for _ in 0..150 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Some(moto);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("moto did not start on port {port}");
}

pub struct Pool {
    pub id: String,
    pub client_id: String,
    pub client_secret: String,
    pub admin: cip::Client,
}

impl Pool {
    /// Tokens straight from Cognito for another app client of the pool (or this one), bypassing the API.
    async fn sign_in(&self, client_id: &str, email: &str, password: &str) -> cip::types::AuthenticationResultType {
        let out = self
            .admin
            .initiate_auth()
            .client_id(client_id)
            .auth_flow(cip::types::AuthFlowType::UserPasswordAuth)
            .auth_parameters("USERNAME", email)
            .auth_parameters("PASSWORD", password)
            .send()
            .await
            .expect("InitiateAuth");
        out.authentication_result().unwrap().clone()
    }

    async fn new_client(&self) -> String {
        let c = self
            .admin
            .create_user_pool_client()
            .user_pool_id(&self.id)
            .client_name("other")
            .explicit_auth_flows(cip::types::ExplicitAuthFlowsType::AllowUserPasswordAuth)
            .send()
            .await
            .expect("CreateUserPoolClient");
        c.user_pool_client().unwrap().client_id().unwrap().to_string()
    }
}

/// A user pool that signs users in by e-mail, and an app client with a secret and the two flows the
/// API uses.
pub async fn create_pool(moto: &Moto) -> Pool {
    let conf = cip::Config::builder()
        .behavior_version(cip::config::BehaviorVersion::latest())
        .region(cip::config::Region::new("us-east-1"))
        .endpoint_url(&moto.endpoint)
        .credentials_provider(cip::config::Credentials::new("test", "test", None, None, "tests"))
        .build();
    let admin = cip::Client::from_conf(conf);
    let pool = admin
        .create_user_pool()
        .pool_name("turumba")
        .username_attributes(cip::types::UsernameAttributeType::Email)
        .auto_verified_attributes(cip::types::VerifiedAttributeType::Email)
        .send()
        .await
        .expect("CreateUserPool");
    let pool_id = pool.user_pool().and_then(|p| p.id()).unwrap().to_string();
    let client = admin
        .create_user_pool_client()
        .user_pool_id(&pool_id)
        .client_name("api")
        .generate_secret(true)
        .explicit_auth_flows(cip::types::ExplicitAuthFlowsType::AllowUserPasswordAuth)
        .explicit_auth_flows(cip::types::ExplicitAuthFlowsType::AllowRefreshTokenAuth)
        .send()
        .await
        .expect("CreateUserPoolClient");
    let c = client.user_pool_client().unwrap();
    Pool {
        id: pool_id,
        client_id: c.client_id().unwrap().to_string(),
        client_secret: c.client_secret().unwrap().to_string(),
        admin,
    }
}

async fn app_on(b: Backend, endpoint: &str, pool: &Pool) -> TestApp {
    app_with(b, endpoint, pool, |_| {}).await
}

async fn app_with(b: Backend, endpoint: &str, pool: &Pool, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let (endpoint, pool_id, client_id, secret) =
        (endpoint.to_string(), pool.id.clone(), pool.client_id.clone(), pool.client_secret.clone());
    TestApp::spawn_with(b, move |s| {
        tweak(s);
        s.identity.provider = "cognito".into();
        s.cognito.region = "us-east-1".into();
        s.cognito.user_pool_id = pool_id.clone();
        s.cognito.client_id = client_id;
        s.cognito.client_secret = Some(turumba::config::Secret::new(secret));
        // moto's tokens name AWS's host as their issuer (the default) while it serves the keys itself.
        s.cognito.jwks_url = Some(format!("{endpoint}/{pool_id}/.well-known/jwks.json"));
        s.cognito.endpoint = Some(endpoint);
    })
    .await
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

const PASSWORD: &str = "Correct-Horse-1";

async fn register_and_verify(app: &TestApp, email: &str) -> Value {
    let r = app
        .post("/v1/auth/register")
        .json(json!({"email": email, "password": PASSWORD, "full_name": "Abebe", "account_name": "Addis Clinic"}))
        .send()
        .await;
    r.expect(201, None);
    assert_eq!(r.data()["verification_required"], true);
    // Not confirmed at Cognito yet.
    app.post("/v1/auth/login")
        .json(json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .expect(403, Some("email_not_verified"));
    // Cognito cannot sign in on a code alone: the password comes with it.
    let r = app.post("/v1/auth/verify-email").json(json!({"email": email, "code": "123456"})).send().await;
    r.expect(422, None);
    assert_eq!(r.error_fields(), vec!["password"]);
    let r = app
        .post("/v1/auth/verify-email")
        .json(json!({"email": email, "code": "123456", "password": PASSWORD}))
        .send()
        .await;
    r.expect(200, None);
    r.data().clone()
}

async fn the_auth_api_runs_on_cognito(b: Backend) {
    let Some(moto) = start_moto().await else { return };
    let pool = create_pool(&moto).await;
    let app = app_on(b, &moto.endpoint, &pool).await;
    let email = "abebe@example.com";
    let tokens = register_and_verify(&app, email).await;
    let access = tokens["access_token"].as_str().unwrap().to_string();
    // A Cognito access token, verified against the pool's JWKS and linked to our user by its `sub`.
    let c = claims(&access);
    assert_eq!(c["token_use"], "access");
    assert_eq!(c["iss"], format!("https://cognito-idp.us-east-1.amazonaws.com/{}", pool.id));
    assert_eq!(c["client_id"], pool.client_id.as_str());
    let ctx = app.get("/v1/context").token(&access).send().await;
    ctx.expect(200, None);
    assert_eq!(ctx.data()["user"]["email"], email);
    assert_eq!(ctx.data()["accounts"][0]["name"], "Addis Clinic");
    assert_eq!(ctx.data()["accounts"][0]["role"]["name"], "admin");
    // Our JWKS publishes none of our keys: tokens are Cognito's.
    assert_eq!(app.get("/.well-known/jwks.json").send().await.body, json!({"keys": []}));

    // Same answers as the local provider for duplicates, wrong passwords and unknown users.
    app.post("/v1/auth/register")
        .json(json!({"email": email, "password": PASSWORD, "full_name": "A", "account_name": "B"}))
        .send()
        .await
        .expect(409, None);
    app.post("/v1/auth/login")
        .json(json!({"email": email, "password": "wrong-Password-1"}))
        .send()
        .await
        .expect(401, None);
    app.post("/v1/auth/login")
        .json(json!({"email": "nobody@example.com", "password": PASSWORD}))
        .send()
        .await
        .expect(401, None);
    let login = app.post("/v1/auth/login").json(json!({"email": email, "password": PASSWORD})).send().await;
    login.expect(200, None);
    assert_eq!(login.data()["user"]["email"], email);
    let refresh = login.data()["refresh_token"].as_str().unwrap().to_string();

    // Refresh (REFRESH_TOKEN_AUTH with the SECRET_HASH of the user's sub, which moto checks).
    let r = app.post("/v1/auth/refresh").json(json!({"refresh_token": refresh})).send().await;
    r.expect(200, None);
    let refreshed = r.data()["access_token"].as_str().unwrap().to_string();
    assert_eq!(claims(&refreshed)["sub"], c["sub"]);
    app.get("/v1/users/me").token(&refreshed).send().await.expect(200, None);
    app.post("/v1/auth/refresh").json(json!({"refresh_token": "not-a-token"})).send().await.expect(401, None);

    // Change password: a wrong current one is a field error; the new one signs in, the old no longer.
    let new_password = "Battery-Staple-2";
    let r = app
        .post("/v1/auth/change-password")
        .token(&refreshed)
        .json(json!({"current_password": "Wrong-Current-9", "new_password": new_password}))
        .send()
        .await;
    r.expect(422, None);
    assert_eq!(r.error_fields(), vec!["current_password"]);
    app.post("/v1/auth/change-password")
        .token(&refreshed)
        .json(json!({"current_password": PASSWORD, "new_password": new_password}))
        .send()
        .await
        .expect(204, None);
    app.post("/v1/auth/login").json(json!({"email": email, "password": PASSWORD})).send().await.expect(401, None);
    let login = app.post("/v1/auth/login").json(json!({"email": email, "password": new_password})).send().await;
    login.expect(200, None);

    // Logout with the access token: GlobalSignOut, and every token issued until now is void here too.
    let (access, refresh) = (
        login.data()["access_token"].as_str().unwrap().to_string(),
        login.data()["refresh_token"].as_str().unwrap().to_string(),
    );
    tokio::time::sleep(Duration::from_millis(1100)).await; // tokens carry whole seconds
    app.post("/v1/auth/logout").token(&access).json(json!({"refresh_token": refresh})).send().await.expect(204, None);
    app.get("/v1/users/me").token(&access).send().await.expect(401, None);
    app.get("/v1/users/me").token(&refreshed).send().await.expect(401, None);
    app.post("/v1/auth/refresh").json(json!({"refresh_token": refresh})).send().await.expect(401, None);

    // Forgot and reset password (Cognito delivers the code).
    app.post("/v1/auth/forgot-password").json(json!({"email": email})).send().await.expect(202, None);
    app.post("/v1/auth/forgot-password").json(json!({"email": "nobody@example.com"})).send().await.expect(202, None);
    let reset = "Reset-Password-3";
    app.post("/v1/auth/reset-password")
        .json(json!({"email": email, "code": "654321", "new_password": reset}))
        .send()
        .await
        .expect(204, None);
    let login = app.post("/v1/auth/login").json(json!({"email": email, "password": reset})).send().await;
    login.expect(200, None);
    app.get("/v1/users/me").token(login.data()["access_token"].as_str().unwrap()).send().await.expect(200, None);
}

async fn cognito_tokens_are_checked_like_ours(b: Backend) {
    let Some(moto) = start_moto().await else { return };
    let pool = create_pool(&moto).await;
    let app = app_on(b.clone(), &moto.endpoint, &pool).await;
    let tokens = register_and_verify(&app, "tigist@example.com").await;
    let access = tokens["access_token"].as_str().unwrap();
    // A tampered token, an unsigned one and garbage are refused.
    let (h, p, s) = {
        let parts: Vec<&str> = access.split('.').collect();
        (parts[0].to_string(), parts[1].to_string(), parts[2].to_string())
    };
    let mut forged = claims(access);
    forged["sub"] = json!("someone-else");
    let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(forged.to_string());
    app.get("/v1/users/me").token(&format!("{h}.{forged}.{s}")).send().await.expect(401, None);
    app.get("/v1/users/me").token(&format!("{h}.{p}.")).send().await.expect(401, None);
    app.get("/v1/users/me").token("garbage").send().await.expect(401, None);
    // Cognito's own tokens for our client: the access token works, the ID token is not an access token.
    let direct = pool.sign_in(&pool.client_id, "tigist@example.com", PASSWORD).await;
    app.get("/v1/users/me").token(direct.access_token().unwrap()).send().await.expect(200, None);
    app.get("/v1/users/me").token(direct.id_token().unwrap()).send().await.expect(401, None);
    // A valid token of another app client of the same pool is refused.
    let other_client = pool.new_client().await;
    let theirs = pool.sign_in(&other_client, "tigist@example.com", PASSWORD).await;
    app.get("/v1/users/me").token(theirs.access_token().unwrap()).send().await.expect(401, None);
    // A disabled user: 403 user_inactive, as the local provider answers.
    pool.admin.admin_disable_user().user_pool_id(&pool.id).username("tigist@example.com").send().await.unwrap();
    app.post("/v1/auth/login")
        .json(json!({"email": "tigist@example.com", "password": PASSWORD}))
        .send()
        .await
        .expect(403, Some("user_inactive"));
    // A valid token of another pool (another issuer) is refused.
    let other = create_pool(&moto).await;
    let other_app = app_on(b, &moto.endpoint, &other).await;
    let theirs = register_and_verify(&other_app, "other@example.com").await;
    app.get("/v1/users/me").token(theirs["access_token"].as_str().unwrap()).send().await.expect(401, None);
}

/// Invitations with Cognito users: registering through the link signs the invitee up with Cognito, and
/// verifying the e-mail with Cognito's code accepts the invitation (no account of their own is
/// created); an existing Cognito user accepts signed in.
async fn cognito_users_join_through_invitations(b: Backend) {
    let Some(moto) = start_moto().await else { return };
    let Some(py) = python() else { return };
    let smtp = start_smtp_server(&py, None).await;
    let pool = create_pool(&moto).await;
    let port = smtp.port;
    let app = app_with(b, &moto.endpoint, &pool, |s| {
        s.smtp.host = Some("127.0.0.1".into());
        s.smtp.port = Some(port);
        s.smtp.tls = "none".into();
        s.accounts.invitation_url = Some("https://app.example.org/invite/{token}".into());
    })
    .await;
    let owner = register_and_verify(&app, "owner@example.com").await;
    let owner_token = owner["access_token"].as_str().unwrap();
    let account = owner["user"]["default_account_id"].as_str().unwrap();
    let viewer = app.role_id_with(owner_token, account, "viewer").await;
    let invite = |email: &'static str| {
        app.post(&format!("/v1/accounts/{account}/invitations"))
            .token(owner_token)
            .json(json!({"email": email, "role_id": viewer}))
    };

    // A new user: signed up through the link, a member once the e-mail is verified.
    invite("newcomer@example.com").send().await.expect(201, None);
    let link = token_from_mail(&smtp, "newcomer@example.com", 1).await;
    let r = app
        .post(&format!("/v1/invitations/{link}/accept"))
        .json(json!({"full_name": "New Comer", "password": PASSWORD}))
        .send()
        .await;
    r.expect(202, None);
    assert_eq!(r.data()["verification_required"], true);
    app.post("/v1/auth/login")
        .json(json!({"email": "newcomer@example.com", "password": PASSWORD}))
        .send()
        .await
        .expect(403, Some("email_not_verified"));
    let v = app
        .post("/v1/auth/verify-email")
        .json(json!({"email": "newcomer@example.com", "code": "123456", "password": PASSWORD}))
        .send()
        .await;
    v.expect(200, None);
    assert_eq!(v.data()["user"]["default_account_id"], account);
    let ctx = app.get("/v1/context").token(v.data()["access_token"].as_str().unwrap()).send().await;
    ctx.expect(200, None);
    let accounts = ctx.data()["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 1, "only the account they were invited to: {}", ctx.body);
    assert_eq!((accounts[0]["id"].as_str(), accounts[0]["role"]["name"].as_str()), (Some(account), Some("viewer")));
    let list = app.get(&format!("/v1/accounts/{account}/invitations")).token(owner_token).send().await;
    assert_eq!(list.data()[0]["status"], "accepted", "{}", list.body);
    // The link is used up.
    app.post(&format!("/v1/invitations/{link}/accept"))
        .json(json!({"full_name": "Again", "password": PASSWORD}))
        .send()
        .await
        .expect(410, Some("invitation_used"));

    // An existing Cognito user accepts signed in.
    let guest = register_and_verify(&app, "guest@example.com").await;
    invite("guest@example.com").send().await.expect(201, None);
    let link = token_from_mail(&smtp, "guest@example.com", 1).await;
    let r =
        app.post(&format!("/v1/invitations/{link}/accept")).token(guest["access_token"].as_str().unwrap()).send().await;
    r.expect(200, None);
    assert_eq!(r.data()["account_id"], account);
}

async fn an_unreachable_pool_is_503(b: Backend) {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let admin = cip::Client::from_conf(
        cip::Config::builder()
            .behavior_version(cip::config::BehaviorVersion::latest())
            .region(cip::config::Region::new("us-east-1"))
            .build(),
    );
    let pool =
        Pool { id: "us-east-1_nothere".into(), client_id: "client".into(), client_secret: "secret".into(), admin };
    let app = app_on(b, &format!("http://127.0.0.1:{closed}"), &pool).await;
    let body = json!({"email": "x@example.com", "password": PASSWORD, "full_name": "X", "account_name": "Y"});
    app.post("/v1/auth/register").json(body).send().await.expect(503, Some("service_unavailable"));
    // Nothing half-created on our side.
    assert_eq!(crate::receipts::count(&app, "SELECT COUNT(*) FROM users").await, 0);
    app.post("/v1/auth/login")
        .json(json!({"email": "x@example.com", "password": PASSWORD}))
        .send()
        .await
        .expect(503, Some("service_unavailable"));
    // A token cannot be checked without the pool's keys.
    app.get("/v1/users/me").token("eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.e30.c2ln").send().await.expect(503, None);
}

both_backends!(
    the_auth_api_runs_on_cognito,
    cognito_tokens_are_checked_like_ours,
    cognito_users_join_through_invitations,
    an_unreachable_pool_is_503,
);
