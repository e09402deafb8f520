//! A provider storm: a Telegram-format server that fails each recipient's first request in one of
//! four ways — 429 with a `retry_after` hint, 500, a connection reset after reading the request, no
//! answer at all — then accepts. The real server sends a group message through it; every recipient is
//! accepted exactly once, each failure is classified (a 429 spends no attempt, the others one), and
//! no message is lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{all_sent, channel_and_recipients, group_send, one_row_per_contact};
use crate::helpers::Backend;
use crate::processes::{Stack, count};

/// How the server answers a recipient's first request (by its index i = chat id − 9,000,000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum First {
    Accept,
    Throttle,
    ServerError,
    Reset,
    Silence,
}

fn first_answer(i: u64) -> First {
    match (i % 10, i % 50) {
        (_, 4) => First::Silence,
        (1, _) => First::Throttle,
        (2, _) => First::ServerError,
        (3, _) => First::Reset,
        _ => First::Accept,
    }
}

/// Per recipient index: (requests received, requests accepted).
type Seen = Arc<Mutex<HashMap<u64, (u32, u32)>>>;

struct Storm {
    base_url: String,
    seen: Seen,
}

impl Storm {
    async fn start() -> Storm {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let seen: Seen = Arc::default();
        let s = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(connection(stream, s.clone()));
            }
        });
        Storm { base_url, seen }
    }
}

fn response(status: &str, body: serde_json::Value) -> Vec<u8> {
    let body = body.to_string();
    format!("HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len())
        .into_bytes()
}

/// One keep-alive connection: reads each request whole (head and `content-length` body), then answers.
async fn connection(mut stream: TcpStream, seen: Seen) {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let (head_end, length) = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                break (end + 4, length);
            }
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(k) => buf.extend_from_slice(&chunk[..k]),
            }
        };
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(k) => buf.extend_from_slice(&chunk[..k]),
            }
        }
        let request: Vec<u8> = buf.drain(..head_end + length).collect();
        let head = String::from_utf8_lossy(&request[..head_end]).to_string();
        let path = head.split_whitespace().nth(1).unwrap_or_default().to_string();
        let answer = if path.ends_with("/getMe") {
            response(
                "200 OK",
                json!({"ok": true, "result": {"id": 1, "is_bot": true, "first_name": "T", "username": "t_bot"}}),
            )
        } else {
            let body: serde_json::Value = serde_json::from_slice(&request[head_end..]).unwrap_or_default();
            let chat: u64 = body["chat_id"].as_str().and_then(|c| c.parse().ok()).unwrap_or(0);
            let i = chat.saturating_sub(9_000_000);
            let nth = {
                let mut seen = seen.lock().unwrap();
                let e = seen.entry(i).or_default();
                e.0 += 1;
                e.0
            };
            match (nth, first_answer(i)) {
                (1, First::Throttle) => response(
                    "429 Too Many Requests",
                    json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 1",
                        "parameters": {"retry_after": 1}}),
                ),
                (1, First::ServerError) => response(
                    "500 Internal Server Error",
                    json!({"ok": false, "error_code": 500, "description": "Internal Server Error"}),
                ),
                (1, First::Reset) => {
                    // SO_LINGER 0: closing sends RST, as a crashed peer or a middlebox does.
                    let _ = stream.set_zero_linger();
                    return;
                }
                (1, First::Silence) => {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    return;
                }
                _ => {
                    seen.lock().unwrap().get_mut(&i).unwrap().1 += 1;
                    response(
                        "200 OK",
                        json!({"ok": true, "result": {"message_id": 7, "date": 1_763_800_000,
                        "chat": {"id": chat, "type": "private"}, "text": body["text"]}}),
                    )
                }
            }
        };
        if stream.write_all(&answer).await.is_err() {
            return;
        }
    }
}

pub(super) async fn a_provider_storm_is_classified_and_loses_nothing(b: Backend) {
    let n: u64 = 1_000;
    let storm = Storm::start().await;
    let mut stack = Stack::new(&b, None, None).await;
    stack.start("all").await;
    let c = stack.sign_in().await;
    let (ch, seg) = channel_and_recipients(&c, &storm.base_url, n as usize).await;
    let id = group_send(&c, &ch, &seg).await;
    all_sent(&c, &id, n as usize).await;
    let db = stack.db().await;
    one_row_per_contact(&db, n as usize).await;

    let seen = storm.seen.lock().unwrap().clone();
    assert_eq!(seen.len() as u64, n, "every recipient reached the provider");
    let mut by_kind: HashMap<First, usize> = HashMap::new();
    for (i, (requests, accepted)) in &seen {
        let kind = first_answer(*i);
        *by_kind.entry(kind).or_default() += 1;
        assert_eq!(*accepted, 1, "recipient {i} ({kind:?}) accepted exactly once");
        let expected = if kind == First::Accept { 1 } else { 2 };
        assert_eq!(*requests, expected, "recipient {i} ({kind:?}): one failed request, then one accepted");
    }
    // A 429 waits its hint without spending an attempt; a 500, a reset and a timeout spend one each.
    let once = by_kind[&First::Accept] + by_kind[&First::Throttle];
    let twice = by_kind[&First::ServerError] + by_kind[&First::Reset] + by_kind[&First::Silence];
    let attempts = |k: i64| {
        let db = &db;
        async move {
            count(db, &format!("SELECT COUNT(*) FROM messages WHERE group_message_id IS NOT NULL AND attempts = {k}"))
                .await
        }
    };
    assert_eq!((attempts(1).await, attempts(2).await), (once as i64, twice as i64), "{by_kind:?}");
    eprintln!("provider storm over {n} recipients: {by_kind:?}");
    stack.finish().await;
}
