//! Invitations (issue 17, item 3): the link comes from the mail the product really sent (aiosmtpd); the
//! invitee previews it, accepts logged in as the invited address or registers through it (verified by
//! it); a link works once, expires, is replaced by a new invitation and can be withdrawn.

use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, TestUser};
use crate::mail::{SmtpServer, mail_text, python, start_smtp_server};
use crate::receipts::count;

const LINK: &str = "https://app.example.org/invite/{token}";

async fn app_with_mail(b: Backend) -> Option<(TestApp, SmtpServer)> {
    let smtp = start_smtp_server(&python()?, None).await;
    let port = smtp.port;
    let app = TestApp::spawn_with(b, |s| {
        s.smtp.host = Some("127.0.0.1".into());
        s.smtp.port = Some(port);
        s.smtp.tls = "none".into();
        s.accounts.invitation_url = Some(LINK.into());
    })
    .await;
    Some((app, smtp))
}

async fn invite(app: &TestApp, u: &TestUser, email: &str, role: &str) -> Value {
    let role_id = app.role_id(u, &u.account_id, role).await;
    let r = app
        .post(&format!("/v1/accounts/{}/invitations", u.account_id))
        .token(&u.token)
        .json(json!({"email": email, "role_id": role_id}))
        .send()
        .await;
    r.expect(201, None);
    r.data().clone()
}

/// The token in the n-th invitation mail to `to` (from the link it carries).
pub async fn token_from_mail(smtp: &SmtpServer, to: &str, nth: usize) -> String {
    let text = mail_text(&smtp.maildir, to, nth, "invited you").await;
    let re = regex::Regex::new(r"https://app\.example\.org/invite/([A-Za-z0-9_-]{43})").unwrap();
    re.captures(&text).map(|c| c[1].to_string()).unwrap_or_else(|| panic!("no invitation link in {text}"))
}

async fn a_new_user_registers_through_the_invitation(b: Backend) {
    let Some((app, smtp)) = app_with_mail(b).await else { return };
    let owner = app.user("owner").await;
    let inv = invite(&app, &owner, "New.Person@Example.com", "viewer").await;
    assert_eq!((inv["status"].clone(), inv["email"].clone()), (json!("pending"), json!("new.person@example.com")));
    assert!(inv.get("token").is_none() && inv.get("token_hash").is_none(), "{inv}");
    let token = token_from_mail(&smtp, "new.person@example.com", 1).await;
    let text = mail_text(&smtp.maildir, "new.person@example.com", 1, "invited you").await;
    assert!(text.contains("owner invited you to join owner org") && text.contains("as viewer"), "{text}");

    // Anyone holding the link sees where it leads.
    let p = app.get(&format!("/v1/invitations/{token}")).send().await;
    p.expect(200, None);
    assert_eq!(
        (p.data()["account_id"].clone(), p.data()["role_name"].clone(), p.data()["user_exists"].clone()),
        (json!(owner.account_id), json!("viewer"), json!(false))
    );
    assert_eq!(p.data()["invited_by"], "owner");

    // Registering through it: a verified user, member with the role, signed in at once.
    let bad = app
        .post(&format!("/v1/invitations/{token}/accept"))
        .json(json!({"full_name": "New", "password": "short"}))
        .send()
        .await;
    bad.expect(422, Some("validation_error"));
    assert_eq!(bad.error_fields(), vec!["password"]);
    let r = app
        .post(&format!("/v1/invitations/{token}/accept"))
        .json(json!({"full_name": "New Person", "password": "a long password"}))
        .send()
        .await;
    r.expect(201, None);
    let access = r.data()["access_token"].as_str().unwrap().to_string();
    assert_eq!(r.data()["user"]["default_account_id"], owner.account_id);
    let ctx = app.get("/v1/context").token(&access).send().await;
    assert_eq!(ctx.data()["active_account_id"], owner.account_id);
    assert_eq!(ctx.data()["accounts"][0]["role"]["name"], "viewer");
    app.get("/v1/contacts").token(&access).send().await.expect(200, None);
    app.post("/v1/contacts")
        .token(&access)
        .json(json!({"phone": "+251911000001"}))
        .send()
        .await
        .expect(403, Some("forbidden"));
    app.login("new.person@example.com", "a long password").await;

    // The link works once.
    app.get(&format!("/v1/invitations/{token}")).send().await.expect(410, Some("invitation_used"));
    app.post(&format!("/v1/invitations/{token}/accept"))
        .json(json!({"full_name": "Again", "password": "a long password"}))
        .send()
        .await
        .expect(410, Some("invitation_used"));
    let list = app.get(&format!("/v1/accounts/{}/invitations", owner.account_id)).token(&owner.token).send().await;
    assert_eq!(list.data()[0]["status"], "accepted");
    assert!(list.data()[0]["accepted_by"].is_string());
    // Only the token's hash is stored.
    assert_eq!(count(&app, &format!("SELECT COUNT(*) FROM invitations WHERE token_hash LIKE '%{token}%'")).await, 0);
}

async fn an_existing_user_accepts_logged_in_as_the_invited_address(b: Backend) {
    let Some((app, smtp)) = app_with_mail(b).await else { return };
    let owner = app.user("owner").await;
    let bob = app.user("bob").await;
    let eve = app.user("eve").await;
    invite(&app, &owner, &bob.email, "agent").await;
    let token = token_from_mail(&smtp, &bob.email, 1).await;
    let p = app.get(&format!("/v1/invitations/{token}")).send().await;
    assert_eq!(p.data()["user_exists"], true);
    let accept = || app.post(&format!("/v1/invitations/{token}/accept"));
    // Without logging in, an existing address cannot register again; another user cannot take it.
    accept()
        .json(json!({"full_name": "Bob", "password": "a long password"}))
        .send()
        .await
        .expect(409, Some("conflict"));
    accept().token(&eve.token).send().await.expect(403, Some("invitation_email_mismatch"));
    accept().token("not-a-token").send().await.expect(401, Some("unauthorized"));
    let r = accept().token(&bob.token).send().await;
    r.expect(200, None);
    assert_eq!(r.data()["account_id"], owner.account_id);
    let ctx = app.get("/v1/context").token(&bob.token).account(&owner.account_id).send().await;
    let joined = ctx.data()["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == owner.account_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(joined["role"]["name"], "agent");
    // Inviting a member again is a conflict.
    let role_id = app.role_id(&owner, &owner.account_id, "viewer").await;
    app.post(&format!("/v1/accounts/{}/invitations", owner.account_id))
        .token(&owner.token)
        .json(json!({"email": bob.email, "role_id": role_id}))
        .send()
        .await
        .expect(409, Some("conflict"));
}

async fn a_new_invitation_replaces_the_old_one_and_links_can_be_withdrawn_or_expire(b: Backend) {
    let Some((app, smtp)) = app_with_mail(b).await else { return };
    let owner = app.user("owner").await;
    let email = "guest@example.com";
    invite(&app, &owner, email, "viewer").await;
    let first = token_from_mail(&smtp, email, 1).await;
    let second_inv = invite(&app, &owner, email, "agent").await;
    let second = token_from_mail(&smtp, email, 2).await;
    assert_ne!(first, second);
    app.get(&format!("/v1/invitations/{first}")).send().await.expect(410, Some("invitation_revoked"));
    let p = app.get(&format!("/v1/invitations/{second}")).send().await;
    assert_eq!(p.data()["role_name"], "agent");
    // Withdrawn: the link stops working (and withdrawing twice changes nothing).
    let path = format!("/v1/accounts/{}/invitations/{}", owner.account_id, second_inv["id"].as_str().unwrap());
    app.delete(&path).token(&owner.token).send().await.expect(204, None);
    app.delete(&path).token(&owner.token).send().await.expect(204, None);
    app.post(&format!("/v1/invitations/{second}/accept"))
        .json(json!({"full_name": "G", "password": "a long password"}))
        .send()
        .await
        .expect(410, Some("invitation_revoked"));
    let r = app
        .get(&format!("/v1/accounts/{}/invitations?filter=status:eq:pending", owner.account_id))
        .token(&owner.token)
        .send()
        .await;
    assert_eq!(r.body["meta"]["total"], 0);

    // Expired: seven days later the link is gone and the list says so.
    let third_inv = invite(&app, &owner, email, "viewer").await;
    let third = token_from_mail(&smtp, email, 3).await;
    let db = &app.state.db;
    use sea_orm::ConnectionTrait;
    db.execute_raw(sea_orm::Statement::from_sql_and_values(
        db.get_database_backend(),
        match db.get_database_backend() {
            sea_orm::DbBackend::Postgres => "UPDATE invitations SET expires_at = $1 WHERE id = $2",
            _ => "UPDATE invitations SET expires_at = ? WHERE id = ?",
        },
        [
            (chrono::Utc::now() - chrono::Duration::seconds(1)).into(),
            uuid::Uuid::parse_str(third_inv["id"].as_str().unwrap()).unwrap().into(),
        ],
    ))
    .await
    .unwrap();
    app.get(&format!("/v1/invitations/{third}")).send().await.expect(410, Some("invitation_expired"));
    app.post(&format!("/v1/invitations/{third}/accept"))
        .json(json!({"full_name": "G", "password": "a long password"}))
        .send()
        .await
        .expect(410, Some("invitation_expired"));
    let r = app
        .get(&format!("/v1/accounts/{}/invitations/?sort=created_at:desc", owner.account_id))
        .token(&owner.token)
        .send()
        .await;
    assert_eq!(r.data()[0]["status"], "expired");
}

async fn invitations_are_tenant_scoped_and_validated(b: Backend) {
    let app = TestApp::spawn(b).await;
    let owner = app.user("owner").await;
    let z = app.user("zed").await;
    let inv = invite(&app, &owner, "someone@example.com", "viewer").await;
    let (aid, zid, iid) = (&owner.account_id, &z.account_id, inv["id"].as_str().unwrap());
    // Another tenant: 404 for every verb, and its own account never reaches this invitation.
    app.get(&format!("/v1/accounts/{aid}/invitations")).token(&z.token).send().await.expect(404, Some("not_found"));
    let zrole = app.role_id(&z, zid, "viewer").await;
    app.post(&format!("/v1/accounts/{aid}/invitations"))
        .token(&z.token)
        .json(json!({"email": "x@example.com", "role_id": zrole}))
        .send()
        .await
        .expect(404, Some("not_found"));
    app.delete(&format!("/v1/accounts/{aid}/invitations/{iid}"))
        .token(&z.token)
        .send()
        .await
        .expect(404, Some("not_found"));
    app.delete(&format!("/v1/accounts/{zid}/invitations/{iid}"))
        .token(&z.token)
        .send()
        .await
        .expect(404, Some("not_found"));
    let r = app.get(&format!("/v1/accounts/{zid}/invitations")).token(&z.token).send().await;
    assert_eq!(r.body["meta"]["total"], 0);
    let r = app.get(&format!("/v1/accounts/{aid}/invitations")).token(&owner.token).send().await;
    assert_eq!(r.body["meta"]["total"], 1);
    // A role of another account, a bad address, a member without members:manage.
    let r = app
        .post(&format!("/v1/accounts/{aid}/invitations"))
        .token(&owner.token)
        .json(json!({"email": "x@example.com", "role_id": zrole}))
        .send()
        .await;
    r.expect(422, Some("validation_error"));
    assert_eq!(r.error_fields(), vec!["role_id"]);
    let vrole = app.role_id(&owner, aid, "viewer").await;
    let r = app
        .post(&format!("/v1/accounts/{aid}/invitations"))
        .token(&owner.token)
        .json(json!({"email": "not an address", "role_id": vrole}))
        .send()
        .await;
    assert_eq!(r.error_fields(), vec!["email"]);
    let viewer = app.user("viewer").await;
    app.add_member(&owner, &viewer, "viewer").await;
    app.post(&format!("/v1/accounts/{aid}/invitations"))
        .token(&viewer.token)
        .json(json!({"email": "x@example.com", "role_id": vrole}))
        .send()
        .await
        .expect(403, Some("forbidden"));
    // Unknown tokens.
    app.get("/v1/invitations/not-a-real-token").send().await.expect(404, Some("not_found"));
    let r = app
        .post("/v1/invitations/not-a-real-token/accept")
        .json(json!({"full_name": "A", "password": "a long password"}))
        .send()
        .await;
    r.expect(404, Some("not_found"));
    app.post("/v1/invitations/not-a-real-token/accept")
        .raw("application/json", "{")
        .send()
        .await
        .expect(400, Some("bad_request"));
}

both_backends!(
    a_new_user_registers_through_the_invitation,
    an_existing_user_accepts_logged_in_as_the_invited_address,
    a_new_invitation_replaces_the_old_one_and_links_can_be_withdrawn_or_expire,
    invitations_are_tenant_scoped_and_validated,
);
