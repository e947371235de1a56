// A few builders for Grafana dashboard JSON (schemaVersion 41): panels laid
// out left to right in rows of 24 columns, a datasource variable, no
// hard-coded datasource uid.
{
  ds:: { type: 'prometheus', uid: '${datasource}' },

  // A query of a panel: expression, legend, and optionally the format
  // (table, heatmap).
  target(expr, legend, format=null):: { expr: expr, legend: legend, format: format },

  row(title):: { type: 'row', title: title, collapsed: false, panels: [] },

  panel(kind, title, targets, unit, w=12, h=8, description='', options={}, defaults={}, overrides=[]):: {
    w:: w,
    h:: h,
    type: kind,
    title: title,
    description: description,
    datasource: $.ds,
    targets: [
      {
        refId: std.char(65 + i),
        datasource: $.ds,
        expr: targets[i].expr,
        legendFormat: targets[i].legend,
      }
      + (if targets[i].format != null then { format: targets[i].format } else {})
      + (if std.member(['stat', 'table', 'bargauge'], kind) then { instant: true } else {})
      for i in std.range(0, std.length(targets) - 1)
    ],
    fieldConfig: { defaults: { unit: unit } + defaults, overrides: overrides },
    options: options,
  },

  // Rows and panels with ids and grid positions: a panel goes right of the
  // previous one, or below when the 24 columns are full; a row starts a new line.
  layout(items)::
    local newline(st) = if st.x != 0 then st { y: st.y + st.rowH, x: 0, rowH: 0 } else st;
    local place(st, it) =
      if it.type == 'row' then
        local s = newline(st);
        s {
          panels: s.panels + [it { id: std.length(s.panels) + 1, gridPos: { h: 1, w: 24, x: 0, y: s.y } }],
          y: s.y + 1,
        }
      else
        local s = if st.x + it.w > 24 then newline(st) else st;
        s {
          panels: s.panels + [it { id: std.length(s.panels) + 1, gridPos: { h: it.h, w: it.w, x: s.x, y: s.y } }],
          x: s.x + it.w,
          rowH: std.max(s.rowH, it.h),
        };
    std.foldl(place, items, { panels: [], x: 0, y: 0, rowH: 0 }).panels,

  queryVar(name, label, query, multi=true):: {
    name: name,
    label: label,
    type: 'query',
    datasource: $.ds,
    definition: query,
    query: { qryType: 1, query: query, refId: '%s-var' % name },
    refresh: 2,
    sort: 1,
    includeAll: multi,
    multi: multi,
    current: {},
    hide: 0,
    options: [],
  } + (if multi then { allValue: '.+' } else {}),

  datasourceVar:: {
    name: 'datasource',
    label: 'Data source',
    type: 'datasource',
    query: 'prometheus',
    current: {},
    hide: 0,
    refresh: 1,
    options: [],
    regex: '',
  },

  dashboard(config, uid, title, description, items, variables, links):: {
    uid: uid,
    title: title,
    description: description,
    tags: config.dashboardTags,
    schemaVersion: config.grafanaSchemaVersion,
    version: 1,
    editable: true,
    graphTooltip: 1,
    time: { from: config.dashboardTimeFrom, to: 'now' },
    refresh: config.dashboardRefresh,
    timezone: '',
    annotations: { list: [{
      builtIn: 1,
      datasource: { type: 'grafana', uid: '-- Grafana --' },
      enable: true,
      hide: true,
      iconColor: 'rgba(0, 211, 255, 1)',
      name: 'Annotations & Alerts',
      type: 'dashboard',
    }] },
    links: links,
    templating: { list: variables },
    panels: $.layout(items),
  },
}
