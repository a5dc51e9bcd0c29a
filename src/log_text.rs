//! Text that came from the network (a path segment, a header value) made safe to put in a log
//! line: control characters, quotes and backslashes are escaped, so a `%0a` in a URL cannot
//! forge a log line, and the text is cut to [`MAX_CHARS`] characters, so a 10 KB name cannot
//! flood the log.

use std::fmt;

/// Characters of untrusted text kept in a log line.
pub const MAX_CHARS: usize = 64;

/// Displays `text` escaped and truncated (see the module documentation).
pub struct Untrusted<'a>(pub &'a str);

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0;
        for (written, c) in text.chars().enumerate() {
            if written == MAX_CHARS {
                return write!(f, "...({} bytes)", text.len());
            }
            write!(f, "{}", c.escape_debug())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_and_quotes_are_escaped() {
        let forged = "bench\n2026-12-01T00:00:00Z  INFO delivery stored \"ok\"\r";
        let shown = Untrusted(forged).to_string();
        assert!(!shown.contains('\n') && !shown.contains('\r'), "{shown}");
        assert!(shown.starts_with("bench\\n2026"), "{shown}");
        assert!(shown.contains("\\\"ok\\\""), "{shown}");
    }

    #[test]
    fn long_text_is_cut_and_its_size_said() {
        let long = "x".repeat(10_000);
        let shown = Untrusted(&long).to_string();
        assert_eq!(shown, format!("{}...(10000 bytes)", "x".repeat(MAX_CHARS)));
    }

    #[test]
    fn ordinary_names_are_unchanged() {
        assert_eq!(Untrusted("kapso-prod_1").to_string(), "kapso-prod_1");
        assert_eq!(Untrusted("café").to_string(), "café");
    }
}
