//! The provider adapters, one file each, all behind [`super::adapter::ProviderAdapter`].

pub mod sandbox;
pub mod telegram;

use std::sync::Arc;
use std::time::Duration;

use super::adapter::AdapterSet;

/// One HTTP client for every HTTP provider: pooled keep-alive connections, bounded waits.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(64)
        .user_agent(concat!("turumba/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the HTTP client builds")
}

/// Every adapter this build has.
pub fn all(http: reqwest::Client) -> AdapterSet {
    AdapterSet::default().with(Arc::new(sandbox::Sandbox)).with(Arc::new(telegram::Telegram::new(http)))
}

/// `Retry-After` in seconds (the only form providers here send).
pub fn retry_after_header(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}
