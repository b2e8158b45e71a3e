//! A real `outflow controller` on a free loopback port, and `outflow` run as a user types it:
//! shared by the CLI tests that talk to a controller.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use outflow_core::wire::{routes, DatapathStats, NodeReport, Scope, Scoped};

pub fn outflow(args: &[&str]) -> Output {
    outflow_command(args).output().expect("running outflow")
}

/// `outflow ARGS` as [`outflow`] runs it, for a caller that sets up its standard streams.
pub fn outflow_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_outflow"));
    command
        .args(args)
        .env_remove("OUTFLOW_CONTROLLER")
        .env_remove("OUTFLOW_TOKEN");
    command
}

/// What `outflow ARGS` printed, having exited 0.
pub fn stdout_of(args: &[&str]) -> String {
    let out = outflow(args);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    String::from_utf8(out.stdout).expect("UTF-8")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A controller on a free loopback port with a store of its own; killed when dropped.
pub struct Controller {
    child: Child,
    pub addr: SocketAddr,
    pub dir: std::path::PathBuf,
}

impl Controller {
    pub fn start(name: &str) -> Controller {
        Controller::start_with(name, &[], &[])
    }

    /// With more flags and environment.
    pub fn start_with(name: &str, extra: &[&std::ffi::OsStr], envs: &[(&str, &str)]) -> Controller {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let dir = std::env::temp_dir().join(format!("outflow-query-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let child = Controller::spawn(addr, &dir, extra, envs);
        Controller { child, addr, dir }
    }

    /// Kills the controller with SIGKILL, as the kernel's OOM killer or a node failure would,
    /// and starts it again on the same store and port.
    pub fn kill_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Controller::spawn(self.addr, &self.dir, &[], &[]);
    }

    fn spawn(
        addr: SocketAddr,
        dir: &std::path::Path,
        extra: &[&std::ffi::OsStr],
        envs: &[(&str, &str)],
    ) -> Child {
        let child = Command::new(env!("CARGO_BIN_EXE_outflow"))
            .args(["controller", "--listen", &addr.to_string(), "--db"])
            .arg(dir.join("outflow.db"))
            .args(extra)
            .env_remove("OUTFLOW_TOKEN")
            .envs(envs.iter().copied())
            .spawn()
            .expect("starting the controller");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "the controller never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        child
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn lab_report() -> outflow_core::report::Report {
    let file = outflow_tests::root().join("core/tests/fixtures/lab-pod.pcap");
    outflow_tests::analyze(&[file], &outflow_tests::lab_profile())
}

/// Posts the lab capture's records as node-1's window, all from pod default/shop-web.
pub fn post_lab_window(c: &Controller) {
    let r = lab_report();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let scope = Scope {
        pod: Some("shop-web".into()),
        namespace: Some("default".into()),
        node: "node-1".into(),
        window_start: outflow_core::report::rfc3339(now - 10_000_000_000),
        window_end: outflow_core::report::rfc3339(now),
        ..Default::default()
    };
    fn scoped<T>(scope: &Scope, records: Vec<T>) -> Vec<Scoped<T>> {
        records
            .into_iter()
            .map(|record| Scoped {
                scope: scope.clone(),
                record,
            })
            .collect()
    }
    let report = NodeReport {
        node: "node-1".into(),
        report_id: None,
        window_start_ns: now - 10_000_000_000,
        window_end_ns: now,
        connections: scoped(&scope, r.connections),
        dns: scoped(&scope, r.dns),
        findings: scoped(&scope, r.findings),
        capture: r.capture,
        datapath: DatapathStats {
            kind: "pcap".into(),
            ..DatapathStats::default()
        },
        pods: vec![],
    };
    post_report(c, &report);
}

/// Posts `report` as an agent does.
pub fn post_report(c: &Controller, report: &NodeReport) {
    let url = format!("http://{}{}", c.addr, routes::REPORTS);
    let resp = ureq::post(&url)
        .send_json(report)
        .expect("posting the report");
    assert!(resp.status().is_success(), "{}", resp.status());
}
