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

/// A table with `headers` and rows of cells that are already HTML.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut html = String::from("<table><thead><tr>");
    for header in headers {
        let _ = write!(html, "<th>{}</th>", escape(header));
    }
    html.push_str("</tr></thead><tbody>");
    for row in rows {
        html.push_str("<tr>");
        for cell in row {
            let _ = write!(html, "<td>{cell}</td>");
        }
        html.push_str("</tr>");
    }
    html.push_str("</tbody></table>");
    html
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
}
