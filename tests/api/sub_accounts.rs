//! Sub-accounts (issue 17, item 2) and the `account_id` list filter (item 5): an agency creates its
//! clients' accounts, acts in them with its own role (`accounts:manage`) down to the depth limit, while a
//! client's own members never reach the agency; the filter narrows within the accounts a caller may
//! act in and never widens.

use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, TestUser};

/// Creates a sub-account of `parent` as `u`; asserts the 201 and returns its id.
pub async fn sub_account(app: &TestApp, u: &TestUser, parent: &str, name: &str) -> String {
    let r = app
        .post(&format!("/v1/accounts/{parent}/sub-accounts"))
        .token(&u.token)
        .json(json!({"name": name}))
        .send()
        .await;
    r.expect(201, None);
    assert_eq!(r.data()["parent_id"], parent, "{}", r.body);
    r.id()
}

/// A new user whom `agency` makes the admin of its client account `client`.
pub async fn client_admin(app: &TestApp, agency: &TestUser, client: &str, name: &str) -> TestUser {
    let owner = app.user(name).await;
    let admin_role = app.role_id_with(&agency.token, client, "admin").await;
    app.post(&format!("/v1/accounts/{client}/members"))
        .token(&agency.token)
        .json(json!({"email": owner.email, "role_id": admin_role}))
        .send()
        .await
        .expect(201, None);
    owner
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_string()).collect()
}

async fn an_agency_acts_in_its_clients_accounts_down_to_the_depth_limit(b: Backend) {
    let app = TestApp::spawn(b).await;
    let agency = app.user("agency").await;
    let client = sub_account(&app, &agency, &agency.account_id, "Clinic").await;
    let branch = sub_account(&app, &agency, &client, "Clinic branch").await;
    // Three levels by default: a fourth is refused.
    app.post(&format!("/v1/accounts/{branch}/sub-accounts"))
        .token(&agency.token)
        .json(json!({"name": "too deep"}))
        .send()
        .await
        .expect(409, Some("conflict"));

    // The lists show the tree with parent ids.
    let r = app.get(&format!("/v1/accounts/{}/sub-accounts", agency.account_id)).token(&agency.token).send().await;
    r.expect(200, None);
    assert_eq!(ids(r.data()), vec![client.clone()]);
    let r = app.get("/v1/accounts?sort=created_at:asc").token(&agency.token).send().await;
    assert_eq!(ids(r.data()), vec![agency.account_id.clone(), client.clone(), branch.clone()]);
    assert_eq!(r.data()[2]["parent_id"], client);
    let r = app.get("/v1/context").token(&agency.token).send().await;
    let accounts = r.data()["accounts"].as_array().unwrap().clone();
    assert_eq!(accounts.len(), 3, "{}", r.body);
    let of = |id: &str| accounts.iter().find(|a| a["id"] == id).unwrap().clone();
    assert_eq!((of(&client)["via_parent"].clone(), of(&client)["role"]["name"].clone()), (json!(true), json!("admin")));
    assert_eq!(of(&branch)["parent_id"], client);
    assert_eq!(of(&agency.account_id)["via_parent"], false);

    // The agency works in the grandchild with its own role; the data stays in that account.
    let c = app
        .post("/v1/contacts")
        .token(&agency.token)
        .account(&branch)
        .json(json!({"phone": "+251911000001", "first_name": "Abebe"}))
        .send()
        .await;
    c.expect(201, None);
    assert_eq!(c.data()["account_id"], branch);
    let r = app.get("/v1/contacts").token(&agency.token).account(&branch).send().await;
    assert_eq!(r.body["meta"]["total"], 1);
    let r = app.get("/v1/contacts").token(&agency.token).send().await;
    assert_eq!(r.body["meta"]["total"], 0, "the agency's own account holds none of its clients' contacts");
    let r = app.get("/v1/context").token(&agency.token).account(&branch).send().await;
    assert_eq!(r.data()["active_account_id"], branch);

    // Deleting an account that has sub-accounts is refused; bottom-up it works (with its data).
    app.delete(&format!("/v1/accounts/{client}")).token(&agency.token).send().await.expect(409, Some("conflict"));
    app.delete(&format!("/v1/accounts/{branch}")).token(&agency.token).send().await.expect(204, None);
    app.delete(&format!("/v1/accounts/{client}")).token(&agency.token).send().await.expect(204, None);
}

async fn a_clients_own_members_never_reach_the_agency(b: Backend) {
    let app = TestApp::spawn(b).await;
    let agency = app.user("agency").await;
    let client = sub_account(&app, &agency, &agency.account_id, "Shop").await;
    let owner = client_admin(&app, &agency, &client, "shopowner").await;

    // The owner works in the shop ...
    app.get("/v1/contacts").token(&owner.token).account(&client).send().await.expect(200, None);
    let r = app.get("/v1/accounts").token(&owner.token).send().await;
    assert!(ids(r.data()).contains(&client));
    assert!(!ids(r.data()).contains(&agency.account_id), "{}", r.body);
    // ... and never in the agency, whatever the route.
    app.get("/v1/contacts").token(&owner.token).account(&agency.account_id).send().await.expect(403, Some("forbidden"));
    let aid = &agency.account_id;
    app.get(&format!("/v1/accounts/{aid}")).token(&owner.token).send().await.expect(404, Some("not_found"));
    app.patch(&format!("/v1/accounts/{aid}"))
        .token(&owner.token)
        .json(json!({"name": "mine"}))
        .send()
        .await
        .expect(404, Some("not_found"));
    app.get(&format!("/v1/accounts/{aid}/sub-accounts"))
        .token(&owner.token)
        .send()
        .await
        .expect(404, Some("not_found"));
    app.get(&format!("/v1/accounts/{aid}/members")).token(&owner.token).send().await.expect(404, Some("not_found"));
    // Not even a sibling created later.
    let sibling = sub_account(&app, &agency, aid, "Other shop").await;
    app.get("/v1/contacts").token(&owner.token).account(&sibling).send().await.expect(403, Some("forbidden"));
    app.get(&format!("/v1/accounts/{sibling}")).token(&owner.token).send().await.expect(404, Some("not_found"));
}

async fn only_accounts_manage_reaches_sub_accounts(b: Backend) {
    let app = TestApp::spawn(b).await;
    let agency = app.user("agency").await;
    let client = sub_account(&app, &agency, &agency.account_id, "School").await;
    let viewer = app.user("viewer").await;
    app.add_member(&agency, &viewer, "viewer").await;
    app.get("/v1/contacts").token(&viewer.token).account(&client).send().await.expect(403, Some("forbidden"));
    app.get(&format!("/v1/accounts/{client}")).token(&viewer.token).send().await.expect(404, Some("not_found"));
    // A viewer of the agency can read the agency's list of clients but not add one.
    let r = app.get(&format!("/v1/accounts/{}/sub-accounts", agency.account_id)).token(&viewer.token).send().await;
    assert_eq!(ids(r.data()), vec![client.clone()]);
    app.post(&format!("/v1/accounts/{}/sub-accounts", agency.account_id))
        .token(&viewer.token)
        .json(json!({"name": "x"}))
        .send()
        .await
        .expect(403, Some("forbidden"));
    let r = app.get("/v1/context").token(&viewer.token).send().await;
    assert!(!ids(&r.data()["accounts"]).contains(&client));
}

async fn another_tenants_sub_accounts_are_404_for_every_verb(b: Backend) {
    let app = TestApp::spawn(b).await;
    let agency = app.user("agency").await;
    let client = sub_account(&app, &agency, &agency.account_id, "Client").await;
    let z = app.user("zed").await;
    let aid = &agency.account_id;
    app.get(&format!("/v1/accounts/{aid}/sub-accounts")).token(&z.token).send().await.expect(404, Some("not_found"));
    app.post(&format!("/v1/accounts/{aid}/sub-accounts"))
        .token(&z.token)
        .json(json!({"name": "mine"}))
        .send()
        .await
        .expect(404, Some("not_found"));
    app.get(&format!("/v1/accounts/{client}")).token(&z.token).send().await.expect(404, Some("not_found"));
    app.patch(&format!("/v1/accounts/{client}"))
        .token(&z.token)
        .json(json!({"name": "pwned"}))
        .send()
        .await
        .expect(404, Some("not_found"));
    app.delete(&format!("/v1/accounts/{client}")).token(&z.token).send().await.expect(404, Some("not_found"));
    app.get("/v1/contacts").token(&z.token).account(&client).send().await.expect(403, Some("forbidden"));
    let r = app.get("/v1/accounts").token(&z.token).send().await;
    assert_eq!(ids(r.data()), vec![z.account_id.clone()]);
    // Bad input.
    let r = app
        .post(&format!("/v1/accounts/{aid}/sub-accounts"))
        .token(&agency.token)
        .json(json!({"name": ""}))
        .send()
        .await;
    r.expect(422, Some("validation_error"));
    let r = app
        .post(&format!("/v1/accounts/{aid}/sub-accounts"))
        .token(&agency.token)
        .json(json!({"name": "x", "timezone": "Mars/Olympus"}))
        .send()
        .await;
    r.expect(422, Some("validation_error"));
    assert_eq!(r.error_fields(), vec!["timezone"]);
}

async fn the_account_id_filter_narrows_and_never_widens(b: Backend) {
    let app = TestApp::spawn(b).await;
    let agency = app.user("agency").await;
    let client = sub_account(&app, &agency, &agency.account_id, "Client").await;
    let z = app.user("zed").await;
    for (account, phone) in [(&agency.account_id, "+251911000001"), (&client, "+251911000002")] {
        app.post("/v1/contacts")
            .token(&agency.token)
            .account(account)
            .json(json!({"phone": phone}))
            .send()
            .await
            .expect(201, None);
    }
    let list = |account: &str, filter: String| {
        app.get(&format!("/v1/contacts?filter={filter}")).token(&agency.token).account(account).send()
    };
    let r = list(&client, format!("account_id:eq:{client}")).await;
    r.expect(200, None);
    assert_eq!((r.body["meta"]["total"].clone(), r.data()[0]["phone"].clone()), (json!(1), json!("+251911000002")));
    // Naming another account the caller may act in narrows to nothing: the active account still applies.
    let r = list(&client, format!("account_id:eq:{}", agency.account_id)).await;
    assert_eq!(r.body["meta"]["total"], 0);
    let r = list(&agency.account_id, format!("account_id:in:{},{client}", agency.account_id)).await;
    assert_eq!(r.body["meta"]["total"], 1);
    // An account the caller cannot act in is refused; a value that is no UUID is a bad filter.
    list(&client, format!("account_id:eq:{}", z.account_id)).await.expect(403, Some("forbidden"));
    list(&client, format!("account_id:in:{client},{}", z.account_id)).await.expect(403, Some("forbidden"));
    list(&client, "account_id:eq:nope".into()).await.expect(400, Some("bad_request"));
    // The same on another resource and on the accounts list.
    let r =
        app.get(&format!("/v1/roles?filter=account_id:eq:{client}")).token(&agency.token).account(&client).send().await;
    assert_eq!(r.body["meta"]["total"], 3);
    let r = app.get(&format!("/v1/accounts?filter=account_id:eq:{client}")).token(&agency.token).send().await;
    assert_eq!(ids(r.data()), vec![client.clone()]);
    app.get(&format!("/v1/accounts?filter=account_id:eq:{}", z.account_id))
        .token(&agency.token)
        .send()
        .await
        .expect(403, Some("forbidden"));
}

async fn the_depth_limit_is_a_setting(b: Backend) {
    let app = TestApp::spawn_with(b, |s| s.accounts.max_depth = 1).await;
    let u = app.user("solo").await;
    app.post(&format!("/v1/accounts/{}/sub-accounts", u.account_id))
        .token(&u.token)
        .json(json!({"name": "x"}))
        .send()
        .await
        .expect(409, Some("conflict"));
}

/// Accounts that had sub-accounts before `accounts.has_sub_accounts` existed are marked by its migration
/// (their managers still reach the sub-accounts); new ones are marked when created.
async fn accounts_with_sub_accounts_are_marked(b: Backend) {
    use migration::MigratorTrait;
    use sea_orm::ConnectionTrait;
    let app = TestApp::spawn(b).await;
    let u = app.user("agency").await;
    let child = sub_account(&app, &u, &u.account_id, "Client").await;
    let marked = "SELECT COUNT(*) FROM accounts WHERE has_sub_accounts";
    assert_eq!(crate::receipts::count(&app, marked).await, 1);
    // Undo the column and apply it again: the data migration marks the parent.
    crate::migrations::undo_from(&app.state.db, "m20261129_000021_account_has_sub_accounts").await;
    assert!(app.state.db.execute_unprepared(marked).await.is_err(), "the column is gone");
    migration::Migrator::up(&app.state.db, None).await.unwrap();
    assert_eq!(crate::receipts::count(&app, marked).await, 1);
    let r = app.get(&format!("/v1/accounts/{child}")).token(&u.token).send().await;
    r.expect(200, None);
}

both_backends!(
    accounts_with_sub_accounts_are_marked,
    an_agency_acts_in_its_clients_accounts_down_to_the_depth_limit,
    a_clients_own_members_never_reach_the_agency,
    only_accounts_manage_reaches_sub_accounts,
    another_tenants_sub_accounts_are_404_for_every_verb,
    the_account_id_filter_narrows_and_never_widens,
    the_depth_limit_is_a_setting,
);
