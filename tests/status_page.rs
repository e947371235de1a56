//! The status page in headless Chromium (Debian's `chromium` and
//! `chromium-driver`, see [`testkit::Browser`]) against `hfbreaker demo`:
//! it renders, shows every state and tier within a minute of loading
//! without a reload, and its history strip grows; what it renders is
//! checked on every look (the chains in the config's order left to right,
//! the serving endpoint marked, the gateway's requests per second by tier,
//! each endpoint's state with since when, last probe with its reason, and
//! latency, none of them a placeholder); the strips' marks differ by shape
//! as well as colour, as the legend says; hover and keyboard focus show a
//! mark's detail; it fits a phone, has a dark theme, requests nothing from
//! another host, logs no console error, and says so when the daemon stops.
//! With an admin token, each action from the page takes effect.
//!
//! With `HFBREAKER_SCREENSHOTS=DIR` it also writes `status-light.png`,
//! `status-dark.png` and `status-phone.png` there (the README's are in docs/:
//! `HFBREAKER_SCREENSHOTS=docs cargo test --test status_page`).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::{Browser, STATES};

/// What the page shows now, read from its DOM.
const LOOK: &str = r##"
var q = function (s) { return Array.from(document.querySelectorAll(s)); };
var txt = function (s) { return q(s).map(function (e) { return e.textContent.trim(); }); };
var text = function (e) { return e ? e.textContent.trim() : null; };
return {
  live: !document.getElementById("live").hidden,
  fallback_hidden: document.getElementById("fallback").hidden,
  same_page: window.__probe === 1,
  states: txt(".badge.state, .link .st, #timeline .badge"),
  tiers: txt(".badge.tier"),
  marks: q(".strip .mark:not(.o-none)").length,
  slots: q(".strip .mark").length,
  strips: q(".strip").length,
  timeline: q("#timeline li").length,
  routes: q(".route").map(function (r) {
    return {
      name: text(r.querySelector(".route-name")),
      tier: text(r.querySelector(".badge.tier")),
      head: text(r.querySelector(".route-head .muted")),
      rates: text(r.querySelector(".rates")),
      links: Array.from(r.querySelectorAll(".chain .link")).map(function (l) {
        return {
          endpoint: l.firstChild.textContent, state: text(l.querySelector(".st")),
          serving: l.classList.contains("serving"), mark: text(l.querySelector(".srv")),
          left: l.getBoundingClientRect().left, right: l.getBoundingClientRect().right
        };
      })
    };
  }),
  rows: q("#endpoints tr").map(function (tr) {
    var c = function (l) { return tr.querySelector('td[data-label="' + l + '"]'); };
    var last = c("last probe");
    return {
      name: text(c("endpoint").querySelector("strong")),
      state: text(c("state").querySelector(".badge.state")),
      since: text(c("state").querySelector(".muted")),
      result: text(last.querySelector("span")) || text(last),
      at: text(last.querySelector(".muted")),
      latency: text(c("latency"))
    };
  }),
  conn: document.getElementById("conn").className,
  conn_text: document.getElementById("conn").textContent,
  hosts: performance.getEntriesByType("resource").map(function (e) { return new URL(e.name).host; }),
  page_host: location.host,
  overflow: Math.max.apply(null, q("main *").map(function (e) { return e.getBoundingClientRect().right; })) - window.innerWidth,
  background: getComputedStyle(document.body).backgroundColor
};
"##;

/// How each outcome's marks look, colour aside: the legend's swatch of
/// each outcome class and the distinct looks of the strips' marks of it.
const SHAPES: &str = r##"
var sig = function (e) {
  var s = getComputedStyle(e);
  return [s.height, s.alignSelf, s.backgroundImage === "none" ? "solid" : s.backgroundImage.split("(")[0]].join(" ");
};
return ["o-ok", "o-fail", "o-ign", "o-rej", "o-none"].map(function (c) {
  var sw = document.querySelector("#legend .swatch." + c);
  var seen = {};
  document.querySelectorAll(".strip .mark." + c).forEach(function (m) { seen[sig(m)] = 1; });
  return {
    class: c,
    swatch: sw ? sig(sw) : null,
    label: sw ? sw.parentNode.textContent.trim() : null,
    width: sw ? sw.getBoundingClientRect().width : 0,
    visible: sw ? sw.getBoundingClientRect().height > 0 : false,
    marks: Object.keys(seen)
  };
});
"##;

/// The demo's routes and their chains, as its config says.
fn demo_chains() -> Vec<(String, Vec<String>)> {
    let env = std::collections::HashMap::<String, String>::new();
    let cfg = hfbreaker::config::parse(hfbreaker::demo::CONFIG, "demo.yml", &env).unwrap();
    cfg.routes
        .into_iter()
        .map(|r| (r.name, r.endpoints))
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect()
}

/// Sum of the rgb() channels of a CSS colour.
fn brightness(css: &Value) -> u32 {
    css.as_str()
        .unwrap_or_default()
        .trim_start_matches("rgb(")
        .trim_end_matches(')')
        .split(',')
        .filter_map(|c| c.trim().parse::<u32>().ok())
        .sum()
}

fn shoot(b: &Browser, name: &str) {
    let png = b.screenshot();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{name} is a PNG");
    if let Some(dir) = std::env::var_os("HFBREAKER_SCREENSHOTS") {
        let path = std::path::Path::new(&dir).join(name);
        std::fs::write(&path, &png).unwrap();
        println!("wrote {} ({} bytes)", path.display(), png.len());
    }
}

/// `12s`, `3m 4s` or `1h 2m`, as the page writes how long.
fn is_duration(s: &str) -> bool {
    let units: Vec<char> = s
        .split(' ')
        .map(|t| {
            let (n, u) = t.split_at(t.len().saturating_sub(1));
            if !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) {
                u.chars().next().unwrap_or('?')
            } else {
                '?'
            }
        })
        .collect();
    matches!(units.as_slice(), ['s'] | ['m', 's'] | ['h', 'm'])
}

/// Starts with a wall-clock time, `5:49:02` (as `toLocaleTimeString`).
fn starts_with_clock(s: &str) -> bool {
    let t: String = s
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ':')
        .collect();
    let parts: Vec<&str> = t.split(':').collect();
    parts.len() == 3 && (1..=2).contains(&parts[0].len()) && parts[1..].iter().all(|p| p.len() == 2)
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())
}

/// `failure (status_5xx) · 503`, `ignored (scaled_to_zero)`, `success · 200`.
fn is_probe_result(s: &str) -> bool {
    let (head, status) = s.split_once(" · ").unwrap_or((s, "200"));
    let (result, reason) = head.split_once(" (").unwrap_or((head, "x)"));
    ["success", "failure", "ignored"].contains(&result)
        && reason.strip_suffix(')').is_some_and(|r| {
            !r.is_empty()
                && r.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
        })
        && status.len() == 3
        && is_number(status)
}

/// What the page has shown so far, and when.
#[derive(Default)]
struct Seen {
    states: BTreeSet<String>,
    tiers: BTreeSet<String>,
    /// When every state and tier had been shown, since the page loaded.
    all_shown: Option<Duration>,
    /// (route, gateway tier) shown with a rate above zero.
    rates: BTreeSet<(String, String)>,
    /// Last probe texts with a reason, e.g. `failure (status_5xx) · 503`.
    reasons: BTreeSet<String>,
    first_marks: Option<u64>,
}

/// One route row as rendered: its chain in the config's order, drawn left
/// to right; the serving endpoint marked (and only it) and agreeing with the
/// row's "serving …" and its tier; the gateway's rates written out.
fn check_route(r: &Value, chains: &[(String, Vec<String>)], seen: &mut Seen) {
    let name = r["name"].as_str().unwrap();
    let links = r["links"].as_array().unwrap();
    let (_, chain) = chains
        .iter()
        .find(|(n, _)| n == name)
        .expect("a configured route");
    let drawn: Vec<&str> = links
        .iter()
        .map(|l| l["endpoint"].as_str().unwrap())
        .collect();
    assert_eq!(drawn, *chain, "the chain of {name} in the config's order");
    for w in links.windows(2) {
        assert!(
            w[0]["right"].as_f64() < w[1]["left"].as_f64(),
            "{name} drawn left to right: {r}"
        );
    }
    let serving: Vec<&Value> = links.iter().filter(|l| l["serving"] == true).collect();
    let head = r["head"].as_str().unwrap();
    let tier = r["tier"].as_str().unwrap();
    match serving.as_slice() {
        [] => assert!(
            head.starts_with("serving none ·") && tier == "exhausted",
            "{r}"
        ),
        [s] => {
            assert_eq!(s["mark"], "◀ serving", "the serving mark is written: {r}");
            let e = s["endpoint"].as_str().unwrap();
            assert!(head.starts_with(&format!("serving {e} ·")), "{r}");
            let primary = e == chain[0];
            assert_eq!(tier, if primary { "primary" } else { "fallback" }, "{r}");
        }
        _ => panic!("one serving endpoint at most: {r}"),
    }
    assert!(
        links
            .iter()
            .all(|l| l["serving"] == true || l["mark"].is_null()),
        "{r}"
    );
    if let Some(rates) = r["rates"].as_str() {
        let parts = rates
            .strip_prefix("gateway req/s: ")
            .unwrap_or_else(|| panic!("{rates}"));
        for part in parts.split(", ").filter(|p| *p != "0") {
            // `primary 4.9`: a gateway tier and a rate with one decimal.
            let (t, v) = part.split_once(' ').unwrap_or_else(|| panic!("{rates}"));
            let tier_ok = ["primary", "fallback", "cache", "exhausted"].contains(&t);
            let (int, dec) = v.split_once('.').unwrap_or_else(|| panic!("{rates}"));
            assert!(
                tier_ok && is_number(int) && dec.len() == 1 && is_number(dec),
                "{rates}"
            );
            if v.parse::<f64>().unwrap() > 0.0 {
                seen.rates.insert((name.to_string(), t.to_string()));
            }
        }
    }
}

/// One endpoint row as rendered: its state written out with how long and
/// since when; once probed, the result (with reason and status) and when,
/// and the latency in ms. None of them a placeholder.
fn check_row(row: &Value, seen: &mut Seen) {
    let state = row["state"].as_str().unwrap();
    assert!(STATES.contains(&state), "{row}");
    let since = row["since"].as_str().unwrap();
    let (long, when) = since
        .strip_prefix("for ")
        .and_then(|s| s.strip_suffix(')'))
        .and_then(|s| s.split_once(" (since "))
        .unwrap_or_else(|| panic!("for / since: {row}"));
    let clock_only = when.trim_end_matches(" AM").trim_end_matches(" PM");
    assert!(
        is_duration(long) && starts_with_clock(when) && clock_only.len() <= 8,
        "for / since: {row}"
    );
    let result = row["result"].as_str().unwrap();
    if result == "not probed yet" {
        assert_eq!(row["latency"], "–", "{row}");
        return;
    }
    assert!(is_probe_result(result), "last probe: {row}");
    assert!(
        starts_with_clock(row["at"].as_str().unwrap_or_default()),
        "last probe's time: {row}"
    );
    let latency = row["latency"].as_str().unwrap();
    assert!(
        latency.strip_suffix(" ms").is_some_and(is_number),
        "latency: {row}"
    );
    if result.contains(" (") {
        seen.reasons.insert(result.to_string());
    }
}

/// Check what the page shows now and add it to what it has shown.
/// Returns whether it shows a route off its primary (for a telling
/// screenshot).
fn look(v: &Value, chains: &[(String, Vec<String>)], loaded: Instant, seen: &mut Seen) -> bool {
    assert!(v["same_page"] == true, "the page was reloaded: {v}");
    seen.states.extend(strings(&v["states"]));
    let now_tiers = strings(&v["tiers"]);
    seen.tiers.extend(now_tiers.iter().cloned());
    let all_states = STATES.iter().all(|s| seen.states.contains(*s));
    let all_tiers = ["primary", "fallback", "exhausted"]
        .iter()
        .all(|t| seen.tiers.contains(*t));
    if all_states && all_tiers && seen.all_shown.is_none() {
        seen.all_shown = Some(loaded.elapsed());
    }
    let routes = v["routes"].as_array().unwrap();
    assert_eq!(routes.len(), chains.len(), "a row per route: {v}");
    for r in routes {
        check_route(r, chains, seen);
    }
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 5, "a row per endpoint: {v}");
    for row in rows {
        check_row(row, seen);
    }
    if loaded.elapsed() > Duration::from_secs(10) {
        assert!(
            rows.iter().all(|r| r["result"] != "not probed yet"),
            "every endpoint probed (interval 2 s): {v}"
        );
    }
    now_tiers.iter().any(|t| t != "primary")
}

/// Poll the page until it has shown every state and tier (within a minute
/// of loading), its strips have grown (a new minute's mark), the gateway's
/// rates and failure reasons have shown, and a route is off its primary.
fn watch_until_everything_shown(b: &Browser, loaded: Instant) -> Value {
    let chains = demo_chains();
    let mut seen = Seen::default();
    loop {
        let v = b.eval(LOOK);
        let off_primary = look(&v, &chains, loaded, &mut seen);
        let marks = v["marks"].as_u64().unwrap();
        // Counted from when every endpoint has its first mark: growing
        // then takes a new minute's mark.
        if seen.first_marks.is_none() && marks >= 5 {
            seen.first_marks = Some(marks);
        }
        let grown = seen.first_marks.is_some_and(|f| marks > f);
        let rates = ["assistant", "embeddings"]
            .iter()
            .all(|r| seen.rates.contains(&(r.to_string(), "primary".into())))
            && seen.rates.iter().any(|(_, t)| t == "fallback");
        let reasons = seen.reasons.iter().any(|r| r.starts_with("failure ("));
        if let Some(all_shown) = seen.all_shown
            && grown
            && off_primary
            && rates
            && reasons
        {
            println!(
                "every state and tier {:.1}s after the page loaded; marks {:?} -> {marks} after {:.1}s; \
                 rates {:?}; reasons {:?}",
                all_shown.as_secs_f64(),
                seen.first_marks,
                loaded.elapsed().as_secs_f64(),
                seen.rates,
                seen.reasons
            );
            return v;
        }
        let (states, tiers) = (&seen.states, &seen.tiers);
        assert!(
            seen.all_shown.is_some() || loaded.elapsed() < Duration::from_secs(60),
            "not every state and tier within a minute: states {states:?}, tiers {tiers:?}\n{v}"
        );
        assert!(
            loaded.elapsed() < Duration::from_secs(90),
            "after {:?}: marks {:?} -> {marks}, off primary {off_primary}, rates {:?}, reasons {:?}\n{v}",
            loaded.elapsed(),
            seen.first_marks,
            seen.rates,
            seen.reasons
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Marks differ by shape as well as colour: each outcome has its own
/// height, alignment or pattern (its legend swatch), labelled in the
/// legend, and every mark of the strips has its outcome's shape.
fn check_shapes(b: &Browser, min_width: f64) {
    let v = b.eval(SHAPES);
    let shapes = v.as_array().unwrap();
    let labels = [
        "ok",
        "failed",
        "ignored",
        "rejected (circuit open)",
        "no probe",
    ];
    let mut looks = BTreeSet::new();
    for (s, label) in shapes.iter().zip(labels) {
        assert_eq!(s["label"], label, "{s}");
        assert_eq!(s["visible"], true, "{s}");
        assert!(s["width"].as_f64().unwrap() >= min_width, "{s}");
        let swatch = s["swatch"].as_str().unwrap();
        looks.insert(swatch.to_string());
        for m in strings(&s["marks"]) {
            assert_eq!(m, swatch, "marks look like their legend: {s}");
        }
    }
    assert_eq!(looks.len(), 5, "five outcomes, five shapes: {v}");
    let present = |i: usize| !shapes[i]["marks"].as_array().unwrap().is_empty();
    assert!(
        present(0) && present(1),
        "ok and failed marks in the strips: {v}"
    );
    assert!(
        shapes[1]["swatch"]
            .as_str()
            .unwrap()
            .contains("repeating-linear-gradient"),
        "failed marks are dashed: {v}"
    );
}

fn check_mark_detail(b: &Browser) {
    b.hover(".mark:not(.o-none)");
    let tip =
        b.eval(r#"var t = document.getElementById("tip"); return [t.className, t.textContent];"#);
    assert_eq!(tip[0], "on", "hover shows the detail: {tip}");
    let text = tip[1].as_str().unwrap();
    assert!(
        text.contains("(1 min)") && text.contains("worst state: "),
        "{text}"
    );
    b.eval(r#"document.body.dispatchEvent(new MouseEvent("mouseover", {bubbles: true})); document.activeElement.blur(); return null;"#);
    let tip = b.eval(
        r#"var m = document.querySelectorAll(".mark:not(.o-none)"); m[m.length - 1].focus();
           var t = document.getElementById("tip"); return [t.className, t.textContent, document.activeElement.tabIndex];"#,
    );
    assert_eq!(tip[0], "on", "keyboard focus shows the detail: {tip}");
    assert_eq!(tip[2], 0, "marks are in the tab order");
}

#[test]
fn the_status_page_runs_live_against_the_demo_in_headless_chromium() {
    let Some(b) = Browser::start(1280, 900) else {
        return;
    };
    let mut demo = testkit::binary!().demo(&[]);
    b.open(&format!("http://{}/", demo.addr));
    let loaded = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.eval(LOOK)["live"] != true {
        assert!(Instant::now() < deadline, "the page never went live");
        std::thread::sleep(Duration::from_millis(100));
    }
    b.eval("window.__probe = 1; return null;");
    let v = b.eval(LOOK);
    assert_eq!(v["fallback_hidden"], true, "the no-JS tables give way");
    assert_eq!(v["strips"], 5, "one strip per endpoint: {v}");
    assert_eq!(v["slots"], 5 * 60, "an hour of minutes per strip: {v}");
    let buttons = b.eval("return document.querySelectorAll('.admin button').length;");
    assert_eq!(buttons, 0, "no admin action without an admin token");

    let v = watch_until_everything_shown(&b, loaded);
    assert!(v["timeline"].as_u64().unwrap() >= 3, "{v}");
    check_mark_detail(&b);
    check_shapes(&b, 6.0);
    check_themes_and_phone(&b);

    // Nothing but the daemon was asked for anything, and nothing went wrong.
    let v = b.eval(LOOK);
    let hosts: BTreeSet<String> = strings(&v["hosts"]).into_iter().collect();
    assert_eq!(
        hosts,
        BTreeSet::from([v["page_host"].as_str().unwrap().to_string()]),
        "requests only to the daemon"
    );
    let console = b.console();
    let bad: Vec<&Value> = console
        .iter()
        .filter(|m| m["level"] == "SEVERE" || m["level"] == "WARNING")
        .collect();
    assert!(bad.is_empty(), "console errors: {bad:?}");
    assert_eq!(v["conn"], "", "connected: no notice");

    demo.signal("INT");
    demo.exit_within(Duration::from_secs(10))
        .expect("the demo stops");
    let deadline = Instant::now() + Duration::from_secs(10);
    let v = loop {
        let v = b.eval(LOOK);
        if v["conn"] == "lost" {
            break v;
        }
        assert!(Instant::now() < deadline, "no lost-connection notice: {v}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        v["conn_text"]
            .as_str()
            .unwrap()
            .starts_with("Lost connection to the daemon — last update at "),
        "{v}"
    );
    assert_eq!(v["same_page"], true);
}

/// Light and dark theme, and a phone's width (where the marks keep their
/// shapes); the screenshots of each.
fn check_themes_and_phone(b: &Browser) {
    b.color_scheme("light");
    let light = b.eval(LOOK)["background"].clone();
    shoot(b, "status-light.png");
    b.color_scheme("dark");
    let dark = b.eval(LOOK)["background"].clone();
    assert!(
        brightness(&light) > 600 && brightness(&dark) < 150,
        "light {light}, dark {dark}"
    );
    shoot(b, "status-dark.png");
    b.color_scheme("light");
    b.viewport(Some((390, 844)));
    std::thread::sleep(Duration::from_millis(300));
    let phone = b.eval(LOOK);
    assert!(
        phone["overflow"].as_i64().unwrap() <= 0,
        "fits a phone: {phone}"
    );
    check_shapes(b, 4.0);
    shoot(b, "status-phone.png");
    b.viewport(None);
}

const TOKEN: &str = "adm-page-41c7e2-s3cret";

/// Wait up to 10 s for `script` to return true in the page.
fn wait_for(b: &Browser, what: &str, script: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = b.eval(script);
        if v == true {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The state of endpoint `name` as `/api/v1/breakers` says.
fn api_state(base: &str, name: &str) -> String {
    let (body, _) = testkit::bench::curl(&format!("{base}/api/v1/breakers"));
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let b = v["breakers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name);
    b.and_then(|b| b["state"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// Click action `nth` (1 force-open, 2 force-closed, 3 reset) of endpoint
/// a, confirm it, answer the prompt with the right token; then the page
/// says so, shows the new state in its row, its route's chain and its
/// timeline, and the API agrees.
fn act(b: &Browser, base: &str, nth: usize, action: &str, state: &str) {
    b.click(&format!("#ep-a .admin button:nth-child({nth})"));
    assert_eq!(b.dialog(true, None), format!("{action} the breaker of a?"));
    let asked = b.dialog(true, Some(TOKEN));
    assert!(
        asked.starts_with(&format!("Admin token for {action} on a")),
        "{asked}"
    );
    wait_for(
        b,
        "the answer",
        &format!("return document.getElementById('msg').textContent === 'a: {action} → {state}';"),
    );
    wait_for(
        b,
        "the new state in the row and the chain",
        &format!(
            "return document.querySelector('#ep-a .badge.state').textContent === '{state}'
               && document.querySelector('.route .link .st').textContent === '{state}';"
        ),
    );
    wait_for(
        b,
        "the action in the timeline",
        &format!(
            "return Array.from(document.querySelectorAll('#timeline li')).some(function (li) {{
               return li.querySelector('strong').textContent.trim() === 'a'
                 && li.querySelector('span').textContent === 'operator {action} → '
                 && li.querySelector('.badge').textContent === '{state}'; }});"
        ),
    );
    assert_eq!(
        api_state(base, "a"),
        state,
        "/api/v1/breakers after {action}"
    );
}

/// With an admin token the page offers the actions: each asks for a
/// confirmation, then for the token, sends it once and keeps it nowhere.
/// Force-open, force-closed and reset each take effect (on the page, in its
/// timeline and in the API); a cancel or a wrong token changes nothing.
#[test]
fn admin_actions_confirm_and_prompt_for_the_token_in_headless_chromium() {
    let Some(b) = Browser::start(1280, 900) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let port = testkit::free_port();
    let d = testkit::binary!().daemon(
        &format!(
            "global:\n  interval: 1h\nendpoints:\n  - {{name: a, kind: http, url: 'http://127.0.0.1:{port}/'}}\n  - {{name: b, kind: http, url: 'http://127.0.0.1:{port}/'}}\nroutes:\n  - {{name: r, endpoints: [a, b]}}\n"
        ),
        &[&format!("--web.admin-token-file={}", token_file.display())],
        &[],
    );
    let base = d.base();
    b.open(&format!("{base}/"));
    wait_for(
        &b,
        "live",
        "return !document.getElementById('live').hidden;",
    );
    let n = b.eval("return document.querySelectorAll('.admin button').length;");
    assert_eq!(n, 6, "three actions per endpoint");
    let state = "return document.querySelector('#ep-a .badge.state').textContent";

    // Cancelled at the confirmation: nothing is asked, nothing is sent.
    b.click("#ep-a .admin button");
    assert_eq!(b.dialog(false, None), "force-open the breaker of a?");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(b.eval(state), "closed");
    assert_eq!(api_state(&base, "a"), "closed");

    act(&b, &base, 1, "force-open", "forced_open");
    let serving =
        b.eval("return document.querySelector('.route .link.serving').firstChild.textContent;");
    assert_eq!(serving, "b", "the route serves its fallback");

    // A wrong token is refused and said so.
    b.click("#ep-a .admin button:nth-child(3)");
    assert_eq!(b.dialog(true, None), "reset the breaker of a?");
    b.dialog(true, Some("not-the-token"));
    wait_for(
        &b,
        "the refusal",
        "return document.getElementById('msg').textContent.indexOf('a: reset refused: missing or wrong bearer token') === 0;",
    );
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(b.eval(state), "forced_open");
    assert_eq!(api_state(&base, "a"), "forced_open");

    act(&b, &base, 2, "force-closed", "forced_closed");
    act(&b, &base, 3, "reset", "closed");
    let serving =
        b.eval("return document.querySelector('.route .link.serving').firstChild.textContent;");
    assert_eq!(serving, "a", "the route is back on its primary");

    let kept = b.eval(
        "return [document.documentElement.outerHTML, JSON.stringify(localStorage), JSON.stringify(sessionStorage), document.cookie].join(' ');",
    );
    assert!(
        !kept.as_str().unwrap().contains(TOKEN),
        "the page kept the token"
    );
    let console = b.console();
    let errors: Vec<&Value> = console
        .iter()
        .filter(|m| m["level"] == "SEVERE" && !m["message"].as_str().unwrap_or("").contains("401"))
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");
}
