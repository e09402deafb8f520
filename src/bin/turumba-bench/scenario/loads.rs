//! The loads: requests timed one by one, and reads through wrk.

use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::{ms, pct};

/// Requests timed one by one.
pub(super) struct Timed {
    pub(super) secs: f64,
    pub(super) ok: usize,
    pub(super) failed: usize,
    pub(super) latencies: Vec<Duration>,
    pub(super) first_failure: Option<String>,
}

impl Timed {
    pub(super) fn rate(&self) -> f64 {
        self.ok as f64 / self.secs
    }
    pub(super) fn p(&self, q: f64) -> Option<f64> {
        (!self.latencies.is_empty()).then(|| ms(pct(&self.latencies, q)))
    }
    pub(super) fn failures(&self) -> String {
        match &self.first_failure {
            Some(f) => format!("{} failed (first: {f})", self.failed),
            None => String::new(),
        }
    }
}

/// `n` requests with `clients` in flight over keep-alive connections; those answering `expect` count.
pub(super) async fn drive(
    n: u64,
    clients: usize,
    expect: u16,
    request: impl Fn(u64) -> reqwest::RequestBuilder,
) -> Timed {
    let started = Instant::now();
    let results: Vec<(Result<(), String>, Duration)> = futures_util::stream::iter(0..n)
        .map(|i| {
            let req = request(i);
            async move {
                let t = Instant::now();
                let outcome = match req.send().await {
                    Ok(r) if r.status().as_u16() == expect => Ok(()),
                    Ok(r) => Err(format!("{} {}", r.status().as_u16(), r.text().await.unwrap_or_default())),
                    Err(e) => Err(e.to_string()),
                };
                (outcome, t.elapsed())
            }
        })
        .buffer_unordered(clients)
        .collect()
        .await;
    let secs = started.elapsed().as_secs_f64();
    let mut latencies: Vec<Duration> = results.iter().map(|(_, d)| *d).collect();
    latencies.sort();
    let failed = results.iter().filter(|(r, _)| r.is_err()).count();
    let first_failure = results.iter().find_map(|(r, _)| r.clone().err()).map(|e| e.chars().take(200).collect());
    Timed { secs, ok: results.len() - failed, failed, latencies, first_failure }
}

/// A read load for `secs` seconds at `clients` connections: wrk when it is installed (the lightest
/// client, so the server gets the cores), else this program's own client. (requests/s, p50, p99, note)
pub(super) async fn read_load(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    clients: u64,
    secs: u64,
) -> (f64, f64, f64, String) {
    let wrk = Command::new("wrk")
        .args(["-t2", &format!("-c{clients}"), &format!("-d{secs}s"), "--latency"])
        .args(["-H", &format!("authorization: Bearer {token}"), url])
        .output();
    if let Ok(out) = wrk
        && out.status.success()
    {
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let field = |prefix: &str| {
            text.lines().find(|l| l.trim_start().starts_with(prefix)).and_then(|l| l.split_whitespace().nth(1))
        };
        let rps = field("Requests/sec:").and_then(|v| v.parse().ok()).unwrap_or(0.0);
        let non2xx: u64 = text
            .lines()
            .find(|l| l.contains("Non-2xx"))
            .and_then(|l| l.split_whitespace().last()?.parse().ok())
            .unwrap_or(0);
        let note = if non2xx > 0 { format!("wrk -c{clients}; {non2xx} non-2xx") } else { format!("wrk -c{clients}") };
        return (rps, wrk_ms(field("50%")), wrk_ms(field("99%")), note);
    }
    // No wrk: the same load from this program for about as long.
    let probe = drive(200, clients as usize, 200, |_| http.get(url).bearer_auth(token)).await;
    let n = (probe.rate() * secs as f64) as u64;
    let t = drive(n.max(200), clients as usize, 200, |_| http.get(url).bearer_auth(token)).await;
    let note = format!("{clients} clients (wrk not installed) {}", t.failures());
    (t.rate(), t.p(0.5).unwrap_or(0.0), t.p(0.99).unwrap_or(0.0), note)
}

/// wrk's `1.23ms`, `850.00us`, `1.02s` in milliseconds.
pub(super) fn wrk_ms(v: Option<&str>) -> f64 {
    let Some(v) = v else { return 0.0 };
    let (num, factor) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (v, 1.0)
    };
    num.parse::<f64>().map(|x| x * factor).unwrap_or(0.0)
}
