//! The web console in a real browser: headless Chromium, driven over WebDriver by chromedriver
//! (`webdriver`), against a real server on loopback. An operator signs in with the token, finds
//! a message by its text and opens its path, retries a dead job and sees it done, and a stored
//! script stays inert text. Without chromedriver these tests fail, naming what to install.

use std::time::Duration;

use crate::payloads::text_at;
use crate::pipeline::{pipeline_config, refuse_next_send, settled_jobs, sim, LATE_ROUTE};
use crate::test_app::TestApp;
use webdriver::Browser;

mod webdriver;

const TOKEN: &str = "adm_browser_7c2e9a4f1b3d5e6a";
const WAIT: Duration = Duration::from_secs(15);
const XSS: &str = r#"<script>window.__xss=1</script><img src=x onerror="window.__xss=2">"#;

fn admin(extra: &str) -> String {
    format!("\n[admin]\ntoken = \"{TOKEN}\"\n{extra}")
}

async fn laptop() -> Browser {
    Browser::start(1280, 900).await
}

/// Waits until the page's heading is `title` (after a click that loads a page).
async fn heading_is(browser: &Browser, title: &str) {
    browser
        .wait_for_text("h1", WAIT, || async {}, |h| h == title)
        .await;
}

/// Signs in on the sign-in page with `token`, as an operator would: types it and submits.
async fn submit_token(browser: &Browser, app: &TestApp, token: &str) {
    browser.goto(&format!("{}/admin", app.base_url)).await;
    let field = browser.find("input[name=token]").await;
    browser.type_into(&field, token).await;
    let button = browser.find("form.login button[type=submit]").await;
    browser.click(&button).await;
}

async fn sign_in(browser: &Browser, app: &TestApp) {
    submit_token(browser, app, TOKEN).await;
    heading_is(browser, "Overview").await;
}

/// Whether anything from stored text ran or was built as markup on the current page (the
/// console's own script, which refreshes the overview, aside).
async fn assert_inert(browser: &Browser) {
    let found = browser
        .execute(
            "return [typeof window.__xss, document.images.length, \
             Array.from(document.scripts).filter(s => !s.src.endsWith('/admin/assets/console.js')).length]",
        )
        .await;
    assert_eq!(
        found,
        serde_json::json!(["undefined", 0, 0]),
        "[window.__xss, images, scripts] on {}",
        browser.current_url().await
    );
}

#[tokio::test]
async fn an_operator_signs_in_with_the_token_and_a_wrong_token_keeps_them_out() {
    let app = TestApp::spawn_with(&admin("")).await;
    let browser = laptop().await;

    submit_token(&browser, &app, "not-the-token-not-the-token").await;
    let error = browser
        .wait_for_text("p.error", WAIT, || async {}, |_| true)
        .await;
    assert!(error.contains("not the admin token"), "{error}");
    assert_eq!(browser.text_of("h1").await, "Sign in");
    assert!(browser.find_all("nav").await.is_empty(), "no console menu");
    browser
        .goto(&format!("{}/admin/events", app.base_url))
        .await;
    assert_eq!(
        browser.current_url().await,
        format!("{}/admin", app.base_url),
        "still signed out: a page sends back to the sign-in"
    );
    assert_eq!(browser.text_of("h1").await, "Sign in");

    sign_in(&browser, &app).await;
    assert!(browser.text_of("nav").await.contains("Events"));
    assert_eq!(
        browser.execute("return document.cookie").await,
        "",
        "the session cookie is out of the page's reach (HttpOnly)"
    );
    browser
        .goto(&format!("{}/admin/events", app.base_url))
        .await;
    assert_eq!(browser.text_of("h1").await, "Events");
    browser.quit().await;
}

#[tokio::test]
async fn a_message_is_found_by_its_text_and_its_path_shows_delivery_job_and_reply() {
    let sim = sim().await;
    let app = TestApp::spawn_with(&pipeline_config(&sim, &admin(LATE_ROUTE))).await;
    let wanted = text_at(
        "wamid.P1",
        "conv-p",
        "where is parcel 4471?",
        1_764_098_000,
        false,
    );
    let other = text_at("wamid.P2", "conv-q", "hello there", 1_764_098_001, false);
    for body in [&wanted, &other] {
        assert_eq!(app.deliver("whatsapp.message.received", body).await, 200);
    }
    let jobs = settled_jobs(&app, 2).await;
    assert!(jobs.iter().all(|job| job.1 == "done"), "{jobs:?}");
    let sends = sim.wait_for_sends(2, WAIT).await;
    let browser = laptop().await;
    sign_in(&browser, &app).await;

    browser
        .goto(&format!("{}/admin/events", app.base_url))
        .await;
    let field = browser.find("form.filters input[name=text]").await;
    browser.type_into(&field, "parcel 4471").await;
    browser
        .click(&browser.find("form.filters button[type=submit]").await)
        .await;
    browser
        .wait_for_url(WAIT, |url| url.contains("/admin/events?text=parcel+4471"))
        .await;
    let rows = browser.find_all("tbody tr").await;
    assert_eq!(rows.len(), 1, "only the message with that text");
    let row = browser.text(&rows[0]).await;
    assert!(
        row.contains("where is parcel 4471?") && row.contains("conv-p"),
        "{row}"
    );

    browser.click(&browser.find("tbody tr a").await).await;
    let title = browser
        .wait_for_text("h1", WAIT, || async {}, |h| h.starts_with("Event "))
        .await;
    assert_eq!(
        browser.text_of("dd.message").await,
        "where is parcel 4471?",
        "{title}"
    );
    let main = browser.text_of("main").await;
    let delivery = main.find("Delivery").expect("the delivery it came in");
    let jobs = main.find("Jobs").expect("the jobs that handled it");
    let payload = main.find("Payload").expect("the payload");
    assert!(delivery < jobs && jobs < payload, "{main}");
    assert!(
        main[delivery..jobs].contains("to webhook support"),
        "{main}"
    );
    let job = browser.text_of("tbody tr").await;
    assert!(job.contains("late") && job.contains("done"), "{job}");
    let reply = sends
        .iter()
        .find(|send| job.contains(&send.wamid))
        .unwrap_or_else(|| panic!("the job row names the reply's wamid: {job}"));
    assert_eq!(reply.body["text"]["body"], "sorry for the wait");
    assert!(job.contains(&format!("sent {}", reply.wamid)), "{job}");
    browser.quit().await;
}

#[tokio::test]
async fn a_dead_job_is_retried_with_its_button_and_seen_done() {
    let sim = sim().await;
    refuse_next_send(&sim);
    let app = TestApp::spawn_with(&pipeline_config(&sim, &admin(LATE_ROUTE))).await;
    let body = text_at("wamid.D1", "conv-d", "anyone there?", 1_764_098_000, false);
    assert_eq!(app.deliver("whatsapp.message.received", &body).await, 200);
    assert_eq!(settled_jobs(&app, 1).await[0].1, "dead");
    let browser = laptop().await;
    sign_in(&browser, &app).await;

    browser
        .click(&browser.find("nav a[href=\"/admin/jobs?state=dead\"]").await)
        .await;
    heading_is(&browser, "Jobs: dead").await;
    let row = browser.text_of("tbody tr").await;
    assert!(row.contains("late") && row.contains("131047"), "{row}");
    browser
        .click(&browser.find("tbody tr button[type=submit]").await)
        .await;
    let notice = browser
        .wait_for_text("p.notice", WAIT, || async {}, |_| true)
        .await;
    assert_eq!(notice, "Job 1 is queued to run again.");

    let jobs_page = format!("{}/admin/jobs", app.base_url);
    let reload = || {
        let browser = &browser;
        let url = jobs_page.clone();
        async move { browser.goto(&url).await }
    };
    reload().await;
    browser
        .wait_for_text("tbody tr span.state", WAIT, reload, |s| s == "done")
        .await;
    assert!(
        browser.find_all("tbody tr button").await.is_empty(),
        "no Retry on a done job"
    );
    let sends = sim.wait_for_sends(1, WAIT).await;
    assert_eq!(sends[0].body["text"]["body"], "sorry for the wait");
    browser.quit().await;
}

#[tokio::test]
async fn a_stored_script_is_shown_as_text_and_never_runs() {
    let app = TestApp::spawn_with(&admin("")).await;
    let body = text_at("wamid.X1", "conv-x", XSS, 1_764_098_000, false);
    assert_eq!(app.deliver("whatsapp.message.received", &body).await, 200);
    let browser = laptop().await;
    sign_in(&browser, &app).await;
    assert_inert(&browser).await;

    browser
        .goto(&format!("{}/admin/events", app.base_url))
        .await;
    let message = browser.text_of("tbody tr td:nth-child(6)").await;
    assert_eq!(message, XSS, "the text as the customer wrote it");
    assert_inert(&browser).await;

    browser.click(&browser.find("tbody tr a").await).await;
    heading_is(&browser, "Event 1").await;
    assert_eq!(browser.text_of("dd.message").await, XSS);
    assert!(browser.text_of("pre").await.contains("window.__xss=1"));
    assert_inert(&browser).await;
    browser.quit().await;
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn a_conversation_opened_from_its_event_shows_the_message_then_the_reply_and_the_overview_stays_live(
) {
    let sim = sim().await;
    let app = TestApp::spawn_with(&pipeline_config(&sim, &admin(LATE_ROUTE))).await;
    let now = unix_now();
    let body = text_at(
        "wamid.C1",
        "conv-c",
        "my card was charged twice",
        now - 60,
        false,
    );
    assert_eq!(app.deliver("whatsapp.message.received", &body).await, 200);
    let sends = sim.wait_for_sends(1, WAIT).await;
    assert_eq!(settled_jobs(&app, 1).await[0].1, "done");
    let mut status = crate::payloads::message_status(&sends[0].wamid, "read");
    status["conversation"]["id"] = "conv-c".into();
    status["message"]["timestamp"] = now.to_string().into();
    assert_eq!(app.deliver("whatsapp.message.read", &status).await, 200);
    let browser = laptop().await;
    sign_in(&browser, &app).await;

    assert_eq!(
        browser.find_all("svg#throughput polyline").await.len(),
        2,
        "the chart: deliveries and jobs done"
    );
    assert_eq!(browser.text_of("[data-live=deliveries_total]").await, "2");
    // The page refreshes itself: a delivery made now shows without reloading.
    let later = text_at("wamid.C2", "conv-z", "still there?", now, false);
    assert_eq!(app.deliver("whatsapp.message.received", &later).await, 200);
    browser
        .wait_for_text(
            "[data-live=deliveries_total]",
            WAIT,
            || async {},
            |n| n == "3",
        )
        .await;
    assert_inert(&browser).await;

    browser
        .goto(&format!("{}/admin/events?text=charged", app.base_url))
        .await;
    browser.click(&browser.find("tbody tr a").await).await;
    heading_is(&browser, "Event 1").await;
    browser
        .click(&browser.find("dd.conversation a").await)
        .await;
    heading_is(&browser, "Conversation conv-c").await;
    let rows = browser.find_all("tbody tr").await;
    assert_eq!(
        rows.len(),
        2,
        "the message and the reply (its status on it)"
    );
    let first = browser.text(&rows[0]).await;
    let second = browser.text(&rows[1]).await;
    assert!(
        first.contains("customer") && first.contains("my card was charged twice"),
        "{first}"
    );
    assert!(
        second.contains("us") && second.contains("sorry for the wait") && second.contains("read"),
        "{second}"
    );
    assert!(
        browser.text_of("p.window").await.contains("Open until"),
        "the 24-hour window"
    );

    browser
        .click(&browser.find("nav form button[type=submit]").await)
        .await;
    heading_is(&browser, "Sign in").await;
    browser
        .goto(&format!("{}/admin/overview.json", app.base_url))
        .await;
    let refused = browser.text_of("body").await;
    assert!(refused.contains("not signed in"), "{refused}");
    browser.quit().await;
}

#[tokio::test]
async fn on_a_phone_the_events_table_shows_the_message_text_without_scrolling_sideways() {
    let app = TestApp::spawn_with(&admin("")).await;
    let text = "the parcel arrived damaged, can I get a replacement?";
    let body = text_at("wamid.M1", "conv-m", text, 1_764_098_000, false);
    assert_eq!(app.deliver("whatsapp.message.received", &body).await, 200);
    let browser = Browser::start(390, 844).await;
    sign_in(&browser, &app).await;
    browser
        .goto(&format!("{}/admin/events", app.base_url))
        .await;
    let cell = "tbody tr td[data-label=Message]";
    assert!(browser.text_of(cell).await.contains(text));
    let fits = browser
        .execute(
            "const cell = document.querySelector('tbody tr td[data-label=Message]').getBoundingClientRect();\
             return [cell.left >= 0, cell.right <= window.innerWidth, cell.width > 200,\
                     document.documentElement.scrollWidth <= window.innerWidth];",
        )
        .await;
    assert_eq!(
        fits,
        serde_json::json!([true, true, true, true]),
        "[left in view, right in view, wide enough to read, no sideways scroll]"
    );
    browser.quit().await;
}
