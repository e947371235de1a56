// Recording rules. Every aggregation keeps `job`, so the replicas of one job
// (one Deployment, many vantage points) are combined and different jobs are not.
local u = import 'lib/util.libsonnet';

{
  prometheusRules+:: {
    local c = $._config,
    // A metric with the configured selector and extra matchers.
    local m(name, extra='') =
      local body = u.sel([c.hfbreakerSelector, extra]);
      if body == '' then name else '%s{%s}' % [name, body],
    local ratio(metric, bad, by, window) = |||
      sum by (%(by)s) (rate(%(bad)s[%(w)s]))
        /
      sum by (%(by)s) (rate(%(all)s[%(w)s]))
    ||| % { by: by, w: window, bad: m(metric, bad), all: m(metric) },
    local burn = [c.burnRateFast, c.burnRateSlow],
    // The windows the burn-rate alerts use, shortest first: 5m, 30m, 1h, 6h by default.
    local errorWindows = std.set([b.short for b in burn] + [b.long for b in burn], u.hours),

    groups+: [{
      name: 'hfbreaker',
      rules: [
        {
          // Share of replicas that see the circuit open (or running a half-open trial inside an outage).
          record: 'hfbreaker:circuit_open:replica_share',
          expr: |||
            avg by (job, endpoint) (
              sum without (state) (%s)
            )
          ||| % m('hfbreaker_circuit_state', 'state=~"open|half_open"'),
        },
        {
          // The same, once per route the endpoint belongs to (with a `route` label),
          // or without a route label for endpoints in no route.
          record: 'hfbreaker:circuit_open_by_route:replica_share',
          expr: |||
            (
              hfbreaker:circuit_open:replica_share
                * on (job, endpoint) group_right
              max by (job, endpoint, route) (%(info)s)
            )
            or
            (hfbreaker:circuit_open:replica_share unless on (job, endpoint) %(info)s)
          ||| % { info: m('hfbreaker_route_endpoint_info') },
        },
        {
          // Share of replicas that see the route exhausted (no endpoint admits traffic).
          record: 'hfbreaker:route_exhausted:replica_share',
          expr: 'avg by (job, route) (%s == bool -1)' % m('hfbreaker_route_level'),
        },
        {
          // Share of replicas on which the route is served by a closed (healthy) endpoint.
          record: 'hfbreaker:route_served_healthy:replica_share',
          expr: |||
            avg by (job, route) (
              sum by (instance, job, route) (
                %s
                  * on (instance, job, endpoint) group_left
                sum without (state) (%s)
              )
            )
          ||| % [m('hfbreaker_route_serving'), m('hfbreaker_circuit_state', 'state=~"closed|forced_closed"')],
        },
      ] + [
        {
          // Share of time a route was not served by its primary.
          record: 'hfbreaker:route_fallback_ratio:rate%s' % w,
          expr: ratio('hfbreaker_route_level_seconds_total', 'tier!="primary"', 'job, route', w),
        }
        for w in ['5m', '30m']
      ] + [
        {
          // Share of gateway requests not answered by the route's primary (fallback
          // or exhausted): the request-weighted twin of route_fallback_ratio.
          record: 'hfbreaker:gateway_fallback_ratio:rate%s' % w,
          expr: ratio('hfbreaker_gateway_requests_total', 'tier!="primary"', 'job, route', w),
        }
        for w in ['5m', '30m']
      ] + [
        {
          // Share of gateway requests answered with a server error (5xx, the 503 of an
          // exhausted route included), as clients see them. `code` holds the exact
          // status or `5xx` for unusual ones: `5..` matches all.
          record: 'hfbreaker:gateway_error_ratio:rate%s' % w,
          expr: ratio('hfbreaker_gateway_requests_total', 'code=~"5.."', 'job, route', w),
        }
        for w in errorWindows
      ] + [
        {
          // The availability objective of every route's gateway requests
          // (_config.availabilityObjective).
          record: 'hfbreaker:gateway_availability_objective',
          expr: 'vector(%s)' % u.num(c.availabilityObjective),
        },
        {
          // Successful share of the probes that were sent and counted (ignored and rejected excluded).
          record: 'hfbreaker:probe_success_ratio:rate5m',
          expr: |||
            sum by (job, endpoint) (rate(%s[5m]))
              /
            sum by (job, endpoint) (rate(%s[5m]))
          ||| % [m('hfbreaker_probes_total', 'result="success"'), m('hfbreaker_probes_total', 'result=~"success|failure"')],
        },
        {
          record: 'hfbreaker:probe_duration_seconds:p90_rate10m',
          expr: 'histogram_quantile(0.9, sum by (job, endpoint, le) (rate(%s[10m])))' % m('hfbreaker_probe_duration_seconds_bucket'),
        },
        {
          // Trips out of `closed` (not half-open retries inside one outage), per replica, last hour.
          record: 'hfbreaker:circuit_trips_from_closed:avg_increase1h',
          expr: |||
            avg by (job, endpoint) (
              sum without (reason) (
                increase(%s[1h])
              )
            )
          ||| % m('hfbreaker_circuit_trips_total', 'reason=~"consecutive_failures|failure_rate|slow_calls"'),
        },
        {
          record: 'hfbreaker:probe_auth_failing:replica_share',
          expr: 'avg by (job, endpoint) (increase(%s[5m]) > bool 0)' % m('hfbreaker_probe_failures_total', 'reason="auth"'),
        },
        {
          // Replicas on which the endpoint reported its model loading and answered
          // no probe during _config.modelLoadingStuckWindow.
          record: 'hfbreaker:endpoint_loading_stuck:replica_share',
          expr: |||
            avg by (job, endpoint) (
              (increase(%(loading)s[%(w)s]) > bool 0)
                * on (instance, job, endpoint)
              (increase(%(ok)s[%(w)s]) == bool 0)
            )
          ||| % {
            w: c.modelLoadingStuckWindow,
            loading: m('hfbreaker_probe_failures_total', 'reason="model_loading"'),
            ok: m('hfbreaker_probes_total', 'result="success"'),
          },
        },
      ],
    }],
  },
}
