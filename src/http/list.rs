//! [`ListQuery`] as an actix extractor: handlers take `q: ListQuery`, parsed from the query string (a bad
//! filter, sort or paging parameter is a 400 before the handler runs).

use std::future::{Ready, ready};

use actix_web::{FromRequest, HttpRequest, dev::Payload};

use crate::db::list::ListQuery;
use crate::error::AppError;

impl FromRequest for ListQuery {
    type Error = AppError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(ListQuery::parse(req.query_string()))
    }
}
