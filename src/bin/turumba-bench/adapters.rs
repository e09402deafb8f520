//! `turumba-bench adapters`: provider adapter sends over HTTP keep-alive against a local server in the
//! Telegram Bot API format.

use std::sync::Arc;
use std::time::{Duration, Instant};

use uuid::Uuid;

/// A local server in the Telegram Bot API format, one worker (it shares the two cores with the client).
pub(crate) fn telegram_format_server() -> (String, actix_web::dev::ServerHandle) {
    telegram_format_server_on(0)
}

/// [`telegram_format_server`] on a given port (0: any).
pub(crate) fn telegram_format_server_on(port: u16) -> (String, actix_web::dev::ServerHandle) {
    use actix_web::{App, HttpResponse, HttpServer, web};
    let server = HttpServer::new(|| {
        App::new().default_service(web::to(|body: web::Bytes| async move {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            HttpResponse::Ok().json(serde_json::json!({"ok": true, "result": {
                "message_id": 1, "date": 1_763_800_000, "chat": {"id": 1, "type": "private"}, "text": v["text"]}}))
        }))
    })
    .workers(1)
    .bind(("127.0.0.1", port))
    .expect("bind")
    .disable_signals();
    let port = server.addrs()[0].port();
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    (format!("http://127.0.0.1:{port}"), handle)
}

pub(crate) async fn bench_adapters(sends: u64, concurrency: u64) {
    use turumba::modules::channels::ChannelContext;
    use turumba::modules::channels::{Credentials, TelegramCredentials};
    use turumba::modules::channels::{Telegram, http_client};
    let (base, handle) = telegram_format_server();
    let adapter = Arc::new(Telegram::new(http_client()));
    let ctx = Arc::new(ChannelContext::standalone(Credentials::Telegram(TelegramCredentials {
        bot_token: "123456:bench-token".into(),
        base_url: Some(base),
    })));
    let run = |n: u64| send_many(adapter.clone(), ctx.clone(), n, concurrency, |i| format!("{}", 100_000 + i));
    run(1000).await; // warm the connection pool
    let (ok, elapsed) = run(sends).await;
    println!(
        "telegram-format HTTP adapter: {ok}/{sends} sends in {:.2} s = {:.0} sends/s ({concurrency} in flight, keep-alive pool)",
        elapsed.as_secs_f64(),
        ok as f64 / elapsed.as_secs_f64()
    );
    handle.stop(false).await;
}

/// Sends `n` messages through `adapter` with `concurrency` in flight; (how many succeeded, how long).
pub(crate) async fn send_many(
    adapter: Arc<dyn turumba::modules::channels::ProviderAdapter>,
    ctx: Arc<turumba::modules::channels::ChannelContext>,
    n: u64,
    concurrency: u64,
    to: impl Fn(u64) -> String,
) -> (usize, Duration) {
    use futures_util::StreamExt;
    use turumba::modules::channels::OutboundMessage;
    let t = Instant::now();
    let ok = futures_util::stream::iter(0..n)
        .map(|i| {
            let (adapter, ctx) = (adapter.clone(), ctx.clone());
            let m = OutboundMessage {
                message_id: Uuid::now_v7(),
                to: to(i),
                text: "Benchmark message from Turumba".into(),
                ..Default::default()
            };
            async move { adapter.send(&ctx, &m).await.is_ok() }
        })
        .buffer_unordered(concurrency as usize)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    (ok, t.elapsed())
}
