//! Conformance to Kapso's OpenAPI excerpts: the bodies our client sends, the sim's answers,
//! and the sim's validation agreeing with the schema.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use switchboard::kapso::{WebhookKind, WebhookPatch, WebhookRequest};
use switchboard::kapso_sim::samples;
use switchboard::secret::Secret;

use super::openapi::Spec;
use super::{sim_and_client, text_message, PHONE};

const PLATFORM: &str = "platform-webhooks.yaml";
const MESSAGES: &str = "whatsapp-messages.yaml";

fn full_request(url: &str) -> WebhookRequest {
    WebhookRequest {
        buffer_enabled: Some(true),
        buffer_window_seconds: Some(5),
        max_buffer_size: Some(50),
        buffer_events: Some(vec![samples::MESSAGE_RECEIVED.to_owned()]),
        inactivity_minutes: Some(30),
        headers: Some(BTreeMap::from([("X-Env".to_owned(), "prod".to_owned())])),
        ..WebhookRequest::kapso(
            url,
            Secret::new("whsec_test_switchboard"),
            vec![
                samples::MESSAGE_RECEIVED.to_owned(),
                samples::MESSAGE_FAILED.to_owned(),
            ],
        )
    }
}

fn last_body(sim: &switchboard::kapso_sim::SimulatedKapso, method: &str) -> Value {
    sim.requests()
        .iter()
        .rev()
        .find(|r| r.method == method)
        .and_then(|r| r.body.clone())
        .unwrap_or_else(|| panic!("no {method} with a JSON body was recorded"))
}

#[tokio::test]
async fn client_webhook_bodies_conform_to_the_openapi_schemas() {
    let spec = Spec::load(PLATFORM);
    let (sim, client) = sim_and_client().await;

    let hook = client
        .create_webhook(Some(PHONE), &full_request("https://sb.example.com/w"))
        .await
        .unwrap();
    spec.assert_conforms(
        "number-scoped create",
        &last_body(&sim, "POST"),
        spec.schema("WhatsappWebhookRequest"),
    );
    let schema = spec.request_schema("/whatsapp/phone_numbers/{phone_number_id}/webhooks", "post");
    spec.assert_conforms(
        "number-scoped create (path)",
        &last_body(&sim, "POST"),
        schema,
    );

    let project = WebhookRequest {
        url: "https://sb.example.com/p".to_owned(),
        events: Some(vec![samples::PHONE_NUMBER_CREATED.to_owned()]),
        kind: Some(WebhookKind::Kapso),
        ..WebhookRequest::default()
    };
    client.create_webhook(None, &project).await.unwrap();
    let schema = spec.request_schema("/whatsapp/webhooks", "post");
    spec.assert_conforms("project create", &last_body(&sim, "POST"), schema);
    spec.assert_conforms(
        "project create",
        &last_body(&sim, "POST"),
        spec.schema("WhatsappProjectWebhookRequest"),
    );

    let patch = WebhookPatch {
        url: Some("https://sb.example.com/w2".to_owned()),
        active: Some(true),
        secret_key: Some(Some(Secret::new("whsec_new"))),
        buffer_window_seconds: Some(None),
        payload_version: Some(Some("v2".to_owned())),
        ..WebhookPatch::default()
    };
    client
        .update_webhook(Some(PHONE), &hook.id, &patch)
        .await
        .unwrap();
    spec.assert_conforms(
        "update",
        &last_body(&sim, "PATCH"),
        spec.schema("WhatsappWebhookUpdateRequest"),
    );
    client
        .test_webhook(&hook.id, Some(samples::MESSAGE_RECEIVED))
        .await
        .unwrap();
    let schema = spec.request_schema("/whatsapp/webhooks/{webhook_id}/test", "post");
    spec.assert_conforms("test", &last_body(&sim, "POST"), schema);
}

#[tokio::test]
async fn message_bodies_we_send_conform_and_the_sim_agrees_with_the_schema() {
    let spec = Spec::load(MESSAGES);
    let schema = spec.request_schema("/{phone_number_id}/messages", "post");
    let (sim, client) = sim_and_client().await;

    client
        .mark_read(PHONE, "wamid.IN_TEXT_0001", true)
        .await
        .unwrap();
    spec.assert_conforms("mark_read", &last_body(&sim, "POST"), schema);
    spec.assert_conforms(
        "mark_read",
        &last_body(&sim, "POST"),
        spec.schema("MarkReadRequest"),
    );

    let bodies = [
        text_message("Yes! It left our warehouse this morning."),
        json!({"messaging_product": "whatsapp", "to": "15550100200", "type": "template",
               "template": {"name": "order_shipped", "language": {"code": "en_US"},
               "components": [{"type": "body", "parameters": [{"type": "text", "text": "Dana"}]}]}}),
        json!({"messaging_product": "whatsapp", "to": "15550100200", "type": "interactive",
               "interactive": {"type": "button", "body": {"text": "Want live tracking?"},
               "action": {"buttons": [{"type": "reply", "reply": {"id": "track_yes", "title": "Track it"}}]}}}),
        json!({"messaging_product": "whatsapp", "to": "15550100200", "type": "reaction",
               "reaction": {"message_id": "wamid.IN_TEXT_0001", "emoji": "👍"}}),
    ];
    for body in &bodies {
        let response = client.send_message(PHONE, body).await.unwrap();
        spec.assert_conforms("message", &last_body(&sim, "POST"), schema);
        spec.assert_conforms(
            "send response",
            &response.raw,
            spec.schema("SendMessageResponse"),
        );
    }

    let mut no_type = text_message("hi");
    no_type.as_object_mut().unwrap().remove("type");
    let mut long_title = bodies[2].clone();
    long_title["interactive"]["action"]["buttons"][0]["reply"]["title"] = json!("x".repeat(21));
    for bad in [no_type, long_title] {
        assert!(
            !spec.violations(&bad, schema).is_empty(),
            "schema accepts {bad}"
        );
        assert!(
            client.send_message(PHONE, &bad).await.is_err(),
            "sim accepts {bad}"
        );
    }
}

#[tokio::test]
async fn sim_responses_conform_to_the_openapi_schemas() {
    let platform = Spec::load(PLATFORM);
    let messages = Spec::load(MESSAGES);
    let (sim, client) = sim_and_client().await;
    client
        .create_webhook(Some(PHONE), &full_request("https://sb.example.com/w"))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let get = |path: &str| {
        http.get(format!("{}/platform/v1{path}", sim.base_url()))
            .header("X-API-Key", sim.api_key())
            .send()
    };

    let list: Value = get("/whatsapp/webhooks")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    platform.assert_conforms(
        "webhook list",
        &list,
        platform.schema("WhatsappWebhookListResponse"),
    );
    let numbers: Value = get("/whatsapp/phone_numbers")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    platform.assert_conforms(
        "phone numbers",
        &numbers,
        platform.schema("WhatsappPhoneNumberListResponse"),
    );
    let one: Value = get(&format!("/whatsapp/phone_numbers/{PHONE}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    platform.assert_conforms(
        "phone number",
        &one,
        platform.schema("WhatsappPhoneNumberResponse"),
    );

    let unauthorized = http
        .get(format!("{}/platform/v1/whatsapp/webhooks", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    let body: Value = unauthorized.json().await.unwrap();
    platform.assert_conforms("401", &body, platform.schema("ErrorResponse"));

    let bad = http
        .post(format!(
            "{}/meta/whatsapp/v24.0/{PHONE}/messages",
            sim.base_url()
        ))
        .header("X-API-Key", sim.api_key())
        .json(&json!({"messaging_product": "whatsapp", "to": "1", "type": "text", "text": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    let schema = messages.response_schema("/{phone_number_id}/messages", "post", "400");
    messages.assert_conforms("400", &body, schema);
}

#[test]
fn the_checker_rejects_what_the_schemas_forbid() {
    let spec = Spec::load(PLATFORM);
    let schema = spec.schema("WhatsappWebhookRequest");
    let ok = json!({"whatsapp_webhook": {"url": "https://x.example/h", "secret_key": "s", "events": ["e"]}});
    assert!(spec.violations(&ok, schema).is_empty());
    for (key, value) in [
        ("secret_key", Value::Null),
        ("events", json!([])),
        ("kind", json!("slack")),
        ("url", json!(5)),
    ] {
        let mut bad = ok.clone();
        if value.is_null() {
            bad["whatsapp_webhook"].as_object_mut().unwrap().remove(key);
        } else {
            bad["whatsapp_webhook"][key] = value;
        }
        assert!(
            !spec.violations(&bad, schema).is_empty(),
            "accepted without valid {key}: {bad}"
        );
    }
}

/// Kapso's own send examples (every request example of `POST /{phone_number_id}/messages` in its
/// OpenAPI) are accepted by the simulated proxy: a simulator stricter or looser than Kapso's
/// examples would prove nothing.
#[tokio::test]
async fn every_send_example_of_kapsos_openapi_is_accepted_by_the_simulated_proxy() {
    let spec = Spec::load(MESSAGES);
    let examples = spec.at(
        "/paths/~1{phone_number_id}~1messages/post/requestBody/content/application~1json/examples",
    );
    let examples = examples.as_object().expect("examples by name");
    assert!(examples.len() >= 30, "{} examples", examples.len());
    let (sim, client) = sim_and_client().await;
    let mut refused = Vec::new();
    for (name, example) in examples {
        let body = &example["value"];
        let result = if body["status"] == "read" {
            let message_id = body["message_id"].as_str().unwrap_or_default();
            client
                .mark_read(PHONE, message_id, body.get("typing_indicator").is_some())
                .await
                .map(|_| ())
        } else {
            client.send_message(PHONE, body).await.map(|_| ())
        };
        if let Err(err) = result {
            refused.push(format!("{name}: {err}"));
        }
    }
    assert!(
        refused.is_empty(),
        "the simulated proxy refused Kapso's own examples:\n{}",
        refused.join("\n")
    );
    drop(sim);
}

/// Kapso's error examples for sends decode to what the pipeline acts on: the window (131047)
/// and refusals are final, an in-flight conflict is retried.
#[tokio::test]
async fn kapsos_send_error_examples_decode_to_the_right_retry_decision() {
    use switchboard::kapso::{KapsoError, RetryHint};
    let spec = Spec::load(MESSAGES);
    let responses = spec.at("/paths/~1{phone_number_id}~1messages/post/responses");
    let mut seen = 0;
    for (status, expected) in [
        ("400", vec![("invalid_phone", RetryHint::DoNotRetry)]),
        ("409", vec![("message_in_flight", RetryHint::Retry)]),
        (
            "422",
            vec![
                ("window_expired", RetryHint::DoNotRetry),
                ("address_not_supported", RetryHint::DoNotRetry),
                ("marketing_preference_stopped", RetryHint::DoNotRetry),
                ("messaging_account_mismatch", RetryHint::DoNotRetry),
            ],
        ),
    ] {
        let examples = &responses[status]["content"]["application/json"]["examples"];
        for (name, hint) in expected {
            let body = serde_json::to_vec(&examples[name]["value"]).unwrap();
            let err = KapsoError::from_response(
                status.parse().unwrap(),
                &reqwest::header::HeaderMap::new(),
                &body,
            );
            assert_eq!(err.retry_hint(), hint, "{status} {name}: {err:?}");
            if name == "window_expired" {
                assert_eq!(err.graph_code(), Some(131047));
            }
            seen += 1;
        }
    }
    let insufficient =
        serde_json::to_vec(&responses["402"]["content"]["application/json"]["example"]).unwrap();
    let err = KapsoError::from_response(402, &reqwest::header::HeaderMap::new(), &insufficient);
    assert_eq!(err.kapso_code(), Some("insufficient_credits"));
    assert_eq!(err.retry_hint(), RetryHint::DoNotRetry);
    assert_eq!(seen, 6);
}
