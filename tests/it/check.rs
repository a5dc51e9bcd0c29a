//! `switchboard check` as a user runs it: errors name the file, the entry and the key, suggest
//! the fix, and never print a secret.

use std::path::Path;
use std::process::{Command, Output};

const SECRET: &str = "whsec_CHECK_7d41c9e0";

/// Runs `switchboard check` on `text` with `SB_CHECK_SECRET` set to [`SECRET`].
fn check(dir: &Path, text: &str) -> Output {
    let path = dir.join("switchboard.toml");
    std::fs::write(&path, text).unwrap();
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["check", "--config", path.to_str().unwrap()])
        .env_remove("SWITCHBOARD_CONFIG")
        .env("SB_CHECK_SECRET", SECRET)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_never_prints_a_secret_written_in_the_wrong_shape() {
    let dir = tempfile::tempdir().unwrap();
    let hook = "[[webhooks]]\nname = \"support\"\nsecrets = [\"s\"]\n";
    for (config, key) in [
        (
            format!("[kapso]\napi_key = [\"${{SB_CHECK_SECRET}}\"]\n{hook}"),
            "kapso.api_key",
        ),
        (
            "[[webhooks]]\nname = \"support\"\nsecrets = [[\"${SB_CHECK_SECRET}\"]]\n".to_owned(),
            "secrets[0]",
        ),
        (
            format!("{hook}headers = \"Bearer ${{SB_CHECK_SECRET}}\"\n"),
            "headers",
        ),
        (
            format!("{hook}headers = {{ Authorization = \"${{SB_CHECK_SECRET}}\\n\" }}\n"),
            "headers.Authorization",
        ),
    ] {
        let output = check(dir.path(), &config);
        let (out, err) = (text(&output.stdout), text(&output.stderr));
        assert!(!output.status.success(), "accepted:\n{config}");
        assert!(err.contains("switchboard.toml"), "{err}");
        assert!(err.contains(key), "{config}\n→ {err}");
        assert!(
            !err.contains(SECRET) && !out.contains(SECRET),
            "{config}\n→ {err}{out}"
        );
    }
}

#[test]
fn check_accepts_one_secret_written_as_a_string_without_printing_it() {
    let dir = tempfile::tempdir().unwrap();
    let output = check(
        dir.path(),
        "[[webhooks]]\nname = \"support\"\nsecrets = \"${SB_CHECK_SECRET}\"\n",
    );
    let (out, err) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{err}");
    assert!(out.contains("ok (1 webhook"), "{out}");
    assert!(!err.contains(SECRET) && !out.contains(SECRET), "{err}{out}");
}

#[test]
fn check_rejects_a_misspelt_event_type_naming_the_route_and_the_likely_fix() {
    let dir = tempfile::tempdir().unwrap();
    let output = check(
        dir.path(),
        "[[webhooks]]\nname = \"support\"\nsecrets = [\"s\"]\n\n[[routes]]\nname = \"greet\"\non = \"whatsapp.mesage.received\"\nhandler = { kind = \"log\" }\n",
    );
    let err = text(&output.stderr);
    assert!(
        !output.status.success(),
        "a route that can never match was accepted"
    );
    assert!(err.contains("switchboard.toml"), "{err}");
    assert!(err.contains("routes[0] (name = \"greet\").on"), "{err}");
    assert!(err.contains("`whatsapp.mesage.received`"), "{err}");
    assert!(
        err.contains("did you mean `whatsapp.message.received`?"),
        "{err}"
    );
}
