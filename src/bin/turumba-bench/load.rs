//! `turumba-bench http-load`: `count` HTTP requests with `concurrency` in flight over keep-alive
//! connections, for comparing gateways' send APIs (see `bench/peers/jasmin_vs_turumba.sh`).

use std::time::Instant;

use futures_util::StreamExt;

use crate::{ms, pct};

#[derive(clap::Args, Debug)]
pub(crate) struct LoadArgs {
    /// The URL; `{n}` is replaced with the request's number (in the body too).
    #[arg(long)]
    url: String,
    #[arg(long, default_value = "GET")]
    method: String,
    #[arg(long)]
    body: Option<String>,
    /// `name: value`, repeatable.
    #[arg(long)]
    header: Vec<String>,
    #[arg(long, default_value_t = 5000)]
    count: u64,
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Answers counted as accepted (others are failures).
    #[arg(long, default_value_t = 200)]
    expect: u16,
}

pub(crate) async fn run(args: LoadArgs) {
    let http = reqwest::Client::builder().pool_max_idle_per_host(args.concurrency).build().expect("client");
    let method: reqwest::Method = args.method.parse().expect("an HTTP method");
    let headers: Vec<(String, String)> = args
        .header
        .iter()
        .map(|h| {
            let (k, v) = h.split_once(':').expect("a header is `name: value`");
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect();
    println!("start {}", chrono::Utc::now().timestamp_millis());
    let t = Instant::now();
    let results: Vec<(bool, std::time::Duration)> = futures_util::stream::iter(0..args.count)
        .map(|n| {
            let mut req = http.request(method.clone(), args.url.replace("{n}", &format!("{n:06}")));
            for (k, v) in &headers {
                req = req.header(k, v);
            }
            if let Some(b) = &args.body {
                req = req.body(b.replace("{n}", &format!("{n:06}")));
            }
            let expect = args.expect;
            async move {
                let t = Instant::now();
                let ok = req.send().await.is_ok_and(|r| r.status().as_u16() == expect);
                (ok, t.elapsed())
            }
        })
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    let elapsed = t.elapsed();
    let failed = results.iter().filter(|(ok, _)| !ok).count();
    let mut latencies: Vec<_> = results.iter().map(|(_, d)| *d).collect();
    latencies.sort();
    println!(
        "http-load: {} requests, {} in flight, {:.2} s = {:.0} req/s, {} failed, p50 {:.1} ms, p99 {:.1} ms",
        args.count,
        args.concurrency,
        elapsed.as_secs_f64(),
        args.count as f64 / elapsed.as_secs_f64(),
        failed,
        ms(pct(&latencies, 0.5)),
        ms(pct(&latencies, 0.99))
    );
}
