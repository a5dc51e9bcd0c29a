//! Building the console's HTML by hand: every value from the database (customers write the
//! message text) goes through [`escape`], and the page frame is one function.

use std::fmt::Write;

/// `text` safe inside an element or a double-quoted attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page: `title` (escaped here), the navigation when signed in (`csrf` is the session's
/// form token, for the sign-out form) and `body` (already HTML).
pub fn page(title: &str, csrf: Option<&str>, body: &str) -> String {
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · switchboard</title>\
         <link rel=\"stylesheet\" href=\"/admin/assets/console.css\"></head><body>",
        escape(title)
    );
    if let Some(csrf) = csrf {
        let _ = write!(
            html,
            "<nav><a href=\"/admin\">Overview</a> <a href=\"/admin/events\">Events</a> \
             <a href=\"/admin/conversations\">Conversations</a> <a href=\"/admin/quarantine\">Quarantine</a> \
             <a href=\"/admin/jobs?state=dead\">Dead jobs</a> <a href=\"/admin/routes\">Routes</a> \
             <form method=\"post\" action=\"/admin/logout\" class=\"inline\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\">Sign out</button></form></nav>",
            escape(csrf)
        );
    }
    let _ = write!(
        html,
        "<main><h1>{}</h1>{body}</main></body></html>",
        escape(title)
    );
    html
}

/// A table with `headers` and rows of cells that are already HTML. Each cell carries its
/// column's header (`data-label`): on a narrow screen the stylesheet stacks a row's cells, each
/// under its label, instead of letting the row run off to the right.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut html = String::from("<table><thead><tr>");
    for header in headers {
        let _ = write!(html, "<th>{}</th>", escape(header));
    }
    html.push_str("</tr></thead><tbody>");
    for row in rows {
        html.push_str("<tr>");
        for (i, cell) in row.iter().enumerate() {
            let label = headers.get(i).copied().unwrap_or("");
            let _ = write!(html, "<td data-label=\"{}\">{cell}</td>", escape(label));
        }
        html.push_str("</tr>");
    }
    html.push_str("</tbody></table>");
    html
}

/// `text` as one path segment of a URL: every byte but the unreserved ones percent-encoded.
pub fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(byte));
            }
            _ => {
                let _ = write!(out, "%{byte:02X}");
            }
        }
    }
    out
}

/// `ms` (Unix milliseconds) as UTC text.
pub fn time(ms: i64) -> String {
    crate::window::format_rfc3339(ms).unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_values_is_shown_as_text() {
        assert_eq!(
            escape("<script>alert(\"x\")</script> & 'q'"),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;q&#39;"
        );
        let html = page("<b>", None, "");
        assert!(html.contains("<title>&lt;b&gt; · switchboard</title>"));
    }

    #[test]
    fn a_path_segment_keeps_only_unreserved_bytes() {
        assert_eq!(path_segment("conv-1_a.b~"), "conv-1_a.b~");
        assert_eq!(path_segment("a/b?c d\"é"), "a%2Fb%3Fc%20d%22%C3%A9");
    }
}
