//! No configuration error ever shows a secret: for every key that holds one, a value of the
//! wrong type or a refused value gives an error that names the key but not the value.

use super::*;

const SECRET: &str = "TOPSECRET_4e7d9a";
/// A secret written as a bare number is a secret too.
const NUMBER: &str = "73519024";

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse("secrets.toml", text, |var| {
        (var == "SB_SECRET").then(|| SECRET.to_owned())
    })
}

const WEBHOOK: &str = "[[webhooks]]\nname = \"a\"\nsecrets = [\"s\"]\n";

/// `(key the error must name, config with {V} where the value goes)`.
fn secret_keys() -> Vec<(&'static str, String)> {
    let route = |handler_keys: &str| {
        format!("[kapso]\napi_key = \"k\"\n{WEBHOOK}[[routes]]\nname = \"r\"\non = \"*\"\nhandler = {{ kind = \"http\", url = \"http://127.0.0.1:9/x\", {handler_keys} }}\n")
    };
    vec![
        (
            "kapso.api_key",
            format!("[kapso]\napi_key = {{V}}\n{WEBHOOK}"),
        ),
        (
            "secrets",
            "[[webhooks]]\nname = \"a\"\nsecrets = {V}\n".to_owned(),
        ),
        (
            "secrets[0]",
            "[[webhooks]]\nname = \"a\"\nsecrets = [{V}]\n".to_owned(),
        ),
        (
            "secrets[1]",
            "[[webhooks]]\nname = \"a\"\nsecrets = [\"s\", {V}]\n".to_owned(),
        ),
        (
            "headers.Authorization",
            format!("{WEBHOOK}headers = {{ Authorization = {{V}} }}\n"),
        ),
        ("admin.token", "[admin]\ntoken = {V}\n".to_owned()),
        ("handler", route("secret = {V}")),
        ("handler", route("headers = { Authorization = {V} }")),
    ]
}

/// Values of the wrong type for a key that holds one secret string.
const WRONG_TYPES: [&str; 8] = [
    "73519024",
    "73519024.5",
    "true",
    "{ value = \"${SB_SECRET}\" }",
    "[{ value = \"${SB_SECRET}\" }]",
    "[\"${SB_SECRET}\"]",
    "[\"${SB_SECRET}\", 73519024]",
    "[[\"Bearer ${SB_SECRET}\"]]",
];

fn assert_value_free(err: &ConfigError, case: &str) {
    let text = err.to_string();
    for leak in [SECRET, NUMBER, "true"] {
        assert!(!text.contains(leak), "{case}: `{leak}` shown in: {text}");
    }
}

#[test]
fn a_secret_of_the_wrong_type_is_named_by_key_but_never_shown() {
    for (key, template) in secret_keys() {
        for value in WRONG_TYPES {
            if key == "secrets" && value == "[\"${SB_SECRET}\"]" {
                continue; // the one right value among them
            }
            let case = template.replace("{V}", value);
            let err = match parse(&case) {
                Ok(_) => panic!("accepted:\n{case}"),
                Err(err) => err,
            };
            assert!(err.to_string().contains(key), "{case}\n→ {err}");
            assert_value_free(&err, &case);
        }
    }
}

#[test]
fn a_table_of_headers_of_the_wrong_type_is_never_shown() {
    let route = format!("[kapso]\napi_key = \"k\"\n{WEBHOOK}[[routes]]\nname = \"r\"\non = \"*\"\nhandler = {{ kind = \"http\", url = \"http://127.0.0.1:9/x\", headers = {{V}} }}\n");
    let webhook = format!("{WEBHOOK}headers = {{V}}\n");
    for template in [route, webhook] {
        for value in [
            "\"Bearer ${SB_SECRET}\"",
            "73519024",
            "true",
            "[\"Bearer ${SB_SECRET}\"]",
            "[{ Authorization = \"${SB_SECRET}\" }]",
        ] {
            let case = template.replace("{V}", value);
            let err = parse(&case).expect_err(&case);
            assert!(err.to_string().contains("header"), "{case}\n→ {err}");
            assert_value_free(&err, &case);
        }
    }
}

#[test]
fn a_refused_header_value_is_not_shown() {
    let case = format!("{WEBHOOK}headers = {{ Authorization = \"Bearer ${{SB_SECRET}}\\n\" }}\n");
    let err = parse(&case).expect_err(&case);
    assert!(err.to_string().contains("headers.Authorization"), "{err}");
    assert_value_free(&err, &case);
}

#[test]
fn one_secret_written_as_a_string_is_a_list_of_one() {
    let config = parse("[[webhooks]]\nname = \"a\"\nsecrets = \"${SB_SECRET}\"\n").expect("valid");
    assert_eq!(config.webhooks[0].secrets.len(), 1);
    assert_eq!(config.webhooks[0].secrets[0].expose(), SECRET);
    let err = parse("[[webhooks]]\nname = \"a\"\nsecrets = \"${OLD:-}\"\n").expect_err("empty");
    assert!(
        err.to_string().contains("at least one non-empty secret"),
        "{err}"
    );
}
