//! Active account selection and cross-tenant isolation for every accounts resource and verb.

use serde_json::json;

use crate::helpers::{Backend, TestApp};

async fn context_lists_accounts_with_roles_and_selects_the_active_one(b: Backend) {
    let app = TestApp::spawn(b).await;
    let u = app.user("cleo").await;
    let r = app.get("/v1/context").token(&u.token).send().await;
    r.expect(200, None);
    assert_eq!(r.data()["active_account_id"], u.account_id);
    assert_eq!(r.data()["accounts"].as_array().unwrap().len(), 1);
    assert_eq!(r.data()["accounts"][0]["role"]["name"], "admin");
    assert_eq!(r.data()["accounts"][0]["role"]["permissions"]["*"], true);

    let second = app.post("/v1/accounts").token(&u.token).json(json!({"name": "Second"})).send().await;
    second.expect(201, None);
    let second_id = second.id();
    // Membership changes show at once.
    let r = app.get("/v1/context").token(&u.token).account(&second_id).send().await;
    assert_eq!(r.data()["accounts"].as_array().unwrap().len(), 2);
    assert_eq!(r.data()["active_account_id"], second_id);
    // Tenant resources follow the selected account.
    let a = app.get("/v1/roles").token(&u.token).account(&second_id).send().await;
    assert!(a.data().as_array().unwrap().iter().all(|r| r["account_id"] == second_id.as_str()));
    let d = app.get("/v1/roles").token(&u.token).send().await;
    assert!(
        d.data().as_array().unwrap().iter().all(|r| r["account_id"] == u.account_id.as_str()),
        "default account without header"
    );
}

async fn selecting_a_foreign_account_is_403(b: Backend) {
    let app = TestApp::spawn(b).await;
    let a = app.user("ada").await;
    let z = app.user("zed").await;
    app.get("/v1/roles").token(&a.token).account(&z.account_id).send().await.expect(403, Some("forbidden"));
    app.get("/v1/roles").token(&a.token).account("not-a-uuid").send().await.expect(403, Some("forbidden"));
    app.get("/v1/context").token(&a.token).account(&z.account_id).send().await.expect(403, Some("forbidden"));
    // Client-sent gateway headers are ignored.
    let r = app.get("/v1/roles").token(&a.token).header("x-account-ids", &z.account_id).send().await;
    r.expect(200, None);
    assert!(r.data().as_array().unwrap().iter().all(|r| r["account_id"] == a.account_id.as_str()));
}

async fn several_accounts_and_no_default_need_a_selection(b: Backend) {
    let app = TestApp::spawn(b).await;
    let u = app.user("nina").await;
    app.post("/v1/accounts").token(&u.token).json(json!({"name": "Other"})).send().await.expect(201, None);
    app.patch("/v1/users/me").token(&u.token).json(json!({"default_account_id": null})).send().await.expect(200, None);
    app.get("/v1/roles").token(&u.token).send().await.expect(400, Some("account_required"));
    let r = app.get("/v1/context").token(&u.token).send().await;
    r.expect(200, None);
    assert!(r.data()["active_account_id"].is_null());
    app.get("/v1/roles").token(&u.token).account(&u.account_id).send().await.expect(200, None);
}

async fn another_tenants_account_is_404_for_every_verb(b: Backend) {
    let app = TestApp::spawn(b).await;
    let a = app.user("amy").await;
    let z = app.user("zoe").await;
    let zid = &z.account_id;
    app.get(&format!("/v1/accounts/{zid}")).token(&a.token).send().await.expect(404, Some("not_found"));
    app.patch(&format!("/v1/accounts/{zid}"))
        .token(&a.token)
        .json(json!({"name": "pwned"}))
        .send()
        .await
        .expect(404, Some("not_found"));
    app.delete(&format!("/v1/accounts/{zid}")).token(&a.token).send().await.expect(404, Some("not_found"));
    app.get(&format!("/v1/accounts/{zid}/members")).token(&a.token).send().await.expect(404, Some("not_found"));
    let zrole = app.role_id(&z, zid, "viewer").await;
    app.post(&format!("/v1/accounts/{zid}/members"))
        .token(&a.token)
        .json(json!({"email": a.email, "role_id": zrole}))
        .send()
        .await
        .expect(404, Some("not_found"));
    app.patch(&format!("/v1/accounts/{zid}/members/{}", z.user_id))
        .token(&a.token)
        .json(json!({"role_id": zrole}))
        .send()
        .await
        .expect(404, Some("not_found"));
    app.delete(&format!("/v1/accounts/{zid}/members/{}", z.user_id))
        .token(&a.token)
        .send()
        .await
        .expect(404, Some("not_found"));
    // The list never shows it either.
    let r = app.get("/v1/accounts").token(&a.token).send().await;
    assert_eq!(r.body["meta"]["total"], 1);
    let r = app.get(&format!("/v1/accounts?filter=id:eq:{zid}")).token(&a.token).send().await;
    assert_eq!(r.body["meta"]["total"], 0);
    // Nothing changed for its owner.
    let r = app.get(&format!("/v1/accounts/{zid}")).token(&z.token).send().await;
    r.expect(200, None);
    assert_eq!(r.data()["name"], "zoe org");
}

async fn another_tenants_users_are_404(b: Backend) {
    let app = TestApp::spawn(b).await;
    let a = app.user("abe").await;
    let z = app.user("zack").await;
    app.get(&format!("/v1/users/{}", z.user_id)).token(&a.token).send().await.expect(404, Some("not_found"));
    let r = app.get("/v1/users").token(&a.token).send().await;
    r.expect(200, None);
    assert_eq!(r.body["meta"]["total"], 1);
    assert_eq!(r.data()[0]["email"], a.email);
    assert_eq!(r.data()[0]["role"]["name"], "admin");
    app.get(&format!("/v1/users/{}", a.user_id)).token(&a.token).send().await.expect(200, None);
}

both_backends!(
    context_lists_accounts_with_roles_and_selects_the_active_one,
    selecting_a_foreign_account_is_403,
    several_accounts_and_no_default_need_a_selection,
    another_tenants_account_is_404_for_every_verb,
    another_tenants_users_are_404,
);
