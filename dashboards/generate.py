#!/usr/bin/env python3
"""Generates the Grafana dashboards in this folder (stdlib only).

    python3 dashboards/generate.py          # write hfbreaker-*.json
    python3 dashboards/generate.py --check  # exit 1 if the committed files differ

Conventions: a `datasource` variable (no hard-coded datasource uid), `job` and
`instance` variables, a stable uid per dashboard, a unit on every panel, and
links between the two dashboards.
"""

import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
SCHEMA_VERSION = 41
DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'job=~"$job",instance=~"$instance"'
EP = SEL + ',endpoint="$endpoint"'

STATE_MAPPING = [
    {"type": "value", "options": {
        "0": {"text": "closed", "color": "green", "index": 0},
        "1": {"text": "half_open", "color": "yellow", "index": 1},
        "2": {"text": "open", "color": "red", "index": 2},
        "3": {"text": "forced_open", "color": "dark-red", "index": 3},
        "4": {"text": "forced_closed", "color": "blue", "index": 4},
    }},
]
LEVEL_MAPPING = [
    {"type": "value", "options": {
        "0": {"text": "primary", "color": "green", "index": 0},
        "-1": {"text": "exhausted", "color": "red", "index": 1},
    }},
    {"type": "range", "options": {"from": 1, "to": 100, "result": {"text": "fallback", "color": "orange", "index": 2}}},
]


def state_code(sel):
    """One series per endpoint: 0 closed, 1 half_open, 2 open, 3 forced_open, 4 forced_closed."""
    terms = [("half_open", 1), ("open", 2), ("forced_open", 3), ("forced_closed", 4)]
    parts = [f'max by (endpoint) (hfbreaker_circuit_state{{{sel},state="{s}"}}) * {n}' for s, n in terms]
    return "\n  + ".join(parts)


class Dash:
    def __init__(self):
        self.panels = []
        self.y = 0
        self.x = 0
        self.row_h = 0

    def row(self, title):
        self.newline()
        self.panels.append({"type": "row", "title": title, "collapsed": False, "panels": [],
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "id": len(self.panels) + 1})
        self.y += 1

    def newline(self):
        if self.x:
            self.y += self.row_h
            self.x = 0
            self.row_h = 0

    def panel(self, kind, title, targets, unit, w=12, h=8, description="", options=None, defaults=None,
              links=None, overrides=None):
        if self.x + w > 24:
            self.newline()
        fdefaults = {"unit": unit}
        fdefaults.update(defaults or {})
        if links:
            fdefaults["links"] = links
        p = {
            "id": len(self.panels) + 1,
            "type": kind,
            "title": title,
            "description": description,
            "datasource": DS,
            "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y},
            "targets": [
                {"refId": chr(65 + i), "datasource": DS, "expr": t[0], "legendFormat": t[1],
                 **({"format": t[2]} if len(t) > 2 else {}), **({"instant": True} if kind in ("stat", "table", "bargauge") else {})}
                for i, t in enumerate(targets)
            ],
            "fieldConfig": {"defaults": fdefaults, "overrides": overrides or []},
            "options": options or {},
        }
        self.panels.append(p)
        self.x += w
        self.row_h = max(self.row_h, h)
        return p


def variables(extra=None):
    def query_var(name, label, query, multi=True):
        return {
            "name": name, "label": label, "type": "query", "datasource": DS,
            "definition": query, "query": {"qryType": 1, "query": query, "refId": f"{name}-var"},
            "refresh": 2, "sort": 1, "includeAll": multi, "multi": multi,
            **({"allValue": ".+"} if multi else {}), "current": {}, "hide": 0, "options": [],
        }
    v = [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
         "current": {}, "hide": 0, "refresh": 1, "options": [], "regex": ""},
        query_var("job", "Job", "label_values(hfbreaker_build_info, job)"),
        query_var("instance", "Instance", 'label_values(hfbreaker_build_info{job=~"$job"}, instance)'),
    ]
    if extra:
        v.append(query_var(*extra, multi=False))
    return {"list": v}


def dashboard(uid, title, description, dash, templating, links):
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["hfbreaker", "huggingface", "circuit-breaker"],
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "time": {"from": "now-3h", "to": "now"},
        "refresh": "30s",
        "timezone": "",
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
            "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard",
        }]},
        "links": links,
        "templating": templating,
        "panels": dash.panels,
    }


ENDPOINT_LINK = [{"title": "Endpoint details: ${__field.labels.endpoint}",
                  "url": "/d/hfbreaker-endpoint/hfbreaker-endpoint?var-endpoint=${__field.labels.endpoint}&${job:queryparam}&${instance:queryparam}&${__url_time_range}"}]


def overview():
    d = Dash()
    d.row("Now")
    d.panel("bargauge", "Endpoints per state", [
        (f"sum by (state) (hfbreaker_circuit_state{{{SEL}}})", "{{state}}"),
    ], "short", w=8, h=7, description="How many endpoints (per replica) are in each breaker state.",
        options={"orientation": "horizontal", "displayMode": "basic", "showUnfilled": True,
                 "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
        defaults={"min": 0, "color": {"mode": "palette-classic"}})
    d.panel("stat", "Route serving level", [
        (f"max by (route) (hfbreaker_route_level{{{SEL}}})", "{{route}}"),
    ], "short", w=8, h=7, description="0 = primary, k = k-th fallback, -1 = exhausted (worst replica shown).",
        defaults={"mappings": LEVEL_MAPPING, "color": {"mode": "thresholds"},
                  "thresholds": {"mode": "absolute", "steps": [{"color": "red", "value": None}, {"color": "green", "value": 0}, {"color": "orange", "value": 1}]}},
        options={"colorMode": "background", "graphMode": "none", "textMode": "value_and_name",
                 "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}})
    d.panel("stat", "Config reload", [
        (f"min(hfbreaker_config_last_reload_successful{{{SEL}}})", "last reload"),
        (f"count(hfbreaker_build_info{{{SEL}}})", "replicas up"),
    ], "short", w=8, h=7, description="Whether every replica's last config load succeeded, and how many replicas report.",
        defaults={"mappings": [{"type": "value", "options": {"0": {"text": "FAILED", "color": "red"}}}],
                  "color": {"mode": "thresholds"},
                  "thresholds": {"mode": "absolute", "steps": [{"color": "green", "value": None}]}},
        options={"colorMode": "value", "graphMode": "none", "textMode": "value_and_name",
                 "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}})

    d.row("Breakers")
    d.panel("state-timeline", "Breaker state per endpoint", [
        (state_code(SEL), "{{endpoint}}"),
    ], "short", w=24, h=9, description="State history of every breaker (worst replica).",
        defaults={"mappings": STATE_MAPPING, "color": {"mode": "thresholds"},
                  "thresholds": {"mode": "absolute", "steps": [{"color": "green", "value": None}]}, "links": ENDPOINT_LINK},
        options={"mergeValues": True, "showValue": "never", "rowHeight": 0.8, "alignValue": "left"})
    d.panel("timeseries", "Trips per hour by reason", [
        (f"sum by (reason) (increase(hfbreaker_circuit_trips_total{{{SEL}}}[1h]))", "{{reason}}"),
    ], "short", description="Entries into open (and forced_open, reason manual) over the last hour.",
        defaults={"custom": {"drawStyle": "bars", "fillOpacity": 60, "stacking": {"mode": "normal", "group": "A"}}, "min": 0})
    d.panel("timeseries", "Failure reasons", [
        (f"sum by (reason) (rate(hfbreaker_probe_failures_total{{{SEL}}}[$__rate_interval]))", "{{reason}}"),
    ], "ops", description="Unsuccessful probes per second by reason, ignored reasons (auth, client_error, scaled_to_zero, paused) included.",
        defaults={"custom": {"fillOpacity": 40, "stacking": {"mode": "normal", "group": "A"}}, "min": 0})

    d.row("Routes")
    d.panel("timeseries", "Route level", [
        (f"max by (route) (hfbreaker_route_level{{{SEL}}})", "{{route}}"),
    ], "short", description="0 primary, k the k-th fallback, -1 exhausted.",
        defaults={"custom": {"lineInterpolation": "stepAfter"}, "mappings": LEVEL_MAPPING, "decimals": 0})
    d.panel("timeseries", "Fallback ratio (share of time not on the primary)", [
        (f'sum by (route) (rate(hfbreaker_route_level_seconds_total{{{SEL},tier!="primary"}}[$__rate_interval]))\n  /\nsum by (route) (rate(hfbreaker_route_level_seconds_total{{{SEL}}}[$__rate_interval]))', "{{route}}"),
    ], "percentunit", description="Time share each route spent on a fallback or exhausted.",
        defaults={"min": 0, "max": 1})

    d.row("Gateway")
    d.panel("timeseries", "Gateway requests by tier", [
        (f"sum by (route, tier) (rate(hfbreaker_gateway_requests_total{{{SEL}}}[$__rate_interval]))", "{{route}} {{tier}}"),
    ], "reqps", w=8, description="Requests per second answered by the gateway, by the tier that answered (cache: an earlier answer, when no endpoint could; exhausted: nobody could).",
        defaults={"custom": {"fillOpacity": 30, "stacking": {"mode": "normal", "group": "A"}}, "min": 0})
    d.panel("timeseries", "Failovers and 503s", [
        (f"sum by (route, from, to) (rate(hfbreaker_gateway_failovers_total{{{SEL}}}[$__rate_interval]))", "{{route}} {{from}} → {{to}}"),
        (f'sum by (route) (rate(hfbreaker_gateway_requests_total{{{SEL},tier="exhausted",code="503"}}[$__rate_interval]))', "{{route}} 503 exhausted"),
    ], "reqps", w=8, description="Requests retried on a later endpoint after a failed attempt, and requests answered 503 because no endpoint of the route admitted traffic.",
        defaults={"min": 0})
    d.panel("timeseries", "Fallback ratio (share of requests not on the primary)", [
        (f'sum by (route) (rate(hfbreaker_gateway_requests_total{{{SEL},tier!="primary"}}[$__rate_interval]))\n  /\nsum by (route) (rate(hfbreaker_gateway_requests_total{{{SEL}}}[$__rate_interval]))', "{{route}}"),
    ], "percentunit", w=8, description="Request-weighted: share of gateway requests answered by a fallback, from the cache or not at all (exhausted).",
        defaults={"min": 0, "max": 1})
    d.panel("timeseries", "Time to first token", [
        (f"histogram_quantile(0.5, sum by (route, le) (rate(hfbreaker_gateway_time_to_first_token_seconds_bucket{{{SEL}}}[$__rate_interval])))", "{{route}} p50"),
        (f"histogram_quantile(0.99, sum by (route, le) (rate(hfbreaker_gateway_time_to_first_token_seconds_bucket{{{SEL}}}[$__rate_interval])))", "{{route}} p99"),
    ], "s", w=8, description="From a streaming request to its first chunk, failovers included.",
        defaults={"min": 0})
    d.panel("timeseries", "Error ratio (5xx answers)", [
        (f'sum by (route) (rate(hfbreaker_gateway_requests_total{{{SEL},code=~"5.."}}[$__rate_interval]))\n  /\nsum by (route) (rate(hfbreaker_gateway_requests_total{{{SEL}}}[$__rate_interval]))', "{{route}}"),
    ], "percentunit", w=8, description="Share of gateway requests answered with a server error, as clients see them; the burn-rate alerts compare it with the availability objective.",
        defaults={"min": 0, "max": 1})
    d.panel("timeseries", "Cache hits", [
        (f"sum by (route) (rate(hfbreaker_gateway_cache_hits_total{{{SEL}}}[$__rate_interval]))", "{{route}}"),
    ], "reqps", w=8, description="Gateway requests answered from the route's cache (routes[].cache) because no endpoint of the chain could answer.",
        defaults={"min": 0})

    d.row("Probes")
    d.panel("timeseries", "Probe success ratio", [
        (f'sum by (endpoint) (rate(hfbreaker_probes_total{{{SEL},result="success"}}[$__rate_interval]))\n  /\nsum by (endpoint) (rate(hfbreaker_probes_total{{{SEL},result=~"success|failure"}}[$__rate_interval]))', "{{endpoint}}"),
    ], "percentunit", description="Successful share of sent probes (ignored and rejected excluded).",
        defaults={"min": 0, "max": 1, "links": ENDPOINT_LINK})
    d.panel("timeseries", "Probe latency", [
        (f"histogram_quantile(0.5, sum by (le) (rate(hfbreaker_probe_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))", "p50 all"),
        (f"histogram_quantile(0.99, sum by (le) (rate(hfbreaker_probe_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))", "p99 all"),
        (f"histogram_quantile(0.9, sum by (endpoint, le) (rate(hfbreaker_probe_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))", "p90 {{endpoint}}"),
    ], "s", description="Quantiles of probe duration from the histogram.", defaults={"min": 0, "links": ENDPOINT_LINK})
    d.panel("timeseries", "Probes by result", [
        (f"sum by (result) (rate(hfbreaker_probes_total{{{SEL}}}[$__rate_interval]))", "{{result}}"),
    ], "ops", description="Scheduled probes per second; rejected ones were not sent because the circuit was open.",
        defaults={"custom": {"fillOpacity": 30, "stacking": {"mode": "normal", "group": "A"}}, "min": 0})
    d.panel("timeseries", "Endpoints loading a model", [
        (f"max by (endpoint) (hfbreaker_endpoint_loading_estimated_seconds{{{SEL}}})", "{{endpoint}} estimate"),
        (f'sum by (endpoint) (rate(hfbreaker_probe_failures_total{{{SEL},reason="model_loading"}}[$__rate_interval])) > 0', "{{endpoint}} loading probes/s"),
    ], "s", description="Seconds until the model is loaded as the server last said, and endpoints answering 'model loading'.",
        defaults={"min": 0, "links": ENDPOINT_LINK},
        overrides=[{"matcher": {"id": "byRegexp", "options": ".*probes/s"}, "properties": [{"id": "unit", "value": "ops"}]}])

    d.row("hfbreaker")
    d.panel("table", "Build info", [
        (f"hfbreaker_build_info{{{SEL}}}", "", "table"),
    ], "short", w=12, h=6, description="Version and revision of every replica.",
        options={"showHeader": True},
        overrides=[],
        defaults={"custom": {"align": "auto"}})
    d.panel("timeseries", "Process CPU and memory", [
        (f"rate(process_cpu_seconds_total{{{SEL}}}[$__rate_interval])", "{{instance}} CPU"),
        (f"process_resident_memory_bytes{{{SEL}}}", "{{instance}} RSS"),
    ], "percentunit", w=12, h=6, description="CPU share of one core, and resident memory.",
        overrides=[{"matcher": {"id": "byRegexp", "options": ".*RSS"}, "properties": [{"id": "unit", "value": "bytes"}, {"id": "custom.axisPlacement", "value": "right"}]}])
    links = [{"title": "Endpoint details", "type": "link", "icon": "dashboard", "targetBlank": False,
              "url": "/d/hfbreaker-endpoint/hfbreaker-endpoint?${job:queryparam}&${instance:queryparam}&${__url_time_range}"}]
    return dashboard("hfbreaker-overview", "hfbreaker / Overview",
                     "Circuit breakers, routes and probes of Hugging Face inference endpoints.", d, variables(), links)


def endpoint():
    d = Dash()
    d.row("State")
    d.panel("state-timeline", "State history", [
        (state_code(EP), "{{endpoint}}"),
    ], "short", w=24, h=5, description="Breaker state of $endpoint.",
        defaults={"mappings": STATE_MAPPING, "color": {"mode": "thresholds"},
                  "thresholds": {"mode": "absolute", "steps": [{"color": "green", "value": None}]}},
        options={"mergeValues": True, "showValue": "auto", "rowHeight": 0.9})
    d.panel("timeseries", "Transitions", [
        (f"sum by (from, to) (increase(hfbreaker_circuit_transitions_total{{{EP}}}[$__rate_interval]))", "{{from}} → {{to}}"),
    ], "short", w=12, description="Breaker state transitions.",
        defaults={"custom": {"drawStyle": "bars", "fillOpacity": 60}, "min": 0, "decimals": 0})
    d.panel("timeseries", "Open period (backoff)", [
        (f"max(hfbreaker_circuit_open_duration_seconds{{{EP}}})", "open period"),
    ], "s", w=12, description="Length of the current or last open period; doubles per failed trial up to max_open_duration.",
        defaults={"min": 0, "custom": {"lineInterpolation": "stepAfter"}})
    d.row("Against the thresholds")
    d.panel("timeseries", "Consecutive failures", [
        (f"max(hfbreaker_circuit_consecutive_failures{{{EP}}})", "consecutive failures"),
        (f"max(hfbreaker_circuit_failure_threshold{{{EP}}})", "failure_threshold"),
    ], "short", w=12, description="Failures in a row against the configured threshold.",
        defaults={"min": 0, "decimals": 0, "custom": {"lineInterpolation": "stepAfter"}},
        overrides=[{"matcher": {"id": "byName", "options": "failure_threshold"}, "properties": [
            {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}}, {"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}}]}])
    d.panel("timeseries", "Failure ratio", [
        (f"max(hfbreaker_circuit_failure_ratio{{{EP}}})", "failure ratio (window)"),
        (f"max(hfbreaker_circuit_failure_rate_threshold{{{EP}}})", "failure_rate_threshold"),
    ], "percentunit", w=12, description="Failed share of the breaker window against the configured threshold.",
        defaults={"min": 0, "max": 1},
        overrides=[{"matcher": {"id": "byName", "options": "failure_rate_threshold"}, "properties": [
            {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}}, {"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}}]}])
    dashed = [{"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}}]
    d.panel("timeseries", "Probe latency against the slow-call threshold", [
        (f"histogram_quantile(0.5, sum by (le) (rate(hfbreaker_probe_duration_seconds_bucket{{{EP}}}[$__rate_interval])))", "p50"),
        (f"histogram_quantile(0.9, sum by (le) (rate(hfbreaker_probe_duration_seconds_bucket{{{EP}}}[$__rate_interval])))", "p90"),
        (f"max(hfbreaker_circuit_slow_call_duration_seconds{{{EP}}})", "slow-call threshold"),
        (f"max(hfbreaker_endpoint_latency_baseline_seconds{{{EP}}})", "baseline"),
    ], "s", w=24, description="Probe latency quantiles against the slow-call threshold in force (with slow_call_duration: auto, factor × the learned baseline once warmed up) and the learned baseline of successful probes while closed. Successes above the threshold are slow calls; slow_call_rate_threshold of them in the window trips (reason slow_calls).",
        defaults={"min": 0, "custom": {"scaleDistribution": {"type": "log", "log": 10}}},
        overrides=[
            {"matcher": {"id": "byName", "options": "slow-call threshold"}, "properties": dashed + [
                {"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}},
                {"id": "custom.lineInterpolation", "value": "stepAfter"}]},
            {"matcher": {"id": "byName", "options": "baseline"}, "properties": dashed + [
                {"id": "color", "value": {"mode": "fixed", "fixedColor": "blue"}},
                {"id": "custom.lineInterpolation", "value": "stepAfter"}]}])
    d.row("Probes")
    d.panel("heatmap", "Probe latency", [
        (f"sum by (le) (increase(hfbreaker_probe_duration_seconds_bucket{{{EP}}}[$__rate_interval]))", "{{le}}", "heatmap"),
    ], "s", w=12, description="Distribution of probe durations.",
        options={"calculate": False, "yAxis": {"unit": "s"}, "cellGap": 1, "color": {"mode": "scheme", "scheme": "Oranges"}})
    d.panel("timeseries", "HTTP status code", [
        (f"max by (instance) (hfbreaker_probe_http_status_code{{{EP}}})", "{{instance}}"),
    ], "none", w=12, description="Status of the last probe; 0 when no answer (timeout, connect error).",
        defaults={"decimals": 0, "custom": {"drawStyle": "points", "pointSize": 6}})
    d.panel("bargauge", "Failure reasons (time range)", [
        (f"sum by (reason) (increase(hfbreaker_probe_failures_total{{{EP}}}[$__range]))", "{{reason}}"),
    ], "short", w=8, description="Unsuccessful probes by reason over the selected time range.",
        options={"orientation": "horizontal", "displayMode": "basic",
                 "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
        defaults={"min": 0, "decimals": 0})
    d.panel("timeseries", "Probes by result", [
        (f"sum by (result) (rate(hfbreaker_probes_total{{{EP}}}[$__rate_interval]))", "{{result}}"),
    ], "ops", w=8, description="success, failure, ignored, rejected (not sent: open).",
        defaults={"custom": {"fillOpacity": 30, "stacking": {"mode": "normal", "group": "A"}}, "min": 0})
    d.panel("timeseries", "Model loading estimate", [
        (f"max(hfbreaker_endpoint_loading_estimated_seconds{{{EP}}})", "estimated seconds"),
    ], "s", w=8, description="Seconds until the model is loaded, as the server last said.", defaults={"min": 0})
    d.panel("table", "Endpoint", [
        (f"hfbreaker_endpoint_info{{{EP}}}", "", "table"),
        (f"hfbreaker_route_endpoint_info{{{EP}}}", "", "table"),
    ], "short", w=24, h=6, description="Kind, probe, host and model; the routes it belongs to and its position (0 = primary).",
        options={"showHeader": True})
    links = [{"title": "Overview", "type": "link", "icon": "dashboard", "targetBlank": False,
              "url": "/d/hfbreaker-overview/hfbreaker-overview?${job:queryparam}&${instance:queryparam}&${__url_time_range}"}]
    return dashboard("hfbreaker-endpoint", "hfbreaker / Endpoint",
                     "One endpoint's breaker, against its thresholds, and its probes.", d,
                     variables(("endpoint", "Endpoint", 'label_values(hfbreaker_endpoint_info{job=~"$job"}, endpoint)')), links)


def main():
    files = {"hfbreaker-overview.json": overview(), "hfbreaker-endpoint.json": endpoint()}
    check = "--check" in sys.argv
    stale = []
    for name, d in files.items():
        text = json.dumps(d, indent=2, ensure_ascii=False) + "\n"
        path = HERE / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print("out of date, run python3 dashboards/generate.py:", ", ".join(stale))
        sys.exit(1)


if __name__ == "__main__":
    main()
