// Every file scripts/mixin writes, keyed by its path in the repository:
//   jsonnet -J mixin -S -m <dir> mixin/generate.jsonnet
local mixin = import 'mixin.libsonnet';
local files = import 'lib/files.libsonnet';
local u = import 'lib/util.libsonnet';

local labels = { 'app.kubernetes.io/name': 'hfbreaker', 'app.kubernetes.io/component': 'monitoring' };
// Each dashboard's JSON, rendered once (object fields are evaluated once).
local dashboards = { [name]: files.dashboardFile(mixin, name) for name in std.objectFields(mixin.grafanaDashboards) };
local k8sYaml(objects) =
  files.header('mixin/ (mixin/generate.jsonnet)')
  + std.join('---\n', [u.manifestYaml(o, files.yamlOrder) for o in objects]);

{
  'alerts/hfbreaker.rules.yml': files.rulesFile(mixin),
} + {
  ['dashboards/' + name]: dashboards[name]
  for name in std.objectFields(mixin.grafanaDashboards)
} + {
  // The same rules for the Prometheus Operator.
  'deploy/kubernetes/generated/prometheusrule.yaml': k8sYaml([{
    apiVersion: 'monitoring.coreos.com/v1',
    kind: 'PrometheusRule',
    metadata: { name: 'hfbreaker', labels: labels },
    spec: { groups: files.ruleGroups(mixin) },
  }]),
  // One ConfigMap per dashboard, labelled for the Grafana sidecar
  // (kube-prometheus-stack, the grafana chart: sidecar.dashboards.label).
  'deploy/kubernetes/generated/grafana-dashboards.yaml': k8sYaml([
    {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: {
        name: 'grafana-dashboard-' + std.strReplace(name, '.json', ''),
        labels: labels { grafana_dashboard: '1' },
      },
      data: { [name]: dashboards[name] },
    }
    for name in std.objectFields(mixin.grafanaDashboards)
  ]),
}
