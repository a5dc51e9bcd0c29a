//! Page-number paging of the simulated Platform API lists (CONTRACT §4.2): `page`/`per_page`
//! (defaults 1/20), the `meta` block, and the `X-Total`, `X-Total-Pages`, `X-Per-Page`,
//! `X-Page` and `Link` headers.

use std::collections::HashMap;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::platform::reject;
use super::state::SimState;
use super::webhooks::{invalid, Rejection};

/// `page` and `per_page` (defaults 1 and 20).
pub(crate) fn page_params(query: &HashMap<String, String>) -> Result<(u64, u64), Rejection> {
    let number = |key: &str, default: u64| match query.get(key) {
        None => Ok(default),
        Some(text) => match text.trim().parse::<u64>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(invalid(format!("{key} must be an integer of at least 1"))),
        },
    };
    Ok((number("page", 1)?, number("per_page", 20)?))
}

/// One page of `items` with the `meta` block and the paging headers.
pub(crate) fn page_of(
    state: &SimState,
    path: &str,
    query: &HashMap<String, String>,
    items: Vec<Value>,
) -> Response {
    let (page, per_page) = match page_params(query) {
        Ok(p) => p,
        Err(rejection) => return reject(rejection),
    };
    let total = items.len() as u64;
    let total_pages = total.div_ceil(per_page);
    let skip = usize::try_from((page - 1).saturating_mul(per_page)).unwrap_or(usize::MAX);
    let take = usize::try_from(per_page).unwrap_or(usize::MAX);
    let data: Vec<Value> = items.into_iter().skip(skip).take(take).collect();
    let mut kept: Vec<(&String, &String)> = query
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "page" | "per_page"))
        .collect();
    kept.sort();
    let link_to = |p: u64| {
        let mut url = reqwest::Url::parse(&format!("{}/platform/v1{path}", state.base_url)).ok()?;
        url.query_pairs_mut()
            .extend_pairs(kept.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .append_pair("page", &p.to_string())
            .append_pair("per_page", &per_page.to_string());
        Some(url.to_string())
    };
    let mut links = Vec::new();
    let mut rels = vec![("first", 1), ("last", total_pages.max(1))];
    if page > 1 {
        rels.push(("prev", page - 1));
    }
    if page < total_pages {
        rels.push(("next", page + 1));
    }
    for (rel, p) in rels {
        if let Some(url) = link_to(p) {
            links.push(format!("<{url}>; rel=\"{rel}\""));
        }
    }
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("x-total", total.to_string()),
        ("x-total-pages", total_pages.to_string()),
        ("x-per-page", per_page.to_string()),
        ("x-page", page.to_string()),
        ("link", links.join(", ")),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    let meta = json!({"page": page, "per_page": per_page, "total_pages": total_pages, "total_count": total});
    (headers, Json(json!({ "data": data, "meta": meta }))).into_response()
}
