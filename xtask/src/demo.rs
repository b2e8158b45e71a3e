//! `cargo xtask demo`: outflow's main job on this machine. A lab of network namespaces plays a
//! node with a pod, `outflow up` watches it, the pod runs real curl and dig against working and
//! broken destinations, and the findings, connections and DNS lookups are printed as the API
//! holds them. Then `outflow up` keeps running for you to poke at (Ctrl-C stops it and removes
//! the lab), or stops at once with `--once` or when stdin is not a terminal.

use std::io::IsTerminal;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{is_root, root_dir, run, setup};

const PREFIX: &str = "ofdemo";
const LISTEN: &str = "127.0.0.1:7878";

/// Tears the lab down and stops `outflow up`, whatever happened.
struct Lab {
    script: std::path::PathBuf,
    up: Option<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut up) = self.up.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &up.id().to_string()])
                .status();
            let _ = up.wait();
        }
        let _ = Command::new(&self.script).args(["down", PREFIX]).status();
    }
}

pub fn run_demo(args: &[String]) -> Result<()> {
    setup()?;
    let root = root_dir();
    let outflow = crate::build_outflow()?;
    if !is_root() {
        bail!("the demo lab creates network namespaces and loads eBPF programs: run it as root");
    }
    let once = args.iter().any(|a| a == "--once") || !std::io::stdin().is_terminal();
    // Ctrl-C reaches `outflow up` too (same process group); this process waits for it to
    // detach and then removes the lab.
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed))
        .context("installing the Ctrl-C handler")?;

    let script = root.join("tests/lab/lab.sh");
    let _ = Command::new(&script).args(["down", PREFIX]).status();
    run(Command::new(&script).args(["up", PREFIX]))?;
    let mut lab = Lab {
        script: script.clone(),
        up: None,
    };
    let dir = std::env::temp_dir().join("outflow-demo");
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("outflow.db");
    let _ = std::fs::remove_file(&db);
    let profile = root.join("examples/lab-profile.yaml");
    let args = [
        "up",
        "--node-netns",
        "ofdemo-node",
        "--iface-prefix",
        "ofdemo-veth",
        "--interval",
        "2s",
        "--listen",
        LISTEN,
    ];
    banner(&format!(
        "$ outflow {} --db {} --profile {}",
        args.join(" "),
        db.display(),
        profile.display()
    ));
    lab.up = Some(
        Command::new(&outflow)
            .args(args)
            .arg("--db")
            .arg(&db)
            .arg("--profile")
            .arg(&profile)
            .spawn()
            .context("starting outflow up")?,
    );
    wait_for_api(&outflow)?;
    banner("# the pod runs real curl and dig (tests/lab/lab.sh traffic ofdemo)");
    run(Command::new(&script).args(["traffic", PREFIX]))?;
    // Unanswered SYNs and DNS timeouts are concluded a few seconds after the last try, and
    // reported at the end of the next window.
    std::thread::sleep(Duration::from_secs(8));
    let controller = format!("http://{LISTEN}");
    for what in ["findings", "connections", "dns"] {
        banner(&format!("$ outflow {what}"));
        run(Command::new(&outflow)
            .arg(what)
            .args(["--controller", &controller]))?;
    }
    if once {
        return Ok(());
    }
    banner(&format!(
        "outflow up is running. The health page: http://{LISTEN}/ — the API: http://{LISTEN}/api/v1/findings\n\
         Make more traffic: ip netns exec ofdemo-pod-a curl -v http://web.example.com/\n\
         Ctrl-C stops outflow and removes the lab."
    ));
    while !interrupted.load(Ordering::Relaxed) {
        if let Some(up) = lab.up.as_mut() {
            if let Some(status) = up.try_wait()? {
                lab.up = None;
                bail!("outflow up stopped: {status}");
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

fn wait_for_api(outflow: &std::path::Path) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        let ok = Command::new(outflow)
            .args([
                "findings",
                "--controller",
                &format!("http://{LISTEN}"),
                "--json",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    bail!("outflow up did not answer on {LISTEN} within 20 s (is the port taken?)")
}

fn banner(text: &str) {
    eprintln!("\n\x1b[1m{text}\x1b[0m\n");
}
