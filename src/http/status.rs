//! `GET /api/v1/status`: everything the status page shows, in one JSON
//! document (routes with their chains, endpoints with their last hour, the
//! timeline), for the page and for scripts. Never the admin token: only
//! whether one is configured.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::extract::{Query, State as AxState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::api::LastProbeView;
use super::{rfc3339, wall};
use crate::breaker::State;
use crate::daemon::Daemon;
use crate::history::{self, Mark};
use crate::tier::Tier;

#[derive(Serialize)]
pub struct StatusView {
    pub now: String,
    /// Whether admin actions are possible (a token is configured).
    pub admin: bool,
    /// How many minutes of marks `history` holds (the `history_minutes`
    /// parameter, 0 to 60; 60 by default).
    pub history_minutes: usize,
    pub routes: Vec<RouteView>,
    pub endpoints: Vec<EndpointView>,
    /// Newest first: state changes and operator actions.
    pub timeline: Vec<TimelineEntry>,
}

#[derive(Serialize)]
pub struct RouteView {
    pub name: String,
    pub chain: Vec<ChainLink>,
    pub serving: Option<String>,
    pub tier: Tier,
    pub since: String,
    pub switches: u64,
    /// Gateway requests per second by tier (`primary`, `fallback`,
    /// `cache`, `exhausted`); null while the gateway has no rate yet.
    pub requests_per_second: Option<HashMap<&'static str, f64>>,
}

#[derive(Serialize)]
pub struct ChainLink {
    pub endpoint: String,
    pub state: Option<State>,
    pub serving: bool,
}

#[derive(Serialize)]
pub struct EndpointView {
    pub name: String,
    pub kind: &'static str,
    pub probe: &'static str,
    pub host: String,
    pub state: State,
    pub since: String,
    pub enforced: bool,
    pub open_until: Option<String>,
    pub last_probe: Option<LastProbeView>,
    /// One mark per minute (of the last `history_minutes`) that saw a
    /// probe or a state change, oldest first.
    pub history: Vec<MarkView>,
}

fn is_zero(n: &u16) -> bool {
    *n == 0
}

#[derive(Serialize)]
pub struct MarkView {
    /// Unix seconds of the minute's start.
    pub t: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub success: u16,
    #[serde(skip_serializing_if = "is_zero")]
    pub failure: u16,
    #[serde(skip_serializing_if = "is_zero")]
    pub ignored: u16,
    #[serde(skip_serializing_if = "is_zero")]
    pub rejected: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_ms: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_ms: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// The worst state of the minute.
    pub state: State,
}

impl From<&Mark> for MarkView {
    fn from(m: &Mark) -> Self {
        let answered = m.answered() > 0;
        MarkView {
            t: u64::from(m.minute) * 60,
            success: m.success,
            failure: m.failure,
            ignored: m.ignored,
            rejected: m.rejected,
            max_ms: answered.then_some(m.max_ms),
            mean_ms: m.mean_ms(),
            reason: m.reason.map(|r| r.as_str()),
            state: m.state,
        }
    }
}

#[derive(Serialize)]
pub struct TimelineEntry {
    pub at: String,
    #[serde(skip)]
    when: SystemTime,
    /// `transition` or `action`.
    pub kind: &'static str,
    pub endpoint: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<State>,
    pub to: State,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<&'static str>,
}

/// What one endpoint's row needs, copied while its lock is held: its marks
/// and changes are `Copy` (under 2 KB), the rest a few words and the last
/// probe's detail, so that a probe due or finishing meanwhile waits for
/// that copy at most; the views, names and times are made after the lock
/// is released (they used to be made under it).
struct Row {
    cfg: Arc<crate::config::EndpointConfig>,
    state: State,
    since: SystemTime,
    open_until: Option<Instant>,
    last: Option<crate::schedule::LastProbe>,
    marks: Vec<Mark>,
    changes: Vec<history::Change>,
}

impl Row {
    fn copy(st: &crate::schedule::EndpointState, now: SystemTime, minutes: usize) -> Row {
        Row {
            cfg: st.cfg.clone(),
            state: st.breaker.state(),
            since: st.since_wall,
            open_until: st.breaker.open_until(),
            last: st.last.clone(),
            marks: st.history.marks(now, minutes).copied().collect(),
            changes: st.history.changes().copied().collect(),
        }
    }
}

fn endpoint_view(name: &str, row: Row, timeline: &mut Vec<TimelineEntry>) -> EndpointView {
    let cfg = &row.cfg;
    timeline.extend(row.changes.iter().map(|c| TimelineEntry {
        at: String::new(),
        when: c.at,
        kind: "transition",
        endpoint: name.to_string(),
        from: Some(c.from),
        to: c.to,
        reason: c.trip.map(|t| t.as_str()),
        action: None,
    }));
    EndpointView {
        name: name.to_string(),
        kind: cfg.kind.as_str(),
        probe: cfg.probe.as_str(),
        host: cfg.host(),
        state: row.state,
        since: rfc3339(row.since),
        enforced: cfg.enforce,
        open_until: row.open_until.map(|t| rfc3339(wall(t))),
        last_probe: row.last.as_ref().map(LastProbeView::from),
        history: row.marks.iter().map(MarkView::from).collect(),
    }
}

/// The newest [`history::TIMELINE`] entries, newest first.
fn newest(mut all: Vec<TimelineEntry>) -> Vec<TimelineEntry> {
    let by_newest = |a: &TimelineEntry, b: &TimelineEntry| b.when.cmp(&a.when);
    if all.len() > history::TIMELINE {
        all.select_nth_unstable_by(history::TIMELINE - 1, by_newest);
        all.truncate(history::TIMELINE);
    }
    all.sort_by(by_newest);
    for e in &mut all {
        e.at = rfc3339(e.when);
    }
    all
}

/// Requests per second by gateway tier, per route, since a few seconds ago.
fn gateway_rates(d: &Daemon) -> HashMap<String, HashMap<&'static str, f64>> {
    let totals = d.metrics.gateway_requests_by_tier();
    if totals.is_empty() {
        return HashMap::new();
    }
    let mut rates = d.board.rates.lock().unwrap_or_else(|p| p.into_inner());
    rates
        .sample(Instant::now(), totals)
        .into_iter()
        .filter_map(|(route, r)| {
            let labels = crate::metrics::gateway::Tier::LABELS;
            Some((route, labels.into_iter().zip(r?).collect()))
        })
        .collect()
}

/// The whole status document, with `minutes` of history (at most [`history::MINUTES`]).
pub fn status_view(d: &Daemon, minutes: usize) -> StatusView {
    let minutes = minutes.min(history::MINUTES);
    let topo = d.topology();
    let now = SystemTime::now();
    let mut timeline = Vec::new();
    let endpoints: Vec<EndpointView> = topo
        .endpoints
        .iter()
        .map(|ep| {
            let row = Row::copy(&ep.lock(), now, minutes);
            endpoint_view(&ep.name, row, &mut timeline)
        })
        .collect();
    timeline.extend(d.board.actions().into_iter().map(|a| TimelineEntry {
        at: String::new(),
        when: a.at,
        kind: "action",
        endpoint: a.endpoint,
        from: None,
        to: a.state,
        reason: None,
        action: Some(a.action),
    }));
    let mut rates = gateway_rates(d);
    let routes = d
        .routes()
        .into_iter()
        .map(|r| RouteView {
            chain: r
                .endpoints
                .iter()
                .map(|e| ChainLink {
                    endpoint: e.clone(),
                    state: topo.endpoint(e).map(|ep| ep.breaker_state()),
                    serving: r.serving.as_deref() == Some(e),
                })
                .collect(),
            requests_per_second: rates.remove(&r.name),
            serving: r.serving,
            tier: r.tier,
            since: rfc3339(wall(r.since)),
            switches: r.switches,
            name: r.name,
        })
        .collect();
    StatusView {
        now: rfc3339(now),
        admin: d.admin_token().is_some(),
        history_minutes: minutes,
        routes,
        endpoints,
        timeline: newest(timeline),
    }
}

#[derive(Deserialize)]
pub struct Params {
    /// Minutes of history per endpoint; the page asks for the whole hour
    /// now and then and for the current minute in between.
    history_minutes: Option<usize>,
}

pub async fn status(AxState(d): AxState<Arc<Daemon>>, Query(p): Query<Params>) -> Response {
    let minutes = p.history_minutes.unwrap_or(history::MINUTES);
    // 10k endpoints' hours are CPU work: off the async workers.
    let body =
        tokio::task::spawn_blocking(move || serde_json::to_vec(&status_view(&d, minutes))).await;
    match body {
        Ok(Ok(body)) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response(),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "rendering the status failed\n",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn entry(secs: u64) -> TimelineEntry {
        TimelineEntry {
            at: String::new(),
            when: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
            kind: "transition",
            endpoint: format!("e{secs}"),
            from: Some(State::Closed),
            to: State::Open,
            reason: None,
            action: None,
        }
    }

    #[test]
    fn the_timeline_keeps_the_newest_entries_newest_first() {
        let all: Vec<_> = (0..500).map(|i| entry((i * 7919) % 500)).collect();
        let kept = newest(all);
        assert_eq!(kept.len(), history::TIMELINE);
        let secs: Vec<u64> = kept
            .iter()
            .map(|e| {
                e.when
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap()
                    .as_secs()
            })
            .collect();
        let want: Vec<u64> = (450..500).rev().collect();
        assert_eq!(secs, want);
        assert_eq!(kept[0].at, "1970-01-01T00:08:19.000Z");
        assert_eq!(newest(vec![entry(1), entry(2)]).len(), 2);
    }
}
