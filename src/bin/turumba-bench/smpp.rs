//! `turumba-bench smpp`: `submit_sm` throughput on one windowed bind against a minimal local SMSC.

use std::sync::Arc;

use crate::adapters::send_many;

/// The least an SMSC must do for the benchmark: accept any bind, answer every submit_sm.
async fn bench_smsc() -> u16 {
    use futures_util::{SinkExt, StreamExt};
    use rusmpp::pdus::{BindTransceiverResp, SubmitSmResp};
    use rusmpp::types::COctetString;
    use rusmpp::{Command, CommandStatus, Pdu};
    use std::str::FromStr;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut framed = tokio_util::codec::Framed::new(stream, rusmpp::tokio_codec::CommandCodec::new());
                let mut n = 0u64;
                while let Some(Ok(cmd)) = framed.next().await {
                    let pdu: Pdu = match cmd.pdu() {
                        Some(Pdu::BindTransceiver(_)) => Pdu::BindTransceiverResp(BindTransceiverResp::new(
                            COctetString::from_str("smsc").unwrap(),
                            None,
                        )),
                        Some(Pdu::SubmitSm(_)) => {
                            n += 1;
                            let id = COctetString::from_str(&format!("m{n}")).unwrap();
                            Pdu::SubmitSmResp(SubmitSmResp::builder().message_id(id).build())
                        }
                        Some(Pdu::EnquireLink) => Pdu::EnquireLinkResp,
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
    use turumba::modules::channels::{ChannelContext, ProviderAdapter};
    use turumba::modules::channels::{Credentials, SmppCredentials};
    use turumba::modules::channels::{SMPP_WINDOW as WINDOW, Smpp};
    let port = bench_smsc().await;
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
    let (ok, elapsed) = run(sends).await;
    println!(
        "smpp submit_sm on one bind: {ok}/{sends} in {:.2} s = {:.0} submit_sm/s (window {WINDOW}, {concurrency} sends queued)",
        elapsed.as_secs_f64(),
        ok as f64 / elapsed.as_secs_f64()
    );
}
