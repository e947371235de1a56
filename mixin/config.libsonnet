// The mixin's settings. Override any of them the way monitoring mixins are
// customised:
//
//   (import 'hfbreaker/mixin.libsonnet') + {
//     _config+:: { hfbreakerSelector: 'job="hfbreaker-team-a"', availabilityObjective: 0.995 },
//   }
{
  _config+:: {
    // Selects hfbreaker's series in every rule, alert and dashboard variable.
    // It must not be empty: HfBreakerDown applies it to `up`. The default
    // matches every job named hfbreaker… (one per team Deployment, for example).
    hfbreakerSelector: 'job=~"hfbreaker.*"',

    // Several replicas probe the same endpoints; an alert about an endpoint or
    // a route fires when strictly more than this share of the replicas of a job
    // agree (0.5: a majority), so one replica's local network problem does not page.
    replicaMajority: 0.5,

    // keep_firing_for of the paging breaker alerts: bridges the moments of an
    // outage in which a half-open trial admits traffic. The breaker already
    // debounces probe failures, so those alerts have no long `for:`.
    keepFiringFor: '30s',

    // Alert thresholds and durations.
    circuitOpenLongFor: '15m',
    primaryOpenNoHealthyFallbackFor: '10m',
    routeOnFallbackRatio: 0.5,  // share of the last 30 minutes off the primary
    routeOnFallbackFor: '15m',
    flappingTripsPerHour: 4,  // trips out of closed per replica in an hour
    probeAuthFailingFor: '2m',
    modelLoadingStuckWindow: '20m',  // loading and no successful probe for this long
    probeLatencyHighFor: '15m',
    configReloadFailedFor: '5m',
    downFor: '5m',
    replicaDownFor: '10m',

    // The availability objective of every route's gateway requests (share
    // answered without a 5xx): 0.999 is an error budget of 0.1 %. Recorded as
    // hfbreaker:gateway_availability_objective; the burn-rate alerts follow it.
    availabilityObjective: 0.999,
    // Multi-window, multi-burn-rate alerts (Google SRE workbook, "Alerting on
    // SLOs"): a burn rate of 14.4 spends 2 % of a 30-day error budget in an
    // hour, 6 spends 5 % in 6 hours. The short window (1/12 of the long one)
    // makes the alert stop soon after the errors do.
    errorBudgetPeriodHours: 30 * 24,
    burnRateFast: { factor: 14.4, long: '1h', short: '5m', severity: 'critical' },
    burnRateSlow: { factor: 6, long: '6h', short: '30m', severity: 'warning' },

    // Where the annotations point: runbook_url is runbookURLPrefix followed by
    // the lower-cased alert name (a section of docs/runbooks.md), dashboard_url
    // is dashboardURLPrefix followed by /d/<uid>/<uid>?… Both default to
    // relative: prefix them with where you host the docs and Grafana.
    runbookURLPrefix: 'docs/runbooks.md#',
    dashboardURLPrefix: '',

    // Dashboards.
    dashboardUIDs: { overview: 'hfbreaker-overview', endpoint: 'hfbreaker-endpoint' },
    dashboardTags: ['hfbreaker', 'huggingface', 'circuit-breaker'],
    dashboardRefresh: '30s',
    dashboardTimeFrom: 'now-3h',
    grafanaSchemaVersion: 41,
  },
}
