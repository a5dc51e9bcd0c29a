//! The container image, checked without a Docker engine: the Dockerfile's user, port, volume,
//! config path, health check and command must agree with `config/docker.toml`, `compose.yaml`
//! and the binary; the build context must leave local state out; the Dockerfile must build with
//! the classic builder (no BuildKit-only syntax) and ship a stripped binary.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use regex::Regex;
use serde_json::Value;
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

/// The `${VAR}` / `${VAR:-default}` references of `config/docker.toml` (comments left out):
/// variable name to whether it has a default.
fn docker_config_variables() -> BTreeMap<String, bool> {
    let text = std::fs::read_to_string("config/docker.toml").unwrap();
    let reference = Regex::new(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}").unwrap();
    let mut vars = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        for found in reference.captures_iter(line) {
            vars.insert(found[1].to_owned(), found.get(2).is_some());
        }
    }
    vars
}

/// The `switchboard` service of `compose.yaml`, and the whole file.
fn compose() -> (Value, Value) {
    let text = std::fs::read_to_string("compose.yaml").unwrap();
    let root: Value = serde_yaml::from_str(&text).unwrap();
    let service = root
        .pointer("/services/switchboard")
        .unwrap_or_else(|| panic!("compose.yaml has no services.switchboard: {root:#}"))
        .clone();
    (service, root)
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("{value} is not a list"))
        .iter()
        .map(|v| v.as_str().unwrap_or_else(|| panic!("{v} is not a string")))
        .collect()
}

#[test]
fn compose_runs_the_image_with_its_port_volume_variables_and_health_check() {
    let (service, root) = compose();
    assert_eq!(service["build"], ".");
    assert_eq!(service["image"], "switchboard");
    assert_eq!(service["restart"], "unless-stopped");

    let port = one("EXPOSE");
    assert_eq!(
        docker_config().server.listen.port().to_string(),
        port,
        "config/docker.toml and the Dockerfile disagree on the port"
    );
    assert_eq!(strings(&service["ports"]), [format!("{port}:{port}")]);

    let volume = exec_form(&one("VOLUME"))[0].clone();
    let mounts = strings(&service["volumes"]);
    let named: Vec<&str> = mounts
        .iter()
        .filter_map(|m| m.strip_suffix(&format!(":{volume}")))
        .collect();
    assert_eq!(named.len(), 1, "{volume} is not mounted once: {mounts:?}");
    assert!(
        root.pointer(&format!("/volumes/{}", named[0])).is_some(),
        "{} is not a named volume declared in compose.yaml",
        named[0]
    );

    let environment = service["environment"]
        .as_object()
        .unwrap_or_else(|| panic!("environment is not a map: {service:#}"));
    let variables = docker_config_variables();
    for var in ["SUPPORT_WEBHOOK_SECRET", "KAPSO_PHONE_NUMBER_ID"] {
        assert_eq!(
            variables.get(var),
            Some(&false),
            "{var} in config/docker.toml"
        );
    }
    for var in ["SWITCHBOARD_PUBLIC_URL", "KAPSO_API_KEY"] {
        assert!(variables.contains_key(var), "{var} in config/docker.toml");
    }
    for (var, has_default) in &variables {
        let passed = environment
            .get(var)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("config/docker.toml reads {var}; compose.yaml must pass it"));
        assert!(
            passed.starts_with(&format!("${{{var}")) && passed.ends_with('}'),
            "{var} is not passed through from the environment: {passed}"
        );
        if !has_default {
            assert!(
                passed == format!("${{{var}}}") || passed.starts_with(&format!("${{{var}:?")),
                "{var} is required by config/docker.toml; compose.yaml must not default it: {passed}"
            );
        }
    }

    let health = exec_form(one("HEALTHCHECK").split_once("CMD ").unwrap().1);
    let mut expected = vec!["CMD"];
    expected.extend(health.iter().map(String::as_str));
    assert_eq!(strings(&service["healthcheck"]["test"]), expected);
}

#[test]
fn the_dockerfile_needs_no_buildkit_caches_dependencies_and_strips_the_binary() {
    let text = std::fs::read_to_string("Dockerfile").unwrap();
    let directive = Regex::new(r"(?im)^#\s*syntax\s*=").unwrap();
    assert!(
        !directive.is_match(&text),
        "a `# syntax=` directive needs BuildKit"
    );
    let all = instructions();
    for (_, name, args) in &all {
        assert!(
            !args.contains("--mount"),
            "{name} {args}: --mount needs BuildKit"
        );
    }

    let build: Vec<&Instruction> = all.iter().filter(|i| i.0 == 1).collect();
    let env = build
        .iter()
        .filter(|i| i.1 == "ENV")
        .map(|i| i.2.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let runs: Vec<&str> = build
        .iter()
        .filter(|i| i.1 == "RUN")
        .map(|i| i.2.as_str())
        .collect();
    assert!(
        env.contains("CARGO_PROFILE_RELEASE_STRIP=symbols")
            || runs.iter().any(|r| r.contains("strip ")),
        "the build stage does not strip the binary: ENV {env}; RUN {runs:?}"
    );

    // The first build sees only Cargo.toml, Cargo.lock and stubs for every declared target, so
    // the dependency layer survives source changes; the real sources come after it.
    let position = |pred: &dyn Fn(&Instruction) -> bool| {
        build
            .iter()
            .position(|i| pred(i))
            .unwrap_or_else(|| panic!("not found in the build stage: {build:?}"))
    };
    let first_build = position(&|i| i.1 == "RUN" && i.2.contains("cargo build"));
    let copy_sources = position(&|i| i.1 == "COPY" && i.2.starts_with("src "));
    assert!(first_build < copy_sources, "{build:?}");
    let copied_before: Vec<&str> = build[..first_build]
        .iter()
        .filter(|i| i.1 == "COPY")
        .map(|i| i.2.as_str())
        .collect();
    assert_eq!(copied_before, ["Cargo.toml Cargo.lock ./"]);
    let manifest: toml::Value =
        toml::from_str(&std::fs::read_to_string("Cargo.toml").unwrap()).unwrap();
    let stubs = build[first_build].2.as_str();
    for kind in ["bin", "test"] {
        for target in manifest[kind].as_array().unwrap() {
            let path = target["path"].as_str().unwrap();
            assert!(
                stubs.contains(path),
                "no stub for the {kind} target {path} before the dependency build: {stubs}"
            );
        }
    }
    assert!(stubs.contains("src/lib.rs"), "no stub library: {stubs}");
    assert!(
        runs.last().unwrap().contains("touch"),
        "the real sources are not touched before the final build: {runs:?}"
    );
}
