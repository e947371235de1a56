//! `GET /`: a small page listing endpoints, states, routes and the last probes.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State as AxState;
use axum::response::Html;

use super::api::breaker_views;
use crate::daemon::Daemon;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub async fn page(AxState(d): AxState<Arc<Daemon>>) -> Html<String> {
    let mut h = String::with_capacity(8192);
    h.push_str(concat!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"5\">",
        "<title>hfbreaker</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}",
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}.closed{color:#1a7f37}.open,.forced_open{color:#cf222e;font-weight:bold}",
        ".half_open{color:#9a6700}.forced_closed{color:#0969da}</style></head><body>",
        "<h1>hfbreaker</h1><p><a href=\"/metrics\">Metrics</a> · <a href=\"/api/v1/breakers\">Breakers API</a> · ",
        "<a href=\"/api/v1/routes\">Routes API</a> · <a href=\"/-/ready\">Readiness</a></p>",
        "<h2>Routes</h2><table><tr><th>route</th><th>chain</th><th>serving</th><th>tier</th><th>switches</th></tr>"
    ));
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
    for b in breaker_views(&d) {
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
    h.push_str("</table></body></html>");
    Html(h)
}
