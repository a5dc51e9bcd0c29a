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

/// Serves `page` on loopback for every request, remembering each request's query string.
async fn serve_page(
    page: Value,
) -> (
    switchboard::kapso::KapsoClient,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    tokio_util::sync::DropGuard,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let served = page.clone();
        log.lock()
            .unwrap()
            .push(uri.query().unwrap_or_default().to_owned());
        async move { axum::Json(served) }
    });
    let server = crate::test_app::serve_until_dropped(listener, app);
    let client = switchboard::kapso::KapsoClient::new(&switchboard::config::KapsoConfig {
        base_url: base,
        api_key: Some(switchboard::secret::Secret::new("k")),
        ..switchboard::config::KapsoConfig::default()
    })
    .unwrap();
    (client, seen, server)
}

/// Kapso's example pages (tests/fixtures/kapso-history, from its OpenAPI and its Chat SDK
/// adapter) decode; the client names Kapso's fields one by one (a bare `kapso()` omits them per
/// Kapso's docs), and a page whose `after` is null ends the listing even when it is full.
#[tokio::test]
async fn kapsos_history_fixtures_decode_and_the_fields_are_named() {
    for (name, more) in [
        ("inbound_text", true),
        ("outbound_image", true),
        ("location_message", true),
        ("last_page", false),
    ] {
        let text =
            std::fs::read_to_string(format!("tests/fixtures/kapso-history/{name}.json")).unwrap();
        let page: Value = serde_json::from_str(&text).unwrap();
        let (client, seen, _server) = serve_page(page.clone()).await;
        let decoded = client
            .list_messages(
                PHONE,
                &MessageQuery {
                    status: Some("delivered".to_owned()),
                    ..query(None, 1)
                },
            )
            .await
            .unwrap();
        assert_eq!(decoded.messages, page["data"].as_array().unwrap().clone());
        assert_eq!(decoded.next.is_some(), more, "{name}");
        let query = seen.lock().unwrap()[0].clone();
        let url = reqwest::Url::parse(&format!("http://x/?{query}")).unwrap();
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert!(pairs.contains(&(
            "fields".to_owned(),
            switchboard::kapso::history::KAPSO_FIELDS.to_owned()
        )));
        assert!(pairs.contains(&("status".to_owned(), "delivered".to_owned())));
    }
}

fn wamids(page: &switchboard::kapso::MessagePage) -> Vec<String> {
    page.messages
        .iter()
        .filter_map(|m| m["id"].as_str().map(str::to_owned))
        .collect()
}

/// The simulated history pages with keyset cursors: a message stored while a client pages
/// neither repeats an item nor hides one; `before` reads back towards the newest; the last
/// page's `after` is null.
#[tokio::test]
async fn the_simulated_history_pages_by_keyset_while_messages_arrive() {
    let (sim, client) = sim_and_client().await;
    let ctx = samples::SampleContext::default();
    let keep = |n: usize| {
        let payload = samples::text_received(&ctx, &format!("wamid.K{n}"), "hi");
        sim.keep_in_history(samples::MESSAGE_RECEIVED, &[payload]);
    };
    for n in 0..5 {
        keep(n);
    }
    let first = client
        .list_messages(PHONE, &query(Some("inbound"), 2))
        .await
        .unwrap();
    assert_eq!(wamids(&first), ["wamid.K4", "wamid.K3"]);
    keep(5); // arrives while paging: newer than the cursor, so not on a later page
    let mut seen = wamids(&first);
    let mut after = first.next.clone();
    while let Some(cursor) = after {
        let page = client
            .list_messages(
                PHONE,
                &MessageQuery {
                    after: Some(cursor),
                    ..query(Some("inbound"), 2)
                },
            )
            .await
            .unwrap();
        seen.extend(wamids(&page));
        after = page.next;
    }
    assert_eq!(
        seen,
        ["wamid.K4", "wamid.K3", "wamid.K2", "wamid.K1", "wamid.K0"]
    );

    // Raw answers: the last page's cursor is null; `before` goes back to the newer items.
    let base = format!("{}/meta/whatsapp/v24.0/{PHONE}/messages", sim.base_url());
    let get = |query: String| {
        let url = format!("{base}?{query}");
        let key = sim.api_key().to_owned();
        async move {
            reqwest::Client::new()
                .get(url)
                .header("X-API-Key", key)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let all = get("limit=100&direction=inbound".to_owned()).await;
    assert_eq!(all["data"].as_array().unwrap().len(), 6);
    assert_eq!(all["paging"]["cursors"]["after"], Value::Null);
    let second = get("limit=2".to_owned()).await;
    let after = second["paging"]["cursors"]["after"]
        .as_str()
        .unwrap()
        .to_owned();
    let third = get(format!("limit=2&after={after}")).await;
    let before = third["paging"]["cursors"]["before"]
        .as_str()
        .unwrap()
        .to_owned();
    let back = get(format!("limit=2&before={before}")).await;
    assert_eq!(back["data"], second["data"]);

    // Inbound items read like Kapso's list examples, not like the webhook.
    let item = &all["data"][0];
    assert_eq!(item["kapso"]["status"], "delivered");
    assert_eq!(item["kapso"]["processing_status"], "completed");
    assert!(item["kapso"].get("origin").is_none());

    // `fields`: `kapso()` omits the object, a list keeps only what it names.
    let bare = get("fields=kapso()".to_owned()).await;
    assert!(bare["data"][0].get("kapso").is_none(), "{bare}");
    let named = get("fields=kapso(direction,contact_name)".to_owned()).await;
    let kapso = named["data"][0]["kapso"].as_object().unwrap();
    let mut keys: Vec<&String> = kapso.keys().collect();
    keys.sort();
    assert_eq!(keys, ["contact_name", "direction"]);

    // `status` filters.
    let failed = get("status=failed".to_owned()).await;
    assert_eq!(failed["data"], serde_json::json!([]));
}
