// The hfbreaker monitoring mixin: recording rules, alerts and Grafana
// dashboards for hfbreaker, customisable through _config (config.libsonnet).
//
//   prometheusRules    recording rules, {groups: [...]}
//   prometheusAlerts   alerting rules, {groups: [...]}
//   grafanaDashboards  dashboards keyed by file name
//
// scripts/mixin renders it into alerts/hfbreaker.rules.yml, dashboards/*.json
// and deploy/kubernetes/generated/.
(import 'config.libsonnet') +
(import 'rules.libsonnet') +
(import 'alerts.libsonnet') +
(import 'dashboards.libsonnet') +
{
  assert self._config.hfbreakerSelector != '' : '_config.hfbreakerSelector must not be empty (HfBreakerDown applies it to up)',
}
