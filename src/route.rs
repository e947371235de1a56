//! Routes: ordered fallback chains. A route is served by the first endpoint
//! whose breaker admits traffic; when none does the route is exhausted.

use std::time::Instant;

use serde::Serialize;

use crate::config::RouteConfig;
use crate::metrics::Metrics;
use crate::tier::Tier;

/// Index of the first endpoint of the chain that admits traffic.
pub fn select(chain: &[String], admits: impl Fn(&str) -> bool) -> Option<usize> {
    chain.iter().position(|e| admits(e))
}

#[derive(Clone, Debug, Serialize)]
pub struct RouteStatus {
    pub name: String,
    pub endpoints: Vec<String>,
    /// 0 primary, k the k-th fallback, -1 exhausted.
    pub level: i64,
    pub tier: Tier,
    pub serving: Option<String>,
    #[serde(skip)]
    pub since: Instant,
    pub switches: u64,
}

struct Tracked {
    cfg: RouteConfig,
    level: Option<usize>,
    since: Instant,
    accounted_to: Instant,
    switches: u64,
}

/// Current level of every route, and the time spent per tier.
pub struct RouteTracker {
    routes: Vec<Tracked>,
}

impl RouteTracker {
    /// Starts every route at the level the endpoints admit now.
    pub fn new(
        routes: &[RouteConfig],
        now: Instant,
        admits: impl Fn(&str) -> bool,
        metrics: &Metrics,
    ) -> Self {
        RouteTracker {
            routes: routes
                .iter()
                .map(|cfg| {
                    let level = select(&cfg.endpoints, &admits);
                    metrics.route_init(&cfg.name, &cfg.endpoints);
                    metrics.route_level(&cfg.name, level);
                    Tracked {
                        cfg: cfg.clone(),
                        level,
                        since: now,
                        accounted_to: now,
                        switches: 0,
                    }
                })
                .collect(),
        }
    }

    /// Recompute every route's level; returns how many switched.
    pub fn update(
        &mut self,
        now: Instant,
        admits: impl Fn(&str) -> bool,
        metrics: &Metrics,
    ) -> usize {
        let mut switched = 0;
        for r in &mut self.routes {
            let level = select(&r.cfg.endpoints, &admits);
            if level == r.level {
                continue;
            }
            account(r, now, metrics);
            let name_at = |l: Option<usize>| l.map_or("none", |i| r.cfg.endpoints[i].as_str());
            metrics.route_switch(&r.cfg.name, name_at(r.level), name_at(level));
            metrics.route_level(&r.cfg.name, level);
            tracing::info!(route = %r.cfg.name, from = name_at(r.level), to = name_at(level), tier = Tier::of_level(level).as_str(), "route switched");
            r.level = level;
            r.since = now;
            r.switches += 1;
            switched += 1;
        }
        switched
    }

    /// Add the time since the last accounting to each route's current tier.
    pub fn account(&mut self, now: Instant, metrics: &Metrics) {
        for r in &mut self.routes {
            account(r, now, metrics);
        }
    }

    pub fn status(&self) -> Vec<RouteStatus> {
        self.routes
            .iter()
            .map(|r| RouteStatus {
                name: r.cfg.name.clone(),
                endpoints: r.cfg.endpoints.clone(),
                level: r.level.map_or(-1, |l| l as i64),
                tier: Tier::of_level(r.level),
                serving: r.level.map(|l| r.cfg.endpoints[l].clone()),
                since: r.since,
                switches: r.switches,
            })
            .collect()
    }

    /// Keep what a reload must not reset: the switch count of every route
    /// that stays (the `switches_total` counter keeps counting too), and
    /// since when it is served by the same endpoint if that did not change.
    pub fn carry_over(&mut self, old: &RouteTracker) {
        for r in &mut self.routes {
            let Some(o) = old.routes.iter().find(|o| o.cfg.name == r.cfg.name) else {
                continue;
            };
            r.switches = o.switches;
            let serving = |t: &Tracked| t.level.map(|l| t.cfg.endpoints[l].clone());
            if serving(o) == serving(r) {
                r.since = o.since;
            }
        }
    }

    pub fn configs(&self) -> impl Iterator<Item = &RouteConfig> {
        self.routes.iter().map(|r| &r.cfg)
    }
}

fn account(r: &mut Tracked, now: Instant, metrics: &Metrics) {
    let elapsed = now.saturating_duration_since(r.accounted_to).as_secs_f64();
    if elapsed > 0.0 {
        metrics.route_time(&r.cfg.name, Tier::of_level(r.level), elapsed);
    }
    r.accounted_to = r.accounted_to.max(now);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn chain() -> Vec<String> {
        vec!["a".into(), "b".into(), "c".into()]
    }

    #[test]
    fn selects_first_admitting() {
        assert_eq!(select(&chain(), |_| true), Some(0));
        assert_eq!(select(&chain(), |e| e != "a"), Some(1));
        assert_eq!(select(&chain(), |e| e == "c"), Some(2));
        assert_eq!(select(&chain(), |_| false), None);
    }

    #[test]
    fn tracks_levels_and_time_per_tier() {
        let m = Metrics::new();
        let t0 = Instant::now();
        let cfg = [RouteConfig {
            name: "r".into(),
            endpoints: chain(),
            cache: None,
        }];
        let mut t = RouteTracker::new(&cfg, t0, |_| true, &m);
        assert_eq!(t.update(t0, |_| true, &m), 0);
        assert_eq!(t.update(t0 + Duration::from_secs(10), |e| e != "a", &m), 1);
        assert_eq!(t.update(t0 + Duration::from_secs(15), |_| false, &m), 1);
        t.account(t0 + Duration::from_secs(17), &m);
        let s = &t.status()[0];
        assert_eq!(
            (s.level, s.tier, s.serving.as_deref(), s.switches),
            (-1, Tier::Exhausted, None, 2)
        );
        let text = String::from_utf8(m.render()).unwrap();
        assert!(
            text.contains("hfbreaker_route_level_seconds_total{route=\"r\",tier=\"primary\"} 10\n"),
            "{text}"
        );
        assert!(
            text.contains("hfbreaker_route_level_seconds_total{route=\"r\",tier=\"fallback\"} 5\n")
        );
        assert!(
            text.contains(
                "hfbreaker_route_level_seconds_total{route=\"r\",tier=\"exhausted\"} 2\n"
            )
        );
        assert!(text.contains("hfbreaker_route_level{route=\"r\"} -1\n"));
        assert!(text.contains("hfbreaker_route_serving{endpoint=\"none\",route=\"r\"} 1\n"));
        assert!(text.contains("hfbreaker_route_serving{endpoint=\"a\",route=\"r\"} 0\n"));
        assert!(
            text.contains("hfbreaker_route_switches_total{from=\"a\",route=\"r\",to=\"b\"} 1\n")
        );
        assert!(
            text.contains("hfbreaker_route_switches_total{from=\"b\",route=\"r\",to=\"none\"} 1\n")
        );
    }

    #[test]
    fn carry_over_keeps_switches_of_routes_that_stay() {
        let m = Metrics::new();
        let t0 = Instant::now();
        let r = |name: &str, chain: Vec<String>| RouteConfig {
            name: name.into(),
            endpoints: chain,
            cache: None,
        };
        let mut old = RouteTracker::new(&[r("r", chain()), r("gone", chain())], t0, |_| true, &m);
        old.update(t0 + Duration::from_secs(1), |e| e != "a", &m);
        old.update(t0 + Duration::from_secs(2), |_| true, &m);
        old.update(t0 + Duration::from_secs(3), |e| e != "a", &m);
        let t1 = t0 + Duration::from_secs(10);
        // "r" stays (chain reordered, still served by b); "new" is new
        let reordered = vec!["b".to_string(), "a".into(), "c".into()];
        let mut new = RouteTracker::new(
            &[r("r", reordered), r("new", chain())],
            t1,
            |e| e != "a",
            &m,
        );
        new.carry_over(&old);
        let s = new.status();
        assert_eq!((s[0].switches, s[0].level), (3, 0));
        assert_eq!(
            s[0].since,
            t0 + Duration::from_secs(3),
            "same endpoint serves"
        );
        assert_eq!((s[1].switches, s[1].since), (0, t1));
        // served by another endpoint after the reload: switches kept, since reset
        let mut other = RouteTracker::new(&[r("r", chain())], t1, |_| true, &m);
        other.carry_over(&old);
        assert_eq!(
            (other.status()[0].switches, other.status()[0].since),
            (3, t1)
        );
    }
}
