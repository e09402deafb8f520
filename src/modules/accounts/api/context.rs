//! Request context extractors: the HTTP side of tenancy.
//!
//! - [`AuthUser`]: a verified bearer token of an active user (no account selected).
//! - [`RequestCtx`]: `AuthUser` plus the active account (`X-Account-Id`, else the default, else the only
//!   one) and the caller's permissions there. Its [`AccountScope`] is the only way a store can be handed
//!   an account id for tenant data, which makes tenant scoping structural.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use uuid::Uuid;

use crate::error::AppError;
use crate::http::request_id;
use crate::modules::accounts::service::Accounts;
use crate::modules::accounts::tenancy::{Access, AccountScope, CurrentUser};
use crate::modules::events::EventMeta;

#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user: CurrentUser,
    pub request_id: String,
    /// The client's address, for the audit log.
    pub ip: String,
    /// The bearer token itself (Cognito's ChangePassword and GlobalSignOut take it).
    pub token: String,
}

#[derive(Debug, Clone)]
pub struct RequestCtx {
    pub user: CurrentUser,
    pub access: Access,
    pub request_id: String,
    /// The client's address, for the audit log.
    pub ip: String,
}

impl AuthUser {
    /// Who and which request, for the events this request emits.
    pub fn meta(&self) -> EventMeta {
        EventMeta { user_id: Some(self.user.id), request_id: Some(self.request_id.clone()), ip: Some(self.ip.clone()) }
    }
}

/// Event metadata of an unauthenticated request (its id and the client's address).
pub fn request_meta(req: &HttpRequest) -> EventMeta {
    let id = request_id(req);
    EventMeta { user_id: None, request_id: (!id.is_empty()).then_some(id), ip: Some(client_ip(req)) }
}

/// The client's address for the audit log: the connection's peer, and the address a proxy says it
/// forwarded for (`X-Forwarded-For`, `Forwarded`) beside it — recorded, never trusted alone.
pub fn client_ip(req: &HttpRequest) -> String {
    let peer = req.peer_addr().map(|a| a.ip().to_string()).unwrap_or_else(|| "unknown".into());
    let info = req.connection_info();
    match info.realip_remote_addr() {
        Some(real) if real != peer && !real.starts_with(&format!("{peer}:")) => format!("{peer} (for {real})"),
        _ => peer,
    }
}

impl RequestCtx {
    pub fn meta(&self) -> EventMeta {
        EventMeta { user_id: Some(self.user.id), request_id: Some(self.request_id.clone()), ip: Some(self.ip.clone()) }
    }
    pub fn scope(&self) -> AccountScope {
        self.access.scope
    }
    pub fn account_id(&self) -> Uuid {
        self.access.scope.account_id()
    }
    pub fn user_id(&self) -> Uuid {
        self.user.id
    }
    /// 403 unless the caller's role in the active account grants `permission`.
    pub fn require(&self, permission: &str) -> Result<(), AppError> {
        self.access.require(permission)
    }
}

pub(in crate::modules::accounts) fn bearer(req: &HttpRequest) -> Result<String, AppError> {
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .ok_or_else(|| AppError::Unauthorized("missing bearer token".into()))?;
    let value = header.to_str().map_err(|_| AppError::Unauthorized("invalid authorization header".into()))?;
    let (scheme, token) =
        value.split_once(' ').ok_or_else(|| AppError::Unauthorized("invalid authorization header".into()))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AppError::Unauthorized("expected a Bearer token".into()));
    }
    Ok(token.trim().to_string())
}

/// The [`Accounts`] service registered by the composition root (`App::app_data`).
fn accounts(req: &HttpRequest) -> Result<web::Data<Accounts>, AppError> {
    req.app_data::<web::Data<Accounts>>()
        .cloned()
        .ok_or_else(|| AppError::internal("the accounts service is not registered"))
}

/// The accounts a list filter names (`filter=account_id:eq:…` or `…:in:a,b`). SPEC §2: such a filter
/// only narrows the tenant scope (the stores AND the active account in regardless) and must name
/// accounts the caller may act in. Values that are not UUIDs are left to the list parser (400).
fn filtered_accounts(req: &HttpRequest) -> Vec<Uuid> {
    if !req.query_string().contains("account_id") {
        return Vec::new();
    }
    form_urlencoded::parse(req.query_string().as_bytes())
        .filter(|(k, _)| k == "filter")
        .filter_map(|(_, v)| crate::db::list::Filter::parse(&v).ok())
        .filter(|f| f.field == "account_id" && matches!(f.op, crate::db::list::Op::Eq | crate::db::list::Op::In))
        .flat_map(|f| {
            f.value.unwrap_or_default().split(',').filter_map(|v| Uuid::parse_str(v.trim()).ok()).collect::<Vec<_>>()
        })
        .collect()
}

/// 403 when an `account_id` filter names an account the caller cannot act in.
async fn check_filtered_accounts(accounts: &Accounts, user: &CurrentUser, named: Vec<Uuid>) -> Result<(), AppError> {
    for id in named {
        if accounts.access_to(user, id).await?.is_none() {
            return Err(AppError::forbidden("the account_id filter names an account you cannot act in"));
        }
    }
    Ok(())
}

impl FromRequest for AuthUser {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer(req);
        let accounts = accounts(req);
        let request_id = request_id(req);
        let named = filtered_accounts(req);
        let ip = client_ip(req);
        Box::pin(async move {
            let token = token?;
            let accounts = accounts?;
            let user = accounts.authenticate(&token).await?;
            check_filtered_accounts(&accounts, &user, named).await?;
            Ok(AuthUser { user, request_id, ip, token })
        })
    }
}

/// The `X-Account-Id` selection: absent → `None`; anything but a UUID → 403 (as for a foreign account).
pub fn selected_account(req: &HttpRequest) -> Result<Option<Uuid>, AppError> {
    let Some(value) = req.headers().get("x-account-id") else { return Ok(None) };
    value
        .to_str()
        .ok()
        .and_then(|s| Uuid::parse_str(s.trim()).ok())
        .map(Some)
        .ok_or_else(|| AppError::forbidden("X-Account-Id does not name an account you can act in"))
}

impl FromRequest for RequestCtx {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer(req);
        let accounts = accounts(req);
        let request_id = request_id(req);
        let selected = selected_account(req);
        let named = filtered_accounts(req);
        let ip = client_ip(req);
        Box::pin(async move {
            let accounts = accounts?;
            let (user, access) = accounts.authorize(&token?, selected?).await?;
            check_filtered_accounts(&accounts, &user, named).await?;
            tracing::Span::current().record("account_id", tracing::field::display(access.scope.account_id()));
            Ok(RequestCtx { user, access, request_id, ip })
        })
    }
}

/// [`RequestCtx`] for a Server-Sent Events stream: a browser's `EventSource` cannot send headers, so
/// the token may also come as `?access_token=` and the account as `?account_id=` (the headers win when
/// both are given). Only streams take it: a token in a URL can end up in access logs, and access
/// tokens are short-lived for that reason among others.
#[derive(Debug, Clone)]
pub struct StreamCtx(pub RequestCtx);

fn query_value(req: &HttpRequest, key: &str) -> Option<String> {
    form_urlencoded::parse(req.query_string().as_bytes()).find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
}

impl FromRequest for StreamCtx {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = match req.headers().contains_key(actix_web::http::header::AUTHORIZATION) {
            true => bearer(req),
            false => query_value(req, "access_token")
                .filter(|t| !t.trim().is_empty())
                .ok_or_else(|| AppError::Unauthorized("missing bearer token (header or access_token)".into())),
        };
        let selected = match (selected_account(req), query_value(req, "account_id")) {
            (Ok(None), Some(raw)) => Uuid::parse_str(raw.trim())
                .map(Some)
                .map_err(|_| AppError::forbidden("account_id does not name an account you can act in")),
            (selected, _) => selected,
        };
        let accounts = accounts(req);
        let request_id = request_id(req);
        let ip = client_ip(req);
        Box::pin(async move {
            let (user, access) = accounts?.authorize(&token?, selected?).await?;
            Ok(StreamCtx(RequestCtx { user, access, request_id, ip }))
        })
    }
}
