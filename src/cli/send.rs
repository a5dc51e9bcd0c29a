//! `switchboard send`: one message through the Kapso Meta proxy (`POST /{phone_number_id}/messages`)
//! with the configured [`KapsoClient`], so its retries and error handling are the server's own.
//! The body is a text, an approved template, or any message body read from a JSON file.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use serde_json::{json, Map, Value};

use crate::config::Config;
use crate::kapso::KapsoClient;

#[derive(Debug, Args)]
pub struct SendArgs {
    /// Config file. Without it, the embedded development config is used.
    #[arg(long, env = "SWITCHBOARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// The business number to send from (Meta's phone number id).
    #[arg(long)]
    pub phone_number_id: String,
    /// The customer's number in international format (digits; `+`, spaces and dashes are dropped).
    #[arg(long)]
    pub to: String,
    /// A text message.
    #[arg(long, conflicts_with_all = ["template", "file"], required_unless_present_any = ["template", "file"])]
    pub text: Option<String>,
    /// An approved template, by name (with --language and any --param).
    #[arg(long, requires = "language", conflicts_with = "file")]
    pub template: Option<String>,
    /// Template language code, e.g. en_US.
    #[arg(long, requires = "template")]
    pub language: Option<String>,
    /// A template body parameter, in order; repeat for more.
    #[arg(long = "param", requires = "template")]
    pub params: Vec<String>,
    /// A message body (JSON object, e.g. `{"type": "image", "image": {"link": "..."}}`);
    /// `messaging_product`, `recipient_type` and `to` are filled in when missing.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Print Kapso's answer as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn send(config: &Config, args: SendArgs) -> anyhow::Result<()> {
    let body = message_body(&args)?;
    let client = KapsoClient::new(&config.kapso).context("setting up the Kapso client")?;
    let sent = client
        .send_message(&args.phone_number_id, &body)
        .await
        .with_context(|| {
            format!(
                "sending from phone number {} to {}",
                args.phone_number_id, args.to
            )
        })?;
    if args.json {
        let answer = json!({ "message_id": sent.message_id, "response": sent.raw });
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        let kind = body
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("message");
        println!(
            "sent {kind} from {} to {}: {}",
            args.phone_number_id,
            recipient(&args.to),
            sent.message_id
        );
    }
    Ok(())
}

/// The Meta proxy body the arguments describe.
pub fn message_body(args: &SendArgs) -> anyhow::Result<Value> {
    let mut body = if let Some(text) = &args.text {
        json_object(json!({ "type": "text", "text": { "body": text, "preview_url": false } }))
    } else if let Some(name) = &args.template {
        let language = args
            .language
            .as_deref()
            .context("--template needs --language")?;
        json_object(template(name, language, &args.params))
    } else if let Some(path) = &args.file {
        read_body_file(path)?
    } else {
        bail!("say what to send: --text, --template NAME --language CODE, or --file body.json");
    };
    body.insert("messaging_product".into(), json!("whatsapp"));
    body.entry("recipient_type")
        .or_insert_with(|| json!("individual"));
    if !body.contains_key("recipient") {
        body.entry("to")
            .or_insert_with(|| json!(recipient(&args.to)));
    }
    if !body.get("type").is_some_and(Value::is_string) {
        bail!("the message body needs a `type` (text, template, image, interactive, ...)");
    }
    Ok(Value::Object(body))
}

fn template(name: &str, language: &str, params: &[String]) -> Value {
    let mut template = json!({ "name": name, "language": { "code": language } });
    if !params.is_empty() {
        let parameters: Vec<Value> = params
            .iter()
            .map(|p| json!({ "type": "text", "text": p }))
            .collect();
        template["components"] = json!([{ "type": "body", "parameters": parameters }]);
    }
    json!({ "type": "template", "template": template })
}

fn json_object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn read_body_file(path: &Path) -> anyhow::Result<Map<String, Value>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the message file {}", path.display()))?;
    match serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?
    {
        Value::Object(map) => Ok(map),
        _ => bail!("{} must hold one JSON object", path.display()),
    }
}

/// Digits only, as the Cloud API expects `to`.
fn recipient(to: &str) -> String {
    crate::event::digits(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> SendArgs {
        SendArgs {
            config: None,
            phone_number_id: "106540352242922".into(),
            to: "+1 555-010-0200".into(),
            text: None,
            template: None,
            language: None,
            params: Vec::new(),
            file: None,
            json: false,
        }
    }

    #[test]
    fn text_body_is_addressed_to_the_digits_of_the_number() {
        let body = message_body(&SendArgs {
            text: Some("Your order ships today".into()),
            ..args()
        })
        .unwrap();
        assert_eq!(
            body,
            json!({"messaging_product": "whatsapp", "recipient_type": "individual",
                   "to": "15550100200", "type": "text",
                   "text": {"body": "Your order ships today", "preview_url": false}})
        );
    }

    #[test]
    fn template_parameters_go_into_the_body_component_in_order() {
        let body = message_body(&SendArgs {
            template: Some("order_shipped".into()),
            language: Some("en_US".into()),
            params: vec!["Dana".into(), "#4471".into()],
            ..args()
        })
        .unwrap();
        assert_eq!(body["template"]["language"]["code"], "en_US");
        let parameters = &body["template"]["components"][0]["parameters"];
        assert_eq!(parameters[0], json!({"type": "text", "text": "Dana"}));
        assert_eq!(parameters[1]["text"], "#4471");
    }

    #[test]
    fn file_body_keeps_its_own_recipient_and_needs_a_type() {
        let dir = std::env::temp_dir().join(format!("switchboard-send-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("body.json");
        std::fs::write(
            &path,
            r#"{"type": "image", "to": "4915112345678", "image": {"link": "https://x/y.png"}}"#,
        )
        .unwrap();
        let body = message_body(&SendArgs {
            file: Some(path.clone()),
            ..args()
        })
        .unwrap();
        assert_eq!(body["to"], "4915112345678");
        assert_eq!(body["messaging_product"], "whatsapp");
        std::fs::write(&path, r#"{"image": {}}"#).unwrap();
        let err = message_body(&SendArgs {
            file: Some(path),
            ..args()
        })
        .unwrap_err();
        assert!(err.to_string().contains("`type`"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
