//! Message templates (SPEC §6.1): CRUD with variables extracted on every body change, validation,
//! filters, the preview's resolution order and fallback strategies, permissions and tenant isolation.

use serde_json::json;

use crate::contacts::{contact, et_user};
use crate::helpers::{Backend, TestApp};

async fn templates_extract_variables_and_validate(b: Backend) {
    let app = TestApp::spawn(b).await;
    let u = et_user(&app, "templates").await;
    let r = app
        .post("/v1/templates")
        .token(&u.token)
        .json(json!({"name": "Welcome", "body": "Hi {FIRST_NAME}, {PROGRAM} starts {START_DATE}. {{braces}} {lower} {FIRST_NAME}", "category": "onboarding", "language": "en"}))
        .send()
        .await;
    r.expect(201, None);
    let id = r.id();
    assert_eq!(r.data()["variables"], json!(["FIRST_NAME", "PROGRAM", "START_DATE"]));
    assert_eq!(r.data()["fallback_strategy"], "keep_placeholder");
    assert_eq!(r.data()["is_active"], true);
    assert_eq!(r.data()["created_by_user_id"], u.user_id.as_str());
    // A body change re-extracts the variables; other edits leave them alone.
    let r = app.patch(&format!("/v1/templates/{id}")).token(&u.token).json(json!({"body": "Bye {NAME}"})).send().await;
    r.expect(200, None);
    assert_eq!(r.data()["variables"], json!(["NAME"]));
    let r = app
        .patch(&format!("/v1/templates/{id}"))
        .token(&u.token)
        .json(json!({"category": null, "is_active": false}))
        .send()
        .await;
    assert_eq!((r.data()["category"].clone(), r.data()["variables"].clone()), (json!(null), json!(["NAME"])));

    // Names are unique per account.
    let dup = app.post("/v1/templates").token(&u.token).json(json!({"name": "Welcome", "body": "x"})).send().await;
    dup.expect(409, Some("conflict"));

    // Every bad field is a 422 naming it.
    let many: Vec<_> = (0..11).map(|i| json!({"url": format!("https://cdn.example.org/{i}.png")})).collect();
    for (body, field) in [
        (json!({"name": "a", "body": "  "}), "body"),
        (json!({"name": "a", "body": "x", "fallback_strategy": "guess"}), "fallback_strategy"),
        (json!({"name": "a", "body": "x", "channel_type": "fax"}), "channel_type"),
        (json!({"name": "a", "body": "x", "approval_status": "approved"}), "approval_status"),
        (json!({"name": "a", "body": "x", "channel_type": "whatsapp", "approval_status": "maybe"}), "approval_status"),
        (json!({"name": "a", "body": "x", "default_values": {"lower": "x"}}), "default_values.lower"),
        (json!({"name": "a", "body": "x", "default_values": {"CITY": {"nested": 1}}}), "default_values.CITY"),
        (json!({"name": "a", "body": "x", "default_values": [1]}), "default_values"),
        (json!({"name": "a", "body": "x", "attachments": many}), "attachments"),
        (
            json!({"name": "a", "body": "x", "attachments": [{"url": "ftp://files.example.org/a.pdf"}]}),
            "attachments[0].url",
        ),
        (
            json!({"name": "a", "body": "x", "attachments": [{"url": "https://user:pw@cdn.example.org/a.pdf"}]}),
            "attachments[0].url",
        ),
        (json!({"name": "a", "body": "x", "attachments": [{"url": "not a url"}]}), "attachments[0].url"),
        (
            json!({"name": "a", "body": "x", "attachments": [{"url": "https://cdn.example.org/a", "kind": "sticker"}]}),
            "attachments[0].kind",
        ),
        (json!({"name": "a\nb", "body": "x"}), "name"),
        (json!({"name": "a", "body": "x".repeat(10_001)}), "body"),
    ] {
        let r = app.post("/v1/templates").token(&u.token).json(body.clone()).send().await;
        r.expect(422, Some("validation_error"));
        assert_eq!(r.error_fields(), vec![field.to_string()], "{body}: {}", r.body);
    }
    let r = app.post("/v1/templates").token(&u.token).json(json!({"name": "a", "body": "x", "extra": 1})).send().await;
    r.expect(422, Some("validation_error"));

    // WhatsApp templates carry their approval; attachments are kept as given (kind defaults to document).
    let r = app
        .post("/v1/templates")
        .token(&u.token)
        .json(json!({"name": "Reminder", "body": "Class at {TIME}", "channel_type": "whatsapp", "approval_status": "pending", "external_template_id": "class_reminder_v1", "attachments": [{"url": "https://cdn.example.org/map.pdf", "filename": "map.pdf"}], "fallback_strategy": "skip_contact"}))
        .send()
        .await;
    r.expect(201, None);
    assert_eq!(
        r.data()["attachments"],
        json!([{"url": "https://cdn.example.org/map.pdf", "kind": "document", "filename": "map.pdf", "caption": null}])
    );
    let wa = r.id();
    // Moving it off WhatsApp while it still has an approval status is refused.
    let r = app.patch(&format!("/v1/templates/{wa}")).token(&u.token).json(json!({"channel_type": "sms"})).send().await;
    assert_eq!(r.error_fields(), vec!["approval_status"]);

    // Filters and sorts of the SPEC.
    let names = |path: &str| {
        let req = app.get(path).token(&u.token);
        async move {
            let r = req.send().await;
            r.expect(200, None);
            r.data().as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_string()).collect::<Vec<_>>()
        }
    };
    assert_eq!(names("/v1/templates?filter=channel_type:eq:whatsapp").await, vec!["Reminder"]);
    assert_eq!(names("/v1/templates?filter=is_active:eq:false").await, vec!["Welcome"]);
    assert_eq!(names("/v1/templates?filter=approval_status:eq:pending").await, vec!["Reminder"]);
    assert_eq!(names("/v1/templates?filter=fallback_strategy:eq:skip_contact").await, vec!["Reminder"]);
    assert_eq!(names("/v1/templates?sort=name:asc").await, vec!["Reminder", "Welcome"]);
    assert_eq!(names(&format!("/v1/templates?filter=created_by_user_id:eq:{}", u.user_id)).await.len(), 2);
    app.get("/v1/templates?filter=body:eq:x").token(&u.token).send().await.expect(400, Some("bad_request"));
    app.delete(&format!("/v1/templates/{id}")).token(&u.token).send().await.expect(204, None);
    app.get(&format!("/v1/templates/{id}")).token(&u.token).send().await.expect(404, Some("not_found"));
}

async fn previews_resolve_variables_in_order_and_apply_the_fallback(b: Backend) {
    let app = TestApp::spawn(b).await;
    let u = et_user(&app, "preview").await;
    let c = contact(
        &app,
        &u,
        json!({"phone": "0911000123", "first_name": "Abebe", "last_name": "Kebede", "attributes": {"program": "Nursing", "start_date": "2026-02-01"}}),
    )
    .await;
    let create = |body: serde_json::Value| app.post("/v1/templates").token(&u.token).json(body).send();
    let t = create(json!({"name": "t", "body": "Hi {FIRST_NAME} {LAST_NAME}: {PROGRAM} on {START_DATE} at {ROOM}. From {SENDER_NAME}, {ACCOUNT_NAME}."})).await.id();
    let preview = |id: &str, body: serde_json::Value| {
        app.post(&format!("/v1/templates/{id}/preview")).token(&u.token).json(body).send()
    };

    let r = preview(&t, json!({"contact_id": c})).await;
    r.expect(200, None);
    let account =
        app.get(&format!("/v1/accounts/{}", u.account_id)).token(&u.token).send().await.data()["name"].clone();
    let sender = app.get("/v1/users/me").token(&u.token).send().await.data()["full_name"].clone();
    assert_eq!(
        r.data()["body"].as_str().unwrap(),
        format!(
            "Hi Abebe Kebede: Nursing on 2026-02-01 at {{ROOM}}. From {}, {}.",
            sender.as_str().unwrap(),
            account.as_str().unwrap()
        )
    );
    assert_eq!(r.data()["missing"], json!(["ROOM"]));
    assert_eq!(r.data()["encoding"], "GSM-7");
    assert_eq!(r.data()["segments"], 1);
    assert_eq!(r.data()["skip_reason"], json!(null));

    // custom_values beat contact fields; sample values (per recipient) beat both.
    let r = preview(&t, json!({"contact_id": c, "custom_values": {"FIRST_NAME": "Dr.", "ROOM": "B12"}})).await;
    assert!(
        r.data()["body"].as_str().unwrap().starts_with("Hi Dr. Kebede: Nursing on 2026-02-01 at B12."),
        "{}",
        r.body
    );
    let r =
        preview(&t, json!({"sample": {"FIRST_NAME": "Sam", "ROOM": 7}, "custom_values": {"FIRST_NAME": "Dr."}})).await;
    assert!(
        r.data()["body"].as_str().unwrap().starts_with("Hi Sam {LAST_NAME}: {PROGRAM} on {START_DATE} at 7."),
        "{}",
        r.body
    );
    assert_eq!(r.data()["missing"], json!(["LAST_NAME", "PROGRAM", "START_DATE"]));

    // use_default and skip_contact.
    let d = create(json!({"name": "d", "body": "Room {ROOM}, {CITY}!", "fallback_strategy": "use_default", "default_values": {"ROOM": "TBA"}})).await.id();
    let r = preview(&d, json!({"sample": {}})).await;
    assert_eq!(
        (r.data()["body"].clone(), r.data()["missing"].clone()),
        (json!("Room TBA, !"), json!(["ROOM", "CITY"]))
    );
    let s =
        create(json!({"name": "s", "body": "{FIRST_NAME}: {GRADE}", "fallback_strategy": "skip_contact"})).await.id();
    let r = preview(&s, json!({"contact_id": c})).await;
    assert_eq!(r.data()["skip_reason"], "missing_variable:GRADE");

    // What the text costs as SMS: Amharic needs UCS-2 (70 per part, 67 when split).
    let a = create(json!({"name": "am", "body": format!("{} {{FIRST_NAME}}", "ሰላም".repeat(30))})).await.id();
    let r = preview(&a, json!({"contact_id": c})).await;
    assert_eq!((r.data()["encoding"].clone(), r.data()["segments"].clone()), (json!("UCS-2"), json!(2)));

    // Bad input.
    let other = app.user("preview-other").await;
    let theirs = app.post("/v1/contacts").token(&other.token).json(json!({"phone": "+251911000999"})).send().await.id();
    let r = preview(&t, json!({"contact_id": theirs})).await;
    r.expect(422, Some("validation_error"));
    assert_eq!(r.error_fields(), vec!["contact_id"]);
    preview(&t, json!({"contact_id": "nope"})).await.expect(422, Some("validation_error"));
    preview(&uuid::Uuid::now_v7().to_string(), json!({})).await.expect(404, Some("not_found"));
}

async fn templates_are_tenant_scoped_and_need_their_permissions(b: Backend) {
    let app = TestApp::spawn(b).await;
    let alice = app.user("alice-t").await;
    let mallory = app.user("mallory-t").await;
    let t =
        app.post("/v1/templates").token(&alice.token).json(json!({"name": "Mine", "body": "Hi {X}"})).send().await.id();
    let path = format!("/v1/templates/{t}");
    app.get(&path).token(&mallory.token).send().await.expect(404, Some("not_found"));
    app.patch(&path).token(&mallory.token).json(json!({"name": "stolen"})).send().await.expect(404, Some("not_found"));
    app.delete(&path).token(&mallory.token).send().await.expect(404, Some("not_found"));
    app.post(&format!("{path}/preview"))
        .token(&mallory.token)
        .json(json!({}))
        .send()
        .await
        .expect(404, Some("not_found"));
    let r = app.get("/v1/templates").token(&mallory.token).send().await;
    assert_eq!(r.body["meta"]["total"], 0);
    // Names are unique per account only.
    app.post("/v1/templates")
        .token(&mallory.token)
        .json(json!({"name": "Mine", "body": "x"}))
        .send()
        .await
        .expect(201, None);
    assert_eq!(app.get(&path).token(&alice.token).send().await.data()["name"], "Mine");

    // A viewer reads and previews but cannot manage.
    let viewer = app.user("viewer-t").await;
    app.add_member(&alice, &viewer, "viewer").await;
    fn as_viewer<'a>(req: crate::helpers::Req<'a>, viewer: &str, account: &str) -> crate::helpers::Req<'a> {
        req.token(viewer).account(account)
    }
    let as_viewer = |req| as_viewer(req, &viewer.token, &alice.account_id);
    as_viewer(app.get(&path)).send().await.expect(200, None);
    as_viewer(app.post(&format!("{path}/preview"))).json(json!({})).send().await.expect(200, None);
    as_viewer(app.patch(&path)).json(json!({"name": "x"})).send().await.expect(403, Some("forbidden"));
    as_viewer(app.post("/v1/templates"))
        .json(json!({"name": "v", "body": "x"}))
        .send()
        .await
        .expect(403, Some("forbidden"));
    as_viewer(app.delete(&path)).send().await.expect(403, Some("forbidden"));
}

both_backends!(
    templates_extract_variables_and_validate,
    previews_resolve_variables_in_order_and_apply_the_fallback,
    templates_are_tenant_scoped_and_need_their_permissions,
);
