// Small helpers shared by the rules, alerts and dashboards.
{
  // A number as PromQL or a person writes it (14.4, not 14.4000000000000004).
  num(x):: if x == std.floor(x) && std.abs(x) < 1e15 then '%d' % x else std.format('%.15g', x),

  // Matchers joined into a selector body: sel(['job="a"', 'state="open"']).
  // Empty entries are skipped.
  sel(matchers):: std.join(',', [m for m in matchers if m != '']),

  // A Prometheus duration (15m, 1h, 6h, 30s, 2d) split into count and unit word.
  local parts(d) =
    local unit = d[std.length(d) - 1];
    local words = { s: 'second', m: 'minute', h: 'hour', d: 'day', w: 'week' };
    assert std.objectHas(words, unit) : 'unsupported duration %s (use one unit: 30s, 15m, 1h, 2d)' % d;
    { n: std.parseInt(d[0:std.length(d) - 1]), word: words[unit] },

  // '15m' -> '15 minutes', '1h' -> '1 hour'.
  humanize(d)::
    local p = parts(d);
    '%d %s%s' % [p.n, p.word, if p.n == 1 then '' else 's'],

  // 'the last hour' for 1h, 'the last 6 hours' for 6h.
  theLast(d)::
    local p = parts(d);
    if p.n == 1 then 'the last %s' % p.word else 'the last %s' % self.humanize(d),

  // Hours in a duration (for error-budget arithmetic).
  hours(d)::
    local p = parts(d);
    p.n * { second: 1 / 3600, minute: 1 / 60, hour: 1, day: 24, week: 168 }[p.word],

  // JSON with two-space indentation, numbers written short (0.8, not
  // 0.80000000000000004 as std.manifestJsonEx would), keys sorted.
  manifestJson(v)::
    local go(v, ind) =
      local ind2 = ind + '  ';
      if std.isObject(v) then
        if std.length(std.objectFields(v)) == 0 then '{}'
        else '{\n' + std.join(',\n', [
          ind2 + std.escapeStringJson(k) + ': ' + go(v[k], ind2)
          for k in std.objectFields(v)
        ]) + '\n' + ind + '}'
      else if std.isArray(v) then
        if std.length(v) == 0 then '[]'
        else '[\n' + std.join(',\n', [ind2 + go(x, ind2) for x in v]) + '\n' + ind + ']'
      else if std.isString(v) then std.escapeStringJson(v)
      else if std.isNumber(v) then $.num(v)
      else if std.isBoolean(v) then (if v then 'true' else 'false')
      else if v == null then 'null'
      else error 'cannot write %s as JSON' % std.type(v);
    go(v, '') + '\n',

  // YAML for humans and kubectl: block scalars for multi-line strings, quotes
  // only where needed, and keys in the order `order` lists (the others after
  // them, sorted).
  manifestYaml(v, order=[])::
    local rank(k) =
      local i = std.find(k, order);
      std.format('%04d%s', [if std.length(i) > 0 then i[0] else 9999, k]);
    local reserved = ['y', 'n', 'yes', 'no', 'true', 'false', 'on', 'off', 'null', '~'];
    // Per-character checks are slow in jsonnet: only short strings (names,
    // labels, durations) are candidates for plain scalars.
    local plainChar(ch) =
      local c = std.codepoint(ch);
      (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) || c == 95 || c == 46 || c == 47 || c == 45;
    local isPlain(s) =
      std.length(s) > 0 && std.length(s) < 64
      && ((std.codepoint(s[0]) >= 97 && std.codepoint(s[0]) <= 122) || (std.codepoint(s[0]) >= 65 && std.codepoint(s[0]) <= 90) || s[0] == '/')
      && std.length([ch for ch in std.stringChars(s) if !plainChar(ch)]) == 0
      && !std.member(reserved, std.asciiLower(s));
    local quote(s) = "'" + std.strReplace(s, "'", "''") + "'";
    local key(k) = if isPlain(k) then k else quote(k);
    local block(s, ind) =
      assert !std.endsWith(s, '\n\n') : 'cannot write a string ending in blank lines as a YAML block';
      local chomp = if std.endsWith(s, '\n') then '' else '-';
      local body = if std.endsWith(s, '\n') then std.substr(s, 0, std.length(s) - 1) else s;
      local lead = if std.startsWith(body, ' ') then '2' else '';
      // Indent with std.strReplace (fast), then drop the indentation of empty lines.
      local indented = ind + std.strReplace(body, '\n', '\n' + ind);
      local clean = std.strReplace(std.strReplace(indented, '\n' + ind + '\n', '\n\n'), '\n' + ind + '\n', '\n\n');
      '|' + lead + chomp + '\n' + clean;
    local scalar(x, ind) =
      if std.isString(x) then
        if std.strReplace(x, '\n', '') != x then block(x, ind)
        else if isPlain(x) then x
        else quote(x)
      else if std.isNumber(x) then $.num(x)
      else if std.isBoolean(x) then (if x then 'true' else 'false')
      else if x == null then 'null'
      else error 'cannot write %s as YAML' % std.type(x);
    local empty(x) = (std.isObject(x) || std.isArray(x)) && std.length(x) == 0;
    local emptyText(x) = if std.isObject(x) then '{}' else '[]';
    local fields(o) = std.sort(std.objectFields(o), rank);
    // first: the indentation of the first line (none after `- `)
    local obj(o, ind, first=ind) = std.join('\n', std.mapWithIndex(function(i, k) (if i == 0 then first else ind) + key(k) + ':' + after(o[k], ind), fields(o))),
          arr(a, ind, first=ind) = std.join('\n', std.mapWithIndex(function(i, x) (if i == 0 then first else ind) + '- ' + item(x, ind + '  '), a)),
          // a value after `key:`
          after(x, ind) =
      if empty(x) then ' ' + emptyText(x)
      else if std.isObject(x) then '\n' + obj(x, ind + '  ')
      else if std.isArray(x) then '\n' + arr(x, ind + '  ')
      else ' ' + scalar(x, ind + '  '),
          // a value after `- `, whose continuation lines are indented by ind
          item(x, ind) =
      if empty(x) then emptyText(x)
      else if std.isObject(x) then obj(x, ind, '')
      else if std.isArray(x) then arr(x, ind, '')
      else scalar(x, ind);
    (if std.isObject(v) then obj(v, '') else if std.isArray(v) then arr(v, '') else scalar(v, '')) + '\n',
}
