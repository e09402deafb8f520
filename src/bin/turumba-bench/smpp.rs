//! `turumba-bench smpp`: `submit_sm` throughput on one windowed bind against a minimal local SMSC.

use std::sync::Arc;

use crate::adapters::send_many;

/// The least an SMSC must do for the benchmarks: accept any bind, answer every submit_sm (counted in
/// `submits` across binds), enquire_link and unbind.
async fn bench_smsc(port: u16, submits: Arc<std::sync::atomic::AtomicU64>) -> u16 {
    use futures_util::{SinkExt, StreamExt};
    use rusmpp::pdus::{BindTransceiverResp, BindTransmitterResp, SubmitSmResp};
    use rusmpp::types::COctetString;
    use rusmpp::{Command, CommandStatus, Pdu};
    use std::str::FromStr;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let submits = submits.clone();
            tokio::spawn(async move {
                let mut framed = tokio_util::codec::Framed::new(stream, rusmpp::tokio_codec::CommandCodec::new());
                while let Some(Ok(cmd)) = framed.next().await {
                    let system_id = || COctetString::from_str("smsc").unwrap();
                    let pdu: Pdu = match cmd.pdu() {
                        Some(Pdu::BindTransceiver(_)) => {
                            Pdu::BindTransceiverResp(BindTransceiverResp::new(system_id(), None))
                        }
                        Some(Pdu::BindTransmitter(_)) => {
                            Pdu::BindTransmitterResp(BindTransmitterResp::new(system_id(), None))
                        }
                        Some(Pdu::SubmitSm(_)) => {
                            let n = submits.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                            let id = COctetString::from_str(&format!("m{n}")).unwrap();
                            Pdu::SubmitSmResp(SubmitSmResp::builder().message_id(id).build())
                        }
                        Some(Pdu::EnquireLink) => Pdu::EnquireLinkResp,
                        Some(Pdu::Unbind) => Pdu::UnbindResp,
                        _ => continue,
                    };
                    let resp = Command::builder()
                        .status(CommandStatus::EsmeRok)
                        .sequence_number(cmd.sequence_number())
                        .pdu(pdu);
                    if framed.send(resp).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

pub(crate) async fn bench_smpp(sends: u64, concurrency: u64) {
    use turumba::modules::channels::SMPP_WINDOW as WINDOW;
    let port = bench_smsc(0, Arc::default()).await;
    let (ok, elapsed) = submit_many(port, sends, concurrency).await;
    println!(
        "smpp submit_sm on one bind: {ok}/{sends} in {:.2} s = {:.0} submit_sm/s (window {WINDOW}, {concurrency} sends queued)",
        elapsed.as_secs_f64(),
        ok as f64 / elapsed.as_secs_f64()
    );
}

/// `sends` submit_sm through the SMPP adapter on one bind to the SMSC on `port` (after 1,000 to warm
/// up): (how many were answered, how long).
pub(crate) async fn submit_many(port: u16, sends: u64, concurrency: u64) -> (usize, std::time::Duration) {
    use turumba::modules::channels::Smpp;
    use turumba::modules::channels::{ChannelContext, ProviderAdapter};
    use turumba::modules::channels::{Credentials, SmppCredentials};
    let adapter = Arc::new(Smpp::new(None, None));
    let ctx = Arc::new(ChannelContext::standalone(Credentials::Smpp(SmppCredentials {
        host: "127.0.0.1".into(),
        port,
        system_id: "bench".into(),
        password: "bench".into(),
        system_type: None,
        source_addr: "Turumba".into(),
        source_addr_ton: None,
        source_addr_npi: None,
        bind_type: "transceiver".into(),
    })));
    adapter.verify(&ctx).await.expect("bind");
    let run = |n: u64| send_many(adapter.clone(), ctx.clone(), n, concurrency, |i| format!("+2519{i:08}"));
    run(1000).await;
    run(sends).await
}

/// `turumba-bench smsc`: the benchmark SMSC as a process of its own, for gateways under test (see
/// `bench/peers/jasmin_vs_turumba.sh`). Prints `submits <count> <unix ms>` whenever the count changed
/// (looked at every 5 ms), so a script sees when its messages have all arrived.
pub(crate) async fn serve_smsc(port: u16) {
    let submits: Arc<std::sync::atomic::AtomicU64> = Arc::default();
    let port = bench_smsc(port, submits.clone()).await;
    println!("listening {port}");
    let mut told = 0;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let n = submits.load(std::sync::atomic::Ordering::SeqCst);
        if n != told {
            println!("submits {n} {}", chrono::Utc::now().timestamp_millis());
            told = n;
        }
    }
}
