//! Accounts and memberships: creation with system roles, updates, deletion, members, the last admin.

use serde_json::json;

use crate::helpers::{Backend, TestApp};

async fn creating_an_account_makes_the_caller_its_admin(b: Backend) {
    let app = TestApp::spawn(b).await;
    let u = app.user("ceo").await;
    let r = app
        .post("/v1/accounts")
        .token(&u.token)
        .json(json!({"name": "Clinic", "timezone": "Africa/Addis_Ababa", "default_country_code": "ET", "settings": {"brand": "blue"}}))
        .send()
        .await;
    r.expect(201, None);
    let id = r.id();
    assert_eq!(r.data()["status"], "active");
    assert_eq!(r.data()["timezone"], "Africa/Addis_Ababa");
    assert_eq!(r.data()["settings"]["brand"], "blue");
    let roles = app.get("/v1/roles?sort=name:asc").token(&u.token).account(&id).send().await;
    let names: Vec<&str> = roles.data().as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["admin", "agent", "viewer"]);
    assert!(roles.data().as_array().unwrap().iter().all(|r| r["is_system"] == true));
    let members = app.get(&format!("/v1/accounts/{id}/members")).token(&u.token).send().await;
    assert_eq!(members.body["meta"]["total"], 1);
    assert_eq!(members.data()[0]["user_id"], u.user_id);
    assert_eq!(members.data()[0]["role"]["name"], "admin");

    let bad = app
        .post("/v1/accounts")
        .token(&u.token)
        .json(json!({"name": "", "timezone": "Nowhere/City", "default_country_code": "ethiopia", "settings": [1]}))
        .send()
        .await;
    bad.expect(422, Some("validation_error"));
    assert_eq!(bad.error_fields(), vec!["default_country_code", "name"]);
    let bad =
        app.post("/v1/accounts").token(&u.token).json(json!({"name": "X", "timezone": "Nowhere/City"})).send().await;
    bad.expect(422, None);
    assert_eq!(bad.error_fields(), vec!["timezone"]);
    app.post("/v1/accounts").json(json!({"name": "anon"})).send().await.expect(401, None);
    let blank = app.post("/v1/accounts").token(&u.token).json(json!({"name": "  \t "})).send().await;
    blank.expect(422, Some("validation_error"));
    assert_eq!(blank.error_fields(), vec!["name"]);
}

async fn accounts_are_patched_and_deleted_by_admins_only(b: Backend) {
    let app = TestApp::spawn(b).await;
    let owner = app.user("olive").await;
    let viewer = app.user("vic").await;
    app.add_member(&owner, &viewer, "viewer").await;
    let path = format!("/v1/accounts/{}", owner.account_id);

    // A viewer reads but cannot change.
    app.get(&path).token(&viewer.token).send().await.expect(200, None);
    app.patch(&path).token(&viewer.token).json(json!({"name": "Mine now"})).send().await.expect(403, Some("forbidden"));
    app.delete(&path).token(&viewer.token).send().await.expect(403, Some("forbidden"));

    let r = app
        .patch(&path)
        .token(&owner.token)
        .json(json!({"name": "Renamed", "default_country_code": "+251"}))
        .send()
        .await;
    r.expect(200, None);
    assert_eq!(r.data()["name"], "Renamed");
    assert_eq!(r.data()["timezone"], "UTC", "absent fields stay");
    let r = app.patch(&path).token(&owner.token).json(json!({"default_country_code": null})).send().await;
    assert!(r.data()["default_country_code"].is_null());
    app.patch(&path).token(&owner.token).json(json!({"name": null})).send().await.expect(422, None);
    app.patch(&path).token(&owner.token).json(json!({"timezone": "Bad/Zone"})).send().await.expect(422, None);
    app.patch(&path).token(&owner.token).json(json!({"colour": "red"})).send().await.expect(422, None);

    app.delete(&path).token(&owner.token).send().await.expect(204, None);
    app.get(&path).token(&owner.token).send().await.expect(404, None);
    // The viewer's membership went with it.
    let ctx = app.get("/v1/context").token(&viewer.token).send().await;
    assert_eq!(ctx.data()["accounts"].as_array().unwrap().len(), 1);
}

async fn members_change_roles_and_the_last_admin_is_kept(b: Backend) {
    let app = TestApp::spawn(b).await;
    let owner = app.user("otto").await;
    let agent = app.user("agnes").await;
    app.add_member(&owner, &agent, "agent").await;
    let acc = &owner.account_id;
    let admin_role = app.role_id(&owner, acc, "admin").await;
    let viewer_role = app.role_id(&owner, acc, "viewer").await;

    // Adding twice → 409; unknown users and roles → 422.
    let agent_role = app.role_id(&owner, acc, "agent").await;
    app.post(&format!("/v1/accounts/{acc}/members"))
        .token(&owner.token)
        .json(json!({"email": agent.email, "role_id": agent_role}))
        .send()
        .await
        .expect(409, Some("conflict"));
    let r = app
        .post(&format!("/v1/accounts/{acc}/members"))
        .token(&owner.token)
        .json(json!({"email": "nobody@example.com", "role_id": agent_role}))
        .send()
        .await;
    r.expect(422, None);
    assert_eq!(r.error_fields(), vec!["email"]);

    // The only admin cannot be demoted or removed.
    let me = format!("/v1/accounts/{acc}/members/{}", owner.user_id);
    app.patch(&me).token(&owner.token).json(json!({"role_id": viewer_role})).send().await.expect(409, Some("conflict"));
    app.delete(&me).token(&owner.token).send().await.expect(409, Some("conflict"));

    // An agent cannot manage members.
    let them = format!("/v1/accounts/{acc}/members/{}", agent.user_id);
    app.patch(&them)
        .token(&agent.token)
        .json(json!({"role_id": admin_role}))
        .send()
        .await
        .expect(403, Some("forbidden"));

    // Promote the agent; now the first admin may step down.
    let r = app.patch(&them).token(&owner.token).json(json!({"role_id": admin_role})).send().await;
    r.expect(200, None);
    assert_eq!(r.data()["role"]["name"], "admin");
    app.patch(&me).token(&owner.token).json(json!({"role_id": viewer_role})).send().await.expect(200, None);
    // The role of another account is not a role here.
    let elsewhere = app.user("elsa").await;
    let foreign_role = app.role_id(&elsewhere, &elsewhere.account_id, "admin").await;
    let r = app.patch(&them).token(&agent.token).json(json!({"role_id": foreign_role})).send().await;
    r.expect(422, None);
    assert_eq!(r.error_fields(), vec!["role_id"]);

    // Remove the former owner; the change is visible in their context at once.
    app.delete(&me).token(&agent.token).send().await.expect(204, None);
    let ctx = app.get("/v1/context").token(&owner.token).send().await;
    assert_eq!(ctx.data()["accounts"].as_array().unwrap().len(), 0);
    app.get("/v1/roles").token(&owner.token).account(acc).send().await.expect(403, None);
    app.delete(&me).token(&agent.token).send().await.expect(404, None);
}

async fn list_of_members_is_paged_and_filtered(b: Backend) {
    let app = TestApp::spawn(b).await;
    let owner = app.user("paula").await;
    for n in ["m1", "m2", "m3"] {
        let m = app.user(n).await;
        app.add_member(&owner, &m, "viewer").await;
    }
    let acc = &owner.account_id;
    let viewer_role = app.role_id(&owner, acc, "viewer").await;
    let r = app
        .get(&format!("/v1/accounts/{acc}/members?limit=2&skip=1&sort=created_at:asc"))
        .token(&owner.token)
        .send()
        .await;
    r.expect(200, None);
    assert_eq!(r.body["meta"], json!({"total": 4, "skip": 1, "limit": 2}));
    assert_eq!(r.data().as_array().unwrap().len(), 2);
    let r = app
        .get(&format!("/v1/accounts/{acc}/members?filter=role_id:eq:{viewer_role}"))
        .token(&owner.token)
        .send()
        .await;
    assert_eq!(r.body["meta"]["total"], 3);
    app.get(&format!("/v1/accounts/{acc}/members?filter=email:eq:x"))
        .token(&owner.token)
        .send()
        .await
        .expect(400, None);
    let r = app.get(&format!("/v1/users?filter=role_id:eq:{viewer_role}&limit=1")).token(&owner.token).send().await;
    assert_eq!(r.body["meta"]["total"], 3);
    assert_eq!(r.data()[0]["role"]["name"], "viewer");
}

both_backends!(
    creating_an_account_makes_the_caller_its_admin,
    accounts_are_patched_and_deleted_by_admins_only,
    members_change_roles_and_the_last_admin_is_kept,
    list_of_members_is_paged_and_filtered,
);
