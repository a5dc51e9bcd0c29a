//! The web console at `/admin` over real HTTP: sign-in with the token (posted, never in a URL),
//! the session cookie, stored customer text shown as text, a dead job retried from the page
//! with its CSRF token (refused without it), and a route paused and resumed the same way. The browser tests drive the same pages.

use std::time::Duration;

use reqwest::redirect::Policy;

use crate::payloads::text_at;
use crate::pipeline::{pipeline_config, refuse_next_send, settled_jobs, sim, LATE_ROUTE};
use crate::test_app::TestApp;

const TOKEN: &str = "adm_4f1c2b9e7d6a5f3c8b0e1d2a";
const WAIT: Duration = Duration::from_secs(15);

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// Signs in and returns the session cookie (`name=value`).
async fn sign_in(app: &TestApp) -> String {
    let response = client()
        .post(format!("{}/admin/login", app.base_url))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/admin");
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains(TOKEN));
    cookie.split(';').next().unwrap().to_owned()
}

async fn page(app: &TestApp, path: &str, cookie: &str) -> (u16, String) {
    let response = client()
        .get(format!("{}{path}", app.base_url))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// The value of the first `name="csrf"` field of `html`.
fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a form token");
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

#[tokio::test]
async fn the_console_is_off_without_a_token_and_asks_to_sign_in_with_one() {
    let off = TestApp::spawn().await;
    assert_eq!(page(&off, "/admin", "").await.0, 404);

    let app = TestApp::spawn_with(&format!("\n[admin]\ntoken = \"{TOKEN}\"\n")).await;
    let (status, html) = page(&app, "/admin", "").await;
    assert_eq!(status, 200);
    assert!(html.contains("action=\"/admin/login\""), "{html}");
    let events = client()
        .get(format!("{}/admin/events", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 303, "pages need a session");
    let wrong = client()
        .post(format!("{}/admin/login", app.base_url))
        .form(&[("token", "not-the-token-not-the-token")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    let forged = page(&app, "/admin/events", "switchboard_admin=forged").await;
    assert_eq!(forged.0, 303);
    let css = page(&app, "/admin/assets/console.css", "").await;
    assert_eq!(css.0, 200);
}

#[tokio::test]
async fn stored_markup_is_shown_as_text_and_a_dead_job_is_retried_with_the_form_token() {
    let sim = sim().await;
    refuse_next_send(&sim);
    let app = TestApp::spawn_with(&pipeline_config(
        &sim,
        &format!("\n[admin]\ntoken = \"{TOKEN}\"\n{LATE_ROUTE}"),
    ))
    .await;
    let xss = "<script>alert(1)</script><img src=x onerror=alert(2)>";
    let body = text_at("wamid.X", "conv-x", xss, 1_764_098_000, false);
    assert_eq!(app.deliver("whatsapp.message.received", &body).await, 200);
    assert_eq!(settled_jobs(&app, 1).await[0].1, "dead");
    let cookie = sign_in(&app).await;

    let (status, html) = page(&app, "/admin/events?text=script", &cookie).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;"),
        "{html}"
    );
    assert!(
        !html.contains("<script>") && !html.contains("<img"),
        "{html}"
    );
    let (_, event_page) = page(&app, "/admin/events/1", &cookie).await;
    assert!(!event_page.contains("<script>") && !event_page.contains("<img"));
    assert!(event_page.contains("late"), "the event's job is listed");

    let (_, dead) = page(&app, "/admin/jobs?state=dead", &cookie).await;
    let csrf = csrf_of(&dead);
    let retry = |token: String| {
        let app_url = app.base_url.clone();
        let cookie = cookie.clone();
        async move {
            client()
                .post(format!("{app_url}/admin/jobs/1/retry"))
                .header("cookie", cookie)
                .form(&[("csrf", token)])
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(retry("forged".to_owned()).await.status(), 403);
    assert_eq!(
        app.count("job_requests").await,
        0,
        "a forged form changes nothing"
    );
    let done = retry(csrf).await;
    assert_eq!(done.status(), 303);
    let sends = sim.wait_for_sends(1, WAIT).await;
    assert_eq!(sends[0].body["text"]["body"], "sorry for the wait");
}

#[tokio::test]
async fn a_route_is_paused_and_resumed_from_the_routes_page_with_the_form_token() {
    let sim = sim().await;
    let app = TestApp::spawn_with(&pipeline_config(
        &sim,
        &format!(
            "\n[admin]\ntoken = \"{TOKEN}\"\n[[routes]]\nname = \"ack <b>\"\non = \"whatsapp.message.received\"\nhandler = {{ kind = \"reply\", text = \"got it\" }}\n"
        ),
    ))
    .await;
    let cookie = sign_in(&app).await;
    let (status, overview) = page(&app, "/admin", &cookie).await;
    assert_eq!(status, 200);
    assert!(
        overview.contains("href=\"/admin/routes\""),
        "linked in the nav"
    );
    let (status, routes) = page(&app, "/admin/routes", &cookie).await;
    assert_eq!(status, 200);
    assert!(
        routes.contains("ack &lt;b&gt;") && !routes.contains("ack <b>"),
        "{routes}"
    );
    assert!(
        routes.contains("action=\"/admin/routes/pause\""),
        "{routes}"
    );
    let csrf = csrf_of(&routes);
    let change = |action: &'static str, token: String| {
        let app_url = app.base_url.clone();
        let cookie = cookie.clone();
        async move {
            client()
                .post(format!("{app_url}/admin/routes/{action}"))
                .header("cookie", cookie)
                .form(&[("csrf", token.as_str()), ("route", "ack <b>")])
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(change("pause", "forged".to_owned()).await.status(), 403);
    assert_eq!(
        app.count("route_pauses").await,
        0,
        "a forged form changes nothing"
    );
    let paused = change("pause", csrf.clone()).await;
    assert_eq!(paused.status(), 303);
    assert_eq!(app.count("route_pauses").await, 1);
    let body = text_at("wamid.CP", "conv-cp", "hello", 1_764_098_000, false);
    assert_eq!(app.deliver("whatsapp.message.received", &body).await, 200);
    // The job is created (Queued 1) and waits.
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut routes = String::new();
    while !routes.contains(r#"data-label="Queued">1</td>"#) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no job created: {routes}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        routes = page(&app, "/admin/routes", &cookie).await.1;
    }
    assert!(sim.sends().is_empty(), "the paused route's job waits");
    assert!(
        routes.contains("paused</span>") && routes.contains("by console"),
        "{routes}"
    );
    assert!(
        routes.contains("action=\"/admin/routes/resume\""),
        "{routes}"
    );

    assert_eq!(change("resume", "forged".to_owned()).await.status(), 403);
    assert_eq!(app.count("route_pauses").await, 1);
    assert_eq!(change("resume", csrf).await.status(), 303);
    let sends = sim.wait_for_sends(1, WAIT).await;
    assert_eq!(sends[0].body["text"]["body"], "got it");
    assert_eq!(settled_jobs(&app, 1).await[0].1, "done");
}

fn admin_only() -> String {
    format!("\n[admin]\ntoken = \"{TOKEN}\"\n")
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The console's security headers are on `response`.
fn assert_secured(response: &reqwest::Response) {
    let headers = response.headers();
    let csp = headers["content-security-policy"].to_str().unwrap();
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "{} {csp}", response.url());
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["referrer-policy"], "no-referrer");
}

/// Every `<script` of `html` loads a file of the console (the policy refuses inline code).
fn assert_no_inline_script(html: &str) {
    for (at, _) in html.match_indices("<script") {
        assert!(
            html[at..].starts_with("<script src=\"/admin/assets/console.js\""),
            "{}",
            &html[at..html.len().min(at + 80)]
        );
    }
}

async fn get(app: &TestApp, path: &str, cookie: &str) -> reqwest::Response {
    client()
        .get(format!("{}{path}", app.base_url))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn every_page_needs_a_session_and_carries_the_security_headers() {
    let app = TestApp::spawn_with(&admin_only()).await;
    let signed_out = get(&app, "/admin", "").await;
    assert_secured(&signed_out);
    for path in [
        "/admin/events",
        "/admin/conversations",
        "/admin/conversations/conv-1",
        "/admin/quarantine",
        "/admin/jobs",
    ] {
        let response = get(&app, path, "").await;
        assert_eq!(response.status(), 303, "{path}");
        assert_eq!(response.headers()["location"], "/admin", "{path}");
        assert_secured(&response);
    }
    let json = get(&app, "/admin/overview.json", "switchboard_admin=forged").await;
    assert_eq!(
        json.status(),
        401,
        "a script gets a 401, not the sign-in page"
    );
    assert_secured(&json);
    let refused: serde_json::Value = json.json().await.unwrap();
    assert!(refused["error"].as_str().unwrap().contains("sign in"));

    let cookie = sign_in(&app).await;
    for path in [
        "/admin",
        "/admin/events",
        "/admin/conversations",
        "/admin/quarantine",
        "/admin/jobs",
    ] {
        let response = get(&app, path, &cookie).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_secured(&response);
        let html = response.text().await.unwrap();
        assert_no_inline_script(&html);
        assert!(!html.contains(" style="), "{path}: no inline style");
        assert!(
            html.contains("href=\"/admin/quarantine\">Quarantine</a>")
                && html.contains("href=\"/admin/conversations\">Conversations</a>"),
            "{path}: the menu"
        );
    }
    let (_, quarantine) = page(&app, "/admin/quarantine", &cookie).await;
    assert!(
        quarantine.contains("Nothing is quarantined."),
        "{quarantine}"
    );
    let missing = get(&app, "/admin/conversations/conv-none", &cookie).await;
    assert_eq!(missing.status(), 404);
    for asset in ["/admin/assets/console.css", "/admin/assets/console.js"] {
        let response = get(&app, asset, "").await;
        assert_eq!(response.status(), 200);
        assert_secured(&response);
    }
    let js = get(&app, "/admin/assets/console.js", "").await;
    assert!(js.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
}

#[tokio::test]
async fn a_conversation_timeline_shows_message_and_reply_in_order_with_status_and_window() {
    let sim = sim().await;
    let app = TestApp::spawn_with(&pipeline_config(
        &sim,
        &format!("{}{LATE_ROUTE}", admin_only()),
    ))
    .await;
    let now = unix_now();
    let xss = "<script>alert(1)</script> where is <b>my</b> order?";
    let conversation = "conv/<i>1</i>";
    let body = text_at("wamid.T1", conversation, xss, now - 60, false);
    assert_eq!(app.deliver("whatsapp.message.received", &body).await, 200);
    let sends = sim.wait_for_sends(1, WAIT).await;
    assert_eq!(settled_jobs(&app, 1).await[0].1, "done");
    let mut status = crate::payloads::message_status(&sends[0].wamid, "delivered");
    status["conversation"]["id"] = conversation.into();
    status["message"]["timestamp"] = now.to_string().into();
    assert_eq!(
        app.deliver("whatsapp.message.delivered", &status).await,
        200
    );
    let cookie = sign_in(&app).await;
    let encoded = "conv%2F%3Ci%3E1%3C%2Fi%3E";
    let link = format!("href=\"/admin/conversations/{encoded}\"");

    let (_, events) = page(&app, "/admin/events", &cookie).await;
    assert!(events.contains(&link), "the event list links the timeline");
    let (_, event) = page(&app, "/admin/events/1", &cookie).await;
    assert!(event.contains(&link), "the event page links the timeline");
    let (_, list) = page(&app, "/admin/conversations", &cookie).await;
    assert!(list.contains(&link), "{list}");
    assert!(list.contains("conv/&lt;i&gt;1&lt;/i&gt;"), "{list}");

    let (status, timeline) = page(&app, &format!("/admin/conversations/{encoded}"), &cookie).await;
    assert_eq!(status, 200, "{timeline}");
    assert!(!timeline.contains("<script>") && !timeline.contains("<b>my"));
    assert!(!timeline.contains("<i>1"), "the id is escaped too");
    let inbound = timeline
        .find("&lt;script&gt;alert(1)&lt;/script&gt; where is &lt;b&gt;my&lt;/b&gt; order?")
        .expect("the customer's message, as text");
    let reply = timeline.find("sorry for the wait").expect("our reply");
    assert!(inbound < reply, "in the order they happened");
    assert!(
        timeline[reply..].contains("<span class=\"status delivered\">delivered</span>"),
        "the reply's status"
    );
    assert_eq!(
        timeline.matches("whatsapp.message.delivered").count(),
        0,
        "the status is shown on the reply, not as a line of its own"
    );
    assert!(timeline.contains("class=\"window open\""), "{timeline}");
    assert!(timeline.contains("Open until "), "{timeline}");
}

#[tokio::test]
async fn the_quarantine_page_shows_what_was_set_apart_and_why_as_text() {
    let app = TestApp::spawn_with(&admin_only()).await;
    let garbage = b"<script>alert(1)</script> {not json".to_vec();
    let response = app
        .deliver_signed(
            "support",
            crate::test_app::SECRET,
            "whatsapp.message.received",
            &garbage,
        )
        .await;
    assert_eq!(response.status(), 200);
    let pool = app.db().await;
    let reason: String = sqlx::query_scalar("SELECT reason FROM quarantine")
        .fetch_one(&pool)
        .await
        .unwrap();
    let cookie = sign_in(&app).await;
    let (status, html) = page(&app, "/admin/quarantine", &cookie).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt; {not json"),
        "{html}"
    );
    assert!(!html.contains("<script>"), "{html}");
    let reason = reason
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;");
    assert!(html.contains(&reason), "the reason: {html}");
    assert!(html.contains(&format!("{} bytes", garbage.len())), "{html}");
    assert!(
        html.contains("<td data-label=\"Webhook\">support</td>"),
        "{html}"
    );
}

#[tokio::test]
async fn the_overview_shows_throughput_jobs_types_sync_and_catch_up_and_its_json_follows() {
    let sim = sim().await;
    refuse_next_send(&sim);
    let app = TestApp::spawn_with(&pipeline_config(
        &sim,
        &format!("{}{LATE_ROUTE}", admin_only()),
    ))
    .await;
    let now = unix_now();
    for (i, wamid) in ["wamid.O1", "wamid.O2"].iter().enumerate() {
        let body = text_at(wamid, "conv-o", "hello", now - 60 + i as i64, false);
        assert_eq!(app.deliver("whatsapp.message.received", &body).await, 200);
    }
    let mut jobs = settled_jobs(&app, 2).await;
    jobs.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!((jobs[0].1.as_str(), jobs[1].1.as_str()), ("dead", "done"));
    let cookie = sign_in(&app).await;

    let (status, html) = page(&app, "/admin", &cookie).await;
    assert_eq!(status, 200);
    assert!(html.contains("<svg id=\"throughput\""), "the chart");
    assert!(html.contains("deliveries/s") && html.contains("jobs done/s"));
    assert!(html.contains("Webhook sync") && html.contains("Catch-up"));
    assert!(
        html.contains("data-live=\"dead_jobs\">1</span> dead jobs"),
        "{html}"
    );
    assert!(html.contains("<script src=\"/admin/assets/console.js\" defer>"));

    let response = get(&app, "/admin/overview.json", &cookie).await;
    assert_eq!(response.status(), 200);
    let live: serde_json::Value = response.json().await.unwrap();
    assert_eq!(live["deliveries_total"], 2);
    assert_eq!(live["jobs_done_total"], 1);
    assert_eq!(live["dead_jobs"], 1);
    assert_eq!(
        live["jobs"],
        serde_json::json!([["queued", 0], ["running", 0], ["dead", 1], ["done", 1]])
    );
    assert_eq!(
        live["events_by_type"],
        serde_json::json!([["whatsapp.message.received", 2]])
    );
    assert_eq!(live["webhook_sync"], "disabled", "as /readyz shows it");
    assert_eq!(live["catch_up"]["state"], "off");
    assert!(live["catch_up"]["silent_webhooks"].is_array());
    assert!(live["chart"]["max"].as_f64().unwrap() >= 1.0);
}

#[tokio::test]
async fn the_events_page_filters_by_flag_and_shows_each_events_flags() {
    let app = TestApp::spawn_with(&admin_only()).await;
    let plain = text_at("wamid.PLAIN", "conv-f", "hello", unix_now() - 60, false);
    assert_eq!(app.deliver("whatsapp.message.received", &plain).await, 200);
    let odd = serde_json::json!({"message": {"id": "wamid.ODD"}, "phone_number_id": "1"});
    assert_eq!(app.deliver("whatsapp.something.new", &odd).await, 200);
    let cookie = sign_in(&app).await;

    let (status, all) = page(&app, "/admin/events", &cookie).await;
    assert_eq!(status, 200);
    assert!(
        all.contains(r#"whatsapp.something.new <span class="flag">unknown_event_type</span>"#),
        "{all}"
    );
    let (_, flagged) = page(&app, "/admin/events?flag=unknown_event_type", &cookie).await;
    assert!(flagged.contains("whatsapp.something.new"), "{flagged}");
    assert!(
        !flagged.contains("hello"),
        "only the flagged event: {flagged}"
    );
    assert!(
        flagged.contains(r#"name="flag" value="unknown_event_type""#),
        "{flagged}"
    );
}
