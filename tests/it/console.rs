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
    while !routes.contains("<td>1</td>") {
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
