//! The SMPP adapter against the in-test SMSC (tests/api/smsc.rs): bind at verify, submit_sm with the
//! right coding and concatenation, command statuses classified, delivery receipts and inbound messages
//! stored once and acknowledged, and a rebind after the SMSC drops the link.

use std::time::Duration;

use serde_json::{Value, json};
use turumba::modules::channels::adapter::{ErrorClass, OutboundMessage};
use turumba::modules::channels::sms;
use uuid::Uuid;

use crate::helpers::{Backend, TestApp, eventually};
use crate::smsc::{self, Smsc};

fn msg(to: &str, text: &str) -> OutboundMessage {
    OutboundMessage { message_id: Uuid::now_v7(), to: to.into(), text: text.into(), ..Default::default() }
}

async fn smpp_binds_submits_and_receives(b: Backend) {
    let smsc = Smsc::start(true).await;
    let app = TestApp::spawn(b).await;
    let u = app.user("smpp").await;
    let creds = |pw: &str| json!({"host": "127.0.0.1", "port": smsc.port, "system_id": smsc::SYSTEM_ID, "password": pw, "source_addr": "Turumba"});
    let r = app
        .post("/v1/channels")
        .token(&u.token)
        .json(json!({"name": "bad", "channel_type": "smpp", "credentials": creds("nope")}))
        .send()
        .await;
    r.expect(201, None);
    assert_eq!(r.data()["status"], "error");
    assert_eq!(r.data()["error_message"], "smpp: bind refused: EsmeRinvpaswd (0x0000000E)");
    let r = app
        .post("/v1/channels")
        .token(&u.token)
        .json(json!({"name": "smsc", "channel_type": "smpp", "credentials": creds(smsc::PASSWORD)}))
        .send()
        .await;
    r.expect(201, None);
    assert_eq!(r.data()["status"], "connected", "{:?}", r.body);
    assert_eq!(r.data()["credentials"]["password"], "••••");
    let id = r.id();
    let scope = app.state.accounts.operator_scope(Uuid::parse_str(&u.account_id).unwrap()).await.unwrap();
    let registry = app.state.channels.registry();
    let channel = registry.load(scope, Uuid::parse_str(&id).unwrap()).await.unwrap();

    // GSM-7, one part: data_coding 0, unpacked septets, alphanumeric source, international destination.
    let receipt =
        registry.send(scope, &channel, &msg("+251911000001", "Selam {name}! 5€")).await.unwrap().expect("sent");
    assert_eq!(receipt.provider_message_id.as_deref(), Some("smsc-1"));
    assert_eq!((receipt.segments, receipt.encoding), (Some(1), Some("GSM-7")));
    {
        let submits = smsc.submits.lock().unwrap();
        let sm = &submits[0];
        assert_eq!(sm.destination_addr.as_str(), "251911000001");
        assert_eq!(sm.source_addr.as_str(), "Turumba");
        assert_eq!(u8::from(sm.source_addr_ton), 5);
        assert_eq!((u8::from(sm.dest_addr_ton), u8::from(sm.dest_addr_npi)), (1, 1));
        assert_eq!(u8::from(sm.data_coding), 0);
        assert_eq!(u8::from(sm.esm_class), 0);
        assert_eq!(u8::from(sm.registered_delivery), 1, "a delivery receipt is requested");
        let body: &[u8] = sm.short_message().as_ref();
        assert_eq!(body, sms::encode_gsm7("Selam {name}! 5€").unwrap().as_slice());
    }

    // UCS-2, two parts: the same reference, UDHI set, 67 UTF-16 units in the first part.
    let long = "ሰላም ".repeat(30);
    let receipt = registry.send(scope, &channel, &msg("+251911000002", &long)).await.unwrap().expect("sent");
    assert_eq!((receipt.segments, receipt.encoding), (Some(2), Some("UCS-2")));
    {
        let submits = smsc.submits.lock().unwrap();
        let (a, b) = (&submits[1], &submits[2]);
        let (pa, pb): (&[u8], &[u8]) = (a.short_message().as_ref(), b.short_message().as_ref());
        assert_eq!((u8::from(a.data_coding), u8::from(a.esm_class)), (8, 0x40));
        assert_eq!(&pa[..3], &[0x05, 0x00, 0x03]);
        assert_eq!((pa[3], pa[4], pa[5]), (pb[3], 2, 1));
        assert_eq!((pb[4], pb[5]), (2, 2));
        assert_eq!(pa.len(), 6 + 67 * 2);
        let joined = sms::decode_ucs2(&pa[6..]) + &sms::decode_ucs2(&pb[6..]);
        assert_eq!(joined, long);
    }

    // Command statuses.
    let e =
        registry.send(scope, &channel, &msg(&format!("+{}", smsc::THROTTLED_DEST), "x")).await.unwrap().unwrap_err();
    assert_eq!((e.class, e.code.as_deref()), (ErrorClass::Throttled, Some("0x00000058")));
    let e = registry.send(scope, &channel, &msg(&format!("+{}", smsc::INVALID_DEST), "x")).await.unwrap().unwrap_err();
    assert_eq!((e.class, e.code.as_deref()), (ErrorClass::Permanent, Some("0x0000000B")));

    // Delivery receipts for the three accepted submits reach the inbox once each and are acknowledged;
    // a mobile-originated message arrives as an inbound item.
    smsc.deliver_mo("251911000009", "Turumba", "STOP");
    let db = app.state.db.clone();
    eventually(10, "receipts and the inbound message stored", || {
        let db = db.clone();
        async move {
            use sea_orm::{ConnectionTrait, Statement};
            let rows = db
                .query_all_raw(Statement::from_string(
                    db.get_database_backend(),
                    "SELECT provider_event_id FROM webhook_inbox",
                ))
                .await
                .unwrap();
            rows.len() == 4
        }
    })
    .await;
    eventually(10, "every deliver_sm acknowledged", || async { smsc.acked.lock().unwrap().len() == 4 }).await;
    let events = crate::channels::outbox_text(&app).await;
    let items: Vec<Value> = events
        .lines()
        .filter(|l| l.starts_with("webhook.inbound.smpp "))
        .map(|l| {
            serde_json::from_str::<Value>(l.trim_start_matches("webhook.inbound.smpp ")).unwrap()["data"]["item"]
                .clone()
        })
        .collect();
    assert_eq!(items.iter().filter(|i| i["kind"] == "status" && i["status"] == "delivered").count(), 3, "{events}");
    assert!(items.iter().any(|i| i["provider_message_id"] == "smsc-1"), "{events}");
    let mo = items.iter().find(|i| i["kind"] == "inbound").expect("the inbound message");
    assert_eq!((mo["from"].as_str(), mo["text"].as_str()), (Some("+251911000009"), Some("STOP")));

    // The SMSC drops the link: the next sends rebind and go through.
    assert_eq!(smsc.binds.load(std::sync::atomic::Ordering::SeqCst), 1);
    smsc.disconnect_all();
    let mut delivered = false;
    for _ in 0..50 {
        match registry.send(scope, &channel, &msg("+251911000003", "after the drop")).await.unwrap() {
            Ok(_) => {
                delivered = true;
                break;
            }
            Err(e) => {
                assert_eq!(e.class, ErrorClass::Transient, "{e:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert!(delivered, "sent after rebinding");
    assert_eq!(smsc.binds.load(std::sync::atomic::Ordering::SeqCst), 2);
}

both_backends!(smpp_binds_submits_and_receives);
