//! Fetching a message's files by URL for the providers that carry the bytes themselves (e-mail):
//! bounded in size and time, and by default never from this machine or a private network — a tenant's
//! URL must not reach a cloud metadata service or an internal admin port and come back attached to a
//! mail. The check applies to every address a name resolves to and to every redirect.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::adapter::{ErrorClass, ProviderError};

/// The default total size of the files of one message: base64 makes 18 MiB about the 25 MB most mail
/// services take.
pub const DEFAULT_MAX_BYTES: u64 = 18 * 1024 * 1024;

/// A file as fetched.
#[derive(Debug)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    /// The server's `Content-Type`, when it sent one.
    pub content_type: Option<String>,
}

#[derive(Clone)]
pub struct MediaFetcher {
    http: reqwest::Client,
    max_bytes: u64,
    allow_private: bool,
}

impl std::fmt::Debug for MediaFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MediaFetcher(max_bytes={}, allow_private={})", self.max_bytes, self.allow_private)
    }
}

impl Default for MediaFetcher {
    fn default() -> Self {
        MediaFetcher::new(Duration::from_secs(30), DEFAULT_MAX_BYTES, false)
    }
}

/// Whether an address is on the public internet (not loopback, private, link-local, shared, unspecified,
/// multicast or documentation space; IPv4-mapped IPv6 judged as its IPv4).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19)))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public(IpAddr::V4(v4)),
            None => {
                let first = v6.segments()[0];
                !(v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || (first & 0xfe00) == 0xfc00
                    || (first & 0xffc0) == 0xfe80
                    || first == 0x2001 && v6.segments()[1] == 0x0db8)
            }
        },
    }
}

/// The error a refused address gives (found again in reqwest's error chain).
#[derive(Debug)]
struct NotPublic(String);

impl std::fmt::Display for NotPublic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is not a public address", self.0)
    }
}

impl std::error::Error for NotPublic {}

/// The system resolver, keeping public addresses only.
struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = found.into_iter().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err(Box::new(NotPublic(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// A URL whose host is an address literal that is not public (names are checked when resolved).
fn literal_not_public(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => !is_public(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => !is_public(IpAddr::V6(ip)),
        _ => false,
    }
}

impl MediaFetcher {
    /// `timeout` bounds each file's whole download; `max_bytes` the files of one message together;
    /// `allow_private` lets URLs reach this machine and private networks (tests, closed installations).
    pub fn new(timeout: Duration, max_bytes: u64, allow_private: bool) -> Self {
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 5 {
                attempt.error("more than 5 redirects")
            } else if !allow_private && literal_not_public(attempt.url()) {
                let host = attempt.url().host_str().unwrap_or_default().to_string();
                attempt.error(NotPublic(host))
            } else {
                attempt.follow()
            }
        });
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(timeout)
            .redirect(redirects)
            .user_agent(concat!("turumba/", env!("CARGO_PKG_VERSION")));
        if !allow_private {
            // Names resolve here, so every address is checked; a proxy would resolve them out of sight.
            builder = builder.dns_resolver(Arc::new(PublicOnly)).no_proxy();
        }
        MediaFetcher { http: builder.build().expect("the HTTP client builds"), max_bytes, allow_private }
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Fetches `url`, refusing more than `budget` bytes (what is left of [`Self::max_bytes`] for the
    /// message's files). A missing file or a refused address is
    /// permanent (sending again cannot help); a timeout or a 5xx is transient.
    pub async fn fetch(&self, url: &str, budget: u64) -> Result<Fetched, ProviderError> {
        let permanent = |m: String| ProviderError::new(ErrorClass::Permanent, m).with_code("attachment");
        let parsed = reqwest::Url::parse(url).map_err(|e| permanent(format!("attachment {url}: {e}")))?;
        if !self.allow_private && literal_not_public(&parsed) {
            return Err(permanent(format!(
                "attachment {url}: {} is not a public address",
                parsed.host_str().unwrap_or("")
            )));
        }
        let mut resp = match self.http.get(parsed).send().await {
            Ok(r) => r,
            Err(e) => {
                let mut source: Option<&dyn std::error::Error> = Some(&e);
                while let Some(s) = source {
                    if let Some(np) = s.downcast_ref::<NotPublic>() {
                        return Err(permanent(format!("attachment {url}: {np}")));
                    }
                    source = s.source();
                }
                let err = ProviderError::from_http(&e);
                return Err(ProviderError { message: format!("attachment {url}: {}", err.message), ..err });
            }
        };
        let status = resp.status().as_u16();
        if !resp.status().is_success() {
            let class = if status >= 500 || status == 429 || status == 408 {
                ErrorClass::Transient
            } else {
                ErrorClass::Permanent
            };
            return Err(ProviderError::new(class, format!("attachment {url}: the server answered {status}"))
                .with_code("attachment"));
        }
        let max = self.max_bytes;
        let too_big = || permanent(format!("attachment {url}: the files of one message may have {max} bytes at most"));
        if resp.content_length().is_some_and(|n| n > budget) {
            return Err(too_big());
        }
        let content_type =
            resp.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
        let mut bytes = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if (bytes.len() + chunk.len()) as u64 > budget {
                        return Err(too_big());
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    let err = ProviderError::from_http(&e);
                    return Err(ProviderError { message: format!("attachment {url}: {}", err.message), ..err });
                }
            }
        }
        Ok(Fetched { bytes, content_type })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_count_as_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["8.8.8.8", "196.188.1.1", "2a00:1450:4001::200e", "::ffff:8.8.8.8"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[tokio::test]
    async fn private_urls_are_refused_before_any_connection() {
        // Nothing listens on port 9 here: a refused connection would be transient; the guard is permanent.
        let fetcher = MediaFetcher::default();
        for url in [
            "http://127.0.0.1:9/x.pdf",
            "http://[::1]:9/x.pdf",
            "http://localhost:9/x.pdf",
            "http://169.254.169.254/latest",
        ] {
            let e = fetcher.fetch(url, 1024).await.unwrap_err();
            assert_eq!(e.class, ErrorClass::Permanent, "{url}: {e:?}");
            assert!(e.message.contains("not a public address"), "{url}: {}", e.message);
        }
        // Allowed, the same URL reaches the network (and fails there, transiently).
        let open = MediaFetcher::new(Duration::from_secs(2), 1024, true);
        let e = open.fetch("http://127.0.0.1:9/x.pdf", 1024).await.unwrap_err();
        assert_eq!(e.class, ErrorClass::Transient, "{e:?}");
    }
}
