//! Headless Chromium driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`): chromedriver on an ephemeral loopback port, spoken
//! to with plain HTTP and JSON, so no browser-automation crate is needed.
//!
//! The browser is kept off every other host: its proxy is a closed
//! loopback port (loopback itself is never proxied) and every host name but
//! 127.0.0.1 resolves to nothing, so a request that would leave the machine
//! fails and shows in the console.

use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::proc::Proc;
use crate::tools::{free_port, require_tool};

/// One browser session; the session is closed and chromedriver (with its
/// browser) killed on drop.
pub struct Browser {
    base: String,
    session: String,
    client: reqwest::Client,
    rt: tokio::runtime::Runtime,
    _driver: Proc,
}

impl Browser {
    /// Start chromedriver and a headless Chromium with a `width`×`height`
    /// window, or `None` when they are missing outside CI (under `CI=true` a
    /// missing tool fails the test).
    pub fn start(width: u32, height: u32) -> Option<Browser> {
        let driver = require_tool("chromedriver (Debian: chromium-driver)", &["chromedriver"])?;
        let chromium = require_tool("chromium", &["chromium", "chromium-browser"])?;
        let port = free_port();
        let mut cmd = Command::new(driver);
        cmd.arg(format!("--port={port}"));
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let proc = Proc::external(&mut cmd, None, addr).expect("chromedriver starts");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("a client");
        let mut b = Browser {
            base: format!("http://{addr}"),
            session: String::new(),
            client,
            rt,
            _driver: proc,
        };
        b.wait_ready();
        let refuse = free_port();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            // Dialogs stay open until the test answers them (see `dialog`).
            "unhandledPromptBehavior": "ignore",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-extensions", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                    format!("--window-size={width},{height}"),
                    format!("--proxy-server=127.0.0.1:{refuse}"),
                    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                ],
            },
        }}});
        let v = b.call(reqwest::Method::POST, "/session", Some(caps));
        b.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        Some(b)
    }

    fn wait_ready(&self) {
        let start = Instant::now();
        loop {
            let ok = self.rt.block_on(async {
                let r = self
                    .client
                    .get(format!("{}/status", self.base))
                    .send()
                    .await;
                match r {
                    Ok(r) => r.bytes().await.ok(),
                    Err(_) => None,
                }
            });
            let v: Option<Value> = ok.and_then(|b| serde_json::from_slice(&b).ok());
            if v.is_some_and(|v| v["value"]["ready"] == true) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One WebDriver command; its `value`, or a panic with the error.
    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.rt.block_on(async {
            let mut req = self.client.request(method, format!("{}{path}", self.base));
            if let Some(b) = body {
                req = req
                    .header("content-type", "application/json")
                    .body(b.to_string());
            }
            let r = req.send().await.expect("chromedriver answers");
            let status = r.status();
            let bytes = r.bytes().await.expect("chromedriver answers");
            let v: Value = serde_json::from_slice(&bytes).expect("chromedriver answers JSON");
            assert!(status.is_success(), "{path}: {status} {v}");
            v["value"].clone()
        })
    }

    fn session_call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        self.call(method, &path, body)
    }

    /// Navigate to `url` and wait for the page's load.
    pub fn open(&self, url: &str) {
        self.session_call(reqwest::Method::POST, "/url", Some(json!({ "url": url })));
    }

    /// Run `script` (a function body; `return` gives the result) in the page.
    pub fn eval(&self, script: &str) -> Value {
        let body = json!({ "script": script, "args": [] });
        self.session_call(reqwest::Method::POST, "/execute/sync", Some(body))
    }

    /// The console messages since the last call (`level`, `message`, `source`).
    pub fn console(&self) -> Vec<Value> {
        let body = json!({ "type": "browser" });
        let v = self.session_call(reqwest::Method::POST, "/se/log", Some(body));
        v.as_array().cloned().unwrap_or_default()
    }

    /// A DevTools protocol command (e.g. `Emulation.setEmulatedMedia`).
    pub fn cdp(&self, cmd: &str, params: Value) -> Value {
        let body = json!({ "cmd": cmd, "params": params });
        self.session_call(reqwest::Method::POST, "/goog/cdp/execute", Some(body))
    }

    /// `prefers-color-scheme` as the page sees it: `light` or `dark`.
    pub fn color_scheme(&self, scheme: &str) {
        let features = json!([{ "name": "prefers-color-scheme", "value": scheme }]);
        self.cdp(
            "Emulation.setEmulatedMedia",
            json!({ "features": features }),
        );
    }

    /// The viewport as a phone (`Some((width, height))`) or back to the window.
    pub fn viewport(&self, size: Option<(u32, u32)>) {
        match size {
            Some((w, h)) => self.cdp(
                "Emulation.setDeviceMetricsOverride",
                json!({"width": w, "height": h, "deviceScaleFactor": 1, "mobile": true}),
            ),
            None => self.cdp("Emulation.clearDeviceMetricsOverride", json!({})),
        };
    }

    /// The first element matching `css`, as a WebDriver reference.
    fn element(&self, css: &str) -> Value {
        self.session_call(
            reqwest::Method::POST,
            "/element",
            Some(json!({ "using": "css selector", "value": css })),
        )
    }

    /// Click the first element matching `css`.
    pub fn click(&self, css: &str) {
        let found = self.element(css);
        let id = found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element id in {found}"))
            .to_string();
        self.session_call(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        );
    }

    /// Answer the open dialog (`alert`, `confirm` or `prompt`): its text,
    /// after typing `input` (a prompt) and accepting, or dismissing it.
    pub fn dialog(&self, accept: bool, input: Option<&str>) -> String {
        let text = self.session_call(reqwest::Method::GET, "/alert/text", None);
        if let Some(t) = input {
            self.session_call(
                reqwest::Method::POST,
                "/alert/text",
                Some(json!({ "text": t })),
            );
        }
        let answer = if accept {
            "/alert/accept"
        } else {
            "/alert/dismiss"
        };
        self.session_call(reqwest::Method::POST, answer, Some(json!({})));
        text.as_str().unwrap_or_default().to_string()
    }

    /// Move the mouse over the first element matching `css`.
    pub fn hover(&self, css: &str) {
        let found = self.element(css);
        let actions = json!({"actions": [{
            "type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
            "actions": [{"type": "pointerMove", "duration": 0, "origin": found, "x": 0, "y": 0}],
        }]});
        self.session_call(reqwest::Method::POST, "/actions", Some(actions));
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        let v = self.session_call(reqwest::Method::GET, "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 PNG"))
            .expect("valid base64")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("{}/session/{}", self.base, self.session);
            let client = self.client.clone();
            let _ = self.rt.block_on(async move {
                client
                    .delete(path)
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
            });
        }
    }
}
