//! `pyalloc view` in a real browser: Debian's chromium driven over WebDriver
//! (chromedriver on 127.0.0.1), the page of ints.trace.gz opened at the marker, stepped
//! with the keyboard, a block hovered; every number the page shows is compared with the
//! model's at the same event, the console must stay clean, and a screenshot is saved
//! under target/browser/.
//!
//! Without chromium and chromedriver a plain `cargo test` skips this with a message;
//! under CI (`CI=true`, as .ci/run sets) their absence fails it.

mod common;

use pyalloc::replay::Flow;
use pyalloc::report::teach::mimalloc::{explain as mi_explain, MiWalk};
use pyalloc::report::teach::miview;
use pyalloc::report::teach::view::{build, page};
use pyalloc::report::teach::{explain_in_walk, write_atomic, At, Residency, Walk};
use pyalloc::trace::pymalloc3::Pymalloc3Reader;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SHARED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared");

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}

/// chromedriver, killed when the test ends.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn call(method: &str, url: &str, body: Option<Value>) -> Value {
    let req = ureq::request(method, url).timeout(Duration::from_secs(120));
    let resp = match body {
        Some(b) => req.send_json(b),
        None => req.call(),
    };
    match resp {
        Ok(r) => r.into_json().expect("WebDriver answers JSON"),
        Err(ureq::Error::Status(code, r)) => {
            panic!(
                "{method} {url}: HTTP {code}: {}",
                r.into_string().unwrap_or_default()
            )
        }
        Err(e) => panic!("{method} {url}: {e}"),
    }
}

struct Session {
    base: String,
}

/// The event the page shows and a hash of its map's pixels.
const MAP_HASH: &str = "const m = document.getElementById('map'), d = m.getContext('2d').getImageData(0, 0, m.width, m.height).data; \
         let h = 0; for (let i = 0; i < d.length; i++) h = (h * 31 + d[i]) >>> 0; \
         return [+document.body.dataset.event, h];";

impl Session {
    /// The page reloaded at `#event=at` (a fresh page drawing its map whole): its
    /// [`MAP_HASH`] once it shows that event.
    fn redrawn_whole(&self, at: u64) -> Value {
        self.js(&format!(
            "window.stale = true; history.replaceState(null, '', '#event={at}'); location.reload();"
        ));
        let t = Instant::now();
        while self.js("return window.stale ? -1 : +document.body.dataset.event;") != json!(at) {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "the page did not reload at event {at}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        self.js(MAP_HASH)
    }
    /// No SEVERE entry in the browser's console log.
    fn assert_clean_console(&self) {
        let logs = self.post("/se/log", json!({"type": "browser"}));
        let errors: Vec<_> = logs
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|l| l["level"] == "SEVERE")
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        assert!(errors.is_empty(), "console errors: {errors:?}");
    }
    /// The window as PNG, written to `to`.
    fn screenshot(&self, to: &Path) {
        use base64::Engine;
        let png = self.get("/screenshot");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        write_atomic(to, &bytes).unwrap();
        eprintln!("screenshot: {}", to.display());
    }
    fn post(&self, path: &str, body: Value) -> Value {
        call("POST", &format!("{}{path}", self.base), Some(body))["value"].clone()
    }
    fn get(&self, path: &str) -> Value {
        call("GET", &format!("{}{path}", self.base), None)["value"].clone()
    }
    fn js(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": []}))
    }
    fn keys(&self, keys: &[&str]) {
        let mut actions = Vec::new();
        for k in keys {
            actions.push(json!({"type": "keyDown", "value": k}));
            actions.push(json!({"type": "keyUp", "value": k}));
        }
        self.post(
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]}),
        );
    }
    fn body(&self) -> BTreeMap<String, u64> {
        let v = self.js(
            "const d = document.body.dataset; return [d.event, d.arenas, d.usedPools, d.liveBlocks];",
        );
        let n = |i: usize| v[i].as_str().unwrap_or("x").parse::<u64>().unwrap();
        BTreeMap::from([
            ("event".to_string(), n(0)),
            ("arenas".to_string(), n(1)),
            ("used_pools".to_string(), n(2)),
            ("live_blocks".to_string(), n(3)),
        ])
    }
    fn event(&self) -> Option<u64> {
        self.js("return document.body.dataset.event;")
            .as_str()
            .and_then(|v| v.parse().ok())
    }
    fn wait_event(&self, e: u64) {
        let t = Instant::now();
        while self.event() != Some(e) {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "the page never reached event {e}: {:?}, {}",
                self.event(),
                self.js("return location.href;")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// What a view page shows (`body`) after each of the keys every page test presses (→ three
/// times, PageDown, PageUp, ←, each moving the event by 3, 1000, -1000, -1), after the
/// state `seen` starts with, held equal to what the model says at those events
/// (`model_at`): the events seen, in order.
fn step_and_hold_to_model(
    sess: &Session,
    mut seen: Vec<BTreeMap<String, u64>>,
    body: impl Fn() -> BTreeMap<String, u64>,
    model_at: impl Fn(&[u64]) -> BTreeMap<u64, BTreeMap<String, u64>>,
) -> Vec<u64> {
    for (keys, delta) in [
        (vec!["\u{E014}"; 3], 3i64),
        (vec!["\u{E00F}"], 1000),
        (vec!["\u{E00E}"], -1000),
        (vec!["\u{E012}"], -1),
    ] {
        let before = seen.last().unwrap()["event"] as i64;
        sess.keys(&keys);
        sess.wait_event((before + delta) as u64);
        seen.push(body());
    }
    let events: Vec<u64> = seen.iter().map(|b| b["event"]).collect();
    let model = model_at(&events);
    for b in &seen {
        assert_eq!(
            b, &model[&b["event"]],
            "page (left) and model (right) at event {}",
            b["event"]
        );
    }
    events
}

/// The model's numbers after event `e`, as `pyalloc stats --at e` prints them.
fn model_at(trace: &Path, events: &[u64]) -> BTreeMap<u64, BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    let last = events.iter().copied().max().unwrap_or(0);
    let mut reader = Pymalloc3Reader::open(trace).unwrap();
    let name = trace.display().to_string();
    Walk::replay(
        &mut reader,
        &name,
        None,
        false,
        Residency::Untracked,
        |walk, s| {
            let e = s.index;
            if !events.contains(&e) {
                return if e >= last { Flow::Stop } else { Flow::Next };
            }
            let s = walk.model().debug_malloc_stats();
            out.insert(
                e,
                BTreeMap::from([
                    ("event".to_string(), e),
                    ("arenas".to_string(), s.arenas_current),
                    (
                        "used_pools".to_string(),
                        s.classes.iter().map(|c| c.2).sum(),
                    ),
                    (
                        "live_blocks".to_string(),
                        s.classes.iter().map(|c| c.3).sum(),
                    ),
                ]),
            );
            if e >= last {
                Flow::Stop
            } else {
                Flow::Next
            }
        },
    )
    .unwrap();
    out
}

/// chromium, chromedriver and the folder the pages and screenshots go to; `None` (the
/// test skipped, said on stderr) when the machine has no chromium, which CI must have.
fn browser() -> Option<(PathBuf, PathBuf, PathBuf)> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let (Some(chromium), Some(chromedriver)) = (which("chromium"), which("chromedriver")) else {
        assert!(
            !ci,
            "CI=true but chromium or chromedriver is missing (apt-get install chromium chromium-driver)"
        );
        eprintln!(
            "skipped: no chromium/chromedriver on PATH (apt-get install chromium chromium-driver)"
        );
        return None;
    };
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser");
    std::fs::create_dir_all(&out).unwrap();
    Some((chromium, chromedriver, out))
}

#[test]
fn the_view_page_in_chromium_shows_the_models_numbers() {
    let Some((chromium, chromedriver, out)) = browser() else {
        return;
    };
    let trace = PathBuf::from(format!(
        "{SHARED}/traces/cpython-3.11.7-linux-x86_64/ints.trace.gz"
    ));
    let data = build(&trace, None, &[777778, 888888], false).unwrap();
    let marker = data
        .meta
        .chart
        .jumps
        .iter()
        .find(|j| j.1 == "marker 777778")
        .expect("the marker is among the page's jumps")
        .0;
    let html = page(&data);
    let file = out.join("ints.html");
    write_atomic(&file, html.as_bytes()).unwrap();
    eprintln!("page for ints.trace.gz: {} bytes", html.len());
    assert!(html.len() < 20_000_000, "{} bytes", html.len());
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no network"
    );

    in_chromium(&chromedriver, &chromium, &out, |sess| {
        drive(sess, &file, &trace, marker, &out)
    });
}

/// Starts chromedriver and a headless chromium session, runs `f` in it, and ends both
/// (also when `f` panics, whose panic is then resumed).
/// One browser at a time: the tests of this file run on parallel threads of one process,
/// and two chromiums on one profile directory (named by the process) break each other.
static ONE_BROWSER: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn in_chromium(chromedriver: &Path, chromium: &Path, out: &Path, f: impl FnOnce(&Session)) {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    // chromedriver on a free port.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let driver = Driver {
        child: Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        url: format!("http://127.0.0.1:{port}"),
    };
    let t = Instant::now();
    while ureq::get(&format!("{}/status", driver.url)).call().is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "chromedriver did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let profile = out.join(format!("profile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&profile);
    let caps = json!({"capabilities": {"alwaysMatch": {
        "browserName": "chrome",
        "goog:loggingPrefs": {"browser": "ALL"},
        "goog:chromeOptions": {
            "binary": chromium.to_string_lossy(),
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync",
                     "--window-size=1800,1100",
                     format!("--user-data-dir={}", profile.display())]
        }
    }}});
    let s = call("POST", &format!("{}/session", driver.url), Some(caps));
    let id = s["value"]["sessionId"].as_str().unwrap().to_string();
    let sess = Session {
        base: format!("{}/session/{id}", driver.url),
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&sess)));
    let _ = ureq::delete(&sess.base).call();
    let _ = std::fs::remove_dir_all(&profile);
    drop(driver);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

fn drive(sess: &Session, file: &Path, trace: &Path, marker: u64, out: &Path) {
    let url = format!(
        "file://{}#event={marker}",
        file.canonicalize().unwrap().display()
    );
    sess.post("/url", json!({ "url": url }));
    sess.wait_event(marker);
    // Three steps forward, one page down, one page up, one back.
    let seen = vec![sess.body()];
    let events = step_and_hold_to_model(&sess, seen, || sess.body(), |e| model_at(trace, e));
    eprintln!("page = model at events {events:?}");

    // Hover the first block of the first pool of the busiest arena row 4 (or the last).
    let layout = sess.js(
        "const m = document.getElementById('map'); const r = m.getBoundingClientRect(); \
         return [r.left, r.top, +m.dataset.labelWidth, +m.dataset.rowHeight, m.width, r.width];",
    );
    let f = |i: usize| layout[i].as_f64().unwrap();
    let scale = f(5) / f(4);
    let row = 4.0;
    let (x, y) = (
        (f(0) + (f(2) + 2.0 * 34.0 + 3.5) * scale).round(),
        (f(1) + (row * f(3) + 3.5) * scale).round(),
    );
    sess.post(
        "/actions",
        json!({"actions": [{"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
            "actions": [{"type": "pointerMove", "duration": 0, "x": x as i64, "y": y as i64, "origin": "viewport"}]}]}),
    );
    let shown = sess.js("return document.getElementById('explain').textContent;");
    let shown = shown.as_str().unwrap().to_string();
    eprintln!("hovered:\n{shown}");
    let addr = shown
        .split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("nothing shown on hover at ({x}, {y}); map layout {layout}"))
        .to_string();
    let at = *events.last().unwrap();
    let (mut walk, _) = Walk::to(trace, None, false, At::Event(at)).unwrap();
    let a = pyalloc::Addr::parse_hex(&addr).unwrap();
    let e = explain_in_walk(&mut walk, a, at);
    assert_eq!(e.address, addr);
    let class = e.size_class.unwrap();
    assert!(
        shown.contains(&format!(
            "size class {} ({} bytes)",
            class.index, class.bytes
        )),
        "{shown}"
    );
    for o in &e.owner_chain {
        assert!(
            shown.contains(&format!("{} {} at {}", o.kind, o.index, o.address)),
            "{} {} at {} missing from:\n{shown}",
            o.kind,
            o.index,
            o.address
        );
    }
    assert!(
        shown.contains(&format!("\n  {}", e.state)),
        "{}: {shown}",
        e.state
    );
    let last = e.last_event.unwrap();
    assert!(
        shown.contains(&format!("last {}: event {}", last.what, last.event)),
        "{shown}"
    );

    // Step timing, measured in the page around each synchronous key handler (state
    // rebuilt and map redrawn): 200 steps forward, 200 back, 40 jumps of 1000. Printed,
    // not asserted (timing depends on the machine).
    let timing = sess.js(
        "const kd = (k) => document.dispatchEvent(new KeyboardEvent('keydown', {key: k})); \
         const run = (key, n) => { const t = []; for (let i = 0; i < n; i++) { const t0 = performance.now(); kd(key(i)); t.push(performance.now() - t0); } return t; }; \
         const f = run(() => 'ArrowRight', 200), b = run(() => 'ArrowLeft', 200), j = run((i) => i % 2 ? 'PageUp' : 'PageDown', 40); \
         const med = (a) => a.slice().sort((x, y) => x - y)[a.length >> 1]; \
         return [f, b, j, f.concat(b, j)].map((a) => [a.length, Math.max(...a), med(a)]);",
    );
    let fig = |i: usize| {
        let v = &timing[i];
        format!(
            "n={} max {:.1} ms, median {:.1} ms",
            v[0],
            v[1].as_f64().unwrap(),
            v[2].as_f64().unwrap()
        )
    };
    eprintln!(
        "step redraw in chromium: ArrowRight {}; ArrowLeft {}; PgUp/PgDn {}; all {}",
        fig(0),
        fig(1),
        fig(2),
        fig(3)
    );

    // The map drawn step by step (only the pools each step changed) is the map a fresh
    // page draws whole at the same event, pixel for pixel.
    let stepped = sess.js(MAP_HASH);
    let at = stepped[0].as_u64().unwrap();
    let fresh = sess.redrawn_whole(at);
    assert_eq!(
        stepped, fresh,
        "(event, map pixels' hash) stepped vs drawn whole"
    );

    // A clean console.
    sess.assert_clean_console();

    // Back to the marker and a screenshot.
    sess.js(&format!("location.hash = '#event={marker}';"));
    sess.wait_event(marker);
    sess.post(
        "/actions",
        json!({"actions": [{"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
            "actions": [{"type": "pointerMove", "duration": 0, "x": x as i64, "y": y as i64, "origin": "viewport"}]}]}),
    );
    sess.screenshot(&out.join("view.png"));
}

/// The mimalloc model's numbers after each of `events` (numbered as the recording counts
/// them, OS lines included): segments, pages and live blocks, as `data-*` on the page.
fn mi_model_at(trace: &Path, events: &[u64]) -> BTreeMap<u64, BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    let last = events.iter().copied().max().unwrap_or(0);
    let mut prev: Option<BTreeMap<String, u64>> = None;
    let mut prev_event = 0;
    MiWalk::replay(trace, None, false, |w, s| {
        // an event number between two calls (an OS line) shows the state after the call before
        for &e in events {
            if e > prev_event && e < s.index {
                if let Some(p) = &prev {
                    let mut p = p.clone();
                    p.insert("event".into(), e);
                    out.insert(e, p);
                }
            }
        }
        let pages = w.pages();
        let n = BTreeMap::from([
            ("event".to_string(), s.index),
            ("segments".to_string(), w.segment_count() as u64),
            ("pages".to_string(), pages as u64),
            ("live_blocks".to_string(), w.live_blocks()),
        ]);
        if events.contains(&s.index) {
            out.insert(s.index, n.clone());
        }
        prev = Some(n);
        prev_event = s.index;
        if s.index >= last {
            Flow::Stop
        } else {
            Flow::Next
        }
    })
    .unwrap();
    out
}

#[test]
fn the_mimalloc_view_page_in_chromium_shows_the_models_numbers() {
    let Some((chromium, chromedriver, out)) = browser() else {
        return;
    };
    let dir = format!("{SHARED}/traces/cpython-3.13.0-mimalloc-linux-x86_64");
    let trace = PathBuf::from(format!("{dir}/ints.trace.gz"));
    let data = miview::build(&trace, None, &[], false).unwrap();
    let marker = data
        .meta
        .chart
        .jumps
        .iter()
        .find(|j| j.1 == "marker 777778")
        .expect("the recording's stats marker is among the page's jumps")
        .0;
    let html = miview::page(&data);
    let file = out.join("ints-mimalloc.html");
    write_atomic(&file, html.as_bytes()).unwrap();
    eprintln!("mimalloc page for ints.trace.gz: {} bytes", html.len());
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no network"
    );
    // CPython's own count at the marker
    let text = std::fs::read_to_string(format!("{dir}/ints.stderr.txt")).unwrap();
    let cpython = pyalloc::mimalloc::stats::parse_stderr_stats(&text)[0].allocated_blocks;
    in_chromium(&chromedriver, &chromium, &out, |sess| {
        drive_mimalloc(sess, &file, &trace, marker, cpython, &out)
    });
}

fn drive_mimalloc(
    sess: &Session,
    file: &Path,
    trace: &Path,
    marker: u64,
    cpython: u64,
    out: &Path,
) {
    let body = || {
        let v = sess.js(
            "const d = document.body.dataset; return [d.event, d.segments, d.pages, d.liveBlocks];",
        );
        let n = |i: usize| v[i].as_str().unwrap_or("x").parse::<u64>().unwrap();
        BTreeMap::from([
            ("event".to_string(), n(0)),
            ("segments".to_string(), n(1)),
            ("pages".to_string(), n(2)),
            ("live_blocks".to_string(), n(3)),
        ])
    };
    let url = format!(
        "file://{}#event={marker}",
        file.canonicalize().unwrap().display()
    );
    sess.post("/url", json!({ "url": url }));
    sess.wait_event(marker);
    let seen = vec![body()];
    assert_eq!(
        seen[0]["live_blocks"], cpython,
        "CPython's Allocated Blocks at the marker"
    );
    let events = step_and_hold_to_model(&sess, seen, body, |e| mi_model_at(trace, e));
    eprintln!("mimalloc page = model at events {events:?}");

    // Hover a pixel of segment 0's slice 1 (its first page) and compare with explain.
    let layout = sess.js(
        "const m = document.getElementById('map'); const r = m.getBoundingClientRect(); \
         return [r.left, r.top, +m.dataset.labelWidth, +m.dataset.pitch, m.width, r.width];",
    );
    let f = |i: usize| layout[i].as_f64().unwrap();
    let scale = f(5) / f(4);
    let (x, y) = (
        (f(0) + (f(2) + f(3) + 3.5) * scale).round(),
        (f(1) + 3.5 * scale).round(),
    );
    sess.post(
        "/actions",
        json!({"actions": [{"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
            "actions": [{"type": "pointerMove", "duration": 0, "x": x as i64, "y": y as i64, "origin": "viewport"}]}]}),
    );
    let shown = sess.js("return document.getElementById('explain').textContent;");
    let shown = shown.as_str().unwrap().to_string();
    eprintln!("hovered:\n{shown}");
    let addr = shown
        .split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("nothing shown on hover at ({x}, {y}); map layout {layout}"))
        .to_string();
    let at = *events.last().unwrap();
    let (walk, _) = MiWalk::to(trace, None, false, At::Event(at)).unwrap();
    let a = pyalloc::Addr::parse_hex(&addr).unwrap();
    let e = mi_explain(&walk, a, at).unwrap();
    assert_eq!(e.address, addr);
    let class = e.size_class.unwrap();
    assert!(
        shown.contains(&format!(
            "size class {} ({} bytes)",
            class.index, class.bytes
        )),
        "{shown}"
    );
    for o in e
        .owner_chain
        .iter()
        .filter(|o| o.kind.ends_with("page") || o.kind == "block")
    {
        assert!(
            shown.contains(&format!("{} {} at {}", o.kind, o.index, o.address)),
            "{} {} at {} missing from:\n{shown}",
            o.kind,
            o.index,
            o.address
        );
    }
    let state = e.state.split([',', ':']).next().unwrap();
    assert!(
        shown.contains(&format!("\n  {state}")),
        "{}: {shown}",
        e.state
    );
    if let Some(last) = e.last_event {
        assert!(
            shown.contains(&format!("last {}: event {}", last.what, last.event)),
            "{shown}"
        );
    }

    // The map drawn step by step is the map a fresh page draws whole at the same event.
    sess.post(
        "/actions",
        json!({"actions": [{"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
            "actions": [{"type": "pointerMove", "duration": 0, "x": 1, "y": 1, "origin": "viewport"}]}]}),
    );
    sess.keys(&["\u{E014}"; 5]);
    sess.wait_event(at + 5);
    let stepped = sess.js(MAP_HASH);
    let fresh = sess.redrawn_whole(at + 5);
    assert_eq!(
        stepped, fresh,
        "(event, map pixels' hash) stepped vs drawn whole"
    );

    sess.assert_clean_console();
    sess.screenshot(&out.join("view-mimalloc.png"));
}

/// `compare --html` with `--real-rss` in chromium: the "held to the real process" table
/// shows, per phase, the `--json` figures (each cell's text in KiB to one decimal and its
/// `data-bytes`), "yes" exactly where |error| ≤ tolerance, and the chart one ring per
/// phase inside the plot carrying the real Δ; a clean console.
#[test]
fn the_compare_page_in_chromium_shows_the_real_figures_the_json_gives() {
    let Some((chromium, chromedriver, out)) = browser() else {
        return;
    };
    let dir = out.join(format!("compare-real-{}", std::process::id()));
    let held = common::held_run(&dir);
    let file = out.join("compare-real.html");
    let mut args: Vec<&str> = held.args.iter().map(String::as_str).collect();
    let page = file.to_string_lossy().into_owned();
    args.extend(["--html", &page]);
    let (ok, _, err) = common::pyalloc(&args);
    assert!(ok, "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
    let models = held.json["traces"][0]["models"].as_array().unwrap();
    let rows = models.iter().find(|m| m["model"] == "glibc-2.36").unwrap()["markers"]
        .as_array()
        .unwrap()
        .clone();
    in_chromium(&chromedriver, &chromium, &out, |sess| {
        let url = format!("file://{}", file.canonicalize().unwrap().display());
        sess.post("/url", json!({ "url": url }));
        let shown = sess.js(
            "return [...document.querySelectorAll('table.held')].map((t) => [t.dataset.model, \
             [...t.querySelectorAll('tr[data-phase]')].map((r) => [+r.dataset.phase, \
             Object.fromEntries([...r.querySelectorAll('td[class]')].map((c) => \
             [c.className, [c.innerText, c.dataset.bytes === undefined ? null : +c.dataset.bytes]]))])]);",
        );
        let tables = shown.as_array().unwrap();
        assert_eq!(tables.len(), 1, "one held model: {shown}");
        assert_eq!(tables[0][0], "glibc-2.36");
        let phases = tables[0][1].as_array().unwrap();
        assert_eq!(phases.len(), rows.len(), "{shown}");
        let mut answers = Vec::new();
        for (k, (p, row)) in phases.iter().zip(&rows).enumerate() {
            assert_eq!(p[0], k);
            let cells = &p[1];
            for c in [
                "real_rss",
                "real_delta",
                "predicted_delta",
                "error",
                "tolerance",
            ] {
                let bytes = row[c].as_i64().unwrap();
                assert_eq!(
                    cells[c][1].as_i64(),
                    Some(bytes),
                    "phase {k} {c}: data-bytes"
                );
                let text = cells[c][0].as_str().unwrap();
                let kib: f64 = text
                    .parse()
                    .unwrap_or_else(|_| panic!("phase {k} {c}: {text:?}"));
                assert!(
                    (kib * 1024.0 - bytes as f64).abs() <= 0.05 * 1024.0,
                    "phase {k} {c}: the page shows {text} KiB, the JSON {bytes} bytes"
                );
            }
            let within = row["error"].as_i64().unwrap().abs() <= row["tolerance"].as_i64().unwrap();
            assert_eq!(
                cells["within"][0],
                if within { "yes" } else { "no" },
                "phase {k}"
            );
            answers.push(within);
        }
        assert!(
            answers.contains(&true) && answers.contains(&false),
            "the run holds some phases and not others: {answers:?}"
        );
        // the rings: one per phase, inside the chart's plot, carrying the real Δ
        let rings = sess.js(
            "return [...document.querySelectorAll('circle.dot')].map((c) => { \
             const r = c.getBoundingClientRect(), s = c.ownerSVGElement.getBoundingClientRect(); \
             return [c.dataset.model, +c.dataset.phase, +c.dataset.realDelta, \
             r.width > 0 && r.left >= s.left && r.right <= s.right && r.top >= s.top && r.bottom <= s.bottom]; });",
        );
        let rings = rings.as_array().unwrap();
        assert_eq!(rings.len(), rows.len(), "{rings:?}");
        for (k, (ring, row)) in rings.iter().zip(&rows).enumerate() {
            assert_eq!(ring[0], "glibc-2.36");
            assert_eq!(ring[1], k);
            assert_eq!(ring[2].as_i64(), row["real_delta"].as_i64(), "phase {k}");
            assert_eq!(
                ring[3], true,
                "phase {k}: the ring is drawn inside the chart"
            );
        }
        sess.assert_clean_console();
        sess.screenshot(&out.join("compare-real.png"));
    });
}
