//! The container image, checked without a Docker engine: the Dockerfile's user, port, volume,
//! config path, health check and command must agree with `config/docker.toml` and with the
//! binary, and the build context must leave local state out.

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use switchboard::Config;

use crate::test_app::TestApp;

/// One instruction of a Dockerfile: `(stage index, INSTRUCTION, arguments)`.
type Instruction = (usize, String, String);

/// Joins continuation lines, drops comments, and numbers the stages by their `FROM`.
fn instructions() -> Vec<Instruction> {
    let text = std::fs::read_to_string("Dockerfile").unwrap();
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(start) => current.push_str(start),
            None => {
                current.push_str(trimmed);
                logical.push(std::mem::take(&mut current));
            }
        }
    }
    let mut stage = 0;
    let mut out = Vec::new();
    for line in logical.iter().filter(|l| !l.is_empty()) {
        let (name, args) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let name = name.to_uppercase();
        if name == "FROM" {
            stage += 1;
        }
        out.push((stage, name, args.trim().to_owned()));
    }
    out
}

/// The arguments of every `name` instruction of the final stage.
fn runtime(name: &str) -> Vec<String> {
    let all = instructions();
    let last = all.iter().map(|i| i.0).max().unwrap();
    all.into_iter()
        .filter(|(stage, n, _)| *stage == last && n == name)
        .map(|(_, _, args)| args)
        .collect()
}

fn one(name: &str) -> String {
    let found = runtime(name);
    assert_eq!(
        found.len(),
        1,
        "expected one {name} in the runtime stage: {found:?}"
    );
    found[0].clone()
}

/// A JSON-array (exec form) instruction's words.
fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| panic!("`{args}` is not exec form: {e}"))
}

fn docker_config() -> Config {
    let text = std::fs::read_to_string("config/docker.toml").unwrap();
    Config::parse("config/docker.toml", &text, |var| match var {
        "SUPPORT_WEBHOOK_SECRET" => Some("whsec_x".to_owned()),
        "KAPSO_PHONE_NUMBER_ID" => Some("106540352242922".to_owned()),
        _ => None,
    })
    .unwrap()
}

#[test]
fn the_image_listens_where_the_config_says_and_keeps_the_database_on_the_volume() {
    let config = docker_config();
    assert!(
        config.server.listen.ip() == IpAddr::from([0, 0, 0, 0]),
        "a container must listen on all interfaces, not {}",
        config.server.listen
    );
    let port = config.server.listen.port().to_string();
    assert_eq!(one("EXPOSE"), port);

    let volumes = exec_form(&one("VOLUME"));
    let db = config.storage.sqlite_path().unwrap();
    assert!(db.is_absolute(), "{}", db.display());
    let volume = Path::new(&volumes[0]);
    assert!(
        db.starts_with(volume),
        "{} is not on the volume {volume:?}",
        db.display()
    );
    assert_eq!(one("WORKDIR"), volumes[0]);

    let health = exec_form(one("HEALTHCHECK").split_once("CMD ").unwrap().1);
    let url = format!("http://127.0.0.1:{port}/healthz");
    assert_eq!(
        health,
        ["switchboard", "healthcheck", "--url", url.as_str()]
    );
}

#[test]
fn the_image_runs_serve_as_a_non_root_user_with_the_shipped_config() {
    let user = one("USER");
    let uid = user.split(':').next().unwrap();
    assert!(!matches!(uid, "root" | "0"), "runs as {user}");
    let setup = runtime("RUN").join(" ");
    assert!(
        setup.contains(&format!("--uid {uid}")),
        "user {uid} is not created: {setup}"
    );
    assert!(
        setup.contains("chown switchboard:switchboard /data"),
        "{setup}"
    );

    let config_path = "/etc/switchboard/switchboard.toml";
    assert!(runtime("COPY").contains(&format!("config/docker.toml {config_path}")));
    assert_eq!(one("ENV"), format!("SWITCHBOARD_CONFIG={config_path}"));
    let entrypoint = exec_form(&one("ENTRYPOINT"));
    let cmd = exec_form(&one("CMD"));
    assert_eq!(entrypoint, ["switchboard"]);
    assert_eq!(cmd, ["serve", "--config", config_path]);
    assert!(runtime("COPY").contains(
        &"--from=build /usr/local/bin/switchboard /usr/local/bin/switchboard".to_owned()
    ));

    // The command line the image runs is one the binary accepts.
    let help = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("--config"));
}

#[test]
fn the_build_stage_makes_a_locked_release_build_from_files_in_the_context() {
    let all = instructions();
    let froms: Vec<&String> = all.iter().filter(|i| i.1 == "FROM").map(|i| &i.2).collect();
    assert!(
        froms[0].starts_with("rust:") && froms[0].ends_with(" AS build"),
        "{froms:?}"
    );
    assert!(
        froms.last().unwrap().starts_with("debian:") && froms.last().unwrap().contains("-slim")
    );
    let build: Vec<&Instruction> = all.iter().filter(|i| i.0 == 1).collect();
    assert!(build
        .iter()
        .any(|i| i.1 == "RUN" && i.2.contains("cargo build --release --locked")));
    let ignored = std::fs::read_to_string(".dockerignore").unwrap();
    let ignored: Vec<&str> = ignored
        .lines()
        .map(|l| l.trim().trim_end_matches('/'))
        .collect();
    for copy in build.iter().filter(|i| i.1 == "COPY") {
        let words: Vec<&str> = copy.2.split_whitespace().collect();
        for source in &words[..words.len() - 1] {
            assert!(
                Path::new(source).exists(),
                "COPY {source}: not in the repository"
            );
            assert!(
                !ignored.contains(source),
                "COPY {source}: excluded by .dockerignore"
            );
        }
    }
    for local in ["target", "data", ".git"] {
        assert!(
            ignored.contains(&local),
            ".dockerignore must exclude {local}/"
        );
    }
}

#[tokio::test]
async fn the_health_check_command_passes_on_a_running_server_and_fails_without_one() {
    let app = TestApp::spawn().await;
    let url = format!("{}/healthz", app.base_url);
    let check = |url: String| {
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_switchboard"))
                .args(["healthcheck", "--url", &url, "--timeout-ms", "2000"])
                .output()
                .unwrap()
        })
    };
    let healthy = check(url).await.unwrap();
    assert!(
        healthy.status.success(),
        "{}",
        String::from_utf8_lossy(&healthy.stderr)
    );

    let missing = check(format!("{}/nope", app.base_url)).await.unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("404"));
}
