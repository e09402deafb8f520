//! The connection layer under the HTTP parser. Some requests are refused by the parser itself, before
//! any middleware sees them: a URL over 64 KiB (the `http` crate's ceiling), a malformed request line or
//! header, a head that does not arrive within the request timeout, headers over the buffer size. The
//! parser then writes a bare status line with an empty body. [`Enveloped`] wraps each connection and
//! turns those bare refusals into the SPEC error envelope — and a request line longer than
//! [`super::limits::MAX_URL_LENGTH`] into the usual `414 URI Too Long` — so a client gets the same
//! answer shape at every layer.

use std::io;
use std::net::TcpListener;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use actix_http::body::MessageBody;
use actix_http::{HttpService, Protocol, Request, Response};
use actix_server::Server;
use actix_service::{IntoServiceFactory, Service, ServiceFactory, ServiceFactoryExt, fn_service, map_config};
use actix_web::dev::AppConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::error::AppError;

/// How the HTTP server runs.
#[derive(Debug, Clone, Copy)]
pub struct ServerOptions {
    pub workers: usize,
    /// Open connections at most, over all workers.
    pub max_connections: usize,
    /// Seconds in-flight requests get to finish on shutdown.
    pub shutdown_timeout_secs: u64,
}

/// Serves the application built by `factory` on `listener`, every connection [`Enveloped`]. What
/// `actix_web::HttpServer` does, with the connection layer in between (it offers no hook for one).
pub fn serve<F, I, S, B>(listener: TcpListener, options: ServerOptions, factory: F) -> io::Result<Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: std::fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let addr = listener.local_addr()?;
    let builder = actix_server::Server::build();
    let shutdown = builder.graceful_shutdown_signal();
    let workers = options.workers.max(1);
    Ok(builder
        .workers(workers)
        .max_concurrent_connections(options.max_connections.div_ceil(workers))
        .shutdown_timeout(options.shutdown_timeout_secs)
        .listen(format!("turumba-http-{addr}"), listener, move || {
            let shutdown = shutdown.clone();
            let app = factory().into_factory().map_err(|e| e.into().error_response());
            let http = HttpService::build()
                .graceful_shutdown_signal(move || {
                    let signal = shutdown.clone();
                    async move { signal.notified().await }
                })
                .client_request_timeout(Duration::from_secs(5))
                .client_disconnect_timeout(Duration::from_secs(1))
                .local_addr(addr)
                .finish(map_config(app, move |_| AppConfig::default()));
            fn_service(|io: TcpStream| async move {
                let _ = io.set_nodelay(true);
                let peer = io.peer_addr().ok();
                Ok((Enveloped::new(io), Protocol::Http1, peer))
            })
            .and_then(http)
        })?
        .run())
}

/// A connection whose parser refusals are answered with the error envelope.
pub struct Enveloped<T> {
    io: T,
    /// Bytes read since the last line feed.
    line: usize,
    /// The longest line read since the last response began.
    longest: usize,
    /// A replacement answer still to be written, and how much of it is out.
    pending: Option<(Vec<u8>, usize)>,
}

impl<T> Enveloped<T> {
    pub fn new(io: T) -> Self {
        Enveloped { io, line: 0, longest: 0, pending: None }
    }

    pub fn get_ref(&self) -> &T {
        &self.io
    }
}

/// The status of a bare refusal at the start of `buf` and the length of its head, if it is one: the
/// parser's answers carry `content-length: 0`, every answer of the application a JSON body.
fn bare_refusal(buf: &[u8]) -> Option<(u16, usize)> {
    const REFUSALS: [(&[u8], u16); 3] = [
        (b"HTTP/1.1 400 Bad Request\r\n", 400),
        (b"HTTP/1.1 408 Request Timeout\r\n", 408),
        (b"HTTP/1.1 431 Request Header Fields Too Large\r\n", 431),
    ];
    let (_, status) = REFUSALS.iter().find(|(line, _)| buf.starts_with(line))?;
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    head.contains("\r\ncontent-length: 0\r\n").then_some((*status, end))
}

/// The envelope answer for a refusal; the connection closes after it, as the parser's would.
fn envelope(status: u16, longest_line: usize) -> Vec<u8> {
    let limit = super::limits::MAX_URL_LENGTH;
    let (status, error) = match status {
        400 if longest_line > limit => (414, AppError::UriTooLong { limit }),
        400 => (400, AppError::bad_request("malformed HTTP request")),
        408 => (408, AppError::RequestTimeout("the request head did not arrive in time".into())),
        _ => (431, AppError::BadRequest { code: "headers_too_large", message: "request headers are too large".into() }),
    };
    let reason = actix_web::http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
    let body = serde_json::to_vec(&error.body()).unwrap_or_default();
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend(body);
    out
}

impl<T: AsyncWrite + Unpin> Enveloped<T> {
    /// Writes out a pending replacement answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, sent)) = &mut self.pending {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &bytes[*sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *sent += n;
            if *sent == bytes.len() {
                self.pending = None;
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Enveloped<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        for &b in &buf.filled()[before..] {
            if b == b'\n' {
                this.line = 0;
            } else {
                this.line += 1;
                this.longest = this.longest.max(this.line);
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Enveloped<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_pending(cx))?;
        if let Some((status, head)) = bare_refusal(buf) {
            this.pending = Some((envelope(status, this.longest), 0));
            // What is not written now is written by the next write, flush or shutdown.
            if let Poll::Ready(Err(e)) = this.poll_pending(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(head));
        }
        if buf.starts_with(b"HTTP/1.") {
            this.longest = this.line;
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_parsers_bare_refusals_are_replaced() {
        let bare = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\ndate: x\r\n\r\n";
        assert_eq!(bare_refusal(bare), Some((400, bare.len())));
        let app = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 80\r\ncontent-type: application/json\r\n\r\n{}";
        assert_eq!(bare_refusal(app), None, "the application's answers carry their envelope");
        assert_eq!(bare_refusal(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"), None);
        let timeout = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(bare_refusal(timeout).map(|r| r.0), Some(408));
    }

    #[test]
    fn a_long_request_line_is_a_414_envelope() {
        let text = String::from_utf8(envelope(400, 100_000)).unwrap();
        assert!(text.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{text}");
        let body: serde_json::Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["error"], "uri_too_long");
        assert!(String::from_utf8(envelope(400, 10)).unwrap().starts_with("HTTP/1.1 400 Bad Request\r\n"));
    }
}
