//! Kapso's message history (`GET /{phone_number_id}/messages`) through the client: the simulated
//! Kapso keeps what it delivered (even deliveries it gave up on) and what it sent, and pages it
//! with cursors; Kapso's own `listMessages` examples decode.

use serde_json::{json, Value};
use switchboard::kapso::MessageQuery;
use switchboard::kapso_sim::deliver::{DeliveryOptions, DeliveryTarget};
use switchboard::kapso_sim::samples;

use super::openapi::Spec;
use super::{sim_and_client, text_message, PHONE};

fn query(direction: Option<&str>, limit: u32) -> MessageQuery {
    MessageQuery {
        direction: direction.map(str::to_owned),
        limit,
        ..MessageQuery::default()
    }
}

#[tokio::test]
async fn the_history_holds_sent_and_undelivered_messages_and_pages_to_the_end() {
    let (sim, client) = sim_and_client().await;
    for n in 0..3 {
        client
            .send_message(PHONE, &text_message(&format!("reply {n}")))
            .await
            .unwrap();
    }
    // Two customer messages whose webhook delivery fails for good (nobody listens there).
    let nobody = DeliveryTarget::new("http://127.0.0.1:9/webhooks/gone", "whsec_x");
    let once = DeliveryOptions {
        retry_delays: Vec::new(),
        ..DeliveryOptions::default()
    };
    let ctx = samples::SampleContext::default();
    for (wamid, text) in [("wamid.LOST1", "are you open?"), ("wamid.LOST2", "hello??")] {
        let payload = samples::text_received(&ctx, wamid, text);
        let report = sim
            .deliver(&nobody, samples::MESSAGE_RECEIVED, vec![payload], &once)
            .await
            .unwrap();
        assert!(!report.succeeded());
    }

    // Outbound, two per page: the cursor leads to the last page, which ends the listing.
    let first = client
        .list_messages(PHONE, &query(Some("outbound"), 2))
        .await
        .unwrap();
    assert_eq!(first.messages.len(), 2);
    assert_eq!(first.messages[0]["text"]["body"], "reply 2", "newest first");
    let cursor = first.next.clone().expect("a full page has a next cursor");
    let second = client
        .list_messages(
            PHONE,
            &MessageQuery {
                after: Some(cursor),
                ..query(Some("outbound"), 2)
            },
        )
        .await
        .unwrap();
    assert_eq!(second.messages.len(), 1);
    assert_eq!(second.messages[0]["text"]["body"], "reply 0");
    assert_eq!(second.next, None, "a short page is the last");

    // Inbound: the messages Kapso gave up delivering, with Kapso's fields.
    let inbound = client
        .list_messages(PHONE, &query(Some("inbound"), 100))
        .await
        .unwrap();
    let ids: Vec<&str> = inbound
        .messages
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, vec!["wamid.LOST2", "wamid.LOST1"]);
    assert_eq!(
        inbound.messages[0]["kapso"]["whatsapp_conversation_id"],
        json!(ctx.conversation_id)
    );
    let by_conversation = client
        .list_messages(
            PHONE,
            &MessageQuery {
                conversation_id: Some(ctx.conversation_id.clone()),
                ..query(None, 100)
            },
        )
        .await
        .unwrap();
    assert_eq!(by_conversation.messages.len(), 2);

    // Nothing after a time in the future.
    let later = client
        .list_messages(
            PHONE,
            &MessageQuery {
                since: Some("2999-01-01T00:00:00Z".to_owned()),
                ..query(None, 100)
            },
        )
        .await
        .unwrap();
    assert!(later.messages.is_empty());
    assert_eq!(later.next, None);
}

/// Every `listMessages` example page of Kapso's OpenAPI, served on loopback, decodes.
#[tokio::test]
async fn kapsos_list_messages_examples_decode() {
    let spec = Spec::load("whatsapp-messages.yaml");
    let examples = spec
        .at("/paths/~1{phone_number_id}~1messages/get/responses/200/content/application~1json/examples")
        .as_object()
        .expect("examples by name")
        .clone();
    assert!(examples.len() >= 5);
    for (name, example) in examples {
        let page: Value = example["value"].clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let served = page.clone();
        let app = axum::Router::new().fallback(move || {
            let served = served.clone();
            async move { axum::Json(served) }
        });
        let _server = crate::test_app::serve_until_dropped(listener, app);
        let client = switchboard::kapso::KapsoClient::new(&switchboard::config::KapsoConfig {
            base_url: base,
            api_key: Some(switchboard::secret::Secret::new("k")),
            ..switchboard::config::KapsoConfig::default()
        })
        .unwrap();
        let decoded = client.list_messages(PHONE, &query(None, 20)).await.unwrap();
        assert_eq!(
            decoded.messages.len(),
            page["data"].as_array().map_or(0, Vec::len),
            "{name}"
        );
        assert!(
            decoded.messages.iter().all(|m| m["id"].is_string()),
            "{name}"
        );
    }
}
