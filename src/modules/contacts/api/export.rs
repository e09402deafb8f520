//! `GET /v1/contacts/export`: the CSV export, streamed.

use actix_web::{HttpResponse, web};
use futures_util::stream;
use uuid::Uuid;

use crate::db::list::ListQuery;
use crate::error::{AppError, AppResult, ErrorBody};
use crate::modules::accounts::RequestCtx;
use crate::modules::contacts::Contacts;
use crate::modules::contacts::export::{ExportSelection, header_only};

/// Streams the contacts as CSV. Options: `filter=` (repeatable), `segment_id=`, `group_id=`, `q=`.
#[utoipa::path(get, path = "/v1/contacts/export", tag = "contacts",
    params(("filter" = Option<Vec<String>>, Query), ("segment_id" = Option<Uuid>, Query), ("group_id" = Option<Uuid>, Query)),
    responses((status = 200, content_type = "text/csv", description = "CSV, streamed"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn export_contacts(contacts: web::Data<Contacts>, ctx: RequestCtx, q: ListQuery) -> AppResult<HttpResponse> {
    ctx.require("contacts:export")?;
    let mut selection = ExportSelection { filters: q.filters, ..Default::default() };
    for (k, v) in &q.extra {
        let id = || Uuid::parse_str(v).map_err(|_| AppError::bad_request(format!("{k} must be a UUID")));
        match k.as_str() {
            "segment_id" => selection.segment_id = Some(id()?),
            "group_id" => selection.group_id = Some(id()?),
            "q" => selection.search = Some(v.clone()),
            _ => {}
        }
    }
    let plan = contacts.plan_export(ctx.scope(), &selection).await?;
    // The first page is produced before answering, so an error there is still a proper error response.
    let Some(first) = contacts.export_page(&plan, None, true).await? else {
        return Ok(csv_response().body(header_only()));
    };
    let first = Some(first);
    let contacts = contacts.into_inner();
    let body = stream::unfold((first, Some(plan), contacts), |(ready, plan, contacts)| async move {
        let plan = plan?;
        match ready {
            Some((bytes, last, _)) => {
                let next = contacts.export_page(&plan, Some(last), false).await;
                let next = match next {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::error!(error = %e, "contact export stopped");
                        None
                    }
                };
                Some((Ok::<_, actix_web::Error>(bytes::Bytes::from(bytes)), (next, Some(plan), contacts)))
            }
            None => None,
        }
    });
    Ok(csv_response().streaming(body))
}

fn csv_response() -> actix_web::HttpResponseBuilder {
    let mut r = HttpResponse::Ok();
    r.content_type("text/csv; charset=utf-8")
        .insert_header(("content-disposition", "attachment; filename=\"contacts.csv\""));
    r
}

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/contacts/export").route(web::get().to(export_contacts)));
}
