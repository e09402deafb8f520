//! The SPEC §2 surface every resource shares: envelopes for every error, request ids, trailing slashes,
//! body limits, health, readiness, metrics and the OpenAPI document.

use serde_json::json;

use crate::helpers::{Backend, TestApp};

async fn unknown_route_and_wrong_method_use_the_envelope(b: Backend) {
    let app = TestApp::spawn(b).await;
    app.get("/v1/nothing-here").send().await.expect(404, Some("not_found"));
    app.req(reqwest::Method::PUT, "/v1/roles").send().await.expect(405, Some("method_not_allowed"));
    // Every path answers 405 with the methods it has, single-method ones included.
    for (method, path, allow) in
        [("TRACE", "/healthz", "GET"), ("POST", "/v1/context", "GET"), ("GET", "/v1/auth/login", "POST")]
    {
        let r = app.req(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), path).send().await;
        r.expect(405, Some("method_not_allowed"));
        assert_eq!(r.headers["allow"], allow, "{method} {path}");
    }
    // A malformed id in a path is "no such resource", never a 500.
    let u = app.user("ann").await;
    app.get("/v1/roles/not-a-uuid").token(&u.token).send().await.expect(404, Some("not_found"));
}

async fn malformed_json_is_400_and_wrong_shape_is_422(b: Backend) {
    let app = TestApp::spawn(b).await;
    app.post("/v1/auth/login").raw("application/json", "{not json").send().await.expect(400, Some("bad_request"));
    app.post("/v1/auth/login").raw("text/plain", "hello").send().await.expect(400, Some("bad_request"));
    let r = app.post("/v1/auth/login").json(json!({"email": 5, "password": "x"})).send().await;
    r.expect(422, Some("validation_error"));
    let r = app.post("/v1/auth/register").json(json!({"email": "a@b.co"})).send().await;
    r.expect(422, Some("validation_error"));
    assert_eq!(r.error_fields(), vec!["password"], "{}", r.body);
    // A body is a JSON object: an array is not read as the fields in order (a no-op or a rename).
    let u = app.user("ann").await;
    let role = app.create_role(&u.token, "clerk").await.id();
    for body in [json!([]), json!(["renamed"])] {
        let r = app.patch(&format!("/v1/roles/{role}")).token(&u.token).json(body).send().await;
        r.expect(422, Some("validation_error"));
        assert_eq!(r.error_fields(), vec!["body"], "{}", r.body);
    }
    let r = app.get(&format!("/v1/roles/{role}")).token(&u.token).send().await;
    assert_eq!(r.data()["name"], "clerk");
    // Nesting deeper than the parser's limit (128) is refused, not a stack overflow.
    let deep = format!(r#"{{"first_name": "x", "attributes": {{"a": {}1{}}}}}"#, "[".repeat(5000), "]".repeat(5000));
    let r = app.post("/v1/contacts").token(&u.token).raw("application/json", deep).send().await;
    assert!(matches!(r.status.as_u16(), 400 | 422), "{} {}", r.status, r.body);
}

async fn oversized_bodies_are_413(b: Backend) {
    let app = TestApp::spawn_with(b, |s| s.http.body_limit = 2048).await;
    let big = "x".repeat(4096);
    let r = app.post("/v1/auth/login").json(json!({"email": big, "password": "x"})).send().await;
    r.expect(413, Some("payload_too_large"));
}

async fn request_ids_are_echoed_or_generated(b: Backend) {
    let app = TestApp::spawn(b).await;
    let r = app.get("/healthz").header("X-Request-Id", "trace-abc-123").send().await;
    assert_eq!(r.headers["x-request-id"], "trace-abc-123");
    let r = app.get("/healthz").send().await;
    let generated = r.headers["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(generated).is_ok(), "{generated}");
    let r = app.get("/v1/missing").send().await;
    assert!(r.headers.contains_key("x-request-id"), "errors carry the request id too");
}

async fn trailing_slashes_are_equivalent(b: Backend) {
    let app = TestApp::spawn(b).await;
    let u = app.user("tess").await;
    let a = app.get("/v1/roles").token(&u.token).send().await;
    let b2 = app.get("/v1/roles/").token(&u.token).send().await;
    a.expect(200, None);
    b2.expect(200, None);
    assert_eq!(a.body["meta"], b2.body["meta"]);
}

async fn health_readiness_metrics_and_docs_are_served(b: Backend) {
    let app = TestApp::spawn(b).await;
    let r = app.get("/healthz").send().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "ok");
    let r = app.get("/readyz").send().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["checks"]["database"], "ok");
    // Requests are counted by the route they matched, never by their path.
    let u = app.user("metrics-reader").await;
    let id = uuid::Uuid::now_v7();
    app.get(&format!("/v1/roles/{id}")).token(&u.token).send().await.expect(404, None);
    app.get(&format!("/v1/no-such-route-{id}")).send().await.expect(404, None);
    let r = app.get("/metrics").send().await;
    assert_eq!(r.status, 200);
    let text = r.body.as_str().unwrap();
    assert!(text.contains("http_requests_total"), "{text}");
    assert!(text.contains(r#"route="/v1/roles/{id}""#), "{text}");
    assert!(text.contains(r#"route="unmatched""#), "{text}");
    assert!(!text.contains(&id.to_string()), "{text}");
    assert!(text.contains("http_request_duration_seconds_bucket"), "{text}");
    let r = app.get("/v1/openapi.json").send().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["openapi"], "3.1.0");
    for path in
        ["/v1/auth/register", "/v1/auth/login", "/v1/context", "/v1/roles/{id}", "/v1/accounts/{id}/members/{user_id}"]
    {
        assert!(r.body["paths"].get(path).is_some(), "OpenAPI lacks {path}");
    }
    // Every documented operation is routed: unauthenticated, it is refused (401) or validated, never an
    // unknown route (404 "route") or a wrong method (405).
    let paths = r.body["paths"].as_object().unwrap().clone();
    let mut checked = 0;
    for (path, ops) in &paths {
        let concrete = path
            .replace("{id}", "0190f7a0-0000-7000-8000-000000000001")
            .replace("{user_id}", "0190f7a0-0000-7000-8000-000000000002")
            .replace("{tag_id}", "0190f7a0-0000-7000-8000-000000000003");
        for method in ops.as_object().unwrap().keys() {
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let res = app.req(m, &concrete).send().await;
            assert_ne!(res.status, 405, "{method} {path} is documented but not routed");
            assert_ne!(res.body["message"], "route not found", "{method} {path} is documented but not routed");
            checked += 1;
        }
    }
    assert!(paths.contains_key("/v1/contacts/import") && paths.contains_key("/v1/segments/{id}/count"));
    // Every operation documents the errors its kind answers (a client can rely on the list).
    for (path, ops) in &paths {
        for (method, op) in ops.as_object().unwrap() {
            let has = |status: &str| op["responses"].get(status).is_some();
            let secured = op.get("security").is_some_and(|s| !s.as_array().unwrap().is_empty());
            let mut wanted = vec![];
            if path.starts_with("/v1/") {
                wanted.extend(["400", "503"]);
            }
            if secured {
                wanted.extend(["401", "403"]);
            }
            if path.contains('{') {
                wanted.extend(["404", "422"]);
            }
            if op.get("requestBody").is_some() {
                wanted.extend(["413", "422"]);
            }
            for status in wanted {
                assert!(has(status), "{method} {path} does not document {status}");
            }
        }
    }
    assert!(checked > 60, "only {checked} operations documented");
    let docs = app.get("/docs").send().await;
    assert_eq!(docs.status, 200);
    assert!(docs.headers["content-type"].to_str().unwrap().starts_with("text/html"));
}

async fn readiness_fails_with_503_when_the_database_is_gone(b: Backend) {
    let app = TestApp::spawn(b).await;
    app.state.db.clone().close().await.ok();
    let r = app.get("/readyz").send().await;
    r.expect(503, Some("service_unavailable"));
}

/// Readiness means "can do this role's work". With the broker down (nothing listens at its address), an
/// API process stays ready — its writes wait in the outbox — and says the broker is unavailable; the
/// relay and worker roles are not ready. Split roles run on PostgreSQL only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_role_when_the_broker_is_down() {
    use turumba::app::{BuildOptions, Role};
    let Some(b) = Backend::postgres() else { return };
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let broker = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
    for (role, ready) in
        [(Role::Api, true), (Role::OutboxRelay, false), (Role::Worker, false), (Role::Dispatcher, false)]
    {
        let app = TestApp::spawn_full(
            b.clone(),
            |s| s.amqp_url = Some(turumba::config::Secret::new(broker.clone())),
            BuildOptions { role, ..Default::default() },
        )
        .await;
        let r = app.get("/readyz").send().await;
        if ready {
            assert_eq!(r.status, 200, "{role}: {}", r.body);
            assert_eq!(r.body["checks"]["database"], "ok");
            assert_eq!(r.body["checks"]["broker"], "unavailable", "{role}: {}", r.body);
            // And it keeps doing its work: a write is accepted into the outbox.
            app.user("rhea").await;
        } else {
            r.expect(503, Some("service_unavailable"));
        }
    }
}

async fn cors_allows_configured_origins_and_patch(b: Backend) {
    let app = TestApp::spawn_with(b, |s| s.cors.origins = "https://app.example".into()).await;
    let r = app
        .req(reqwest::Method::OPTIONS, "/v1/roles")
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "PATCH")
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.headers["access-control-allow-origin"], "https://app.example");
    assert!(r.headers["access-control-allow-methods"].to_str().unwrap().contains("PATCH"));
    let r = app.get("/healthz").header("Origin", "https://evil.example").send().await;
    assert!(!r.headers.contains_key("access-control-allow-origin"));
}

both_backends!(
    unknown_route_and_wrong_method_use_the_envelope,
    malformed_json_is_400_and_wrong_shape_is_422,
    oversized_bodies_are_413,
    request_ids_are_echoed_or_generated,
    trailing_slashes_are_equivalent,
    health_readiness_metrics_and_docs_are_served,
    readiness_fails_with_503_when_the_database_is_gone,
    cors_allows_configured_origins_and_patch,
);
