//! Debian's chromium for the tests of the page at `/`: run once on a URL (`--dump-dom`,
//! `--screenshot`), or driven over WebDriver (Debian's chromedriver) to click and download.
//!
//! Either way chromium reaches only loopback: every other host is mapped to nothing and sent to
//! a proxy that is not there, and its background services are off, so test traffic never
//! leaves the machine.
#![allow(dead_code)] // each test uses the part it needs

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// What keeps chromium headless and on loopback, in both ways of running it.
const FLAGS: [&str; 13] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--no-pings",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--proxy-server=127.0.0.1:9",
    "--window-size=1400,1100",
];

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Debian's chromium, when installed (`cargo xtask setup`).
pub fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Chromium and chromedriver both, when installed.
pub fn driver_installed() -> bool {
    chromium().is_some() && Path::new(CHROMEDRIVER).exists()
}

/// Chromium, headless, kept to loopback, with `extra` flags, on `url`; its standard output.
pub fn browse(browser: &Path, url: &str, extra: &[&str]) -> String {
    let profile = std::env::temp_dir().join(format!("outflow-chromium-{}", std::process::id()));
    let out = Command::new(browser)
        .args(FLAGS)
        .arg("--virtual-time-budget=4000")
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("running chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `target/artifacts/browser/`, kept by CI.
pub fn artifacts() -> PathBuf {
    let dir = outflow_tests::root().join("target/artifacts/browser");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The text of the `<td>` whose opening tag holds `attr`, tags stripped, in a dumped DOM.
pub fn element_text(dom: &str, attr: &str) -> String {
    let at = dom
        .find(attr)
        .unwrap_or_else(|| panic!("no element with {attr} in the page:\n{dom}"));
    let start = dom[at..].find('>').unwrap() + at + 1;
    let end = dom[start..].find("</td>").map_or(dom.len(), |e| e + start);
    let mut text = String::new();
    let mut in_tag = false;
    for c in dom[start..end].chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text
}

/// Chromium driven over WebDriver by a chromedriver of its own on loopback, downloading into a
/// directory of its own; both stopped when dropped. Calls block: the tests are synchronous.
pub struct Driver {
    runtime: tokio::runtime::Runtime,
    client: Option<Client>,
    chromedriver: Child,
    /// chromedriver's log, the profile and the downloads; removed when dropped.
    dir: PathBuf,
    /// Where the browser saves downloads, without asking.
    pub downloads: PathBuf,
}

impl Driver {
    pub fn start(name: &str) -> Driver {
        let browser = chromium().expect("chromium installed");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir =
            std::env::temp_dir().join(format!("outflow-driver-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let downloads = dir.join("downloads");
        std::fs::create_dir_all(&downloads).unwrap();
        let log = std::fs::File::create(dir.join("chromedriver.log")).unwrap();
        let chromedriver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting chromedriver");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut args: Vec<String> = FLAGS.iter().map(|f| f.to_string()).collect();
        args.push(format!("--user-data-dir={}", dir.join("profile").display()));
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": browser,
                "args": args,
                "prefs": {
                    "download.default_directory": downloads,
                    "download.prompt_for_download": false,
                    "safebrowsing.enabled": false,
                },
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object")
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = runtime
            .block_on(
                ClientBuilder::new(connector)
                    .capabilities(capabilities)
                    .connect(&format!("http://127.0.0.1:{port}")),
            )
            .unwrap_or_else(|e| panic!("a chromium session from chromedriver: {e}"));
        Driver {
            runtime,
            client: Some(client),
            chromedriver,
            dir,
            downloads,
        }
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("the session is open")
    }

    /// Loads `url` afresh (a new hash alone would not reload the page).
    pub fn open(&self, url: &str) {
        self.runtime.block_on(async {
            self.client().goto("about:blank").await.unwrap();
            self.client().goto(url).await.unwrap();
        });
    }

    /// Runs `script` (a function body) in the page; what it returns.
    pub fn script(&self, script: &str) -> Value {
        self.runtime
            .block_on(self.client().execute(script, vec![]))
            .unwrap_or_else(|e| panic!("running {script}: {e}"))
    }

    /// Clicks the element `css` selects.
    pub fn click(&self, css: &str) {
        self.runtime.block_on(async {
            let e = self
                .client()
                .find(Locator::Css(css))
                .await
                .unwrap_or_else(|e| panic!("no {css} to click: {e}"));
            e.click()
                .await
                .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
        });
    }

    /// Waits for `f` to give a value, or fails saying `what` with the last thing `f` saw.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&Driver) -> Result<T, String>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            match f(self) {
                Ok(v) => return v,
                Err(seen) => assert!(
                    Instant::now() < deadline,
                    "timed out waiting for {what}; last seen: {seen}"
                ),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Saves a PNG of the window to `file`.
    pub fn screenshot(&self, file: &Path) {
        let png = self
            .runtime
            .block_on(self.client().screenshot())
            .expect("a screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(file, png).unwrap();
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self.runtime.block_on(client.close());
        }
        let _ = self.chromedriver.kill();
        let _ = self.chromedriver.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
