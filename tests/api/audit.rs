//! The audit log (issue 17, item 6): every mutating request in the table below writes exactly one entry
//! (found by its request id), with actor, action, resource and address; messages get one per send
//! ("who sent what, when, to whom"); no secret used in the requests appears in any entry; reading it
//! needs `audit:read` and shows only the active account's entries.

use reqwest::Method;
use serde_json::{Value, json};

use crate::fakes::{self, TWILIO_SID, TWILIO_TOKEN};
use crate::helpers::{Backend, Resp, TestApp, TestUser};

const NEW_TOKEN: &str = "new-secret-auth-token-0123456789";

/// Every entry of the account written for the request that answered `r`.
async fn entries_of(app: &TestApp, u: &TestUser, r: &Resp) -> Vec<Value> {
    let id = r.headers.get("x-request-id").expect("a request id").to_str().unwrap().to_string();
    let list = app.get(&format!("/v1/audit-logs?filter=request_id:eq:{id}")).token(&u.token).send().await;
    list.expect(200, None);
    list.data().as_array().unwrap().clone()
}

async fn every_mutating_request_writes_one_entry_and_no_secret(b: Backend) {
    let tw = fakes::twilio();
    let app = TestApp::spawn_with(b, |s| s.public_base_url = Some("https://hooks.example.org".into())).await;
    let u = app.user("auditor").await;
    let other = app.user("colleague").await;
    let aid = u.account_id.clone();
    let viewer = app.role_id(&u, &aid, "viewer").await;
    let agent = app.role_id(&u, &aid, "agent").await;

    // (what, method, path, body); `{x}` placeholders are filled from earlier answers.
    let mut ids: std::collections::HashMap<&str, String> = Default::default();
    let steps: Vec<(&str, Method, String, Value)> = vec![
        ("contact", Method::POST, "/v1/contacts".into(), json!({"phone": "+251911000001", "first_name": "Abebe"})),
        ("-", Method::PATCH, "/v1/contacts/{contact}".into(), json!({"first_name": "Abebech"})),
        ("tag", Method::POST, "/v1/tags".into(), json!({"name": "vip"})),
        ("group", Method::POST, "/v1/groups".into(), json!({"name": "Parents"})),
        ("-", Method::PATCH, "/v1/groups/{group}".into(), json!({"name": "All parents"})),
        ("-", Method::POST, "/v1/groups/{group}/contacts".into(), json!({"contact_ids": ["{contact}"]})),
        ("role", Method::POST, "/v1/roles".into(), json!({"name": "nurse", "permissions": {"contacts:read": true}})),
        ("-", Method::PATCH, "/v1/roles/{role}".into(), json!({"name": "head nurse"})),
        (
            "channel",
            Method::POST,
            "/v1/channels".into(),
            json!({"name": "tw", "channel_type": "sms", "provider": "twilio",
            "credentials": {"account_sid": TWILIO_SID, "auth_token": TWILIO_TOKEN, "from": "+15005550006", "base_url": tw.base_url}}),
        ),
        (
            "-",
            Method::PATCH,
            "/v1/channels/{channel}".into(),
            json!({"name": "Twilio", "credentials": {"auth_token": NEW_TOKEN}}),
        ),
        (
            "sandbox",
            Method::POST,
            "/v1/channels".into(),
            json!({"name": "s", "channel_type": "sandbox", "credentials": {}}),
        ),
        ("template", Method::POST, "/v1/templates".into(), json!({"name": "hi", "body": "Hi {FIRST_NAME}"})),
        ("-", Method::PATCH, "/v1/templates/{template}".into(), json!({"body": "Hello {FIRST_NAME}"})),
        (
            "message",
            Method::POST,
            "/v1/messages".into(),
            json!({"channel_id": "{sandbox}", "contact_id": "{contact}", "message_body": "Selam"}),
        ),
        (
            "group_message",
            Method::POST,
            "/v1/group-messages".into(),
            json!({"name": "term", "channel_id": "{sandbox}",
            "contact_group_ids": ["{group}"], "message_body": "Term starts"}),
        ),
        (
            "schedule",
            Method::POST,
            "/v1/scheduled-messages".into(),
            json!({"name": "later", "channel_id": "{sandbox}", "contact_id": "{contact}",
            "message_body": "Later", "scheduled_at": "2099-01-01T09:00:00Z", "timezone": "Africa/Addis_Ababa"}),
        ),
        ("-", Method::PATCH, "/v1/accounts/{account}".into(), json!({"name": "Audited org"})),
        ("-", Method::POST, "/v1/accounts/{account}/members".into(), json!({"email": other.email, "role_id": viewer})),
        ("-", Method::PATCH, "/v1/accounts/{account}/members/{other}".into(), json!({"role_id": agent})),
        (
            "invitation",
            Method::POST,
            "/v1/accounts/{account}/invitations".into(),
            json!({"email": "new@example.com", "role_id": viewer}),
        ),
        ("-", Method::DELETE, "/v1/accounts/{account}/invitations/{invitation}".into(), json!(null)),
        ("-", Method::DELETE, "/v1/accounts/{account}/members/{other}".into(), json!(null)),
        ("-", Method::DELETE, "/v1/roles/{role}".into(), json!(null)),
        ("-", Method::DELETE, "/v1/tags/{tag}".into(), json!(null)),
        ("segment", Method::POST, "/v1/segments".into(), json!({"name": "addis", "filter": "phone:startswith:+2519"})),
        ("-", Method::PATCH, "/v1/segments/{segment}".into(), json!({"name": "Addis"})),
        ("-", Method::DELETE, "/v1/segments/{segment}".into(), json!(null)),
        ("-", Method::PATCH, "/v1/scheduled-messages/{schedule}".into(), json!({"status": "paused"})),
        ("-", Method::DELETE, "/v1/scheduled-messages/{schedule}".into(), json!(null)),
        ("-", Method::DELETE, "/v1/templates/{template}".into(), json!(null)),
        ("-", Method::POST, "/v1/channels/{channel}/verify".into(), json!(null)),
        ("tag2", Method::POST, "/v1/tags".into(), json!({"name": "parent"})),
        ("-", Method::PATCH, "/v1/tags/{tag2}".into(), json!({"name": "Parent"})),
        ("-", Method::POST, "/v1/contacts/{contact}/tags".into(), json!({"tag_ids": ["{tag2}"]})),
        ("-", Method::DELETE, "/v1/contacts/{contact}/tags/{tag2}".into(), json!(null)),
        ("-", Method::POST, "/v1/tags/{tag2}/contacts".into(), json!({"contact_ids": ["{contact}"]})),
        ("-", Method::DELETE, "/v1/tags/{tag2}/contacts".into(), json!({"contact_ids": ["{contact}"]})),
        ("-", Method::DELETE, "/v1/groups/{group}/contacts".into(), json!({"contact_ids": ["{contact}"]})),
        ("-", Method::PATCH, "/v1/messages/{message}".into(), json!({"metadata": {"ref": "A-1"}})),
        ("-", Method::PATCH, "/v1/group-messages/{group_message}".into(), json!({"name": "term two"})),
        ("-", Method::PATCH, "/v1/group-messages/{group_message}".into(), json!({"status": "cancelled"})),
        ("-", Method::DELETE, "/v1/group-messages/{group_message}".into(), json!(null)),
        ("-", Method::DELETE, "/v1/groups/{group}".into(), json!(null)),
        ("-", Method::DELETE, "/v1/channels/{channel}".into(), json!(null)),
        ("-", Method::DELETE, "/v1/contacts/{contact}".into(), json!(null)),
    ];
    ids.insert("account", aid.clone());
    ids.insert("other", other.user_id.clone());
    let fill = |text: &str, ids: &std::collections::HashMap<&str, String>| {
        ids.iter().fold(text.to_string(), |t, (k, v)| t.replace(&format!("{{{k}}}"), v))
    };
    for (name, method, path, body) in steps {
        let path = fill(&path, &ids);
        let mut req = app.req(method.clone(), &path).token(&u.token);
        if !body.is_null() {
            req = req.json(serde_json::from_str(&fill(&body.to_string(), &ids)).unwrap());
        }
        let r = req.send().await;
        assert!(r.status.is_success(), "{method} {path}: {} {}", r.status, r.body);
        if name != "-" {
            ids.insert(name, r.id());
        }
        let entries = entries_of(&app, &u, &r).await;
        assert_eq!(entries.len(), 1, "{method} {path} wrote {} entries: {entries:?}", entries.len());
        let e = &entries[0];
        assert_eq!(
            (e["actor_id"].as_str(), e["account_id"].as_str()),
            (Some(u.user_id.as_str()), Some(aid.as_str())),
            "{e}"
        );
        assert!(e["ip"].as_str().is_some_and(|ip| ip.starts_with("127.0.0.1")), "{e}");
        assert!(e["action"].as_str().unwrap().contains('.'), "{e}");
    }

    // A sub-account's creation is the first entry of the new account (its managers above read it there).
    let sub = app
        .post(&format!("/v1/accounts/{aid}/sub-accounts"))
        .token(&u.token)
        .json(json!({"name": "Branch"}))
        .send()
        .await;
    sub.expect(201, None);
    let rid = sub.headers.get("x-request-id").unwrap().to_str().unwrap().to_string();
    let r =
        app.get(&format!("/v1/audit-logs?filter=request_id:eq:{rid}")).token(&u.token).account(&sub.id()).send().await;
    r.expect(200, None);
    assert_eq!(r.body["meta"]["total"], 1, "{}", r.body);
    assert_eq!(
        (
            r.data()[0]["action"].clone(),
            r.data()[0]["actor_id"].clone(),
            r.data()[0]["changes"]["after"]["parent_id"].clone()
        ),
        (json!("account.created"), json!(u.user_id), json!(aid))
    );

    // Who sent what, when, to whom.
    let sent = app.get("/v1/audit-logs?filter=action:eq:message.sent").token(&u.token).send().await;
    assert_eq!(sent.body["meta"]["total"], 1, "{}", sent.body);
    let after = &sent.data()[0]["changes"]["after"];
    assert_eq!(
        (after["delivery_address"].clone(), after["message_body"].clone(), after["contact_id"].clone()),
        (json!("+251911000001"), json!("Selam"), json!(ids["contact"]))
    );
    assert_eq!(sent.data()[0]["resource_id"], ids["message"]);
    // An update keeps what was there before.
    let r = app
        .get(&format!("/v1/audit-logs?filter=action:eq:role.updated&filter=resource_id:eq:{}", ids["role"]))
        .token(&u.token)
        .send()
        .await;
    let changes = &r.data()[0]["changes"];
    assert_eq!(
        (changes["before"]["name"].clone(), changes["after"]["name"].clone()),
        (json!("nurse"), json!("head nurse"))
    );

    // No secret of the requests is in any entry, and the channel update says only that credentials changed.
    let all = app.get("/v1/audit-logs?limit=1000").token(&u.token).send().await;
    let text = all.body.to_string();
    for secret in [TWILIO_TOKEN, NEW_TOKEN, u.password.as_str(), u.token.as_str(), u.refresh_token.as_str()] {
        assert!(!text.contains(secret), "a secret appears in the audit log");
    }
    let r = app
        .get(&format!("/v1/audit-logs?filter=action:eq:channel.updated&filter=resource_id:eq:{}", ids["channel"]))
        .token(&u.token)
        .send()
        .await;
    assert_eq!(r.data()[0]["changes"]["after"]["credentials_changed"], true, "{}", r.body);

    // Reading needs audit:read and shows only the active account.
    let viewer_user = app.user("viewer").await;
    app.add_member(&u, &viewer_user, "viewer").await;
    app.get("/v1/audit-logs").token(&viewer_user.token).account(&aid).send().await.expect(200, None);
    app.create_role(&u.token, "clerk").await;
    let nobody = app.user("nobody").await;
    app.add_member(&u, &nobody, "clerk").await;
    app.get("/v1/audit-logs").token(&nobody.token).account(&aid).send().await.expect(403, Some("forbidden"));
    let z = app.user("zed").await;
    let r = app.get("/v1/audit-logs").token(&z.token).send().await;
    assert!(r.data().as_array().unwrap().iter().all(|e| e["account_id"] == z.account_id.as_str()), "{}", r.body);
    app.get(&format!("/v1/audit-logs?filter=account_id:eq:{aid}"))
        .token(&z.token)
        .send()
        .await
        .expect(403, Some("forbidden"));
    app.get("/v1/audit-logs?filter=password:eq:x").token(&u.token).send().await.expect(400, Some("bad_request"));
}

both_backends!(every_mutating_request_writes_one_entry_and_no_secret);
