//! Webhook management and phone numbers through the real client against the simulated
//! Platform API: create on both routes, paging, filters, merge-only PATCH, delete, the test
//! endpoint and validation errors.

use std::collections::BTreeMap;

use serde_json::{json, Map};
use switchboard::ingest::signature::check;
use switchboard::kapso::{
    KapsoClient, KapsoError, MessagingLimit, WebhookFilter, WebhookKind, WebhookPatch,
    WebhookRequest,
};
use switchboard::kapso_sim::samples;
use switchboard::kapso_sim::{SimConfig, SimPhoneNumber, SimulatedKapso};
use switchboard::secret::Secret;

use super::delivery::Receiver;
use super::{sim_and_client, PHONE};

fn request(url: &str) -> WebhookRequest {
    let events = vec![
        samples::MESSAGE_RECEIVED.to_owned(),
        samples::MESSAGE_FAILED.to_owned(),
    ];
    WebhookRequest::kapso(url, Secret::new("whsec_test_switchboard"), events)
}

#[tokio::test]
async fn created_webhook_gets_server_fields_and_defaults() {
    let (_sim, client) = sim_and_client().await;
    let mut wanted = request("https://sb.example.com/webhooks/support");
    wanted.headers = Some(BTreeMap::from([(
        "X-Switchboard-Env".to_owned(),
        "prod".to_owned(),
    )]));

    let hook = client.create_webhook(Some(PHONE), &wanted).await.unwrap();

    assert_eq!(hook.id.len(), 36);
    assert_eq!(hook.kind, Some(WebhookKind::Kapso));
    assert_eq!(hook.phone_number_id.as_deref(), Some(PHONE));
    assert_eq!(hook.payload_version.as_deref(), Some("v2"));
    assert_eq!(hook.inactivity_minutes, Some(60));
    assert!(hook.active);
    assert!(hook.buffer_events.is_empty());
    assert_eq!(hook.created_at, hook.updated_at);
    assert_eq!(
        hook.secret_key.as_ref().map(Secret::expose),
        Some("whsec_test_switchboard")
    );
    assert_eq!(hook.headers.unwrap()["X-Switchboard-Env"], "prod");
}

#[tokio::test]
async fn lists_page_through_every_page_newest_first() {
    let (sim, client) = sim_and_client().await;
    let client = client.with_page_size(2);
    let mut created = Vec::new();
    for i in 0..5 {
        let url = format!("https://sb.example.com/webhooks/n{i}");
        created.push(
            client
                .create_webhook(Some(PHONE), &request(&url))
                .await
                .unwrap()
                .id,
        );
    }
    let project = client
        .create_webhook(
            None,
            &WebhookRequest {
                url: "https://sb.example.com/webhooks/project".to_owned(),
                events: Some(vec![samples::PHONE_NUMBER_CREATED.to_owned()]),
                ..WebhookRequest::default()
            },
        )
        .await
        .unwrap();

    let number_hooks = client.list_number_webhooks(PHONE).await.unwrap();
    let all_hooks = client.list_project_webhooks().await.unwrap();

    let ids: Vec<String> = number_hooks.iter().map(|h| h.id.clone()).collect();
    created.reverse();
    assert_eq!(ids, created, "all five, newest first");
    assert_eq!(all_hooks.len(), 6);
    assert_eq!(all_hooks[0].id, project.id);
    assert_eq!(all_hooks[0].phone_number_id, None);
    let pages: Vec<String> = sim
        .requests()
        .iter()
        .filter(|r| {
            r.method == "GET"
                && r.path
                    .ends_with(&format!("/phone_numbers/{PHONE}/webhooks"))
        })
        .map(|r| r.query.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        pages,
        [
            "page=1&per_page=2",
            "page=2&per_page=2",
            "page=3&per_page=2"
        ]
    );
}

#[tokio::test]
async fn url_contains_and_active_filters_are_applied_by_kapso() {
    let (sim, client) = sim_and_client().await;
    let ours = client
        .create_webhook(Some(PHONE), &request("https://sb.example.com/webhooks/a"))
        .await
        .unwrap();
    let theirs = client
        .create_webhook(Some(PHONE), &request("https://other.example.net/hook"))
        .await
        .unwrap();
    assert!(sim.set_webhook_active(&theirs.id, false));

    let by_url = WebhookFilter {
        url_contains: Some("sb.example.com".to_owned()),
        ..WebhookFilter::default()
    };
    let paused = WebhookFilter {
        active: Some(false),
        ..WebhookFilter::default()
    };
    let found = client
        .list_number_webhooks_matching(PHONE, &by_url)
        .await
        .unwrap();
    let inactive = client
        .list_number_webhooks_matching(PHONE, &paused)
        .await
        .unwrap();

    assert_eq!(found.iter().map(|h| &h.id).collect::<Vec<_>>(), [&ours.id]);
    assert_eq!(
        inactive.iter().map(|h| &h.id).collect::<Vec<_>>(),
        [&theirs.id]
    );
}

#[tokio::test]
async fn patch_changes_only_the_sent_fields_and_kind_is_immutable() {
    let (sim, client) = sim_and_client().await;
    let hook = client
        .create_webhook(Some(PHONE), &request("https://sb.example.com/webhooks/a"))
        .await
        .unwrap();
    sim.set_webhook_active(&hook.id, false);

    let patch = WebhookPatch {
        active: Some(true),
        buffer_window_seconds: Some(Some(10)),
        ..WebhookPatch::default()
    };
    let updated = client
        .update_webhook(Some(PHONE), &hook.id, &patch)
        .await
        .unwrap();

    assert!(updated.active);
    assert_eq!(updated.buffer_window_seconds, Some(10));
    assert_eq!(updated.url, hook.url);
    assert_eq!(updated.events, hook.events);
    assert_eq!(updated.created_at, hook.created_at);
    assert!(
        updated.updated_at > hook.updated_at,
        "{} vs {}",
        updated.updated_at,
        hook.updated_at
    );
    let sent = sim.requests().last().unwrap().body.clone().unwrap();
    assert_eq!(
        sent,
        json!({"whatsapp_webhook": {"active": true, "buffer_window_seconds": 10}})
    );

    let mut kind = Map::new();
    kind.insert("kind".to_owned(), json!("meta"));
    let err = client
        .update_webhook_fields(None, &hook.id, &kind)
        .await
        .unwrap_err();
    assert!(matches!(err, KapsoError::Validation { .. }), "{err:?}");
    assert!(err.to_string().contains("Kind cannot be changed"), "{err}");
}

#[tokio::test]
async fn delete_removes_the_webhook_and_a_second_delete_is_not_found() {
    let (_sim, client) = sim_and_client().await;
    let hook = client
        .create_webhook(Some(PHONE), &request("https://sb.example.com/webhooks/a"))
        .await
        .unwrap();

    client.delete_webhook(Some(PHONE), &hook.id).await.unwrap();

    assert!(client.list_number_webhooks(PHONE).await.unwrap().is_empty());
    let again = client.delete_webhook(None, &hook.id).await.unwrap_err();
    assert!(matches!(again, KapsoError::NotFound { .. }), "{again:?}");
}

#[tokio::test]
async fn invalid_webhooks_are_refused_with_kapsos_message() {
    let (_sim, client) = sim_and_client().await;
    let no_events = WebhookRequest {
        events: Some(Vec::new()),
        ..request("https://sb.example.com/w")
    };
    let no_secret = WebhookRequest {
        secret_key: None,
        ..request("https://sb.example.com/w")
    };
    let bad_window = WebhookRequest {
        buffer_window_seconds: Some(61),
        ..request("https://sb.example.com/w")
    };

    for (wanted, message) in [
        (no_events, "Events can't be blank"),
        (no_secret, "Secret key can't be blank"),
        (bad_window, "between 1 and 60"),
    ] {
        let err = client
            .create_webhook(Some(PHONE), &wanted)
            .await
            .unwrap_err();
        let KapsoError::Validation { message: got, .. } = &err else {
            panic!("{err:?}")
        };
        assert!(got.contains(message), "{got}");
    }
    let unknown = client
        .create_webhook(Some("999"), &request("https://sb.example.com/w"))
        .await
        .unwrap_err();
    assert!(
        matches!(unknown, KapsoError::NotFound { .. }),
        "{unknown:?}"
    );
}

#[tokio::test]
async fn test_endpoint_sends_a_signed_sample_of_a_subscribed_event() {
    let (_sim, client) = sim_and_client().await;
    let mut receiver = Receiver::start(&[]).await;
    let hook = client
        .create_webhook(Some(PHONE), &request(&receiver.url))
        .await
        .unwrap();

    client
        .test_webhook(&hook.id, Some(samples::MESSAGE_RECEIVED))
        .await
        .unwrap();
    let unsubscribed = client
        .test_webhook(&hook.id, Some(samples::CONVERSATION_ENDED))
        .await
        .unwrap_err();

    let received = receiver.next().await;
    assert_eq!(
        received.header("x-webhook-event"),
        Some(samples::MESSAGE_RECEIVED)
    );
    let signature = received
        .headers
        .get("x-webhook-signature")
        .map(|v| v.as_bytes());
    assert_eq!(
        check(
            &received.body,
            signature,
            &[Secret::new("whsec_test_switchboard")]
        ),
        Ok(())
    );
    assert_eq!(received.json()["phone_number_id"], PHONE);
    assert!(
        matches!(unsubscribed, KapsoError::Validation { .. }),
        "{unsubscribed:?}"
    );
}

#[tokio::test]
async fn phone_numbers_are_listed_across_pages_newest_first() {
    let config = SimConfig {
        phone_numbers: vec![
            SimPhoneNumber::new("111", "+1 555-000-0111"),
            SimPhoneNumber::new("222", "+1 555-000-0222"),
            SimPhoneNumber::new("333", "+1 555-000-0333"),
        ],
        ..SimConfig::default()
    };
    let sim = SimulatedKapso::start(config).await.unwrap();
    let client = KapsoClient::new(&sim.kapso_config())
        .unwrap()
        .with_page_size(2);

    let numbers = client.list_phone_numbers().await.unwrap();

    let ids: Vec<&str> = numbers.iter().map(|n| n.phone_number_id.as_str()).collect();
    assert_eq!(ids, ["333", "222", "111"]);
    assert_eq!(
        numbers[0].display_phone_number_normalized.as_deref(),
        Some("15550000333")
    );
    assert_eq!(
        numbers[0].whatsapp_business_manager_messaging_limit,
        Some(MessagingLimit::Text("10000".to_owned()))
    );
}

#[tokio::test]
async fn list_pages_carry_the_documented_paging_headers() {
    let (sim, client) = sim_and_client().await;
    for i in 0..5 {
        let url = format!("https://sb.example.com/webhooks/n{i}");
        client
            .create_webhook(Some(PHONE), &request(&url))
            .await
            .unwrap();
    }

    let response = reqwest::Client::new()
        .get(format!(
            "{}/platform/v1/whatsapp/phone_numbers/{PHONE}/webhooks?page=2&per_page=2&url_contains=sb.example",
            sim.base_url()
        ))
        .header("X-API-Key", sim.api_key())
        .send()
        .await
        .unwrap();

    let header = |name: &str| response.headers()[name].to_str().unwrap().to_owned();
    assert_eq!(header("x-total"), "5");
    assert_eq!(header("x-total-pages"), "3");
    assert_eq!(header("x-per-page"), "2");
    assert_eq!(header("x-page"), "2");
    let link = header("link");
    assert!(link.contains("page=3&per_page=2>; rel=\"next\""), "{link}");
    assert!(link.contains("page=1&per_page=2>; rel=\"prev\""), "{link}");
    assert!(link.contains("url_contains=sb.example"), "{link}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body["meta"],
        json!({"page": 2, "per_page": 2, "total_pages": 3, "total_count": 5})
    );
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn test_endpoint_also_takes_the_event_type_as_a_query_parameter() {
    let (sim, client) = sim_and_client().await;
    let mut receiver = Receiver::start(&[]).await;
    let hook = client
        .create_webhook(Some(PHONE), &request(&receiver.url))
        .await
        .unwrap();

    let response = reqwest::Client::new()
        .post(format!(
            "{}/platform/v1/whatsapp/webhooks/{}/test?event_type={}",
            sim.base_url(),
            hook.id,
            samples::MESSAGE_FAILED
        ))
        .header("X-API-Key", sim.api_key())
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    let received = receiver.next().await;
    assert_eq!(
        received.header("x-webhook-event"),
        Some(samples::MESSAGE_FAILED)
    );
    let errors = &received.json()["message"]["kapso"]["statuses"][0]["errors"];
    assert_eq!(errors[0]["code"], 131047);
}
