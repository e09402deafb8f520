//! Roles: CRUD, permission validation, system roles, permissions enforced, cross-tenant isolation and
//! the list engine (filters, sorting, paging) on a real table.

use serde_json::json;

use crate::helpers::{Backend, TestApp};

async fn custom_roles_are_created_updated_and_deleted(b: Backend) {
    let app = TestApp::spawn(b).await;
    let u = app.user("rob").await;
    let r = app
        .post("/v1/roles")
        .token(&u.token)
        .json(json!({"name": "dispatcher", "description": "sends", "permissions": {"messages:send": true, "contacts:read": true}}))
        .send()
        .await;
    r.expect(201, None);
    let id = r.id();
    assert_eq!(r.data()["is_system"], false);
    assert_eq!(r.data()["account_id"], u.account_id);
    app.post("/v1/roles")
        .token(&u.token)
        .json(json!({"name": "dispatcher", "permissions": {}}))
        .send()
        .await
        .expect(409, Some("conflict"));

    let r = app
        .patch(&format!("/v1/roles/{id}"))
        .token(&u.token)
        .json(json!({"permissions": {"messages:read": true}, "description": null}))
        .send()
        .await;
    r.expect(200, None);
    assert_eq!(r.data()["permissions"], json!({"messages:read": true}));
    assert!(r.data()["description"].is_null());
    assert_eq!(r.data()["name"], "dispatcher");
    let r = app.get(&format!("/v1/roles/{id}")).token(&u.token).send().await;
    assert_eq!(r.data()["permissions"], json!({"messages:read": true}));

    app.delete(&format!("/v1/roles/{id}")).token(&u.token).send().await.expect(204, None);
    app.get(&format!("/v1/roles/{id}")).token(&u.token).send().await.expect(404, Some("not_found"));
}

async fn permissions_are_validated(b: Backend) {
    let app = TestApp::spawn(b).await;
    let u = app.user("val").await;
    let r = app
        .post("/v1/roles")
        .token(&u.token)
        .json(json!({"name": "x", "permissions": {"contacts:fly": true, "messages:send": "yes"}}))
        .send()
        .await;
    r.expect(422, Some("validation_error"));
    assert_eq!(r.error_fields(), vec!["permissions.contacts:fly", "permissions.messages:send"]);
    app.post("/v1/roles")
        .token(&u.token)
        .json(json!({"name": "x", "permissions": ["contacts:read"]}))
        .send()
        .await
        .expect(422, None);
    app.post("/v1/roles").token(&u.token).json(json!({"name": "", "permissions": {}})).send().await.expect(422, None);
    app.post("/v1/roles")
        .token(&u.token)
        .json(json!({"name": "all", "permissions": {"*": true}}))
        .send()
        .await
        .expect(201, None);
    // Whitespace is not a name.
    let r = app.post("/v1/roles").token(&u.token).json(json!({"name": "   ", "permissions": {}})).send().await;
    r.expect(422, Some("validation_error"));
    assert_eq!(r.error_fields(), vec!["name"]);
}

async fn system_roles_and_roles_in_use_are_protected(b: Backend) {
    let app = TestApp::spawn(b).await;
    let owner = app.user("sam").await;
    let admin = app.role_id(&owner, &owner.account_id, "admin").await;
    app.patch(&format!("/v1/roles/{admin}"))
        .token(&owner.token)
        .json(json!({"name": "root"}))
        .send()
        .await
        .expect(409, None);
    app.delete(&format!("/v1/roles/{admin}")).token(&owner.token).send().await.expect(409, None);

    let r = app
        .post("/v1/roles")
        .token(&owner.token)
        .json(json!({"name": "helper", "permissions": {"contacts:read": true}}))
        .send()
        .await;
    let helper = r.id();
    let m = app.user("hal").await;
    let owner_acc = &owner.account_id;
    app.post(&format!("/v1/accounts/{owner_acc}/members"))
        .token(&owner.token)
        .json(json!({"email": m.email, "role_id": helper}))
        .send()
        .await
        .expect(201, None);
    app.delete(&format!("/v1/roles/{helper}")).token(&owner.token).send().await.expect(409, Some("conflict"));
}

async fn permissions_are_enforced_per_role(b: Backend) {
    let app = TestApp::spawn(b).await;
    let owner = app.user("pia").await;
    let viewer = app.user("viv").await;
    app.add_member(&owner, &viewer, "viewer").await;
    let acc = &owner.account_id;
    // Reading roles needs accounts:read (viewer has it); managing needs roles:manage (viewer lacks it).
    app.get("/v1/roles").token(&viewer.token).account(acc).send().await.expect(200, None);
    let r = app
        .post("/v1/roles")
        .token(&viewer.token)
        .account(acc)
        .json(json!({"name": "x", "permissions": {}}))
        .send()
        .await;
    r.expect(403, Some("forbidden"));
    assert!(r.body["message"].as_str().unwrap().contains("roles:manage"));
    let admin = app.role_id(&owner, acc, "admin").await;
    app.delete(&format!("/v1/roles/{admin}")).token(&viewer.token).account(acc).send().await.expect(403, None);
    // A custom role without accounts:read cannot even list.
    let r = app
        .post("/v1/roles")
        .token(&owner.token)
        .json(json!({"name": "blind", "permissions": {"messages:send": true}}))
        .send()
        .await;
    let blind_role = r.id();
    let blind = app.user("bo").await;
    app.post(&format!("/v1/accounts/{acc}/members"))
        .token(&owner.token)
        .json(json!({"email": blind.email, "role_id": blind_role}))
        .send()
        .await
        .expect(201, None);
    app.get("/v1/roles").token(&blind.token).account(acc).send().await.expect(403, None);
    app.get("/v1/users").token(&blind.token).account(acc).send().await.expect(403, None);
}

async fn another_tenants_roles_are_404_for_every_verb(b: Backend) {
    let app = TestApp::spawn(b).await;
    let a = app.user("alf").await;
    let z = app.user("zia").await;
    let r = app.post("/v1/roles").token(&z.token).json(json!({"name": "theirs", "permissions": {}})).send().await;
    let theirs = r.id();
    app.get(&format!("/v1/roles/{theirs}")).token(&a.token).send().await.expect(404, Some("not_found"));
    app.patch(&format!("/v1/roles/{theirs}"))
        .token(&a.token)
        .json(json!({"name": "mine"}))
        .send()
        .await
        .expect(404, Some("not_found"));
    app.delete(&format!("/v1/roles/{theirs}")).token(&a.token).send().await.expect(404, Some("not_found"));
    let list = app.get("/v1/roles?limit=1000").token(&a.token).send().await;
    assert!(list.data().as_array().unwrap().iter().all(|r| r["id"] != theirs.as_str()));
    // A filter naming the other account only narrows: it never widens the scope.
    let r = app.get(&format!("/v1/roles?filter=id:eq:{theirs}")).token(&a.token).send().await;
    assert_eq!(r.body["meta"]["total"], 0);
    let r = app.get(&format!("/v1/roles/{theirs}")).token(&z.token).send().await;
    assert_eq!(r.data()["name"], "theirs");
}

async fn list_engine_filters_sorts_and_pages(b: Backend) {
    let app = TestApp::spawn(b).await;
    let u = app.user("lee").await;
    for name in ["alpha", "Beta", "gamma_1", "gamma%2", "delta"] {
        app.create_role(&u.token, name).await;
    }
    let names = |r: &crate::helpers::Resp| -> Vec<String> {
        r.data().as_array().unwrap().iter().map(|x| x["name"].as_str().unwrap().to_string()).collect()
    };
    let get = |q: &str| app.get(&format!("/v1/roles?{q}")).token(&u.token).send();
    // 3 system roles + 5 custom.
    let r = get("").await;
    assert_eq!(r.body["meta"], json!({"total": 8, "skip": 0, "limit": 50}));
    let r = get("filter=is_system:eq:true&sort=name:asc&limit=2&skip=1").await;
    assert_eq!(names(&r), vec!["agent", "viewer"]);
    assert_eq!(r.body["meta"], json!({"total": 3, "skip": 1, "limit": 2}));
    let r = get("sort=name:desc&limit=2").await;
    assert_eq!(names(&r)[0], "viewer");
    let mut gammas = names(&get("filter=is_system:eq:false&filter=name:startswith:gamma").await);
    gammas.sort();
    assert_eq!(gammas, vec!["gamma%2", "gamma_1"]);
    // Wildcards in contains are literal.
    assert_eq!(names(&get("filter=name:contains:%25").await), vec!["gamma%2"]);
    assert_eq!(names(&get("filter=name:contains:_").await), vec!["gamma_1"]);
    // contains is case-sensitive, icontains is not, on both databases.
    assert!(names(&get("filter=name:contains:bet").await).is_empty());
    assert_eq!(names(&get("filter=name:icontains:BET").await), vec!["Beta"]);
    assert_eq!(names(&get("filter=name:ilike:b%25").await), vec!["Beta"]);
    assert_eq!(names(&get("filter=name:like:B%25").await), vec!["Beta"]);
    assert_eq!(names(&get("filter=name:endswith:ta&sort=name:asc").await), vec!["Beta", "delta"]);
    assert_eq!(names(&get("filter=name:in:alpha,delta,nope&sort=name:asc").await), vec!["alpha", "delta"]);
    assert_eq!(names(&get("filter=name:ne:alpha&filter=is_system:eq:false&sort=name:asc&limit=1").await), vec!["Beta"]);
    assert_eq!(get("filter=description:is_null").await.status, 400, "description is not filterable");
    assert_eq!(get("filter=name:is_not_null").await.body["meta"]["total"], 8);
    // Timestamps: everything was created after 2000 and before 2100; ranges are inclusive.
    assert_eq!(get("filter=created_at:gt:2000-01-01").await.body["meta"]["total"], 8);
    assert_eq!(get("filter=created_at:lt:2000-01-01T00:00:00Z").await.body["meta"]["total"], 0);
    assert_eq!(get("filter=created_at:range:2000-01-01,2100-01-01").await.body["meta"]["total"], 8);
    let first = get("sort=created_at:asc&limit=1").await;
    let t = first.data()[0]["created_at"].as_str().unwrap().to_string();
    let r =
        app.get("/v1/roles").query(&[("filter", format!("created_at:le:{t}")), ("filter", "is_system:eq:true".into())]);
    let r = r.token(&u.token).send().await;
    assert!(r.body["meta"]["total"].as_u64().unwrap() >= 1, "{}", r.body);
    // Bad filters and paging are 400s that say what is wrong.
    for (q, needle) in [
        ("filter=nope:eq:1", "nope"),
        ("filter=name:between:a", "unknown operator"),
        ("filter=is_system:eq:maybe", "boolean"),
        ("filter=created_at:gt:yesterday", "RFC 3339"),
        ("filter=id:eq:123", "UUID"),
        ("filter=is_system:lt:true", "not allowed"),
        ("sort=permissions:asc", "permissions"),
        ("sort=id:asc", "not sortable"),
        ("limit=1001", "1000"),
        ("skip=x", "skip"),
    ] {
        let r = get(q).await;
        r.expect(400, Some("bad_request"));
        assert!(r.body["message"].as_str().unwrap().contains(needle), "{q}: {}", r.body);
    }
    // Paging is stable: walking pages of 3 sees every role exactly once.
    assert_eq!(get("sort=is_system:asc").await.status, 400, "is_system is filterable, not sortable");
    let mut seen = Vec::new();
    for skip in [0, 3, 6] {
        seen.extend(names(&get(&format!("limit=3&skip={skip}")).await));
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 8);
}

both_backends!(
    custom_roles_are_created_updated_and_deleted,
    permissions_are_validated,
    system_roles_and_roles_in_use_are_protected,
    permissions_are_enforced_per_role,
    another_tenants_roles_are_404_for_every_verb,
    list_engine_filters_sorts_and_pages,
);
