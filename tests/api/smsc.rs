//! An SMSC for the SMPP tests, built from the rusmpp codec: binds (checking system id and password),
//! `submit_sm` answered with `submit_sm_resp` and followed by a `deliver_sm` delivery receipt,
//! `enquire_link`, `unbind`, mobile-originated `deliver_sm` on demand, and a forced disconnect.

use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use rusmpp::pdus::{BindTransceiverResp, DeliverSm, SubmitSm, SubmitSmResp};
use rusmpp::tokio_codec::CommandCodec;
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, Npi, Ton};
use rusmpp::{Command, CommandStatus, Pdu};
use tokio::sync::mpsc;
use tokio_util::codec::Framed;

pub const SYSTEM_ID: &str = "turumba";
pub const PASSWORD: &str = "smpp-pw";
/// Destinations the SMSC refuses: throttled, and an invalid address.
pub const THROTTLED_DEST: &str = "251900000429";
pub const INVALID_DEST: &str = "251900000000";

enum Out {
    Command(Box<Command>),
    Close,
}

#[derive(Clone)]
pub struct Smsc {
    pub port: u16,
    pub submits: Arc<Mutex<Vec<SubmitSm>>>,
    /// Sequence numbers of the `deliver_sm_resp` received.
    pub acked: Arc<Mutex<Vec<u32>>>,
    pub binds: Arc<AtomicUsize>,
    pub enquire_links: Arc<AtomicUsize>,
    /// When false, enquire_link goes unanswered (a hung SMSC).
    pub answer_enquire_link: Arc<std::sync::atomic::AtomicBool>,
    conns: Arc<Mutex<Vec<mpsc::UnboundedSender<Out>>>>,
    /// Bumped by `disconnect_all`: a connection of an older generation answers nothing more, so a PDU
    /// that races the forced disconnect is never answered on the dropped link.
    generation: Arc<AtomicUsize>,
    seq: Arc<AtomicUsize>,
}

fn respond(seq: u32, status: CommandStatus, pdu: impl Into<Pdu>) -> Command {
    Command::builder().status(status).sequence_number(seq).pdu(pdu)
}

impl Smsc {
    pub async fn start(receipts: bool) -> Smsc {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let smsc = Smsc {
            port: listener.local_addr().unwrap().port(),
            submits: Arc::default(),
            acked: Arc::default(),
            binds: Arc::default(),
            enquire_links: Arc::default(),
            answer_enquire_link: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            conns: Arc::default(),
            generation: Arc::default(),
            seq: Arc::new(AtomicUsize::new(5000)),
        };
        let s = smsc.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move { s.serve(stream, receipts).await });
            }
        });
        smsc
    }

    fn next_seq(&self) -> u32 {
        self.seq.fetch_add(1, Ordering::Relaxed) as u32
    }

    async fn serve(&self, stream: tokio::net::TcpStream, receipts: bool) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let generation = {
            let mut conns = self.conns.lock().unwrap();
            conns.push(tx);
            self.generation.load(Ordering::SeqCst)
        };
        let mut framed = Framed::new(stream, CommandCodec::new());
        loop {
            tokio::select! {
                incoming = framed.next() => {
                    let Some(Ok(cmd)) = incoming else { break };
                    if self.generation.load(Ordering::SeqCst) != generation {
                        break;
                    }
                    let seq = cmd.sequence_number();
                    let reply = match cmd.pdu() {
                        Some(Pdu::BindTransceiver(_)) | Some(Pdu::BindTransmitter(_)) => {
                            let (id, pw) = match cmd.pdu() {
                                Some(Pdu::BindTransceiver(b)) => (b.system_id.as_str(), b.password.as_str()),
                                Some(Pdu::BindTransmitter(b)) => (b.system_id.as_str(), b.password.as_str()),
                                _ => unreachable!(),
                            };
                            let ok = id == SYSTEM_ID && pw == PASSWORD;
                            if ok {
                                self.binds.fetch_add(1, Ordering::SeqCst);
                            }
                            let status = if ok { CommandStatus::EsmeRok } else { CommandStatus::EsmeRinvpaswd };
                            let resp = BindTransceiverResp::new(COctetString::from_str("smsc").unwrap(), None);
                            vec![respond(seq, status, Pdu::BindTransceiverResp(resp))]
                        }
                        Some(Pdu::SubmitSm(sm)) => {
                            let n = {
                                let mut all = self.submits.lock().unwrap();
                                all.push(sm.clone());
                                all.len()
                            };
                            let dest = sm.destination_addr.as_str().to_string();
                            let id = format!("smsc-{n}");
                            let status = match dest.as_str() {
                                THROTTLED_DEST => CommandStatus::EsmeRthrottled,
                                INVALID_DEST => CommandStatus::EsmeRinvdstadr,
                                _ => CommandStatus::EsmeRok,
                            };
                            let resp = SubmitSmResp::builder().message_id(COctetString::from_str(&id).unwrap()).build();
                            let mut out = vec![respond(seq, status, Pdu::SubmitSmResp(resp))];
                            if receipts && status == CommandStatus::EsmeRok {
                                let text = format!("id:{id} sub:001 dlvrd:001 submit date:2611221200 done date:2611221201 stat:DELIVRD err:000 text:");
                                let receipt = DeliverSm::builder()
                                    .source_addr_ton(Ton::International)
                                    .source_addr_npi(Npi::Isdn)
                                    .source_addr(COctetString::from_str(&dest).unwrap())
                                    .destination_addr(COctetString::from_str(sm.source_addr.as_str()).unwrap())
                                    .esm_class(EsmClass::from(0x04u8))
                                    .short_message(OctetString::from_str(&text).unwrap())
                                    .build();
                                out.push(respond(self.next_seq(), CommandStatus::EsmeRok, Pdu::DeliverSm(receipt)));
                            }
                            out
                        }
                        Some(Pdu::EnquireLink) => {
                            self.enquire_links.fetch_add(1, Ordering::SeqCst);
                            if self.answer_enquire_link.load(Ordering::SeqCst) {
                                vec![respond(seq, CommandStatus::EsmeRok, Pdu::EnquireLinkResp)]
                            } else {
                                vec![]
                            }
                        }
                        Some(Pdu::Unbind) => {
                            let _ = framed.send(respond(seq, CommandStatus::EsmeRok, Pdu::UnbindResp)).await;
                            break;
                        }
                        Some(Pdu::DeliverSmResp(_)) => {
                            self.acked.lock().unwrap().push(seq);
                            vec![]
                        }
                        _ => vec![],
                    };
                    for r in reply {
                        if framed.send(r).await.is_err() {
                            return;
                        }
                    }
                }
                out = rx.recv() => match out {
                    Some(Out::Command(c)) => {
                        if framed.send(*c).await.is_err() {
                            return;
                        }
                    }
                    Some(Out::Close) | None => return,
                },
            }
        }
    }

    /// A mobile-originated message from `from` (digits) to every bound ESME.
    pub fn deliver_mo(&self, from: &str, to: &str, text: &str) {
        let (coding, body) = match turumba::modules::channels::encode_gsm7(text) {
            Some(b) => (DataCoding::McSpecific, b),
            None => (DataCoding::Ucs2, turumba::modules::channels::encode_ucs2(text)),
        };
        for c in self.conns.lock().unwrap().iter() {
            let mo = DeliverSm::builder()
                .source_addr_ton(Ton::International)
                .source_addr_npi(Npi::Isdn)
                .source_addr(COctetString::from_str(from).unwrap())
                .destination_addr(COctetString::from_str(to).unwrap())
                .data_coding(coding)
                .short_message(OctetString::from_vec(body.clone()).unwrap())
                .build();
            let _ =
                c.send(Out::Command(Box::new(respond(self.next_seq(), CommandStatus::EsmeRok, Pdu::DeliverSm(mo)))));
        }
    }

    /// Drops every connection, as an SMSC restart would.
    pub fn disconnect_all(&self) {
        let mut conns = self.conns.lock().unwrap();
        self.generation.fetch_add(1, Ordering::SeqCst);
        for c in conns.drain(..) {
            let _ = c.send(Out::Close);
        }
    }
}
