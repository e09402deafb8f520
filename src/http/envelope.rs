//! The success envelopes of SPEC §2: `{"success": true, "data": ..., "message": null}` and the list form
//! `{"success": true, "data": [...], "meta": {"total", "skip", "limit"}}`.

use actix_web::HttpResponse;
use serde::Serialize;
use utoipa::ToSchema;

use crate::db::list::Page;

#[derive(Debug, Serialize, ToSchema)]
pub struct Envelope<T: ToSchema> {
    pub success: bool,
    pub data: T,
    pub message: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ListMeta {
    /// Count after filters, before paging.
    pub total: u64,
    pub skip: u64,
    pub limit: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ListEnvelope<T: ToSchema> {
    pub success: bool,
    pub data: Vec<T>,
    pub meta: ListMeta,
}

pub fn ok<T: Serialize + ToSchema>(data: T) -> HttpResponse {
    HttpResponse::Ok().json(Envelope { success: true, data, message: None })
}

pub fn created<T: Serialize + ToSchema>(data: T) -> HttpResponse {
    HttpResponse::Created().json(Envelope { success: true, data, message: None })
}

/// 202 with data: taken, and the caller has a step left (named in the data).
pub fn accepted_with<T: Serialize + ToSchema>(data: T) -> HttpResponse {
    HttpResponse::Accepted().json(Envelope { success: true, data, message: None })
}

pub fn accepted(message: &str) -> HttpResponse {
    HttpResponse::Accepted().json(serde_json::json!({ "success": true, "data": null, "message": message }))
}

pub fn no_content() -> HttpResponse {
    HttpResponse::NoContent().finish()
}

pub fn list<T: Serialize + ToSchema>(page: Page<T>) -> HttpResponse {
    HttpResponse::Ok().json(ListEnvelope {
        success: true,
        data: page.items,
        meta: ListMeta { total: page.total, skip: page.skip, limit: page.limit },
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CursorMeta {
    /// Count after filters, before paging.
    pub total: u64,
    pub skip: u64,
    pub limit: u64,
    /// Pass as `cursor=` for the next page (absent on the last page or when the order has no cursor).
    pub next_cursor: Option<String>,
    /// True when more items match than were counted: `total` is then a lower bound.
    pub total_is_lower_bound: bool,
}

/// A list envelope whose `meta` may carry `next_cursor` (keyset paging).
#[derive(Debug, Serialize, ToSchema)]
pub struct CursorEnvelope<T: ToSchema> {
    pub success: bool,
    pub data: Vec<T>,
    pub meta: CursorMeta,
}

pub fn cursor_list<T: Serialize + ToSchema>(
    page: Page<T>,
    next_cursor: Option<String>,
    total_is_lower_bound: bool,
) -> HttpResponse {
    HttpResponse::Ok().json(CursorEnvelope {
        success: true,
        data: page.items,
        meta: CursorMeta { total: page.total, skip: page.skip, limit: page.limit, next_cursor, total_is_lower_bound },
    })
}
