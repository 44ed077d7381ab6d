//! The smallest WebDriver client that drives Debian's chromium through chromedriver.
//!
//! Why not fantoccini/thirtyfour: they pull an async HTTP client stack into the build for a
//! dozen JSON calls to a local process; this is plain blocking HTTP/1.1 on loopback and
//! builds in no time. Every wait polls the page for an element or text with a deadline and
//! fails with what it was waiting for — never a bare sleep.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
pub const WAIT: Duration = Duration::from_secs(20);

/// Where the browser and its driver are, if installed.
pub struct Browser {
    pub chromium: PathBuf,
    pub chromedriver: PathBuf,
}

impl Browser {
    pub fn find() -> Option<Self> {
        let pick = |var: &str, candidates: &[&str]| -> Option<PathBuf> {
            if let Some(p) = std::env::var_os(var) {
                return Some(PathBuf::from(p));
            }
            candidates.iter().map(PathBuf::from).find(|p| p.exists())
        };
        Some(Self {
            chromium: pick(
                "TRELLIS_CHROMIUM",
                &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
            )?,
            chromedriver: pick(
                "TRELLIS_CHROMEDRIVER",
                &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"],
            )?,
        })
    }
}

pub struct Driver {
    child: Child,
    port: u16,
    session: String,
}

#[derive(Clone, Debug)]
pub struct Element(String);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.call("DELETE", &format!("/session/{}", self.session), None);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Driver {
    /// Start chromedriver and a headless chromium with a fresh profile in `profile`.
    pub fn start(browser: &Browser, profile: &Path, log: &Path) -> Self {
        let port = free_port();
        let log_file = std::fs::File::create(log).expect("chromedriver log file");
        let child = Command::new(&browser.chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", browser.chromedriver.display()));
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {port}; see {}",
                log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut driver = Driver {
            child,
            port,
            session: String::new(),
        };
        let caps = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                // The controller's certificate is issued by the home's own CA.
                "acceptInsecureCerts": true,
                "goog:chromeOptions": {
                    "binary": browser.chromium,
                    "args": [
                        "--headless=new", "--no-sandbox", "--disable-gpu",
                        "--disable-dev-shm-usage",
                        "--disable-background-networking", "--disable-component-update",
                        "--disable-sync", "--no-first-run", "--ignore-certificate-errors",
                        "--window-size=1280,900", "--force-device-scale-factor=1",
                        "--lang=en-US",
                        format!("--user-data-dir={}", profile.display()),
                    ]
                }
            }}
        });
        let v = driver
            .call("POST", "/session", Some(caps))
            .unwrap_or_else(|e| {
                panic!("chromedriver refused a session: {e}; see {}", log.display())
            });
        driver.session = v["sessionId"]
            .as_str()
            .expect("a session id from chromedriver")
            .to_owned();
        driver
    }

    /// One WebDriver command; returns its `value`, or the driver's error message.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(120)))
            .map_err(|e| e.to_string())?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        )
        .map_err(|e| e.to_string())?;
        // chromedriver keeps the connection open whatever we ask: read by Content-Length
        // (or chunks) rather than to end of stream.
        let mut raw = Vec::new();
        let mut buf = [0u8; 64 * 1024];
        let (head, body_start) = loop {
            let n = s.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("chromedriver closed the connection".into());
            }
            raw.extend_from_slice(&buf[..n]);
            if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break (
                    String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase(),
                    split + 4,
                );
            }
        };
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        let chunked = head.contains("transfer-encoding: chunked");
        loop {
            let have = raw.len() - body_start;
            let done = match length {
                Some(len) => have >= len,
                None if chunked => raw.ends_with(b"0\r\n\r\n"),
                None => false,
            };
            if done {
                break;
            }
            let n = s.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
        }
        let mut payload = raw[body_start..].to_vec();
        if chunked {
            payload = dechunk(&payload);
        }
        let v: Value = serde_json::from_slice(&payload)
            .map_err(|e| format!("bad JSON from chromedriver: {e}"))?;
        let status_ok = head.starts_with("http/1.1 200");
        if !status_ok {
            return Err(format!(
                "{}: {}",
                v["value"]["error"].as_str().unwrap_or("error"),
                v["value"]["message"].as_str().unwrap_or("")
            ));
        }
        Ok(v["value"].clone())
    }

    fn cmd(&self, method: &str, what: &str, body: Option<Value>) -> Result<Value, String> {
        self.call(method, &format!("/session/{}/{what}", self.session), body)
    }

    pub fn goto(&self, url: &str) {
        self.cmd("POST", "url", Some(json!({ "url": url })))
            .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    }

    pub fn set_window(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "window/rect",
            Some(json!({ "width": width, "height": height })),
        )
        .expect("resize the window");
    }

    fn find_now(&self, css: &str) -> Option<Element> {
        let v = self
            .cmd(
                "POST",
                "element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .ok()?;
        v[ELEMENT_KEY].as_str().map(|id| Element(id.to_owned()))
    }

    pub fn exists(&self, css: &str) -> bool {
        self.find_now(css).is_some()
    }

    /// Wait until an element matching `css` exists and is displayed.
    pub fn wait(&self, css: &str) -> Element {
        self.wait_for(css, WAIT)
    }

    pub fn wait_for(&self, css: &str, timeout: Duration) -> Element {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.find_now(css) {
                if self.displayed(&e) {
                    return e;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "waited {timeout:?} for `{css}` on the page; the page says:\n{}",
                    self.page_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait until the element matching `css` shows `needle` in its text.
    pub fn wait_text(&self, css: &str, needle: &str) -> String {
        self.wait_text_for(css, needle, WAIT)
    }

    pub fn wait_text_for(&self, css: &str, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        loop {
            if let Some(e) = self.find_now(css) {
                last = self.text(&e);
                if last.contains(needle) {
                    return last;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "waited {timeout:?} for `{css}` to say {needle:?}; it says {last:?}; the page says:\n{}",
                    self.page_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait until nothing matches `css`.
    pub fn wait_gone(&self, css: &str) {
        let deadline = Instant::now() + WAIT;
        while self.exists(css) {
            if Instant::now() > deadline {
                panic!(
                    "`{css}` is still on the page; the page says:\n{}",
                    self.page_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn displayed(&self, e: &Element) -> bool {
        self.cmd("GET", &format!("element/{}/displayed", e.0), None)
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
    }

    pub fn text(&self, e: &Element) -> String {
        self.cmd("GET", &format!("element/{}/text", e.0), None)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    pub fn attr(&self, e: &Element, name: &str) -> Option<String> {
        self.cmd("GET", &format!("element/{}/attribute/{name}", e.0), None)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
    }

    pub fn click(&self, e: &Element) {
        self.cmd("POST", &format!("element/{}/click", e.0), Some(json!({})))
            .unwrap_or_else(|err| panic!("click failed: {err}"));
    }

    /// Clear an input and type into it, as a person would.
    pub fn type_into(&self, e: &Element, text: &str) {
        let _ = self.cmd("POST", &format!("element/{}/clear", e.0), Some(json!({})));
        self.cmd(
            "POST",
            &format!("element/{}/value", e.0),
            Some(json!({ "text": text })),
        )
        .unwrap_or_else(|err| panic!("typing failed: {err}"));
    }

    pub fn script(&self, js: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "execute/sync",
            Some(json!({ "script": js, "args": args })),
        )
        .unwrap_or_else(|e| panic!("script failed: {e}"))
    }

    /// Emulate the person's colour-scheme preference ("dark" or "light") through
    /// chromedriver's DevTools bridge.
    pub fn color_scheme(&self, scheme: &str) {
        self.cmd(
            "POST",
            "goog/cdp/execute",
            Some(json!({
                "cmd": "Emulation.setEmulatedMedia",
                "params": { "features": [{ "name": "prefers-color-scheme", "value": scheme }] }
            })),
        )
        .expect("emulate the colour scheme");
    }

    /// Run an async script: it calls its last argument with the result.
    pub fn script_async(&self, js: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "execute/async",
            Some(json!({ "script": js, "args": args })),
        )
        .unwrap_or_else(|e| panic!("async script failed: {e}"))
    }

    pub fn page_text(&self) -> String {
        self.cmd(
            "POST",
            "execute/sync",
            Some(json!({ "script": "return document.body ? document.body.innerText : ''", "args": [] })),
        )
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
    }

    /// A screenshot of the whole page: the window grows to the page's height for it.
    pub fn screenshot_full(&self, path: &Path) {
        let rect = self.cmd("GET", "window/rect", None).expect("window size");
        let (w, h) = (
            rect["width"].as_u64().unwrap_or(1280) as u32,
            rect["height"].as_u64().unwrap_or(900) as u32,
        );
        // The window is taller than its viewport by the browser's own frame: grow it by
        // what the page needs beyond the viewport.
        let missing = self
            .script(
                "return Math.max(0, Math.ceil(document.documentElement.scrollHeight - window.innerHeight))",
                json!([]),
            )
            .as_u64()
            .unwrap_or(0) as u32;
        let grow = (h + missing).min(4000);
        if grow > h {
            self.set_window(w, grow);
        }
        self.screenshot(path);
        if grow > h {
            self.set_window(w, h);
        }
    }

    pub fn screenshot(&self, path: &Path) {
        let b64 = self
            .cmd("GET", "screenshot", None)
            .expect("a screenshot")
            .as_str()
            .expect("screenshot as base64")
            .to_owned();
        let png = base64_decode(&b64);
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        std::fs::write(path, png).expect("write the screenshot");
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&body[..eol])
                .split(';')
                .next()
                .unwrap_or("0")
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 || body.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&body[eol + 2..eol + 2 + size]);
        body = &body[(eol + 4 + size).min(body.len())..];
    }
    out
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}
