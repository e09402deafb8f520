//! Limits every request meets before a handler runs, whichever route it takes:
//!
//! - a URL longer than [`MAX_URL_LENGTH`] is a 414 (the filter language's own limits fit well inside);
//! - a request body must keep arriving: no bytes for [`RequestLimits::body_idle`], or the whole body not
//!   in within [`RequestLimits::body_total`], is a 408 and the connection is closed (a client announcing
//!   `Content-Length: 100` and sending 10 bytes no longer holds a connection open);
//! - a JSON body may not carry a NUL character (`\u0000`) in any string: PostgreSQL cannot store one in
//!   text, and no name, attribute or message needs one (422 on `body`, on both databases).
//!
//! The body checks wrap the request's payload stream, so every extractor (JSON, bytes, multipart) reads
//! through them; when one trips, the answer is replaced by the error, whatever the extractor made of it.

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{HttpMessage, ResponseError};
use futures_util::Stream;
use tokio::time::{Instant, Sleep};

use crate::error::{AppError, FieldError};

/// The longest accepted URL (path and query), in bytes.
pub const MAX_URL_LENGTH: usize = 32 * 1024;

/// Body timeouts, from the settings (registered as app data).
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// Longest wait for the next bytes of a body.
    pub body_idle: Duration,
    /// Longest time to receive a whole body.
    pub body_total: Duration,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits { body_idle: Duration::from_secs(10), body_total: Duration::from_secs(300) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Trip {
    Idle,
    Total,
    Nul,
}

impl Trip {
    fn error(self, limits: &RequestLimits) -> AppError {
        match self {
            Trip::Idle => AppError::RequestTimeout(format!(
                "no bytes of the body arrived for {} s",
                limits.body_idle.as_secs_f64()
            )),
            Trip::Total => AppError::RequestTimeout(format!(
                "the whole body must arrive within {} s",
                limits.body_total.as_secs_f64()
            )),
            Trip::Nul => {
                AppError::Validation(vec![FieldError::new("body", "text must not contain NUL characters (\\u0000)")])
            }
        }
    }
}

/// The middleware: see the module documentation.
pub async fn guard_request(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let url_length = req.uri().path().len() + req.uri().query().map_or(0, |q| q.len() + 1);
    if url_length > MAX_URL_LENGTH {
        let res = AppError::UriTooLong { limit: MAX_URL_LENGTH }.error_response();
        return Ok(req.into_response(res));
    }
    let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
        || req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim() != "0");
    if !has_body {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let limits = req.app_data::<RequestLimits>().copied().unwrap_or_default();
    let json = req.content_type().ends_with("json");
    let tripped = Rc::new(Cell::new(None));
    let guarded = GuardedBody {
        inner: req.take_payload(),
        idle: limits.body_idle,
        idle_timer: Box::pin(tokio::time::sleep(limits.body_idle)),
        deadline: Box::pin(tokio::time::sleep(limits.body_total)),
        nul: json.then(NulScan::default),
        tripped: tripped.clone(),
    };
    req.set_payload(Payload::Stream { payload: Box::pin(guarded) });
    let res = next.call(req).await?;
    match tripped.get() {
        None => Ok(res.map_into_boxed_body()),
        Some(trip) => {
            let mut error = trip.error(&limits).error_response();
            // The rest of the body may still be on its way: this connection ends with the answer.
            error.head_mut().set_connection_type(actix_web::http::ConnectionType::Close);
            let (req, _) = res.into_parts();
            Ok(ServiceResponse::new(req, error))
        }
    }
}

/// The payload with its timers and the NUL check.
struct GuardedBody {
    inner: Payload,
    idle: Duration,
    idle_timer: Pin<Box<Sleep>>,
    deadline: Pin<Box<Sleep>>,
    nul: Option<NulScan>,
    tripped: Rc<Cell<Option<Trip>>>,
}

impl GuardedBody {
    fn trip(&mut self, trip: Trip) -> Poll<Option<Result<Bytes, PayloadError>>> {
        self.tripped.set(Some(trip));
        let kind = if trip == Trip::Nul { std::io::ErrorKind::InvalidData } else { std::io::ErrorKind::TimedOut };
        Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(kind, "request body refused")))))
    }
}

impl Stream for GuardedBody {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.tripped.get().is_some() {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                if this.nul.as_mut().is_some_and(|scan| scan.feed(&bytes)) {
                    return this.trip(Trip::Nul);
                }
                let next = Instant::now() + this.idle;
                this.idle_timer.as_mut().reset(next);
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(other) => Poll::Ready(other),
            Poll::Pending => {
                if this.deadline.as_mut().poll(cx).is_ready() {
                    return this.trip(Trip::Total);
                }
                if this.idle_timer.as_mut().poll(cx).is_ready() {
                    return this.trip(Trip::Idle);
                }
                Poll::Pending
            }
        }
    }
}

/// Finds a `\u0000` escape inside a JSON string, across chunk boundaries (a raw NUL byte is already
/// invalid JSON).
#[derive(Debug, Default)]
struct NulScan {
    in_string: bool,
    escape: bool,
    /// Inside `\uXXXX`: hex digits seen so far, and whether all were `0`.
    hex: Option<(u8, bool)>,
}

impl NulScan {
    fn feed(&mut self, bytes: &[u8]) -> bool {
        for &b in bytes {
            if let Some((seen, zero)) = self.hex {
                let zero = zero && b == b'0';
                if seen == 3 {
                    self.hex = None;
                    if zero {
                        return true;
                    }
                } else {
                    self.hex = Some((seen + 1, zero));
                }
            } else if self.escape {
                self.escape = false;
                if b == b'u' {
                    self.hex = Some((0, true));
                }
            } else if self.in_string {
                match b {
                    b'\\' => self.escape = true,
                    b'"' => self.in_string = false,
                    _ => {}
                }
            } else if b == b'"' {
                self.in_string = true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has_nul(chunks: &[&str]) -> bool {
        let mut scan = NulScan::default();
        chunks.iter().any(|c| scan.feed(c.as_bytes()))
    }

    #[test]
    fn nul_escapes_are_found_in_strings_across_chunks() {
        assert!(has_nul(&[r#"{"name": "a\u0000b"}"#]));
        assert!(has_nul(&[r#"{"name": "a\u00"#, r#"00b"}"#]));
        assert!(has_nul(&[r#"{"a\u0000": 1}"#]), "keys too");
        assert!(has_nul(&[r#"{"name": "a\"#, r#"u0000"}"#]));
        assert!(!has_nul(&[r#"{"name": "a\\u0000b"}"#]), "an escaped backslash followed by text");
        assert!(!has_nul(&[r#"{"name": "a\u0001 \u1000 \u00e9"}"#]));
        assert!(!has_nul(&[r#"{"n": 0, "m": "u0000"}"#]));
    }
}
