//! The status page in headless Chromium (Debian's `chromium` and
//! `chromium-driver`, see [`testkit::Browser`]) against `hfbreaker demo`:
//! it renders, shows every state and tier within a minute without a
//! reload, its history strip grows, hover and keyboard focus show a mark's
//! detail, it fits a phone, has a dark theme, requests nothing from another
//! host, logs no console error, and says so when the daemon stops.
//!
//! With `HFBREAKER_SCREENSHOTS=DIR` it also writes `status-light.png`,
//! `status-dark.png` and `status-phone.png` there (the README's are in docs/).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::{Browser, STATES};

/// What the page shows now, read from its DOM.
const LOOK: &str = r##"
var q = function (s) { return Array.from(document.querySelectorAll(s)); };
var txt = function (s) { return q(s).map(function (e) { return e.textContent.trim(); }); };
return {
  live: !document.getElementById("live").hidden,
  fallback_hidden: document.getElementById("fallback").hidden,
  same_page: window.__probe === 1,
  states: txt(".badge.state, .link .st, #timeline .badge"),
  tiers: txt(".badge.tier"),
  marks: q(".mark:not(.o-none)").length,
  slots: q(".mark").length,
  strips: q(".strip").length,
  timeline: q("#timeline li").length,
  conn: document.getElementById("conn").className,
  conn_text: document.getElementById("conn").textContent,
  hosts: performance.getEntriesByType("resource").map(function (e) { return new URL(e.name).host; }),
  page_host: location.host,
  overflow: Math.max.apply(null, q("main *").map(function (e) { return e.getBoundingClientRect().right; })) - window.innerWidth,
  background: getComputedStyle(document.body).backgroundColor
};
"##;

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

/// Poll the page until it has shown every state and tier, its strips have
/// grown, and a route is off its primary (for a telling screenshot).
fn watch_until_everything_shown(b: &Browser, start: Instant) -> Value {
    let mut states = BTreeSet::new();
    let mut tiers = BTreeSet::new();
    let mut first_marks: Option<u64> = None;
    loop {
        let v = b.eval(LOOK);
        assert!(v["same_page"] == true, "the page was reloaded: {v}");
        states.extend(strings(&v["states"]));
        let now_tiers = strings(&v["tiers"]);
        tiers.extend(now_tiers.iter().cloned());
        let marks = v["marks"].as_u64().unwrap();
        // Counted from when every endpoint has its first mark: growing
        // then takes a new minute's mark.
        if first_marks.is_none() && marks >= 5 {
            first_marks = Some(marks);
        }
        let grown = first_marks.is_some_and(|f| marks > f);
        let all_states = STATES.iter().all(|s| states.contains(*s));
        let all_tiers = ["primary", "fallback", "exhausted"]
            .iter()
            .all(|t| tiers.contains(*t));
        let off_primary = now_tiers.iter().any(|t| t != "primary");
        if all_states && all_tiers && grown && off_primary {
            println!(
                "every state and tier after {:.1}s; marks {first_marks:?} -> {marks}",
                start.elapsed().as_secs_f64()
            );
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "after {:?}: states {states:?}, tiers {tiers:?}, marks {first_marks:?} -> {marks}\n{v}",
            start.elapsed()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
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
    let start = Instant::now();
    let mut demo = testkit::binary!().demo(&[]);
    b.open(&format!("http://{}/", demo.addr));
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

    let v = watch_until_everything_shown(&b, start);
    assert!(v["timeline"].as_u64().unwrap() >= 3, "{v}");
    check_mark_detail(&b);

    b.color_scheme("light");
    let light = b.eval(LOOK)["background"].clone();
    shoot(&b, "status-light.png");
    b.color_scheme("dark");
    let dark = b.eval(LOOK)["background"].clone();
    assert!(
        brightness(&light) > 600 && brightness(&dark) < 150,
        "light {light}, dark {dark}"
    );
    shoot(&b, "status-dark.png");
    b.color_scheme("light");
    b.viewport(Some((390, 844)));
    std::thread::sleep(Duration::from_millis(300));
    let phone = b.eval(LOOK);
    assert!(
        phone["overflow"].as_i64().unwrap() <= 0,
        "fits a phone: {phone}"
    );
    shoot(&b, "status-phone.png");
    b.viewport(None);

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

const TOKEN: &str = "adm-page-41c7e2-s3cret";

/// With an admin token the page offers the actions: each asks for a
/// confirmation, then for the token, sends it once and keeps it nowhere.
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
    b.open(&format!("{}/", d.base()));
    let wait_for = |what: &str, script: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let v = b.eval(script);
            if v == true {
                return;
            }
            assert!(Instant::now() < deadline, "{what}: {v}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for("live", "return !document.getElementById('live').hidden;");
    let n = b.eval("return document.querySelectorAll('.admin button').length;");
    assert_eq!(n, 6, "three actions per endpoint");
    let state = "return document.querySelector('#ep-a .badge.state').textContent";

    // Cancelled at the confirmation: nothing is asked, nothing is sent.
    b.click("#ep-a .admin button");
    assert_eq!(b.dialog(false, None), "force-open the breaker of a?");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(b.eval(state), "closed");

    b.click("#ep-a .admin button");
    assert_eq!(b.dialog(true, None), "force-open the breaker of a?");
    let asked = b.dialog(true, Some(TOKEN));
    assert!(
        asked.starts_with("Admin token for force-open on a"),
        "{asked}"
    );
    wait_for(
        "the answer",
        "return document.getElementById('msg').textContent === 'a: force-open → forced_open';",
    );
    wait_for(
        "the new state",
        "return document.querySelector('#ep-a .badge.state').textContent === 'forced_open';",
    );
    // A wrong token is refused and said so.
    b.click("#ep-a .admin button:nth-child(3)");
    assert_eq!(b.dialog(true, None), "reset the breaker of a?");
    b.dialog(true, Some("not-the-token"));
    wait_for(
        "the refusal",
        "return document.getElementById('msg').textContent.indexOf('a: reset refused: missing or wrong bearer token') === 0;",
    );
    assert_eq!(b.eval(state), "forced_open");
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
