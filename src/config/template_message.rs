//! The parts of a `template` handler beyond its body parameters: a header (text parameters or a
//! media file) and button parameters, in the send-time shape Kapso's template rules describe
//! (header and body as separate components; a `button` component per dynamic button, by
//! `index`). Every string takes `{{placeholders}}`.

use serde::Deserialize;

use super::pipeline::TemplateParams;

/// An approved template to send instead of a free-form message when the customer's 24-hour
/// window is closed: `outside_window = { name, language, params, header, buttons }` on `reply`,
/// `message` and `http` handlers (the same keys as a `template` handler).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TemplateSpec {
    pub name: String,
    pub language: String,
    #[serde(default)]
    pub params: TemplateParams,
    pub header: Option<TemplateHeader>,
    #[serde(default)]
    pub buttons: Vec<TemplateButton>,
}

/// `header = { text = [...] }` (or `{ text = { name = "..." } }`), or one media file:
/// `{ image = "..." }`, `{ video = "..." }`, `{ document = "...", filename = "..." }`. A media
/// value starting with `http://` or `https://` is sent as a `link`, anything else as a media
/// `id` (from Kapso's media upload).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TemplateHeader {
    pub text: Option<TemplateParams>,
    pub image: Option<String>,
    pub video: Option<String>,
    pub document: Option<String>,
    /// The file name shown for a `document` header.
    pub filename: Option<String>,
}

/// What a header carries, once checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderKind<'a> {
    Text(&'a TemplateParams),
    /// (`image`, `video` or `document`, the link or media id)
    Media(&'static str, &'a str),
}

impl TemplateHeader {
    /// The one thing this header carries, or why it is not exactly one.
    pub fn kind(&self) -> Result<HeaderKind<'_>, String> {
        let mut kinds = Vec::new();
        if let Some(text) = &self.text {
            kinds.push(HeaderKind::Text(text));
        }
        for (name, value) in [
            ("image", &self.image),
            ("video", &self.video),
            ("document", &self.document),
        ] {
            if let Some(value) = value {
                kinds.push(HeaderKind::Media(name, value));
            }
        }
        if self.filename.is_some() && self.document.is_none() {
            return Err("`filename` goes with a `document` header only".into());
        }
        match kinds.as_slice() {
            [one] => Ok(*one),
            [] => Err(
                "give the header's `text` parameters, or one `image`, `video` or `document`".into(),
            ),
            _ => Err("a header carries one thing: `text`, `image`, `video` or `document`".into()),
        }
    }

    /// Every string that takes placeholders, with its key under `header`.
    pub fn strings(&self) -> Vec<(String, &str)> {
        let mut out: Vec<(String, &str)> = match &self.text {
            Some(params) => params
                .entries()
                .map(|(key, value)| (format!("text{key}"), value))
                .collect(),
            None => Vec::new(),
        };
        for (name, value) in [
            ("image", &self.image),
            ("video", &self.video),
            ("document", &self.document),
            ("filename", &self.filename),
        ] {
            if let Some(value) = value {
                out.push((name.to_owned(), value.as_str()));
            }
        }
        out
    }
}

/// One dynamic button of the template, by its position (`index`, from 0): a URL button's
/// variable suffix (`url`), a quick-reply button's `payload` (it comes back as `button.payload`
/// when the customer taps it: route it with `when.reply_id`), or a copy-code button's `code`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TemplateButton {
    pub index: u8,
    pub url: Option<String>,
    pub payload: Option<String>,
    pub code: Option<String>,
}

/// Most buttons a template may have.
pub const MAX_BUTTONS: u8 = 10;

impl TemplateButton {
    /// (`sub_type`, parameter type, value), or why the button is not exactly one kind.
    pub fn parameter(&self) -> Result<(&'static str, &'static str, &str), String> {
        if self.index >= MAX_BUTTONS {
            return Err(format!(
                "index {} is out of range: buttons are numbered from 0 to {}",
                self.index,
                MAX_BUTTONS - 1
            ));
        }
        let given: Vec<(&'static str, &'static str, &str)> = [
            ("url", "text", &self.url),
            ("quick_reply", "payload", &self.payload),
            ("copy_code", "coupon_code", &self.code),
        ]
        .into_iter()
        .filter_map(|(sub_type, kind, value)| Some((sub_type, kind, value.as_deref()?)))
        .collect();
        match given.as_slice() {
            [one] => Ok(*one),
            _ => Err("give exactly one of `url` (a URL button's variable part), `payload` (a quick-reply button) or `code` (a copy-code button)".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(text: &str) -> Result<TemplateHeader, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn a_header_carries_exactly_one_thing() {
        let text = header("text = [\"{{contact.name}}\"]").unwrap();
        assert!(matches!(text.kind(), Ok(HeaderKind::Text(_))));
        let image = header("image = \"https://example.com/a.jpg\"").unwrap();
        assert_eq!(
            image.kind(),
            Ok(HeaderKind::Media("image", "https://example.com/a.jpg"))
        );
        assert!(header("").unwrap().kind().is_err());
        assert!(header("image = \"a\"\nvideo = \"b\"")
            .unwrap()
            .kind()
            .is_err());
        assert!(header("image = \"a\"\nfilename = \"x.pdf\"")
            .unwrap()
            .kind()
            .is_err());
        assert!(header("document = \"a\"\nfilename = \"x.pdf\"")
            .unwrap()
            .kind()
            .is_ok());
        assert!(
            header("sticker = \"a\"").is_err(),
            "unknown keys are refused"
        );
    }

    #[test]
    fn a_button_is_one_kind_at_an_index_in_range() {
        let button = |text: &str| toml::from_str::<TemplateButton>(text).unwrap();
        assert_eq!(
            button("index = 0\nurl = \"ORDER-1\"").parameter(),
            Ok(("url", "text", "ORDER-1"))
        );
        assert_eq!(
            button("index = 1\npayload = \"yes\"").parameter(),
            Ok(("quick_reply", "payload", "yes"))
        );
        assert_eq!(
            button("index = 2\ncode = \"SAVE10\"").parameter(),
            Ok(("copy_code", "coupon_code", "SAVE10"))
        );
        assert!(button("index = 0").parameter().is_err());
        assert!(button("index = 0\nurl = \"a\"\npayload = \"b\"")
            .parameter()
            .is_err());
        assert!(button("index = 10\nurl = \"a\"").parameter().is_err());
    }
}
