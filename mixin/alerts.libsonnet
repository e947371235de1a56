// Alerts. Each aggregates across the replicas of a job (by job and endpoint
// or route) and needs strictly more than _config.replicaMajority of them to
// agree, so it fires once, not once per replica.
local u = import 'lib/util.libsonnet';

{
  prometheusAlerts+:: {
    local c = $._config,
    local maj = u.num(c.replicaMajority),
    local m(name, extra='') = '%s{%s}' % [name, u.sel([c.hfbreakerSelector, extra])],
    local runbook(name) = c.runbookURLPrefix + std.asciiLower(name),
    local dash(uid, query='') =
      c.dashboardURLPrefix + '/d/%s/%s' % [uid, uid] + (if query == '' then '' else '?' + query),
    local overview = dash(c.dashboardUIDs.overview, 'var-job={{ $labels.job }}'),
    local endpoint = dash(c.dashboardUIDs.endpoint, 'var-job={{ $labels.job }}&var-endpoint={{ $labels.endpoint }}'),
    // An alert with the annotations every hfbreaker alert carries.
    local alert(name, severity, summary, description, dashboard, expr) = {
      alert: name,
      expr: expr,
      labels: { severity: severity },
      annotations: {
        summary: summary,
        description: description,
        runbook_url: runbook(name),
        dashboard_url: dashboard,
      },
    },
    local budgetShare(b) = u.num(b.factor * u.hours(b.long) / c.errorBudgetPeriodHours * 100),
    local budgetDays = u.num(c.errorBudgetPeriodHours / 24),
    local burnAlert(name, b, speed) = alert(
      name,
      b.severity,
      'Route {{ $labels.route }} burns its error budget%s: {{ $value | humanizePercentage }} of gateway requests failed in %s'
      % [speed, u.theLast(b.long)],
      '{{ $value | humanizePercentage }} of the gateway requests of route {{ $labels.route }} got a 5xx in %s, and still in %s: over %s times the error budget of the availability objective (%s %% of a %s-day budget %s).'
      % [u.theLast(b.long), u.theLast(b.short), u.num(b.factor), budgetShare(b), budgetDays,
         if u.hours(b.long) == 1 then 'an hour' else 'in ' + u.humanize(b.long)],
      overview,
      |||
        (
          hfbreaker:gateway_error_ratio:rate%(long)s
            > on () group_left ()
          (%(factor)s * (1 - hfbreaker:gateway_availability_objective))
        )
        and on (job, route)
        (
          hfbreaker:gateway_error_ratio:rate%(short)s
            > on () group_left ()
          (%(factor)s * (1 - hfbreaker:gateway_availability_objective))
        )
      ||| % { long: b.long, short: b.short, factor: u.num(b.factor) },
    ),

    groups+: [{
      name: 'hfbreaker',
      rules: [
        alert(
          'HfBreakerRouteExhausted',
          'critical',
          'Route {{ $labels.route }} has no endpoint admitting traffic',
          'Every endpoint of route {{ $labels.route }} has an open circuit on {{ $value | humanizePercentage }} of the hfbreaker replicas in {{ $labels.job }}: requests on this route have nowhere to go.',
          overview,
          'hfbreaker:route_exhausted:replica_share > %s' % maj,
        ) + { keep_firing_for: c.keepFiringFor },
        alert(
          'HfBreakerCircuitOpen',
          'warning',
          'Circuit of {{ $labels.endpoint }} is open',
          'The breaker of {{ $labels.endpoint }}{{ if $labels.route }} (route {{ $labels.route }}){{ end }} is open on {{ $value | humanizePercentage }} of the replicas: its probes failed and routes skip it.',
          endpoint,
          'hfbreaker:circuit_open_by_route:replica_share > %s' % maj,
        ) + { keep_firing_for: c.keepFiringFor },
        alert(
          'HfBreakerCircuitOpenLong',
          'warning',
          'Circuit of {{ $labels.endpoint }} has been open for %s' % u.humanize(c.circuitOpenLongFor),
          'The breaker of {{ $labels.endpoint }}{{ if $labels.route }} (route {{ $labels.route }}){{ end }} has not closed for %s: its half-open trials keep failing.' % u.humanize(c.circuitOpenLongFor),
          endpoint,
          'hfbreaker:circuit_open_by_route:replica_share > %s' % maj,
        ) + { 'for': c.circuitOpenLongFor },
        alert(
          'HfBreakerPrimaryOpenNoHealthyFallback',
          'critical',
          'Primary {{ $labels.endpoint }} of route {{ $labels.route }} open for %s with no healthy fallback' % u.humanize(c.primaryOpenNoHealthyFallbackFor),
          '{{ $labels.endpoint }}, the primary of route {{ $labels.route }}, has been open for %s and no closed endpoint serves the route.' % u.humanize(c.primaryOpenNoHealthyFallbackFor),
          endpoint,
          |||
            (
              (hfbreaker:circuit_open:replica_share > %(maj)s)
                * on (job, endpoint) group_right
              max by (job, endpoint, route) (%(info)s)
            )
            unless on (job, route) (hfbreaker:route_served_healthy:replica_share > %(maj)s)
          ||| % { maj: maj, info: m('hfbreaker_route_endpoint_info', 'position="0"') },
        ) + { 'for': c.primaryOpenNoHealthyFallbackFor },
        alert(
          'HfBreakerRouteOnFallback',
          'warning',
          'Route {{ $labels.route }} served from a fallback {{ $value | humanizePercentage }} of the last 30 minutes',
          'Route {{ $labels.route }} has not been on its primary for most of the last 30 minutes: the fallback carries the traffic (and its cost).',
          overview,
          'hfbreaker:route_fallback_ratio:rate30m > %s' % u.num(c.routeOnFallbackRatio),
        ) + { 'for': c.routeOnFallbackFor },
        burnAlert('HfBreakerGatewayErrorBudgetBurnFast', c.burnRateFast, ' fast'),
        burnAlert('HfBreakerGatewayErrorBudgetBurnSlow', c.burnRateSlow, ''),
        alert(
          'HfBreakerFlapping',
          'warning',
          'Circuit of {{ $labels.endpoint }} tripped {{ $value | humanize }} times in an hour',
          'The breaker of {{ $labels.endpoint }} keeps closing and tripping again: the endpoint is intermittently failing, or the breaker thresholds are too tight.',
          endpoint,
          'hfbreaker:circuit_trips_from_closed:avg_increase1h >= %s' % u.num(c.flappingTripsPerHour),
        ),
        alert(
          'HfBreakerProbeAuthFailing',
          'warning',
          'Probes of {{ $labels.endpoint }} are rejected with 401/403',
          "The token hfbreaker uses for {{ $labels.endpoint }} is refused (expired, revoked or without permission). The breaker ignores auth errors, so only this alert sees it; your application's token may have the same problem.",
          endpoint,
          'hfbreaker:probe_auth_failing:replica_share > %s' % maj,
        ) + { 'for': c.probeAuthFailingFor },
        alert(
          'HfBreakerModelLoadingTooLong',
          'warning',
          '{{ $labels.endpoint }} has been loading its model for %s' % u.humanize(c.modelLoadingStuckWindow),
          "{{ $labels.endpoint }} answers 'model loading' (or its endpoint is initializing) and has not answered a probe successfully for %s." % u.humanize(c.modelLoadingStuckWindow),
          endpoint,
          'hfbreaker:endpoint_loading_stuck:replica_share > %s' % maj,
        ),
        alert(
          'HfBreakerProbeLatencyHigh',
          'warning',
          'Probes of {{ $labels.endpoint }} are slow: p90 {{ $value | humanizeDuration }}',
          'The 90th percentile of probe latency of {{ $labels.endpoint }} has been above its configured slow_call_duration for %s.' % u.humanize(c.probeLatencyHighFor),
          endpoint,
          |||
            hfbreaker:probe_duration_seconds:p90_rate10m
              > on (job, endpoint) group_left
            max by (job, endpoint) (%s)
          ||| % m('hfbreaker_circuit_slow_call_duration_seconds'),
        ) + { 'for': c.probeLatencyHighFor },
        alert(
          'HfBreakerConfigReloadFailed',
          'warning',
          'hfbreaker {{ $labels.instance }} could not reload its config',
          'The last config reload of {{ $labels.instance }} failed; it keeps running the previous config. `hfbreaker check-config` shows the errors.',
          overview,
          '%s == 0' % m('hfbreaker_config_last_reload_successful'),
        ) + { 'for': c.configReloadFailedFor },
        alert(
          'HfBreakerLocalResourceExhausted',
          'warning',
          'hfbreaker {{ $labels.instance }} is out of a local resource',
          '{{ $value | humanize }} operations of {{ $labels.instance }} failed in 5 minutes for a reason of the process itself (file descriptors, memory, local ports). These are not counted against any endpoint, but probes were not sent or connections refused.',
          overview,
          'sum by (job, instance) (increase(%s[5m])) > 0' % m('hfbreaker_local_errors_total'),
        ),
        alert(
          'HfBreakerDown',
          'critical',
          'No hfbreaker replica is up',
          'Prometheus cannot scrape any hfbreaker replica{{ if $labels.job }} of {{ $labels.job }}{{ end }}: nothing watches the inference endpoints and no breaker alert can fire.',
          dash(c.dashboardUIDs.overview),
          |||
            (avg by (job) (%(up)s) == 0)
            or
            absent(%(up)s)
          ||| % { up: m('up') },
        ) + { 'for': c.downFor },
        alert(
          'HfBreakerReplicaDown',
          'warning',
          'hfbreaker replica {{ $labels.instance }} is down',
          'Prometheus cannot scrape {{ $labels.instance }}; the other replicas still probe.',
          overview,
          '%s == 0' % m('up'),
        ) + { 'for': c.replicaDownFor },
      ],
    }],
  },
}
