//! Every webhook and phone-number response example Kapso documents (`tests/fixtures/
//! kapso-webhook-shapes/`, and the examples inside the OpenAPI excerpt), replayed through the
//! real client and through webhook sync from a loopback server that answers with it. Not the
//! simulator's own objects: Kapso's, as its docs render them.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::{json, Value};
use switchboard::config::KapsoConfig;
use switchboard::kapso::{KapsoClient, RemoteScope, WebhookKind, WebhookRequest};
use switchboard::secret::Secret;
use switchboard::sync::{sync_webhooks, Action, SkipReason, SyncOptions, SyncReport};
use switchboard::Config;
use tokio::net::TcpListener;

/// Meta phone number id of the OpenAPI phone-number example.
const EXAMPLE_NUMBER: &str = "1234567890";
/// Its `internal_id`, which the older rendering shows as the webhook's `whatsapp_config_id`.
const EXAMPLE_CONFIG_ID: &str = "4a5b6c7d-8e9f-0a1b-2c3d-4e5f6a7b8c9d";
/// The URL of the docs' create/update examples.
const EXAMPLE_URL: &str = "https://api.acme.com/webhooks/whatsapp";

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read_json(name: &str) -> Value {
    let path = fixtures().join("kapso-webhook-shapes").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"))
}

fn openapi() -> Value {
    let path = fixtures().join("kapso-openapi/platform-webhooks.yaml");
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `examples.NAME.value` of the response `status` of `METHOD PATH` in the OpenAPI excerpt.
fn openapi_example(spec: &Value, path: &str, method: &str, status: &str, name: &str) -> Value {
    let path = path.replace('~', "~0").replace('/', "~1");
    let pointer = format!(
        "/paths/{path}/{method}/responses/{status}/content/application~1json/examples/{name}/value"
    );
    spec.pointer(&pointer)
        .cloned()
        .unwrap_or_else(|| panic!("the OpenAPI excerpt has no example at {pointer}"))
}

/// Every documented single-webhook response (`{"data": {...}}`), named by its source.
fn webhook_examples() -> Vec<(String, Value)> {
    let mut all: Vec<(String, Value)> = [
        "platform-get-webhook.json",
        "platform-create-webhook-201.json",
        "reference-get-webhook.json",
        "reference-create-webhook-201.json",
        "reference-update-webhook-200.json",
        "legacy-whatsapp-config-webhook.json",
    ]
    .iter()
    .map(|name| ((*name).to_owned(), read_json(name)))
    .collect();
    let list = read_json("platform-list-project-webhooks.json");
    for (i, element) in list["data"].as_array().unwrap().iter().enumerate() {
        all.push((
            format!("platform-list-project-webhooks.json data[{i}]"),
            json!({ "data": element }),
        ));
    }
    let spec = openapi();
    let number_route = "/whatsapp/phone_numbers/{phone_number_id}/webhooks";
    all.push((
        "OpenAPI POST number webhooks 201 `created`".to_owned(),
        openapi_example(&spec, number_route, "post", "201", "created"),
    ));
    all.push((
        "OpenAPI PATCH number webhook 200 `updated`".to_owned(),
        openapi_example(
            &spec,
            &format!("{number_route}/{{webhook_id}}"),
            "patch",
            "200",
            "updated",
        ),
    ));
    all
}

fn phone_numbers_example() -> Value {
    openapi_example(
        &openapi(),
        "/whatsapp/phone_numbers",
        "get",
        "200",
        "multiple",
    )
}

fn list_of(hooks: &[Value]) -> Value {
    let n = hooks.len();
    json!({"data": hooks, "meta": {"page": 1, "per_page": 20, "total_pages": 1, "total_count": n}})
}

/// What the loopback server answers with.
#[derive(Clone)]
struct Answers {
    /// `GET /whatsapp/webhooks`.
    project_list: Value,
    /// `GET /whatsapp/phone_numbers/{id}/webhooks`.
    number_list: Value,
    /// `GET /whatsapp/phone_numbers`.
    phone_numbers: Value,
    /// POST and PATCH of a webhook.
    single: Value,
}

#[derive(Clone)]
struct Canned {
    answers: Answers,
    /// `METHOD path` of every request.
    seen: Arc<Mutex<Vec<String>>>,
}

async fn answer(State(canned): State<Canned>, method: Method, uri: Uri) -> Response {
    let path = uri.path().trim_start_matches("/platform/v1");
    canned.seen.lock().unwrap().push(format!("{method} {path}"));
    let a = &canned.answers;
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["whatsapp", "webhooks"]) => Json(a.project_list.clone()).into_response(),
        ("GET", ["whatsapp", "phone_numbers"]) => Json(a.phone_numbers.clone()).into_response(),
        ("GET", ["whatsapp", "phone_numbers", _, "webhooks"]) => {
            Json(a.number_list.clone()).into_response()
        }
        ("POST", [.., "webhooks"]) => (StatusCode::CREATED, Json(a.single.clone())).into_response(),
        ("PATCH", [.., "webhooks", _]) => Json(a.single.clone()).into_response(),
        _ => (StatusCode::NOT_FOUND, Json(json!({"error": "Not found"}))).into_response(),
    }
}

/// A loopback HTTP server answering like Kapso with `answers`; stops when dropped.
struct CannedKapso {
    base_url: String,
    seen: Arc<Mutex<Vec<String>>>,
    server: tokio::task::JoinHandle<()>,
}

impl CannedKapso {
    async fn start(answers: Answers) -> CannedKapso {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new().fallback(answer).with_state(Canned {
            answers,
            seen: seen.clone(),
        });
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        CannedKapso {
            base_url,
            seen,
            server,
        }
    }

    fn client(&self) -> KapsoClient {
        let config = KapsoConfig {
            base_url: self.base_url.clone(),
            api_key: Some(Secret::new("kapso_canned_key")),
            max_retries: 0,
            ..KapsoConfig::default()
        };
        KapsoClient::new(&config).unwrap()
    }

    fn kapso_toml(&self) -> String {
        format!(
            "[kapso]\nbase_url = \"{}\"\napi_key = \"kapso_canned_key\"\nmax_retries = 0\n",
            self.base_url
        )
    }

    /// Requests that would change something on Kapso.
    fn changing(&self) -> Vec<String> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|r| !r.starts_with("GET "))
            .cloned()
            .collect()
    }
}

impl Drop for CannedKapso {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn answers_with(single: &Value) -> Answers {
    let list = list_of(&[single["data"].clone()]);
    Answers {
        project_list: list.clone(),
        number_list: list,
        phone_numbers: phone_numbers_example(),
        single: single.clone(),
    }
}

#[tokio::test]
async fn every_documented_webhook_example_is_read_by_the_client() {
    for (source, example) in webhook_examples() {
        let kapso = CannedKapso::start(answers_with(&example)).await;
        let client = kapso.client();
        let object = &example["data"];
        let request = WebhookRequest::kapso(
            EXAMPLE_URL,
            Secret::new("wh_sec_3kfj9dmfkg8s2"),
            vec!["whatsapp.message.received".to_owned()],
        );

        let created = client
            .create_webhook(Some(EXAMPLE_NUMBER), &request)
            .await
            .unwrap_or_else(|e| panic!("{source}: create answer not read: {e}"));
        let updated = client
            .update_webhook_fields(Some(EXAMPLE_NUMBER), &created.id, &Default::default())
            .await
            .unwrap_or_else(|e| panic!("{source}: update answer not read: {e}"));
        let listed = client
            .list_project_webhooks()
            .await
            .unwrap_or_else(|e| panic!("{source}: list not read: {e}"));

        assert_eq!(created, updated, "{source}");
        assert_eq!(listed, std::slice::from_ref(&created), "{source}");
        assert_eq!(created.id, object["id"], "{source}");
        assert_eq!(created.url, object["url"], "{source}");
        assert_eq!(created.active, object["active"], "{source}");
        let expected_kind = match object.get("kind").and_then(Value::as_str) {
            Some("meta") => WebhookKind::Meta,
            _ => WebhookKind::Kapso,
        };
        assert_eq!(
            created.kind(),
            expected_kind,
            "{source}: kind defaults to kapso"
        );
        let expected_scope = match (
            object.get("phone_number_id").and_then(Value::as_str),
            object.get("whatsapp_config_id").and_then(Value::as_str),
        ) {
            (Some(number), _) => RemoteScope::Number(number),
            (None, Some(config)) => RemoteScope::Config(config),
            (None, None) => RemoteScope::Project,
        };
        assert_eq!(created.scope(), expected_scope, "{source}");
    }
}

#[tokio::test]
async fn the_documented_phone_number_example_is_read_and_links_the_config_id() {
    let kapso = CannedKapso::start(answers_with(&read_json(
        "reference-create-webhook-201.json",
    )))
    .await;

    let numbers = kapso.client().list_phone_numbers().await.unwrap();

    assert_eq!(numbers.len(), 1);
    assert_eq!(numbers[0].phone_number_id, EXAMPLE_NUMBER);
    assert_eq!(numbers[0].internal_id, EXAMPLE_CONFIG_ID);
}

fn sync_config(kapso: &CannedKapso, public_url: &str, phone_number_id: &str) -> Config {
    let text = format!(
        "[server]\npublic_url = \"{public_url}\"\n{}\n[[webhooks]]\nname = \"whatsapp\"\nphone_number_id = \"{phone_number_id}\"\nsecrets = [\"wh_sec_3kfj9dmfkg8s2\"]\nevents = [\"whatsapp.message.received\", \"whatsapp.message.sent\"]\n",
        kapso.kapso_toml()
    );
    Config::parse("shapes.toml", &text, |_| None).unwrap()
}

async fn sync(config: &Config, kapso: &CannedKapso) -> SyncReport {
    sync_webhooks(config, &kapso.client(), &SyncOptions::default())
        .await
        .unwrap()
}

/// The docs' create and update examples are webhooks at `https://api.acme.com/webhooks/whatsapp`
/// on phone number 1234567890: to a switchboard with that public URL and an entry `whatsapp`
/// on that number, each is that entry's webhook, whichever list shows it and however it names
/// the number. Sync patches it (the example's events or headers differ) and never creates one.
#[tokio::test]
async fn sync_takes_each_documented_example_for_the_entry_it_is_and_creates_nothing() {
    for (source, example) in webhook_examples() {
        if example["data"]["url"] != EXAMPLE_URL {
            continue;
        }
        for number_route_lists_it in [true, false] {
            let mut answers = answers_with(&example);
            if !number_route_lists_it {
                answers.number_list = list_of(&[]);
            }
            let kapso = CannedKapso::start(answers).await;
            let config = sync_config(&kapso, "https://api.acme.com", EXAMPLE_NUMBER);

            let report = sync(&config, &kapso).await;

            let what = format!("{source} (on the number's list: {number_route_lists_it})");
            assert!(report.undecodable.is_empty(), "{what}: {report:#?}");
            assert_eq!(report.entries.len(), 1, "{what}: {report:#?}");
            let entry = &report.entries[0];
            assert_eq!(entry.name.as_deref(), Some("whatsapp"), "{what}");
            assert_eq!(
                entry.webhook_id.as_deref(),
                example["data"]["id"].as_str(),
                "{what}"
            );
            assert!(
                matches!(entry.action, Action::Updated { .. } | Action::Unchanged),
                "{what}: {:?}",
                entry.action
            );
            assert!(
                kapso.changing().iter().all(|r| r.starts_with("PATCH ")),
                "{what}: {:?}",
                kapso.changing()
            );
        }
    }
}

/// The placeholder and legacy examples point elsewhere (`<string>`, example.com): sync reads
/// them as foreign webhooks, leaves them alone and creates the entry's own.
#[tokio::test]
async fn sync_reads_the_placeholder_examples_as_foreign_webhooks() {
    for (source, example) in webhook_examples() {
        if example["data"]["url"] == EXAMPLE_URL {
            continue;
        }
        let kapso = CannedKapso::start(answers_with(&example)).await;
        let config = sync_config(&kapso, "https://bot.example.org", EXAMPLE_NUMBER);

        let report = sync(&config, &kapso).await;

        assert!(report.undecodable.is_empty(), "{source}: {report:#?}");
        assert_eq!(report.foreign, 1, "{source}: {report:#?}");
        assert_eq!(report.entries[0].action, Action::Created, "{source}");
        let changing = kapso.changing();
        assert_eq!(
            changing,
            [format!(
                "POST /whatsapp/phone_numbers/{EXAMPLE_NUMBER}/webhooks"
            )],
            "{source}"
        );
    }
}

/// One element Kapso lists that this build cannot read does not fail the sync: it is reported,
/// the entry it may be is not created, and a readable list still syncs.
#[tokio::test]
async fn an_unreadable_element_is_reported_and_no_second_webhook_is_created() {
    let good = read_json("platform-create-webhook-201.json")["data"].clone();
    let mut broken = good.clone();
    broken["id"] = json!("0b7e6c55-unreadable");
    broken["active"] = json!("yes, the secret is wh_sec_leak");
    let mut nameless = broken.clone();
    nameless.as_object_mut().unwrap().remove("url");

    let not_created = Action::Skipped {
        reason: SkipReason::ListIncomplete,
    };
    for (case, elements, expected) in [
        ("at the entry's URL", vec![broken.clone()], &not_created),
        ("without a URL", vec![nameless], &not_created),
        (
            "beside the entry's readable webhook",
            vec![broken, good.clone()],
            &Action::Unchanged,
        ),
    ] {
        let list = list_of(&elements);
        let kapso = CannedKapso::start(Answers {
            project_list: list.clone(),
            number_list: list,
            phone_numbers: phone_numbers_example(),
            single: json!({ "data": good }),
        })
        .await;
        let config = sync_config(&kapso, "https://api.acme.com", EXAMPLE_NUMBER);

        let report = sync(&config, &kapso).await;

        assert_eq!(report.undecodable.len(), 1, "{case}: {report:#?}");
        assert_eq!(
            report.undecodable[0].id.as_deref(),
            Some("0b7e6c55-unreadable"),
            "{case}"
        );
        assert!(
            kapso.changing().iter().all(|r| !r.starts_with("POST ")),
            "{case}: {:?}",
            kapso.changing()
        );
        let lines = report.summary_lines().join("\n");
        assert!(
            lines.contains("unreadable webhook 0b7e6c55-unreadable"),
            "{lines}"
        );
        assert!(
            !lines.contains("wh_sec_leak"),
            "a value reached the report: {lines}"
        );
        let action = &report.entries[0].action;
        let unchanged_or_patched = matches!(action, Action::Unchanged | Action::Updated { .. });
        if expected == &Action::Unchanged {
            assert!(unchanged_or_patched, "{case}: {action:?}");
        } else {
            assert_eq!(action, expected, "{case}");
        }
    }
}

/// An unreadable element elsewhere does not stop the entry from being created.
#[tokio::test]
async fn an_unreadable_element_at_another_url_does_not_block_the_create() {
    let mut broken = read_json("platform-create-webhook-201.json")["data"].clone();
    broken["url"] = json!("https://crm.example.net/kapso");
    broken["events"] = json!("whatsapp.message.received");
    let list = list_of(&[broken]);
    let kapso = CannedKapso::start(Answers {
        project_list: list.clone(),
        number_list: list,
        phone_numbers: phone_numbers_example(),
        single: read_json("platform-create-webhook-201.json"),
    })
    .await;
    let config = sync_config(&kapso, "https://api.acme.com", EXAMPLE_NUMBER);

    let report = sync(&config, &kapso).await;

    assert_eq!(report.undecodable.len(), 1);
    assert_eq!(report.entries[0].action, Action::Created);
    assert_eq!(
        kapso.changing(),
        [format!(
            "POST /whatsapp/phone_numbers/{EXAMPLE_NUMBER}/webhooks"
        )]
    );
}

/// `(METHOD, PATH, example name, body)` of every request example of the webhook endpoints in
/// the OpenAPI excerpt, creates first.
fn request_examples(spec: &Value) -> Vec<(String, String, String, Value)> {
    let mut all = Vec::new();
    let paths = spec["paths"].as_object().unwrap();
    for (path, operations) in paths.iter().filter(|(p, _)| p.contains("webhooks")) {
        for (method, operation) in operations.as_object().unwrap() {
            let examples = operation
                .pointer("/requestBody/content/application~1json/examples")
                .and_then(Value::as_object);
            for (name, example) in examples.into_iter().flatten() {
                all.push((
                    method.to_uppercase(),
                    path.clone(),
                    name.clone(),
                    example["value"].clone(),
                ));
            }
        }
    }
    all.sort_by_key(|(method, ..)| method != "POST");
    all
}

/// The request bodies Kapso documents, sent as they are to the simulated Kapso (which must
/// accept them), answer in a shape the client reads; and a sync whose entry is the webhook
/// the examples create adopts one of them and never creates another.
#[tokio::test]
async fn the_documented_request_examples_are_accepted_and_sync_adopts_what_they_made() {
    use switchboard::kapso_sim::{SimConfig, SimPhoneNumber, SimulatedKapso};

    let sim = SimulatedKapso::start(SimConfig {
        phone_numbers: vec![SimPhoneNumber::new(EXAMPLE_NUMBER, "+1 555-123-4567")],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    // The test endpoint makes the sim deliver to the webhook's URL: only ever to loopback.
    let test_target = KapsoClient::new(&sim.kapso_config())
        .unwrap()
        .create_webhook(
            Some(EXAMPLE_NUMBER),
            &WebhookRequest::kapso(
                "http://127.0.0.1:9/test-target",
                Secret::new("whsec_test_target"),
                vec!["whatsapp.message.received".to_owned()],
            ),
        )
        .await
        .unwrap();
    let mut kapso_hook: Option<String> = None;
    let examples = request_examples(&openapi());
    assert!(examples.len() >= 10, "{examples:#?}");
    for (method, path, name, body) in &examples {
        let id = if path.ends_with("/test") {
            test_target.id.clone()
        } else {
            kapso_hook.clone().unwrap_or_default()
        };
        let path = path
            .replace("{phone_number_id}", EXAMPLE_NUMBER)
            .replace("{webhook_id}", &id);
        let url = format!("{}/platform/v1{path}", sim.base_url());
        let request = match method.as_str() {
            "POST" => http.post(&url),
            "PATCH" => http.patch(&url),
            other => panic!("no request example expected for {other}"),
        };
        let response = request
            .header("X-API-Key", sim.api_key())
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let answer: Value = response.json().await.unwrap();
        assert!(
            status.is_success(),
            "{method} {path} `{name}`: {status} {answer}"
        );
        if path.ends_with("/test") {
            continue;
        }
        let hook: switchboard::kapso::RemoteWebhook =
            serde_json::from_value(answer["data"].clone())
                .unwrap_or_else(|e| panic!("{method} {path} `{name}`: {e}: {answer}"));
        if hook.kind() == WebhookKind::Kapso && kapso_hook.is_none() {
            kapso_hook = Some(hook.id);
        }
    }
    let at_example_url = |sim: &SimulatedKapso| {
        sim.webhooks()
            .into_iter()
            .filter(|h| h["url"] == EXAMPLE_URL && h["phone_number_id"] == EXAMPLE_NUMBER)
            .count()
    };
    assert!(at_example_url(&sim) > 1, "the examples made duplicates");
    let before = sim.requests().len();
    let text = format!(
        "[server]\npublic_url = \"https://api.acme.com\"\n[kapso]\nbase_url = \"{}\"\napi_key = \"{}\"\nmax_retries = 0\n[[webhooks]]\nname = \"whatsapp\"\nphone_number_id = \"{EXAMPLE_NUMBER}\"\nsecrets = [\"wh_sec_3kfj9dmfkg8s2\"]\nevents = [\"whatsapp.message.received\", \"whatsapp.message.sent\"]\n",
        sim.base_url(),
        sim.api_key()
    );
    let config = Config::parse("examples.toml", &text, |_| None).unwrap();
    let client = KapsoClient::new(&config.kapso).unwrap();

    let report = sync_webhooks(&config, &client, &SyncOptions::default())
        .await
        .unwrap();

    let posts: Vec<_> = sim.requests()[before..]
        .iter()
        .filter(|r| r.method == "POST")
        .cloned()
        .collect();
    assert!(posts.is_empty(), "sync created: {posts:#?}");
    assert_eq!(at_example_url(&sim), 1, "{report:#?}");
    let again = sync_webhooks(&config, &client, &SyncOptions::default())
        .await
        .unwrap();
    assert!(!again.changed(), "{again:#?}");
}
