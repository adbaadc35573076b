//! A small Chrome DevTools Protocol client for the browser test: launches headless Chromium with a fresh
//! profile, attaches to its tab over one websocket, and offers what a person does — open a page, pick
//! files, click, press keys — plus script evaluation, screenshots and downloads into a folder.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// Where Debian's `chromium` is, unless `IMPASTO_CHROMIUM` names another binary.
pub fn chromium_path() -> PathBuf {
    std::env::var_os("IMPASTO_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// A headless Chromium with one tab; killed when dropped.
pub struct Browser {
    child: Child,
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    session: String,
    profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium with a `width`×`height` window and attaches to its tab.
    pub fn launch(chromium: &Path, width: u32, height: u32) -> Result<Browser, String> {
        let profile = tempfile::tempdir().map_err(|e| e.to_string())?;
        let log = std::fs::File::create(profile.path().join("chromium.log")).map_err(|e| e.to_string())?;
        let child = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                &format!("--user-data-dir={}", profile.path().display()),
                &format!("--window-size={width},{height}"),
                "about:blank",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", chromium.display()))?;
        // Chromium writes the port it chose and the browser's websocket path into the profile.
        let port_file = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(60);
        let endpoint = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file)
                && let [port, path, ..] = text.lines().collect::<Vec<_>>()[..]
            {
                break format!("ws://127.0.0.1:{port}{path}");
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(profile.path().join("chromium.log")).unwrap_or_default();
                return Err(format!("Chromium did not open its DevTools port within 60 s; its log:\n{log}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let (ws, _) =
            tungstenite::connect(&endpoint).map_err(|e| format!("cannot connect to {endpoint}: {e}"))?;
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(60))).map_err(|e| e.to_string())?;
        }
        let mut browser = Browser { child, ws, next_id: 0, session: String::new(), profile };
        let targets = browser.call(None, "Target.getTargets", json!({}))?;
        let page = targets["targetInfos"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["targetId"].as_str())
            .ok_or("Chromium has no tab")?
            .to_owned();
        let attached =
            browser.call(None, "Target.attachToTarget", json!({"targetId": page, "flatten": true}))?;
        browser.session = attached["sessionId"].as_str().ok_or("no session id")?.to_owned();
        let metrics = json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false});
        browser.page("Emulation.setDeviceMetricsOverride", metrics)?;
        Ok(browser)
    }

    /// Sends a command (to the browser, or to the tab's `session`) and waits for its answer.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.ws.send(Message::text(msg.to_string())).map_err(|e| format!("{method}: {e}"))?;
        loop {
            let text = match self.ws.read().map_err(|e| format!("{method}: {e}"))? {
                Message::Text(t) => t,
                _ => continue,
            };
            let reply: Value = serde_json::from_str(&text).map_err(|e| format!("{method}: {e}"))?;
            if reply["id"] != id {
                continue; // an event
            }
            if let Some(err) = reply.get("error") {
                return Err(format!("{method}: {err}"));
            }
            return Ok(reply["result"].clone());
        }
    }

    fn page(&mut self, method: &str, params: Value) -> Result<Value, String> {
        let session = self.session.clone();
        self.call(Some(&session), method, params)
    }

    /// Opens `url` in the tab.
    pub fn navigate(&mut self, url: &str) {
        self.page("Page.navigate", json!({"url": url})).expect("navigates");
    }

    /// The value of a script (promises are awaited); an exception is an error.
    pub fn eval(&mut self, expression: &str) -> Result<Value, String> {
        let r = self.page(
            "Runtime.evaluate",
            json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
        )?;
        if let Some(e) = r.get("exceptionDetails") {
            return Err(format!("script failed: {e}"));
        }
        Ok(r["result"]["value"].clone())
    }

    /// Evaluates `expression` until it gives something other than null/false/undefined; returns it.
    #[track_caller]
    pub fn wait(&mut self, expression: &str, secs: u64, what: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self.eval(expression).unwrap_or(Value::Null);
            if !matches!(v, Value::Null | Value::Bool(false)) {
                return v;
            }
            if Instant::now() > deadline {
                let state = self.eval("document.querySelector('#state')?.textContent + ' / ' + document.querySelector('#error')?.textContent");
                panic!("timed out after {secs} s waiting for {what} (page: {state:?})");
            }
            std::thread::sleep(Duration::from_millis(40));
        }
    }

    /// Picks `files` in the file input `selector`, as the file dialog does (it fires `change`).
    pub fn set_files(&mut self, selector: &str, files: &[PathBuf]) {
        let r = self
            .page("Runtime.evaluate", json!({"expression": format!("document.querySelector('{selector}')")}))
            .expect("finds the input");
        let object = r["result"]["objectId"].as_str().unwrap_or_else(|| panic!("no {selector}")).to_owned();
        // Chromium refuses to read a file whose path goes through `..`.
        let files: Vec<String> = files
            .iter()
            .map(|f| {
                f.canonicalize().unwrap_or_else(|e| panic!("{}: {e}", f.display())).display().to_string()
            })
            .collect();
        self.page("DOM.setFileInputFiles", json!({"files": files, "objectId": object}))
            .expect("sets the files");
    }

    /// Clicks the middle of the element with the mouse.
    pub fn click(&mut self, selector: &str) {
        let at = self
            .eval(&format!(
                "(() => {{ const e = document.querySelector('{selector}'); e.scrollIntoView({{block: 'center'}});
                 const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
            ))
            .unwrap_or_else(|e| panic!("no {selector}: {e}"));
        let (x, y) = (at[0].as_f64().unwrap(), at[1].as_f64().unwrap());
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            let event = json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1});
            self.page("Input.dispatchMouseEvent", event).expect("clicks");
        }
    }

    /// Focuses the element and presses `key` (e.g. `ArrowRight`, code 39) `times` times.
    pub fn press(&mut self, selector: &str, key: &str, code: u32, times: usize) {
        self.eval(&format!("document.querySelector('{selector}').focus()")).expect("focuses");
        for _ in 0..times {
            for kind in ["rawKeyDown", "keyUp"] {
                let event = json!({"type": kind, "key": key, "code": key, "windowsVirtualKeyCode": code});
                self.page("Input.dispatchKeyEvent", event).expect("presses a key");
            }
        }
    }

    /// A PNG of the tab.
    pub fn screenshot(&mut self) -> Vec<u8> {
        let r = self.page("Page.captureScreenshot", json!({"format": "png"})).expect("takes a screenshot");
        base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap_or_default())
            .expect("base64")
    }

    /// Saves downloads into `dir` without asking.
    pub fn allow_downloads(&mut self, dir: &Path) {
        let params = json!({"behavior": "allow", "downloadPath": dir.display().to_string()});
        self.call(None, "Browser.setDownloadBehavior", params).expect("allows downloads");
    }

    /// Chromium's own log (for failures).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.profile.path().join("chromium.log")).unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.ws.close(None);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
