// The Grafana dashboards, keyed by file name. Conventions: a `datasource`
// variable (no hard-coded datasource uid), `job` and `instance` variables, a
// stable uid per dashboard, a unit on every panel, and links between the two.
local g = import 'lib/grafana.libsonnet';
local u = import 'lib/util.libsonnet';

local t = g.target;
local panel = g.panel;
local row = g.row;

// Every panel's selector, with the dashboard variables.
local SEL = 'job=~"$job",instance=~"$instance"';
local EP = SEL + ',endpoint="$endpoint"';
// Expressions are written with <sel> where the selector goes.
local q(e, sel=SEL) = std.strReplace(e, '<sel>', sel);

local stateMapping = [
  { type: 'value', options: {
    '0': { text: 'closed', color: 'green', index: 0 },
    '1': { text: 'half_open', color: 'yellow', index: 1 },
    '2': { text: 'open', color: 'red', index: 2 },
    '3': { text: 'forced_open', color: 'dark-red', index: 3 },
    '4': { text: 'forced_closed', color: 'blue', index: 4 },
  } },
];
local levelMapping = [
  { type: 'value', options: {
    '0': { text: 'primary', color: 'green', index: 0 },
    '-1': { text: 'exhausted', color: 'red', index: 1 },
  } },
  { type: 'range', options: { from: 1, to: 100, result: { text: 'fallback', color: 'orange', index: 2 } } },
];

// One series per endpoint: 0 closed, 1 half_open, 2 open, 3 forced_open, 4 forced_closed.
local stateCode(sel) = std.join('\n  + ', [
  'max by (endpoint) (hfbreaker_circuit_state{%s,state="%s"}) * %d' % [sel, s[0], s[1]]
  for s in [['half_open', 1], ['open', 2], ['forced_open', 3], ['forced_closed', 4]]
]);

local lastNotNull = { calcs: ['lastNotNull'], fields: '', values: false };
local stacked = { fillOpacity: 30, stacking: { mode: 'normal', group: 'A' } };
local dashed = [{ id: 'custom.lineStyle', value: { fill: 'dash', dash: [10, 10] } }];
local fixedColor(c) = { id: 'color', value: { mode: 'fixed', fixedColor: c } };

{
  grafanaDashboards+:: {
    local c = $._config,
    local ov = c.dashboardUIDs.overview,
    local ep = c.dashboardUIDs.endpoint,
    local endpointLink = [{
      title: 'Endpoint details: ${__field.labels.endpoint}',
      url: '/d/%s/%s?var-endpoint=${__field.labels.endpoint}&${job:queryparam}&${instance:queryparam}&${__url_time_range}' % [ep, ep],
    }],
    local variables(extra=[]) = [
      g.datasourceVar,
      g.queryVar('job', 'Job', 'label_values(hfbreaker_build_info{%s}, job)' % c.hfbreakerSelector),
      g.queryVar('instance', 'Instance', 'label_values(hfbreaker_build_info{job=~"$job"}, instance)'),
    ] + extra,
    local linkTo(title, uid) = [{
      title: title,
      type: 'link',
      icon: 'dashboard',
      targetBlank: false,
      url: '/d/%s/%s?${job:queryparam}&${instance:queryparam}&${__url_time_range}' % [uid, uid],
    }],

    'hfbreaker-overview.json': g.dashboard(c, ov, 'hfbreaker / Overview', 'Circuit breakers, routes and probes of Hugging Face inference endpoints.', [
      row('Now'),
      panel('bargauge', 'Endpoints per state', [
        t(q('sum by (state) (hfbreaker_circuit_state{<sel>})'), '{{state}}'),
      ], 'short', w=8, h=7, description='How many endpoints (per replica) are in each breaker state.',
            options={ orientation: 'horizontal', displayMode: 'basic', showUnfilled: true, reduceOptions: lastNotNull },
            defaults={ min: 0, color: { mode: 'palette-classic' } }),
      panel('stat', 'Route serving level', [
        t(q('max by (route) (hfbreaker_route_level{<sel>})'), '{{route}}'),
      ], 'short', w=8, h=7, description='0 = primary, k = k-th fallback, -1 = exhausted (worst replica shown).',
            defaults={
              mappings: levelMapping,
              color: { mode: 'thresholds' },
              thresholds: { mode: 'absolute', steps: [{ color: 'red', value: null }, { color: 'green', value: 0 }, { color: 'orange', value: 1 }] },
            },
            options={ colorMode: 'background', graphMode: 'none', textMode: 'value_and_name', reduceOptions: lastNotNull }),
      panel('stat', 'Config reload', [
        t(q('min(hfbreaker_config_last_reload_successful{<sel>})'), 'last reload'),
        t(q('count(hfbreaker_build_info{<sel>})'), 'replicas up'),
      ], 'short', w=8, h=7, description="Whether every replica's last config load succeeded, and how many replicas report.",
            defaults={
              mappings: [{ type: 'value', options: { '0': { text: 'FAILED', color: 'red' } } }],
              color: { mode: 'thresholds' },
              thresholds: { mode: 'absolute', steps: [{ color: 'green', value: null }] },
            },
            options={ colorMode: 'value', graphMode: 'none', textMode: 'value_and_name', reduceOptions: lastNotNull }),

      row('Breakers'),
      panel('state-timeline', 'Breaker state per endpoint', [
        t(stateCode(SEL), '{{endpoint}}'),
      ], 'short', w=24, h=9, description='State history of every breaker (worst replica).',
            defaults={
              mappings: stateMapping,
              color: { mode: 'thresholds' },
              thresholds: { mode: 'absolute', steps: [{ color: 'green', value: null }] },
              links: endpointLink,
            },
            options={ mergeValues: true, showValue: 'never', rowHeight: 0.8, alignValue: 'left' }),
      panel('timeseries', 'Trips per hour by reason', [
        t(q('sum by (reason) (increase(hfbreaker_circuit_trips_total{<sel>}[1h]))'), '{{reason}}'),
      ], 'short', description='Entries into open (and forced_open, reason manual) over the last hour.',
            defaults={ custom: { drawStyle: 'bars', fillOpacity: 60, stacking: { mode: 'normal', group: 'A' } }, min: 0 }),
      panel('timeseries', 'Failure reasons', [
        t(q('sum by (reason) (rate(hfbreaker_probe_failures_total{<sel>}[$__rate_interval]))'), '{{reason}}'),
      ], 'ops', description='Unsuccessful probes per second by reason, ignored reasons (auth, client_error, scaled_to_zero, paused) included.',
            defaults={ custom: { fillOpacity: 40, stacking: { mode: 'normal', group: 'A' } }, min: 0 }),

      row('Routes'),
      panel('timeseries', 'Route level', [
        t(q('max by (route) (hfbreaker_route_level{<sel>})'), '{{route}}'),
      ], 'short', description='0 primary, k the k-th fallback, -1 exhausted.',
            defaults={ custom: { lineInterpolation: 'stepAfter' }, mappings: levelMapping, decimals: 0 }),
      panel('timeseries', 'Fallback ratio (share of time not on the primary)', [
        t(q('sum by (route) (rate(hfbreaker_route_level_seconds_total{<sel>,tier!="primary"}[$__rate_interval]))\n  /\nsum by (route) (rate(hfbreaker_route_level_seconds_total{<sel>}[$__rate_interval]))'), '{{route}}'),
      ], 'percentunit', description='Time share each route spent on a fallback or exhausted.',
            defaults={ min: 0, max: 1 }),

      row('Gateway'),
      panel('timeseries', 'Gateway requests by tier', [
        t(q('sum by (route, tier) (rate(hfbreaker_gateway_requests_total{<sel>}[$__rate_interval]))'), '{{route}} {{tier}}'),
      ], 'reqps', w=8, description='Requests per second answered by the gateway, by the tier that answered (cache: an earlier answer, when no endpoint could; exhausted: nobody could).',
            defaults={ custom: stacked, min: 0 }),
      panel('timeseries', 'Failovers and 503s', [
        t(q('sum by (route, from, to) (rate(hfbreaker_gateway_failovers_total{<sel>}[$__rate_interval]))'), '{{route}} {{from}} → {{to}}'),
        t(q('sum by (route) (rate(hfbreaker_gateway_requests_total{<sel>,tier="exhausted",code="503"}[$__rate_interval]))'), '{{route}} 503 exhausted'),
      ], 'reqps', w=8, description='Requests retried on a later endpoint after a failed attempt, and requests answered 503 because no endpoint of the route admitted traffic.',
            defaults={ min: 0 }),
      panel('timeseries', 'Fallback ratio (share of requests not on the primary)', [
        t(q('sum by (route) (rate(hfbreaker_gateway_requests_total{<sel>,tier!="primary"}[$__rate_interval]))\n  /\nsum by (route) (rate(hfbreaker_gateway_requests_total{<sel>}[$__rate_interval]))'), '{{route}}'),
      ], 'percentunit', w=8, description='Request-weighted: share of gateway requests answered by a fallback, from the cache or not at all (exhausted).',
            defaults={ min: 0, max: 1 }),
      panel('timeseries', 'Time to first token', [
        t(q('histogram_quantile(0.5, sum by (route, le) (rate(hfbreaker_gateway_time_to_first_token_seconds_bucket{<sel>}[$__rate_interval])))'), '{{route}} p50'),
        t(q('histogram_quantile(0.99, sum by (route, le) (rate(hfbreaker_gateway_time_to_first_token_seconds_bucket{<sel>}[$__rate_interval])))'), '{{route}} p99'),
      ], 's', w=8, description='From a streaming request to its first chunk, failovers included.',
            defaults={ min: 0 }),
      panel('timeseries', 'Error ratio (5xx answers)', [
        t(q('sum by (route) (rate(hfbreaker_gateway_requests_total{<sel>,code=~"5.."}[$__rate_interval]))\n  /\nsum by (route) (rate(hfbreaker_gateway_requests_total{<sel>}[$__rate_interval]))'), '{{route}}'),
      ], 'percentunit', w=8, description='Share of gateway requests answered with a server error, as clients see them; the burn-rate alerts compare it with the availability objective.',
            defaults={ min: 0, max: 1 }),
      panel('timeseries', 'Cache hits', [
        t(q('sum by (route) (rate(hfbreaker_gateway_cache_hits_total{<sel>}[$__rate_interval]))'), '{{route}}'),
      ], 'reqps', w=8, description="Gateway requests answered from the route's cache (routes[].cache) because no endpoint of the chain could answer.",
            defaults={ min: 0 }),

      row('Probes'),
      panel('timeseries', 'Probe success ratio', [
        t(q('sum by (endpoint) (rate(hfbreaker_probes_total{<sel>,result="success"}[$__rate_interval]))\n  /\nsum by (endpoint) (rate(hfbreaker_probes_total{<sel>,result=~"success|failure"}[$__rate_interval]))'), '{{endpoint}}'),
      ], 'percentunit', description='Successful share of sent probes (ignored and rejected excluded).',
            defaults={ min: 0, max: 1, links: endpointLink }),
      panel('timeseries', 'Probe latency', [
        t(q('histogram_quantile(0.5, sum by (le) (rate(hfbreaker_probe_duration_seconds_bucket{<sel>}[$__rate_interval])))'), 'p50 all'),
        t(q('histogram_quantile(0.99, sum by (le) (rate(hfbreaker_probe_duration_seconds_bucket{<sel>}[$__rate_interval])))'), 'p99 all'),
        t(q('histogram_quantile(0.9, sum by (endpoint, le) (rate(hfbreaker_probe_duration_seconds_bucket{<sel>}[$__rate_interval])))'), 'p90 {{endpoint}}'),
      ], 's', description='Quantiles of probe duration from the histogram.', defaults={ min: 0, links: endpointLink }),
      panel('timeseries', 'Probes by result', [
        t(q('sum by (result) (rate(hfbreaker_probes_total{<sel>}[$__rate_interval]))'), '{{result}}'),
      ], 'ops', description='Scheduled probes per second; rejected ones were not sent because the circuit was open.',
            defaults={ custom: stacked, min: 0 }),
      panel('timeseries', 'Endpoints loading a model', [
        t(q('max by (endpoint) (hfbreaker_endpoint_loading_estimated_seconds{<sel>})'), '{{endpoint}} estimate'),
        t(q('sum by (endpoint) (rate(hfbreaker_probe_failures_total{<sel>,reason="model_loading"}[$__rate_interval])) > 0'), '{{endpoint}} loading probes/s'),
      ], 's', description="Seconds until the model is loaded as the server last said, and endpoints answering 'model loading'.",
            defaults={ min: 0, links: endpointLink },
            overrides=[{ matcher: { id: 'byRegexp', options: '.*probes/s' }, properties: [{ id: 'unit', value: 'ops' }] }]),

      row('hfbreaker'),
      panel('table', 'Build info', [
        t(q('hfbreaker_build_info{<sel>}'), '', 'table'),
      ], 'short', w=12, h=6, description='Version and revision of every replica.',
            options={ showHeader: true },
            defaults={ custom: { align: 'auto' } }),
      panel('timeseries', 'Process CPU and memory', [
        t(q('rate(process_cpu_seconds_total{<sel>}[$__rate_interval])'), '{{instance}} CPU'),
        t(q('process_resident_memory_bytes{<sel>}'), '{{instance}} RSS'),
      ], 'percentunit', w=12, h=6, description='CPU share of one core, and resident memory.',
            overrides=[{ matcher: { id: 'byRegexp', options: '.*RSS' }, properties: [{ id: 'unit', value: 'bytes' }, { id: 'custom.axisPlacement', value: 'right' }] }]),
    ], variables(), linkTo('Endpoint details', ep)),

    'hfbreaker-endpoint.json': g.dashboard(c, ep, 'hfbreaker / Endpoint', "One endpoint's breaker, against its thresholds, and its probes.", [
      row('State'),
      panel('state-timeline', 'State history', [
        t(stateCode(EP), '{{endpoint}}'),
      ], 'short', w=24, h=5, description='Breaker state of $endpoint.',
            defaults={
              mappings: stateMapping,
              color: { mode: 'thresholds' },
              thresholds: { mode: 'absolute', steps: [{ color: 'green', value: null }] },
            },
            options={ mergeValues: true, showValue: 'auto', rowHeight: 0.9 }),
      panel('timeseries', 'Transitions', [
        t(q('sum by (from, to) (increase(hfbreaker_circuit_transitions_total{<sel>}[$__rate_interval]))', EP), '{{from}} → {{to}}'),
      ], 'short', w=12, description='Breaker state transitions.',
            defaults={ custom: { drawStyle: 'bars', fillOpacity: 60 }, min: 0, decimals: 0 }),
      panel('timeseries', 'Open period (backoff)', [
        t(q('max(hfbreaker_circuit_open_duration_seconds{<sel>})', EP), 'open period'),
      ], 's', w=12, description='Length of the current or last open period; doubles per failed trial up to max_open_duration.',
            defaults={ min: 0, custom: { lineInterpolation: 'stepAfter' } }),

      row('Against the thresholds'),
      panel('timeseries', 'Consecutive failures', [
        t(q('max(hfbreaker_circuit_consecutive_failures{<sel>})', EP), 'consecutive failures'),
        t(q('max(hfbreaker_circuit_failure_threshold{<sel>})', EP), 'failure_threshold'),
      ], 'short', w=12, description='Failures in a row against the configured threshold.',
            defaults={ min: 0, decimals: 0, custom: { lineInterpolation: 'stepAfter' } },
            overrides=[{ matcher: { id: 'byName', options: 'failure_threshold' }, properties: dashed + [fixedColor('red')] }]),
      panel('timeseries', 'Failure ratio', [
        t(q('max(hfbreaker_circuit_failure_ratio{<sel>})', EP), 'failure ratio (window)'),
        t(q('max(hfbreaker_circuit_failure_rate_threshold{<sel>})', EP), 'failure_rate_threshold'),
      ], 'percentunit', w=12, description='Failed share of the breaker window against the configured threshold.',
            defaults={ min: 0, max: 1 },
            overrides=[{ matcher: { id: 'byName', options: 'failure_rate_threshold' }, properties: dashed + [fixedColor('red')] }]),
      panel('timeseries', 'Probe latency against the slow-call threshold', [
        t(q('histogram_quantile(0.5, sum by (le) (rate(hfbreaker_probe_duration_seconds_bucket{<sel>}[$__rate_interval])))', EP), 'p50'),
        t(q('histogram_quantile(0.9, sum by (le) (rate(hfbreaker_probe_duration_seconds_bucket{<sel>}[$__rate_interval])))', EP), 'p90'),
        t(q('max(hfbreaker_circuit_slow_call_duration_seconds{<sel>})', EP), 'slow-call threshold'),
        t(q('max(hfbreaker_endpoint_latency_baseline_seconds{<sel>})', EP), 'baseline'),
      ], 's', w=24, description='Probe latency quantiles against the slow-call threshold in force (with slow_call_duration: auto, factor × the learned baseline once warmed up) and the learned baseline of successful probes while closed. Successes above the threshold are slow calls; slow_call_rate_threshold of them in the window trips (reason slow_calls).',
            defaults={ min: 0, custom: { scaleDistribution: { type: 'log', log: 10 } } },
            overrides=[
              { matcher: { id: 'byName', options: 'slow-call threshold' }, properties: dashed + [
                fixedColor('red'),
                { id: 'custom.lineInterpolation', value: 'stepAfter' },
              ] },
              { matcher: { id: 'byName', options: 'baseline' }, properties: dashed + [
                fixedColor('blue'),
                { id: 'custom.lineInterpolation', value: 'stepAfter' },
              ] },
            ]),

      row('Probes'),
      panel('heatmap', 'Probe latency', [
        t(q('sum by (le) (increase(hfbreaker_probe_duration_seconds_bucket{<sel>}[$__rate_interval]))', EP), '{{le}}', 'heatmap'),
      ], 's', w=12, description='Distribution of probe durations.',
            options={ calculate: false, yAxis: { unit: 's' }, cellGap: 1, color: { mode: 'scheme', scheme: 'Oranges' } }),
      panel('timeseries', 'HTTP status code', [
        t(q('max by (instance) (hfbreaker_probe_http_status_code{<sel>})', EP), '{{instance}}'),
      ], 'none', w=12, description='Status of the last probe; 0 when no answer (timeout, connect error).',
            defaults={ decimals: 0, custom: { drawStyle: 'points', pointSize: 6 } }),
      panel('bargauge', 'Failure reasons (time range)', [
        t(q('sum by (reason) (increase(hfbreaker_probe_failures_total{<sel>}[$__range]))', EP), '{{reason}}'),
      ], 'short', w=8, description='Unsuccessful probes by reason over the selected time range.',
            options={ orientation: 'horizontal', displayMode: 'basic', reduceOptions: lastNotNull },
            defaults={ min: 0, decimals: 0 }),
      panel('timeseries', 'Probes by result', [
        t(q('sum by (result) (rate(hfbreaker_probes_total{<sel>}[$__rate_interval]))', EP), '{{result}}'),
      ], 'ops', w=8, description='success, failure, ignored, rejected (not sent: open).',
            defaults={ custom: stacked, min: 0 }),
      panel('timeseries', 'Model loading estimate', [
        t(q('max(hfbreaker_endpoint_loading_estimated_seconds{<sel>})', EP), 'estimated seconds'),
      ], 's', w=8, description='Seconds until the model is loaded, as the server last said.', defaults={ min: 0 }),
      panel('table', 'Endpoint', [
        t(q('hfbreaker_endpoint_info{<sel>}', EP), '', 'table'),
        t(q('hfbreaker_route_endpoint_info{<sel>}', EP), '', 'table'),
      ], 'short', w=24, h=6, description='Kind, probe, host and model; the routes it belongs to and its position (0 = primary).',
            options={ showHeader: true }),
    ], variables([g.queryVar('endpoint', 'Endpoint', 'label_values(hfbreaker_endpoint_info{job=~"$job"}, endpoint)', multi=false)]), linkTo('Overview', ov)),
  },
}
