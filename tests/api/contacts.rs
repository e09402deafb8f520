//! Contacts: CRUD with E.164 normalisation and duplicate detection, the contact filter language (typed
//! attributes, tags, groups, search), tags, groups with exact counts, segments, permissions, events and
//! cross-tenant isolation.

use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, TestUser, eventually};

/// A user whose account reads national numbers as Ethiopian.
pub async fn et_user(app: &TestApp, name: &str) -> TestUser {
    let u = app.user(name).await;
    app.patch(&format!("/v1/accounts/{}", u.account_id))
        .token(&u.token)
        .json(json!({"default_country_code": "ET"}))
        .send()
        .await
        .expect(200, None);
    u
}

pub async fn contact(app: &TestApp, u: &TestUser, body: Value) -> String {
    let r = app.post("/v1/contacts").token(&u.token).json(body).send().await;
    r.expect(201, None);
    r.id()
}

async fn contacts_are_created_normalised_and_unique(b: Backend) {
    let app = TestApp::spawn(b).await;
    let u = et_user(&app, "abebe").await;
    let r = app
        .post("/v1/contacts")
        .token(&u.token)
        .json(json!({
            "first_name": " Abebe ", "last_name": "Kebede", "phone": "0911 234 567", "email": "Abebe@Example.ORG",
            "channel_identities": {"telegram": 123456789}, "preferred_channel": "sms", "language": "am",
            "timezone": "Africa/Addis_Ababa", "attributes": {"program_name": "cohort-2", "score": 7},
            "opted_out_channels": ["email", "email"]
        }))
        .send()
        .await;
    r.expect(201, None);
    let d = r.data();
    assert_eq!(d["phone"], "+251911234567");
    assert_eq!(d["email"], "abebe@example.org");
    assert_eq!(d["first_name"], "Abebe");
    assert_eq!(d["channel_identities"], json!({"telegram": "123456789"}));
    assert_eq!(d["attributes"], json!({"program_name": "cohort-2", "score": 7}));
    assert_eq!(d["opted_out_channels"], json!(["email"]));
    assert_eq!(d["account_id"], u.account_id);
    assert_eq!(d["tags"], json!([]));
    let id = r.id();

    // The same phone written internationally, the same e-mail in another case, the same identity: 409s
    // naming the existing contact.
    for (body, field) in [
        (json!({"phone": "+251-911-234-567"}), "phone"),
        (json!({"email": "ABEBE@example.org"}), "email"),
        (json!({"channel_identities": {"telegram": "123456789"}}), "channel_identities.telegram"),
    ] {
        let r = app.post("/v1/contacts").token(&u.token).json(body).send().await;
        r.expect(409, Some("conflict"));
        assert_eq!(r.body["details"]["existing_id"], id.as_str());
        assert_eq!(r.body["details"]["field"], field);
    }

    // Bad input: every field problem listed.
    let r = app
        .post("/v1/contacts")
        .token(&u.token)
        .json(json!({"phone": "0911", "email": "nope", "attributes": {"Bad-Key": 1}, "timezone": "Mars/Base", "preferred_channel": "fax", "opted_out_channels": ["pigeon"]}))
        .send()
        .await;
    r.expect(422, Some("validation_error"));
    let mut fields = r.error_fields();
    fields.sort();
    assert_eq!(
        fields,
        vec!["attributes.Bad-Key", "email", "opted_out_channels", "phone", "preferred_channel", "timezone"]
    );
    let r = app.post("/v1/contacts").token(&u.token).json(json!({"first_name": "Nobody"})).send().await;
    r.expect(422, Some("validation_error"));
    assert_eq!(r.error_fields(), vec!["phone"]);
    assert!(
        r.body["details"]["errors"][0]["message"].as_str().unwrap().contains("phone, an e-mail or a channel identity")
    );
    app.post("/v1/contacts")
        .token(&u.token)
        .json(json!({"phone": "+251911000000", "shoe": 1}))
        .send()
        .await
        .expect(422, None);
    app.post("/v1/contacts")
        .token(&u.token)
        .json(json!({"attributes": [1], "email": "x@y.org"}))
        .send()
        .await
        .expect(422, None);

    // PATCH: present fields apply, null clears, absent keeps; the result is re-validated.
    let r = app
        .patch(&format!("/v1/contacts/{id}"))
        .token(&u.token)
        .json(json!({"email": null, "last_name": null, "attributes": {"score": 9}, "phone": "0922 000 111"}))
        .send()
        .await;
    r.expect(200, None);
    assert!(r.data()["email"].is_null());
    assert!(r.data()["last_name"].is_null());
    assert_eq!(r.data()["first_name"], "Abebe");
    assert_eq!(r.data()["phone"], "+251922000111");
    assert_eq!(r.data()["attributes"], json!({"score": 9}));
    app.patch(&format!("/v1/contacts/{id}"))
        .token(&u.token)
        .json(json!({"phone": null, "channel_identities": null}))
        .send()
        .await
        .expect(422, Some("validation_error"));
    let other = contact(&app, &u, json!({"phone": "+251933000000"})).await;
    let r =
        app.patch(&format!("/v1/contacts/{other}")).token(&u.token).json(json!({"phone": "0922000111"})).send().await;
    r.expect(409, Some("conflict"));
    assert_eq!(r.body["details"]["existing_id"], id.as_str());

    let r = app.get(&format!("/v1/contacts/{id}")).token(&u.token).send().await;
    r.expect(200, None);
    assert_eq!(r.data()["phone"], "+251922000111");
    app.delete(&format!("/v1/contacts/{id}")).token(&u.token).send().await.expect(204, None);
    app.get(&format!("/v1/contacts/{id}")).token(&u.token).send().await.expect(404, Some("not_found"));
    app.get("/v1/contacts/not-a-uuid").token(&u.token).send().await.expect(404, Some("not_found"));
    // The freed phone can be used again.
    contact(&app, &u, json!({"phone": "+251922000111"})).await;

    // National numbers without a default country are refused with the reason.
    let v = app.user("nocountry").await;
    let r = app.post("/v1/contacts").token(&v.token).json(json!({"phone": "0911234567"})).send().await;
    r.expect(422, None);
    assert!(r.body["details"]["errors"][0]["message"].as_str().unwrap().contains("default_country_code"));
    contact(&app, &v, json!({"phone": "+254712345678"})).await;
}

async fn the_filter_language_covers_attributes_tags_groups_and_search(b: Backend) {
    let app = TestApp::spawn(b).await;
    let u = et_user(&app, "filters").await;
    let a = contact(&app, &u, json!({"first_name": "Almaz", "phone": "0911000001", "attributes": {"score": 10, "enrolled": "2026-01-15", "program": "cohort-2", "active": true}})).await;
    let bb = contact(&app, &u, json!({"first_name": "Bekele", "phone": "0911000002", "attributes": {"score": 9, "enrolled": "2025-12-01", "program": "cohort-10", "active": false}})).await;
    let c = contact(&app, &u, json!({"first_name": "Chaltu", "email": "chaltu@example.org", "attributes": {"score": "high", "program": "Cohort-2"}})).await;
    let list = |q: String| {
        let app = &app;
        let token = u.token.clone();
        async move { app.get(&format!("/v1/contacts?{q}&sort=first_name:asc")).token(&token).send().await }
    };
    let names = |r: &crate::helpers::Resp| -> Vec<String> {
        r.data().as_array().unwrap().iter().map(|c| c["first_name"].as_str().unwrap().to_string()).collect()
    };
    // Numbers compare as numbers (10 > 9, though "10" < "9" as text); a string value never matches.
    let r = list("filter=attributes.score:gt:9".into()).await;
    r.expect(200, None);
    assert_eq!(names(&r), vec!["Almaz"]);
    assert_eq!(names(&list("filter=attributes.score:range:9,10".into()).await), vec!["Almaz", "Bekele"]);
    assert_eq!(names(&list("filter=attributes.score:in:9,11".into()).await), vec!["Bekele"]);
    // ISO dates compare as dates.
    assert_eq!(names(&list("filter=attributes.enrolled:ge:2026-01-01".into()).await), vec!["Almaz"]);
    assert_eq!(names(&list("filter=attributes.enrolled:lt:2026-01-01T00:00:00Z".into()).await), vec!["Bekele"]);
    // Strings as strings; case-sensitive eq, icontains ignores case.
    assert_eq!(names(&list("filter=attributes.program:eq:cohort-2".into()).await), vec!["Almaz"]);
    assert_eq!(names(&list("filter=attributes.program:icontains:COHORT-2".into()).await), vec!["Almaz", "Chaltu"]);
    assert_eq!(names(&list("filter=attributes.score:eq:high".into()).await), vec!["Chaltu"]);
    assert_eq!(names(&list("filter=attributes.active:eq:true".into()).await), vec!["Almaz"]);
    assert_eq!(names(&list("filter=attributes.active:is_null".into()).await), vec!["Chaltu"]);
    assert_eq!(names(&list("filter=attributes.enrolled:is_not_null".into()).await), vec!["Almaz", "Bekele"]);
    // Unknown attributes match nothing (not an error).
    let r = list("filter=attributes.shoe_size:eq:42".into()).await;
    r.expect(200, None);
    assert_eq!(r.body["meta"]["total"], 0);
    // Scalar fields, search and combinations.
    assert_eq!(names(&list("filter=email:is_null".into()).await), vec!["Almaz", "Bekele"]);
    assert_eq!(names(&list("q=CHAL".into()).await), vec!["Chaltu"]);
    assert_eq!(names(&list("q=0911000002".into()).await), vec!["Bekele"]);
    assert_eq!(
        names(&list("filter=attributes.score:ge:9&filter=first_name:startswith:B".into()).await),
        vec!["Bekele"]
    );
    // Tags and groups.
    let tag = app.post("/v1/tags").token(&u.token).json(json!({"name": "vip", "color": "#FF0000"})).send().await;
    tag.expect(201, None);
    assert_eq!(tag.data()["color"], "#ff0000");
    let tag = tag.id();
    app.post(&format!("/v1/contacts/{a}/tags"))
        .token(&u.token)
        .json(json!({"tag_ids": [tag]}))
        .send()
        .await
        .expect(200, None);
    assert_eq!(names(&list(format!("filter=tags:in:{tag}")).await), vec!["Almaz"]);
    assert_eq!(names(&list(format!("filter=tags:ne:{tag}")).await), vec!["Bekele", "Chaltu"]);
    assert_eq!(names(&list("filter=tags:is_null".into()).await), vec!["Bekele", "Chaltu"]);
    let g = app.post("/v1/groups").token(&u.token).json(json!({"name": "g"})).send().await.id();
    app.post(&format!("/v1/groups/{g}/contacts"))
        .token(&u.token)
        .json(json!({"contact_ids": [bb, c]}))
        .send()
        .await
        .expect(200, None);
    assert_eq!(names(&list(format!("filter=group_id:eq:{g}")).await), vec!["Bekele", "Chaltu"]);
    assert_eq!(names(&list(format!("filter=group_id:in:{g}&filter=email:is_not_null")).await), vec!["Chaltu"]);
    // Bad filters are 400s naming the problem.
    for (q, needle) in [
        ("filter=attributes.Score:eq:1", "[a-z0-9_]"),
        ("filter=attributes.active:gt:true", "booleans"),
        ("filter=tags:contains:x", "not allowed"),
        ("filter=tags:in:nope", "UUID"),
        ("filter=shoe:eq:1", "shoe"),
        ("filter=created_at:ge:yesterday", "RFC 3339"),
        ("sort=attributes:asc", "attributes"),
    ] {
        let r = list(q.into()).await;
        r.expect(400, Some("bad_request"));
        assert!(r.body["message"].as_str().unwrap().contains(needle), "{q}: {}", r.body);
    }
}

async fn groups_keep_exact_counts_and_tags_apply_in_bulk(b: Backend) {
    let app = TestApp::spawn(b).await;
    let u = et_user(&app, "groups").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(contact(&app, &u, json!({"phone": format!("09110000{i:02}"), "attributes": {"n": i}})).await);
    }
    let r =
        app.post("/v1/groups").token(&u.token).json(json!({"name": "Cohort 2", "description": "first"})).send().await;
    r.expect(201, None);
    assert_eq!(r.data()["contact_count"], 0);
    let g = r.id();
    app.post("/v1/groups").token(&u.token).json(json!({"name": "Cohort 2"})).send().await.expect(409, Some("conflict"));
    app.post("/v1/groups").token(&u.token).json(json!({"name": "  "})).send().await.expect(422, None);

    let add = |body: Value| {
        let (app, token, g) = (&app, u.token.clone(), g.clone());
        async move { app.post(&format!("/v1/groups/{g}/contacts")).token(&token).json(body).send().await }
    };
    let r = add(json!({"contact_ids": [ids[0], ids[1]]})).await;
    r.expect(200, None);
    assert_eq!(r.data()["changed"], 2);
    assert_eq!(r.data()["group"]["contact_count"], 2);
    // Adding members again changes nothing; a filter adds the rest.
    let r = add(json!({"contact_ids": [ids[1]]})).await;
    assert_eq!(r.data()["changed"], 0);
    assert_eq!(r.data()["group"]["contact_count"], 2);
    let r = add(json!({"filter": "attributes.n:ge:1"})).await;
    assert_eq!(r.data()["changed"], 3);
    assert_eq!(r.data()["group"]["contact_count"], 5);
    // Bad bodies.
    add(json!({"filter": "attributes.n:between:1"})).await.expect(422, Some("validation_error"));
    add(json!({"filter": 5})).await.expect(422, Some("validation_error"));
    add(json!({"contact_ids": [ids[0]], "filter": "phone:is_not_null"})).await.expect(422, None);
    add(json!({})).await.expect(422, None);
    let r = add(json!({"contact_ids": ["0190f7a0-0000-7000-8000-000000000000"]})).await;
    r.expect(422, Some("validation_error"));
    assert_eq!(r.error_fields(), vec!["contact_ids[0]"]);

    // Paged member listing.
    let r = app.get(&format!("/v1/groups/{g}/contacts?limit=2&sort=phone:asc")).token(&u.token).send().await;
    r.expect(200, None);
    assert_eq!(r.body["meta"]["total"], 5);
    assert_eq!(r.data().as_array().unwrap().len(), 2);
    assert_eq!(r.data()[0]["phone"], "+251911000000");

    // Removal and contact deletion keep the count exact.
    let r = app
        .delete(&format!("/v1/groups/{g}/contacts"))
        .token(&u.token)
        .json(json!({"contact_ids": [ids[0], ids[0]]}))
        .send()
        .await;
    r.expect(200, None);
    assert_eq!(r.data()["changed"], 1);
    assert_eq!(r.data()["group"]["contact_count"], 4);
    app.delete(&format!("/v1/contacts/{}", ids[1])).token(&u.token).send().await.expect(204, None);
    let r = app.get(&format!("/v1/groups/{g}")).token(&u.token).send().await;
    assert_eq!(r.data()["contact_count"], 3);
    let r = app.get(&format!("/v1/groups/{g}/contacts")).token(&u.token).send().await;
    assert_eq!(r.body["meta"]["total"], 3);

    // Bulk tagging by filter and by ids.
    let t = app.post("/v1/tags").token(&u.token).json(json!({"name": "reminded"})).send().await;
    t.expect(201, None);
    let t = t.id();
    app.post("/v1/tags").token(&u.token).json(json!({"name": "x", "color": "red"})).send().await.expect(422, None);
    let r = app
        .post(&format!("/v1/tags/{t}/contacts"))
        .token(&u.token)
        .json(json!({"filter": ["attributes.n:le:3"]}))
        .send()
        .await;
    r.expect(200, None);
    assert_eq!(r.data()["changed"], 3, "contacts 0, 2 and 3 (1 was deleted)");
    let r = app.get(&format!("/v1/contacts?filter=tags:in:{t}")).token(&u.token).send().await;
    assert_eq!(r.body["meta"]["total"], 3);
    assert_eq!(r.data()[0]["tags"][0]["name"], "reminded");
    let r = app
        .delete(&format!("/v1/tags/{t}/contacts"))
        .token(&u.token)
        .json(json!({"contact_ids": [ids[0]]}))
        .send()
        .await;
    assert_eq!(r.data()["changed"], 1);
    app.delete(&format!("/v1/contacts/{}/tags/{t}", ids[2])).token(&u.token).send().await.expect(204, None);
    app.delete(&format!("/v1/contacts/{}/tags/{t}", ids[2])).token(&u.token).send().await.expect(404, None);
    let r = app.get(&format!("/v1/contacts/{}", ids[3])).token(&u.token).send().await;
    assert_eq!(r.data()["tags"][0]["id"], t.as_str());
    // PATCH tag_ids replaces the set; deleting a tag removes it from contacts.
    let r = app.patch(&format!("/v1/contacts/{}", ids[3])).token(&u.token).json(json!({"tag_ids": []})).send().await;
    assert_eq!(r.data()["tags"], json!([]));
    app.delete(&format!("/v1/tags/{t}")).token(&u.token).send().await.expect(204, None);
    app.delete(&format!("/v1/groups/{g}")).token(&u.token).send().await.expect(204, None);
    app.get(&format!("/v1/groups/{g}")).token(&u.token).send().await.expect(404, None);
}

async fn segments_validate_when_saved_and_evaluate_when_used(b: Backend) {
    let app = TestApp::spawn(b).await;
    let u = et_user(&app, "segments").await;
    for (i, program) in ["cohort-2", "cohort-2", "cohort-3"].iter().enumerate() {
        contact(&app, &u, json!({"phone": format!("091100010{i}"), "attributes": {"program": program}})).await;
    }
    for bad in [json!("attributes.program:near:x"), json!(["nope:eq:1"]), json!(7), json!(["created_at:ge:soon"])] {
        let r = app.post("/v1/segments").token(&u.token).json(json!({"name": "bad", "filter": bad})).send().await;
        r.expect(422, Some("validation_error"));
        assert_eq!(r.error_fields(), vec!["filter"]);
    }
    let r = app
        .post("/v1/segments")
        .token(&u.token)
        .json(json!({"name": "Cohort 2", "filter": "attributes.program:eq:cohort-2"}))
        .send()
        .await;
    r.expect(201, None);
    assert_eq!(r.data()["filter"], json!(["attributes.program:eq:cohort-2"]));
    let s = r.id();
    let r = app.get(&format!("/v1/segments/{s}/count")).token(&u.token).send().await;
    r.expect(200, None);
    assert_eq!(r.data()["count"], 2);
    let r = app.get(&format!("/v1/segments/{s}/contacts?limit=1")).token(&u.token).send().await;
    assert_eq!(r.body["meta"]["total"], 2);
    assert_eq!(r.data().as_array().unwrap().len(), 1);
    // Dynamic: a new matching contact is in the segment without touching it.
    contact(&app, &u, json!({"email": "new@example.org", "attributes": {"program": "cohort-2"}})).await;
    assert_eq!(app.get(&format!("/v1/segments/{s}/count")).token(&u.token).send().await.data()["count"], 3);
    let r = app
        .patch(&format!("/v1/segments/{s}"))
        .token(&u.token)
        .json(json!({"filter": ["attributes.program:eq:cohort-2", "phone:is_not_null"], "description": "with phones"}))
        .send()
        .await;
    r.expect(200, None);
    assert_eq!(app.get(&format!("/v1/segments/{s}/count")).token(&u.token).send().await.data()["count"], 2);
    app.patch(&format!("/v1/segments/{s}")).token(&u.token).json(json!({"filter": "x"})).send().await.expect(422, None);
    app.post("/v1/segments")
        .token(&u.token)
        .json(json!({"name": "Cohort 2", "filter": []}))
        .send()
        .await
        .expect(409, None);
    let r = app.get("/v1/segments?filter=name:eq:Cohort 2").token(&u.token).send().await;
    assert_eq!(r.body["meta"]["total"], 1);
    app.delete(&format!("/v1/segments/{s}")).token(&u.token).send().await.expect(204, None);
    app.get(&format!("/v1/segments/{s}/count")).token(&u.token).send().await.expect(404, None);
}

async fn permissions_and_events_for_contacts(b: Backend) {
    let app = TestApp::spawn(b).await;
    let owner = et_user(&app, "owner").await;
    let viewer = app.user("viewer").await;
    app.add_member(&owner, &viewer, "viewer").await;
    let c = contact(&app, &owner, json!({"phone": "0911000555"})).await;
    let acc = owner.account_id.clone();
    // The viewer role reads contacts but cannot change, import or export them.
    app.get(&format!("/v1/contacts/{c}")).token(&viewer.token).account(&acc).send().await.expect(200, None);
    app.post("/v1/contacts")
        .token(&viewer.token)
        .account(&acc)
        .json(json!({"phone": "0911000556"}))
        .send()
        .await
        .expect(403, Some("forbidden"));
    app.delete(&format!("/v1/contacts/{c}")).token(&viewer.token).account(&acc).send().await.expect(403, None);
    app.post("/v1/tags").token(&viewer.token).account(&acc).json(json!({"name": "t"})).send().await.expect(403, None);
    app.get("/v1/contacts/export").token(&viewer.token).account(&acc).send().await.expect(403, None);
    app.post("/v1/contacts/import")
        .token(&viewer.token)
        .account(&acc)
        .raw("text/csv", "phone\n0911000557\n")
        .send()
        .await
        .expect(403, None);
    app.get("/v1/contacts").send().await.expect(401, None);

    // Every change lands in the outbox with the account.
    app.patch(&format!("/v1/contacts/{c}"))
        .token(&owner.token)
        .json(json!({"opted_out_channels": ["sms"]}))
        .send()
        .await
        .expect(200, None);
    app.delete(&format!("/v1/contacts/{c}")).token(&owner.token).send().await.expect(204, None);
    let db = app.state.db.clone();
    eventually(10, "contact events in the outbox", || {
        let db = db.clone();
        let c = c.clone();
        async move {
            use sea_orm::ConnectionTrait;
            use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
            let q = Query::select()
                .column(Alias::new("event_type"))
                .from(Alias::new("outbox_events"))
                .and_where(Expr::col(Alias::new("aggregate_id")).eq(uuid::Uuid::parse_str(&c).unwrap()))
                .order_by(Alias::new("created_at"), sea_orm::Order::Asc)
                .order_by(Alias::new("id"), sea_orm::Order::Asc)
                .to_owned();
            let rows = db.query_all(&q).await.unwrap();
            let types: Vec<String> = rows.iter().map(|r| r.try_get::<String>("", "event_type").unwrap()).collect();
            types == ["contact.created", "contact.updated", "contact.opted_out", "contact.deleted"]
        }
    })
    .await;
}

async fn another_tenants_contacts_tags_groups_and_segments_are_404(b: Backend) {
    let app = TestApp::spawn(b).await;
    let alice = et_user(&app, "alice").await;
    let mallory = et_user(&app, "mallory").await;
    let c = contact(&app, &alice, json!({"phone": "0911000777", "attributes": {"secret": "yes"}})).await;
    let t = app.post("/v1/tags").token(&alice.token).json(json!({"name": "a"})).send().await.id();
    let g = app.post("/v1/groups").token(&alice.token).json(json!({"name": "a"})).send().await.id();
    let s = app
        .post("/v1/segments")
        .token(&alice.token)
        .json(json!({"name": "a", "filter": "phone:is_not_null"}))
        .send()
        .await
        .id();
    let m = &mallory.token;
    for path in [
        format!("/v1/contacts/{c}"),
        format!("/v1/tags/{t}"),
        format!("/v1/groups/{g}"),
        format!("/v1/groups/{g}/contacts"),
        format!("/v1/segments/{s}"),
        format!("/v1/segments/{s}/contacts"),
        format!("/v1/segments/{s}/count"),
        format!("/v1/contacts/export?group_id={g}"),
        format!("/v1/contacts/export?segment_id={s}"),
    ] {
        app.get(&path).token(m).send().await.expect(404, Some("not_found"));
        if !path.contains('?') && !path.ends_with("contacts") && !path.ends_with("count") {
            app.patch(&path)
                .token(m)
                .json(json!({"name": "x", "first_name": "x"}))
                .send()
                .await
                .expect_status_in(&[404, 422]);
            app.delete(&path).token(m).send().await.expect(404, Some("not_found"));
        }
    }
    app.patch(&format!("/v1/contacts/{c}"))
        .token(m)
        .json(json!({"first_name": "pwned"}))
        .send()
        .await
        .expect(404, None);
    app.patch(&format!("/v1/tags/{t}")).token(m).json(json!({"name": "pwned"})).send().await.expect(404, None);
    app.patch(&format!("/v1/groups/{g}")).token(m).json(json!({"name": "pwned"})).send().await.expect(404, None);
    app.patch(&format!("/v1/segments/{s}")).token(m).json(json!({"name": "pwned"})).send().await.expect(404, None);
    // Membership and tagging through a foreign group/tag, or of a foreign contact.
    app.post(&format!("/v1/groups/{g}/contacts"))
        .token(m)
        .json(json!({"filter": "phone:is_not_null"}))
        .send()
        .await
        .expect(404, None);
    app.post(&format!("/v1/tags/{t}/contacts"))
        .token(m)
        .json(json!({"filter": "phone:is_not_null"}))
        .send()
        .await
        .expect(404, None);
    app.post(&format!("/v1/contacts/{c}/tags")).token(m).json(json!({"tag_ids": [t]})).send().await.expect(404, None);
    let mg = app.post("/v1/groups").token(m).json(json!({"name": "m"})).send().await.id();
    let r = app.post(&format!("/v1/groups/{mg}/contacts")).token(m).json(json!({"contact_ids": [c]})).send().await;
    r.expect(422, None);
    // A filter can only ever see the caller's contacts.
    let r = app
        .post(&format!("/v1/groups/{mg}/contacts"))
        .token(m)
        .json(json!({"filter": "attributes.secret:eq:yes"}))
        .send()
        .await;
    assert_eq!(r.data()["changed"], 0);
    let r = app.get(&format!("/v1/contacts?filter=id:eq:{c}")).token(m).send().await;
    assert_eq!(r.body["meta"]["total"], 0);
    let mc = contact(&app, &mallory, json!({"phone": "0911000888"})).await;
    app.post(&format!("/v1/contacts/{mc}/tags")).token(m).json(json!({"tag_ids": [t]})).send().await.expect(422, None);
    let r = app.get(&format!("/v1/contacts?filter=tags:in:{t}")).token(m).send().await;
    assert_eq!(r.body["meta"]["total"], 0);
    // Everything of alice's is intact.
    let r = app.get(&format!("/v1/contacts/{c}")).token(&alice.token).send().await;
    r.expect(200, None);
    assert!(r.data()["first_name"].is_null());
    // The same phone is fine in another account (unique per account).
    contact(&app, &mallory, json!({"phone": "0911000777"})).await;
}

trait ExpectIn {
    fn expect_status_in(&self, statuses: &[u16]);
}

impl ExpectIn for crate::helpers::Resp {
    #[track_caller]
    fn expect_status_in(&self, statuses: &[u16]) {
        assert!(statuses.contains(&self.status.as_u16()), "status {} not in {statuses:?}: {}", self.status, self.body);
    }
}

both_backends!(
    contacts_are_created_normalised_and_unique,
    the_filter_language_covers_attributes_tags_groups_and_search,
    groups_keep_exact_counts_and_tags_apply_in_bulk,
    segments_validate_when_saved_and_evaluate_when_used,
    permissions_and_events_for_contacts,
    another_tenants_contacts_tags_groups_and_segments_are_404,
);
