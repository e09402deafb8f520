//! SMPP 3.4 over rusmppc: one persistent bind per channel (transceiver by default), `enquire_link`
//! keep-alive, rebinding with exponential backoff after the link drops, a window of outstanding
//! `submit_sm` per bind, GSM-7 (data_coding 0, unpacked septets) or UCS-2 (data_coding 8) with UDH
//! concatenation for long texts, and `deliver_sm` handled as delivery receipts (esm_class bit 2) or
//! inbound messages, both answered with `deliver_sm_resp` and handed to the inbox.
//!
//! Command statuses classify failures: ESME_RTHROTTLED / ESME_RMSGQFUL → throttled; ESME_RINVPASWD,
//! ESME_RINVSYSID, ESME_RBINDFAIL → auth; ESME_RSYSERR, ESME_RSUBMITFAIL and a lost link → transient;
//! anything else (invalid destination, …) → permanent.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::StreamExt;
use rusmpp::pdus::{BindTransceiver, BindTransmitter, DeliverSm, DeliverSmResp, SubmitSm};
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, InterfaceVersion, Npi, RegisteredDelivery, Ton};
use rusmpp::{CommandStatus, Pdu};
use rusmppc::{Client, ConnectionBuilder, Event};
use serde_json::json;
use sha2::Digest;
use tokio::sync::{Mutex as AsyncMutex, Semaphore, mpsc};
use uuid::Uuid;

use crate::modules::channels::adapter::{
    ChannelContext, ErrorClass, OutboundMessage, ProviderAdapter, ProviderError, SendReceipt, WebhookItem,
    WebhookRequest,
};
use crate::modules::channels::credentials::{Credentials, SmppCredentials};
use crate::modules::channels::leases::{BindLeases, LEASE_TTL};
use crate::modules::channels::sms::{self, Encoding};

/// Outstanding `submit_sm` per bind.
pub const WINDOW: usize = 16;
/// Longest wait between rebind attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// A `deliver_sm` turned into inbox items. `stored` is answered once the inbox has it (only then is
/// the SMSC sent its `deliver_sm_resp`).
#[derive(Debug)]
pub struct SmppDelivery {
    pub channel_id: Uuid,
    pub event_id: String,
    pub raw: String,
    pub items: Vec<WebhookItem>,
    pub stored: Option<tokio::sync::oneshot::Sender<bool>>,
}

struct Session {
    creds: SmppCredentials,
    client: Client,
    window: Semaphore,
    next_ref: AtomicU8,
}

#[derive(Default)]
struct Slot {
    session: Option<Arc<Session>>,
    failures: u32,
    retry_at: Option<Instant>,
}

pub struct Smpp {
    slots: Mutex<HashMap<Uuid, Arc<AsyncMutex<Slot>>>>,
    deliveries: Option<mpsc::Sender<SmppDelivery>>,
    /// With several dispatcher processes, only the lease holder binds a channel.
    leases: Option<BindLeases>,
    /// `enquire_link` interval; a link that does not answer within it (at most 10 s) is closed.
    keepalive: Duration,
}

fn creds(channel: &ChannelContext) -> Result<&SmppCredentials, ProviderError> {
    match &channel.credentials {
        Credentials::Smpp(c) => Ok(c),
        _ => Err(ProviderError::new(ErrorClass::Permanent, "not an SMPP channel")),
    }
}

fn status_error(status: CommandStatus, what: &str) -> ProviderError {
    let class = match status {
        CommandStatus::EsmeRthrottled | CommandStatus::EsmeRmsgqful => ErrorClass::Throttled,
        CommandStatus::EsmeRinvpaswd | CommandStatus::EsmeRinvsysid | CommandStatus::EsmeRbindfail => ErrorClass::Auth,
        CommandStatus::EsmeRsyserr | CommandStatus::EsmeRsubmitfail => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    };
    let code = u32::from(status);
    let e = ProviderError::new(class, format!("smpp: {what} refused: {status:?} (0x{code:08X})"))
        .with_code(format!("0x{code:08X}"));
    if class == ErrorClass::Throttled { e.retry_after(Some(Duration::from_secs(1))) } else { e }
}

fn transient_db(e: sea_orm::DbErr) -> ProviderError {
    ProviderError::new(ErrorClass::Transient, format!("smpp: bind lease unavailable: {e}"))
}

fn client_error(e: rusmppc::error::Error, what: &str) -> ProviderError {
    match e {
        rusmppc::error::Error::UnexpectedResponse { response } => status_error(response.status(), what),
        other => ProviderError::new(ErrorClass::Transient, format!("smpp: {what} failed: {other}")),
    }
}

fn coctet<const MIN: usize, const MAX: usize>(s: &str, field: &str) -> Result<COctetString<MIN, MAX>, ProviderError> {
    COctetString::from_str(s).map_err(|e| ProviderError::new(ErrorClass::Permanent, format!("smpp: {field}: {e}")))
}

/// Source address type: alphanumeric sender ids are TON 5 / NPI 0, numbers international (1 / 1),
/// unless the credentials say otherwise.
fn source_ton_npi(c: &SmppCredentials) -> (Ton, Npi) {
    let alpha = c.source_addr.chars().any(|ch| ch.is_ascii_alphabetic());
    let ton = c.source_addr_ton.map(Ton::from).unwrap_or(if alpha { Ton::Alphanumeric } else { Ton::International });
    let npi = c.source_addr_npi.map(Npi::from).unwrap_or(if alpha { Npi::Unknown } else { Npi::Isdn });
    (ton, npi)
}

/// The `short_message` payloads of `text`: one, or several each with a concatenation UDH
/// (IEI 0x00, 8-bit reference) when it does not fit one message.
pub fn payloads(text: &str, reference: u8) -> (Encoding, Vec<Vec<u8>>) {
    let (encoding, parts) = sms::split(text);
    let encode = |p: &str| match encoding {
        Encoding::Gsm7 => sms::encode_gsm7(p).unwrap_or_default(),
        Encoding::Ucs2 => sms::encode_ucs2(p),
    };
    if parts.len() == 1 {
        return (encoding, vec![encode(&parts[0])]);
    }
    let total = parts.len() as u8;
    let bodies = parts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut b = vec![0x05, 0x00, 0x03, reference, total, i as u8 + 1];
            b.extend(encode(p));
            b
        })
        .collect();
    (encoding, bodies)
}

/// Reads an SMSC delivery receipt (`id:… sub:… dlvrd:… submit date:… done date:… stat:… err:…`).
pub fn parse_receipt(text: &str) -> Option<(String, String, Option<String>)> {
    let field = |name: &str| {
        text.split_whitespace().find_map(|w| w.strip_prefix(name).map(str::to_string)).filter(|v| !v.is_empty())
    };
    let id = field("id:")?;
    let stat = field("stat:")?;
    let status = match stat.to_ascii_uppercase().as_str() {
        "DELIVRD" => "delivered",
        "UNDELIV" | "REJECTD" | "EXPIRED" | "DELETED" => "failed",
        "ENROUTE" | "ACCEPTD" => "accepted",
        _ => "unknown",
    };
    let err = field("err:").filter(|e| !e.trim_start_matches('0').is_empty());
    Some((id, status.to_string(), err.map(|e| format!("{stat} err {e}"))))
}

fn decode(d: &DeliverSm) -> String {
    let bytes: &[u8] = d.short_message().as_ref();
    let has_udh = u8::from(d.esm_class) & 0x40 != 0;
    let body = if has_udh && !bytes.is_empty() { &bytes[(bytes[0] as usize + 1).min(bytes.len())..] } else { bytes };
    match u8::from(d.data_coding) {
        0x08 => sms::decode_ucs2(body),
        0x00 | 0x01 => sms::decode_gsm7(body),
        _ => String::from_utf8_lossy(body).into_owned(),
    }
}

/// One `deliver_sm` as inbox items.
pub fn delivery_items(channel_id: Uuid, d: &DeliverSm) -> SmppDelivery {
    let source = d.source_addr.as_str().to_string();
    let text = decode(d);
    let is_receipt = u8::from(d.esm_class) & 0x04 != 0;
    let raw = json!({
        "source_addr": source,
        "destination_addr": d.destination_addr.as_str(),
        "esm_class": u8::from(d.esm_class),
        "data_coding": u8::from(d.data_coding),
        "text": text,
    });
    if is_receipt && let Some((id, status, error)) = parse_receipt(&text) {
        return SmppDelivery {
            channel_id,
            event_id: format!("dlr:{id}:{status}"),
            raw: raw.to_string(),
            items: vec![WebhookItem::Status { provider_message_id: id, status, error, at: None, raw }],
            stored: None,
        };
    }
    // A mobile-originated message has no id of its own: the same content within a minute is the same
    // delivery (an SMSC resending after a lost deliver_sm_resp).
    let minute = chrono::Utc::now().timestamp() / 60;
    let digest = sha2::Sha256::digest(format!("{source}|{}|{text}|{minute}", d.destination_addr.as_str()).as_bytes());
    let id = format!("mo:{}", &hex::encode(digest)[..32]);
    SmppDelivery {
        channel_id,
        event_id: id.clone(),
        raw: raw.to_string(),
        items: vec![WebhookItem::Inbound {
            provider_message_id: id,
            from: if source.chars().all(|c| c.is_ascii_digit()) { format!("+{source}") } else { source },
            from_name: None,
            text,
            received_at: None,
            raw,
        }],
        stored: None,
    }
}

impl Smpp {
    pub fn new(deliveries: Option<mpsc::Sender<SmppDelivery>>, leases: Option<BindLeases>) -> Self {
        Smpp { slots: Mutex::default(), deliveries, leases, keepalive: Duration::from_secs(30) }
    }

    /// Another `enquire_link` interval (tests).
    pub fn with_keepalive(mut self, every: Duration) -> Self {
        self.keepalive = every;
        self
    }

    fn slot(&self, channel_id: Uuid) -> Arc<AsyncMutex<Slot>> {
        self.slots.lock().expect("slots").entry(channel_id).or_default().clone()
    }

    async fn bind(&self, channel_id: Uuid, c: &SmppCredentials) -> Result<Arc<Session>, ProviderError> {
        let (client, mut events) = ConnectionBuilder::new()
            .enquire_link_interval(self.keepalive)
            .enquire_link_response_timeout(self.keepalive.min(Duration::from_secs(10)))
            .response_timeout(Duration::from_secs(10))
            .disable_interface_version_check()
            .connect(format!("smpp://{}:{}", c.host, c.port))
            .await
            .map_err(|e| {
                ProviderError::new(ErrorClass::Transient, format!("smpp: cannot connect to {}:{}: {e}", c.host, c.port))
            })?;
        // bind_transmitter and bind_transceiver are distinct PDU types with the same fields.
        macro_rules! bind_as {
            ($pdu:ident, $call:ident) => {
                client
                    .$call(
                        $pdu::builder()
                            .system_id(coctet(&c.system_id, "system_id")?)
                            .password(coctet(&c.password, "password")?)
                            .system_type(coctet(c.system_type.as_deref().unwrap_or(""), "system_type")?)
                            .interface_version(InterfaceVersion::Smpp3_4)
                            .addr_ton(Ton::Unknown)
                            .addr_npi(Npi::Unknown)
                            .address_range(COctetString::empty())
                            .build(),
                    )
                    .await
                    .map(|_| ())
            };
        }
        let bound = if c.bind_type == "transmitter" {
            bind_as!(BindTransmitter, bind_transmitter)
        } else {
            bind_as!(BindTransceiver, bind_transceiver)
        };
        if let Err(e) = bound {
            let _ = client.close().await;
            return Err(client_error(e, "bind"));
        }
        let responder = client.clone();
        let sink = self.deliveries.clone();
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                match event {
                    Event::Incoming(command) => {
                        if let Some(Pdu::DeliverSm(d)) = command.pdu() {
                            let mut delivery = delivery_items(channel_id, d);
                            // Stored first, then acknowledged: an SMSC that gets no deliver_sm_resp
                            // resends, and the inbox drops the duplicate.
                            let stored = match &sink {
                                Some(s) => {
                                    let (tx, rx) = tokio::sync::oneshot::channel();
                                    delivery.stored = Some(tx);
                                    s.send(delivery).await.is_ok() && rx.await.unwrap_or(false)
                                }
                                None => true,
                            };
                            if stored {
                                let _ = responder
                                    .deliver_sm_resp(command.sequence_number(), DeliverSmResp::builder().build())
                                    .await;
                            }
                        }
                    }
                    Event::Error(e) => tracing::warn!(%channel_id, error = %e, "SMPP link error"),
                }
            }
            tracing::info!(%channel_id, "SMPP link closed");
        });
        if let Some(leases) = self.leases.clone() {
            // Keeps the lease while the bind lives; a lost lease (this process stalled past its expiry
            // and another took over) closes the bind; a closed bind gives the lease up.
            let watched = client.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(LEASE_TTL / 3) => {}
                        _ = watched.closed() => break,
                    }
                    match leases.acquire(channel_id).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(%channel_id, "SMPP bind lease taken by another process; unbinding");
                            let _ = watched.unbind().await;
                            let _ = watched.close().await;
                            return;
                        }
                        Err(e) => tracing::warn!(%channel_id, error = %e, "cannot renew the SMPP bind lease"),
                    }
                }
                let _ = leases.release(channel_id).await;
            });
        }
        Ok(Arc::new(Session { creds: c.clone(), client, window: Semaphore::new(WINDOW), next_ref: AtomicU8::new(0) }))
    }

    /// The channel's live bind: the current one, or a new one unless the backoff after a failed bind
    /// has not passed yet.
    async fn session(&self, channel_id: Uuid, c: &SmppCredentials) -> Result<Arc<Session>, ProviderError> {
        let slot = self.slot(channel_id);
        let mut slot = slot.lock().await;
        if let Some(s) = &slot.session {
            if !s.client.is_closed() && &s.creds == c {
                return Ok(s.clone());
            }
            let _ = s.client.close().await;
            slot.session = None;
        }
        if let Some(at) = slot.retry_at
            && Instant::now() < at
        {
            let wait = at - Instant::now();
            return Err(ProviderError::new(
                ErrorClass::Transient,
                format!("smpp: the bind is down; next attempt in {} s", wait.as_secs().max(1)),
            )
            .retry_after(Some(wait)));
        }
        if let Some(leases) = &self.leases {
            match leases.acquire(channel_id).await {
                Ok(true) => {}
                Ok(false) => {
                    return Err(ProviderError::new(
                        ErrorClass::Transient,
                        "smpp: another dispatcher process holds this channel's bind",
                    )
                    .with_code(crate::modules::channels::adapter::BIND_OWNED_ELSEWHERE)
                    .retry_after(Some(Duration::from_secs(5))));
                }
                Err(e) => return Err(transient_db(e)),
            }
        }
        match self.bind(channel_id, c).await {
            Ok(s) => {
                slot.session = Some(s.clone());
                slot.failures = 0;
                slot.retry_at = None;
                Ok(s)
            }
            Err(e) => {
                if let Some(leases) = &self.leases {
                    let _ = leases.release(channel_id).await;
                }
                slot.failures += 1;
                let backoff = Duration::from_secs(1 << slot.failures.min(6)).min(MAX_BACKOFF);
                slot.retry_at = Some(Instant::now() + backoff);
                Err(e)
            }
        }
    }

    /// Drops the channel's bind (after a credential change or a verify).
    async fn reset(&self, channel_id: Uuid) {
        let slot = self.slot(channel_id);
        let mut slot = slot.lock().await;
        if let Some(s) = slot.session.take() {
            let _ = s.client.unbind().await;
            let _ = s.client.close().await;
            if let Some(leases) = &self.leases {
                let _ = leases.release(channel_id).await;
            }
        }
        slot.failures = 0;
        slot.retry_at = None;
    }
}

#[async_trait]
impl ProviderAdapter for Smpp {
    fn key(&self) -> (&'static str, Option<&'static str>) {
        ("smpp", None)
    }

    async fn send(&self, channel: &ChannelContext, message: &OutboundMessage) -> Result<SendReceipt, ProviderError> {
        let c = creds(channel)?;
        let session = self.session(channel.id, c).await?;
        let reference = session.next_ref.fetch_add(1, Ordering::Relaxed);
        let (encoding, bodies) = payloads(&message.text, reference);
        let (ton, npi) = source_ton_npi(c);
        let destination = message.to.trim_start_matches('+');
        let mut first_id = None;
        let mut part_ids = Vec::new();
        for body in &bodies {
            let _permit = session.window.acquire().await.expect("window semaphore");
            let mut esm = 0u8; // default mode, normal message (EsmClass::default() sets ANSI-41 bits)
            if bodies.len() > 1 {
                esm |= 0x40; // UDHI
            }
            let sm = SubmitSm::builder()
                .source_addr_ton(ton)
                .source_addr_npi(npi)
                .source_addr(coctet(&c.source_addr, "source_addr")?)
                .dest_addr_ton(Ton::International)
                .dest_addr_npi(Npi::Isdn)
                .destination_addr(coctet(destination, "destination_addr")?)
                .esm_class(EsmClass::from(esm))
                .registered_delivery(RegisteredDelivery::from(1u8))
                .data_coding(match encoding {
                    Encoding::Gsm7 => DataCoding::McSpecific,
                    Encoding::Ucs2 => DataCoding::Ucs2,
                })
                .short_message(OctetString::from_vec(body.clone()).map_err(|e| {
                    ProviderError::new(ErrorClass::Permanent, format!("smpp: message part too long: {e}"))
                })?)
                .build();
            match session.client.submit_sm(sm).await {
                Ok(resp) => {
                    let id = resp.message_id().as_str().to_string();
                    if first_id.is_none() {
                        first_id = Some(id);
                    } else {
                        part_ids.push(id);
                    }
                }
                Err(e) => {
                    let err = client_error(e, "submit_sm");
                    if session.client.is_closed() {
                        // The link is gone: the next send rebinds.
                        self.slot(channel.id).lock().await.session = None;
                    }
                    return Err(err);
                }
            }
        }
        Ok(SendReceipt {
            provider_message_id: first_id,
            part_ids,
            status: "sent",
            segments: Some(bodies.len()),
            encoding: Some(encoding.as_str()),
        })
    }

    async fn verify(&self, channel: &ChannelContext) -> Result<String, ProviderError> {
        let c = creds(channel)?;
        self.reset(channel.id).await;
        match self.session(channel.id, c).await {
            Ok(_) => {}
            // Another process's bind is live (its lease is renewed only while the bind lives).
            Err(e) if e.code.as_deref() == Some(crate::modules::channels::adapter::BIND_OWNED_ELSEWHERE) => {
                return Ok(format!("bound by another Turumba process to {}:{}", c.host, c.port));
            }
            Err(e) => return Err(e),
        }
        if self.leases.as_ref().is_some_and(|l| !l.dispatching()) {
            // This process sends nothing: kept, the bind would keep the lease from every dispatcher.
            self.reset(channel.id).await;
        }
        Ok(format!("bound as {} to {}:{}", c.bind_type, c.host, c.port))
    }

    fn verify_signature(&self, _channel: &ChannelContext, _request: &WebhookRequest) -> bool {
        false
    }

    fn parse_webhook(&self, _channel: &ChannelContext, _request: &WebhookRequest) -> Result<Vec<WebhookItem>, String> {
        Err("SMPP channels receive over their bind (deliver_sm), not webhooks".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_get_concatenation_headers() {
        let (enc, one) = payloads("Hello", 7);
        assert_eq!((enc, one.len()), (Encoding::Gsm7, 1));
        assert_eq!(one[0], sms::encode_gsm7("Hello").unwrap());
        let text = "a".repeat(200);
        let (enc, parts) = payloads(&text, 9);
        assert_eq!((enc, parts.len()), (Encoding::Gsm7, 2));
        assert_eq!(&parts[0][..6], &[0x05, 0x00, 0x03, 9, 2, 1]);
        assert_eq!(&parts[1][..6], &[0x05, 0x00, 0x03, 9, 2, 2]);
        assert_eq!(parts[0].len() - 6 + parts[1].len() - 6, 200);
        let (enc, parts) = payloads(&"ሀ".repeat(100), 1);
        assert_eq!((enc, parts.len()), (Encoding::Ucs2, 2));
        assert_eq!(parts[0].len(), 6 + 67 * 2);
    }

    #[test]
    fn receipts_are_read() {
        let r =
            "id:0123abc sub:001 dlvrd:001 submit date:2611221200 done date:2611221201 stat:DELIVRD err:000 text:Hello";
        assert_eq!(parse_receipt(r), Some(("0123abc".into(), "delivered".into(), None)));
        let r = "id:77 sub:001 dlvrd:000 submit date:2611221200 done date:2611221201 stat:UNDELIV err:034 text:";
        assert_eq!(parse_receipt(r), Some(("77".into(), "failed".into(), Some("UNDELIV err 034".into()))));
        assert_eq!(parse_receipt("hello"), None);
    }
}
