//! The API against its own OpenAPI document: schemathesis (PyPI, pinned) fuzzes every
//! operation of a real `outflow controller` on loopback and fails on any 5xx, any status,
//! content type or header the document does not list, and any response its schema rejects.
//!
//! The controller runs on a free 127.0.0.1 port with a store and capture folder of its own,
//! seeded with two nodes' reports so the reads have rows to return; no request leaves the
//! machine. Bounded: a fixed number of examples per operation and a per-request timeout.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use outflow_core::wire::routes;

use crate::venv::Tool;

/// schemathesis, pinned: its checks decide what "conforms" means.
const SCHEMATHESIS: Tool = Tool {
    venv: "venv-schemathesis",
    pin: "schemathesis==4.32.5",
    bin: "schemathesis",
};

/// What is checked on every response.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance";

/// Test cases per operation and phase: about 30 s on two cores.
const MAX_EXAMPLES: &str = "30";

/// Two operations hold a request open by design. The agents' long poll waits up to 30 s for
/// a task: it is asked not to wait (its `node` is still fuzzed). A capture's pcapng download
/// streams until the capture ends, and with no agent here none ever does: it is left out
/// (its 400 and 404 are tested in the controller's own tests).
const CONFIG: &str = r#"
[[operations]]
include-name = "GET /api/v1/agent/captures"
parameters = { "query.wait" = 0 }

[[operations]]
include-name = "GET /api/v1/captures/{id}/pcapng"
enabled = false
"#;

/// Runs schemathesis against the controller `outflow` starts.
pub fn run(outflow: &Path) -> Result<()> {
    let schemathesis = crate::venv::ensure(&SCHEMATHESIS)?;
    let dir = std::env::temp_dir().join(format!("outflow-schemathesis-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("captures"))?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let url = format!("http://127.0.0.1:{port}");
    let log = std::fs::File::create(dir.join("controller.log"))?;
    let mut controller = Running(
        Command::new(outflow)
            .args([
                "controller",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--db",
            ])
            .arg(dir.join("outflow.db"))
            .arg("--capture-dir")
            .arg(dir.join("captures"))
            // Loopback without a token: the document's security is not what is tested here.
            .env_remove("OUTFLOW_TOKEN")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting the controller")?,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while ureq::get(format!("{url}/readyz")).call().is_err() {
        if Instant::now() > deadline {
            bail!("the controller did not come up on {url}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    seed(&url)?;
    let config = dir.join("schemathesis.toml");
    std::fs::write(&config, CONFIG)?;
    let started = Instant::now();
    let status = Command::new(&schemathesis)
        .arg("--config-file")
        .arg(&config)
        .args(["run", &format!("{url}{}", routes::OPENAPI)])
        .args(["--checks", CHECKS, "--max-examples", MAX_EXAMPLES])
        .args(["--request-timeout", "10", "--wait-for-schema", "10"])
        // Its cache (`.schemathesis/`) goes with the temp folder, not into the work tree.
        .current_dir(&dir)
        .status()
        .context("running schemathesis")?;
    let exited = controller.0.try_wait()?;
    drop(controller);
    let log = std::fs::read_to_string(dir.join("controller.log")).unwrap_or_default();
    if let Some(code) = exited {
        bail!("the controller exited ({code}) under schemathesis:\n{log}");
    }
    if log.contains("panicked") {
        bail!("a controller handler panicked under schemathesis:\n{log}");
    }
    if !status.success() {
        bail!(
            "schemathesis found responses that break the API's document (above); the \
             controller's log is {}",
            dir.join("controller.log").display()
        );
    }
    println!(
        "schemathesis: every operation conforms to {} ({:.0} s)",
        routes::OPENAPI,
        started.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Two nodes' reports, ending now, as agents send them.
fn seed(url: &str) -> Result<()> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64;
    for node in 0..2 {
        let report = crate::bench_controller::report(node, 1, now, Duration::from_secs(10));
        let status = ureq::post(format!("{url}{}", routes::REPORTS))
            .header("content-type", "application/json")
            .send(&serde_json::to_vec(&report)?[..])
            .context("posting a seed report")?
            .status();
        if status != 204 {
            bail!("the controller answered {status} to a seed report");
        }
    }
    Ok(())
}

/// The controller, killed when dropped (also when schemathesis fails).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
