//! `GET /`: the live status page. One self-contained document
//! (`status.html`: inline CSS and JS, no external asset, no build step)
//! that polls `/api/v1/status`; the tables rendered here are its no-JS
//! fallback, hidden once the first update arrives.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State as AxState;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

use super::api::breaker_views;
use crate::daemon::Daemon;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page; its tables are filled in at `<!--FALLBACK-->`.
const TEMPLATE: &str = include_str!("status.html");

/// Nothing but this page's own inline code and same-origin requests: the
/// browser itself refuses anything that would leave for another host.
pub const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
    connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub async fn page(AxState(d): AxState<Arc<Daemon>>) -> Response {
    let (head, tail) = TEMPLATE
        .split_once("<!--FALLBACK-->")
        .expect("status.html has its fallback marker");
    let mut h = String::with_capacity(TEMPLATE.len() + 8192);
    h.push_str(head);
    fallback_tables(&d, &mut h);
    h.push_str(tail.trim_end());
    (
        [
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Html(h),
    )
        .into_response()
}

/// Routes and endpoints as plain tables, as of now.
fn fallback_tables(d: &Daemon, h: &mut String) {
    h.push_str("<h2>Routes</h2><table><tr><th>route</th><th>chain</th><th>serving</th><th>tier</th><th>switches</th></tr>");
    for r in d.routes() {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.name),
            esc(&r.endpoints.join(" → ")),
            esc(r.serving.as_deref().unwrap_or("none")),
            r.tier.as_str(),
            r.switches
        );
    }
    h.push_str("</table><h2>Endpoints</h2><table><tr><th>endpoint</th><th>kind / probe</th><th>host</th><th>state</th><th>since</th><th>last probe</th><th>status</th><th>duration</th><th>next probe</th></tr>");
    for b in breaker_views(d) {
        let state = serde_json::to_value(b.state).unwrap_or_default();
        let state = state.as_str().unwrap_or("");
        let (last, status, dur) = match &b.last_probe {
            Some(l) => (
                format!(
                    "{}{} <small>{}</small>",
                    l.result,
                    l.reason.map(|r| format!(" ({r})")).unwrap_or_default(),
                    esc(&l.detail)
                ),
                l.status_code
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "–".into()),
                format!("{:.0} ms", l.duration_seconds * 1000.0),
            ),
            None => ("–".into(), "–".into(), "–".into()),
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{} / {}</td><td>{}</td><td class=\"{state}\">{state}</td><td>{}</td><td>{last}</td><td>{status}</td><td>{dur}</td><td>{}</td></tr>",
            esc(&b.name),
            b.kind,
            b.probe,
            esc(&b.host),
            esc(&b.since),
            esc(b.next_probe_at.as_deref().unwrap_or("–")),
        );
    }
    h.push_str("</table>");
}
