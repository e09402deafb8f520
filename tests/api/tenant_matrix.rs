//! The cross-tenant matrix, generated from the route table (the OpenAPI document, which
//! `http_surface` checks against the routes): every operation with a resource id in its path is called
//! by another tenant with the ids of this tenant's real resources, and with a valid body where it takes
//! one (so that a missing scope check would succeed). Each answers 404 (SPEC §2: another tenant's id is
//! "no such resource", whatever the verb); afterwards every resource of the owner is still there,
//! unchanged. A path with an id of a kind this test does not know fails it: a new route cannot skip the
//! matrix.

use std::collections::HashMap;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp};

/// Public by design: the token or the channel id in the path is the credential (SPEC §3.2, §5.2).
const PUBLIC: &[&str] = &["/v1/invitations/{token}", "/v1/invitations/{token}/accept", "/v1/webhooks/"];

/// The kind of resource each path parameter names.
fn kind_of(path: &str, param: &str) -> Option<&'static str> {
    match param {
        "invitation_id" => return Some("invitation"),
        "user_id" => return Some("user"),
        "tag_id" => return Some("tag"),
        _ => {}
    }
    let rest = path.strip_prefix("/v1/")?;
    if rest.starts_with("contacts/imports/") {
        return Some("import");
    }
    Some(match rest.split('/').next()? {
        "accounts" => "account",
        "channels" => "channel",
        "contacts" => "contact",
        "group-messages" => "group_message",
        "groups" => "group",
        "messages" => "message",
        "roles" => "role",
        "scheduled-messages" => "schedule",
        "segments" => "segment",
        "tags" => "tag",
        "templates" => "template",
        "users" => "user",
        _ => return None,
    })
}

async fn every_route_with_an_id_refuses_another_tenant(b: Backend) {
    let app = TestApp::spawn(b).await;
    let a = app.user("owner").await;
    let z = app.user("intruder").await;
    let viewer = app.role_id(&a, &a.account_id, "viewer").await;
    let post = |path: &str, body: Value| {
        let (path, app, token) = (path.to_string(), &app, a.token.clone());
        async move {
            let r = app.post(&path).token(&token).json(body).send().await;
            assert!(r.status.is_success(), "{path}: {} {}", r.status, r.body);
            r.data()["id"].as_str().map(str::to_string).unwrap_or_default()
        }
    };
    // One real resource of each kind in the owner's account.
    let mut ids: HashMap<&str, String> = HashMap::new();
    ids.insert("account", a.account_id.clone());
    ids.insert("user", a.user_id.clone());
    ids.insert("role", post("/v1/roles", json!({"name": "nurse", "permissions": {"contacts:read": true}})).await);
    ids.insert("contact", post("/v1/contacts", json!({"phone": "+251911000001", "first_name": "Abebe"})).await);
    ids.insert("tag", post("/v1/tags", json!({"name": "vip"})).await);
    ids.insert("group", post("/v1/groups", json!({"name": "Parents"})).await);
    post(&format!("/v1/groups/{}/contacts", ids["group"]), json!({"contact_ids": [ids["contact"]]})).await;
    ids.insert("segment", post("/v1/segments", json!({"name": "addis", "filter": "phone:startswith:+2519"})).await);
    ids.insert(
        "channel",
        post("/v1/channels", json!({"name": "s", "channel_type": "sandbox", "credentials": {}})).await,
    );
    ids.insert("template", post("/v1/templates", json!({"name": "hi", "body": "Hi {FIRST_NAME}"})).await);
    let message = json!({"channel_id": ids["channel"], "contact_id": ids["contact"], "message_body": "Selam"});
    ids.insert("message", post("/v1/messages", message).await);
    let group_message = json!({"name": "term", "channel_id": ids["channel"], "contact_group_ids": [ids["group"]],
                               "message_body": "Term starts"});
    ids.insert("group_message", post("/v1/group-messages", group_message).await);
    let schedule = json!({"name": "later", "channel_id": ids["channel"], "contact_id": ids["contact"],
                          "message_body": "Later", "scheduled_at": "2099-01-01T09:00:00Z", "timezone": "UTC"});
    ids.insert("schedule", post("/v1/scheduled-messages", schedule).await);
    let invitation = json!({"email": "new@example.com", "role_id": viewer});
    ids.insert("invitation", post(&format!("/v1/accounts/{}/invitations", a.account_id), invitation).await);
    let import = app
        .post("/v1/contacts/import")
        .token(&a.token)
        .raw("text/csv", "phone,first_name\n+251911000002,Kebede\n")
        .send()
        .await;
    assert!(import.status.is_success(), "{}", import.body);
    ids.insert("import", import.data()["id"].as_str().unwrap().to_string());

    // Bodies a member of the owner's account could send successfully.
    let hijack = json!({"name": "hijacked"});
    let body_for = |method: &Method, path: &str| -> Option<Value> {
        Some(match (method.as_str(), path) {
            ("PATCH", "/v1/contacts/{id}") => json!({"first_name": "hijacked"}),
            ("PATCH", "/v1/messages/{id}") => json!({"metadata": {"x": "hijacked"}}),
            ("PATCH", "/v1/accounts/{id}/members/{user_id}") => json!({"role_id": viewer}),
            ("POST", "/v1/accounts/{id}/members") => json!({"email": z.email, "role_id": viewer}),
            ("POST", "/v1/accounts/{id}/invitations") => json!({"email": "x@example.com", "role_id": viewer}),
            ("POST", "/v1/contacts/{id}/tags") => json!({"tag_ids": [ids["tag"]]}),
            ("POST" | "DELETE", "/v1/groups/{id}/contacts" | "/v1/tags/{id}/contacts") => {
                json!({"contact_ids": [ids["contact"]]})
            }
            ("POST", "/v1/templates/{id}/preview") => json!({}),
            ("PATCH", _) | ("POST", "/v1/accounts/{id}/sub-accounts") => hijack.clone(),
            _ => return None,
        })
    };

    let doc = app.get("/v1/openapi.json").send().await.body;
    let mut calls: Vec<(Method, String, String)> = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        if !path.contains('{') || PUBLIC.iter().any(|p| path.starts_with(p)) {
            continue;
        }
        let mut concrete = path.clone();
        for param in path.split('{').skip(1).map(|s| s.split('}').next().unwrap()) {
            let kind = kind_of(path, param).unwrap_or_else(|| panic!("{path}: no known resource for {{{param}}}"));
            let id = ids.get(kind).unwrap_or_else(|| panic!("{path}: no {kind} made for the matrix"));
            concrete = concrete.replace(&format!("{{{param}}}"), id);
        }
        for method in ops.as_object().unwrap().keys() {
            calls.push((Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(), path.clone(), concrete.clone()));
        }
    }
    // Deletes last, so that every other call still meets a live resource.
    calls.sort_by_key(|(m, _, _)| *m == Method::DELETE);
    assert!(calls.len() > 50, "only {} operations with ids", calls.len());
    for (method, path, concrete) in &calls {
        let mut req = app.req(method.clone(), concrete).token(&z.token);
        if let Some(body) = body_for(method, path) {
            req = req.json(body);
        }
        let r = req.send().await;
        let status = r.status.as_u16();
        assert_eq!(status, 404, "{method} {path} by another tenant: {}", r.body);
        // The answer names nothing of the owner's.
        let text = r.body.to_string();
        assert!(!text.contains("Abebe") && !text.contains(&a.email), "{method} {path} leaked: {text}");
    }

    // Everything of the owner is still there, unchanged.
    for (kind, path) in [
        ("contact", "/v1/contacts"),
        ("tag", "/v1/tags"),
        ("group", "/v1/groups"),
        ("segment", "/v1/segments"),
        ("channel", "/v1/channels"),
        ("template", "/v1/templates"),
        ("message", "/v1/messages"),
        ("group_message", "/v1/group-messages"),
        ("schedule", "/v1/scheduled-messages"),
        ("role", "/v1/roles"),
    ] {
        let r = app.get(&format!("{path}/{}", ids[kind])).token(&a.token).send().await;
        r.expect(200, None);
        assert!(!r.body.to_string().contains("hijacked"), "{kind} changed: {}", r.body);
    }
    let members = app.get(&format!("/v1/accounts/{}/members", a.account_id)).token(&a.token).send().await;
    assert_eq!(members.body["meta"]["total"], 1, "{}", members.body);
    let invitations = app.get(&format!("/v1/accounts/{}/invitations", a.account_id)).token(&a.token).send().await;
    assert_eq!(invitations.data()[0]["status"], "pending", "{}", invitations.body);
    let group = app.get(&format!("/v1/groups/{}/contacts", ids["group"])).token(&a.token).send().await;
    assert_eq!(group.body["meta"]["total"], 1, "{}", group.body);
    let account = app.get(&format!("/v1/accounts/{}", a.account_id)).token(&a.token).send().await;
    assert_ne!(account.data()["name"], "hijacked");
    let subs = app.get(&format!("/v1/accounts/{}/sub-accounts", a.account_id)).token(&a.token).send().await;
    assert_eq!(subs.body["meta"]["total"], 0, "{}", subs.body);
}

both_backends!(every_route_with_an_id_refuses_another_tenant);
