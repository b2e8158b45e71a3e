//! The query commands as a user types them (issue 17): one pod grammar, checked values, one
//! output flag, and a controller address with or without its scheme.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

fn outflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_outflow"))
        .args(args)
        .env_remove("OUTFLOW_CONTROLLER")
        .env_remove("OUTFLOW_TOKEN")
        .output()
        .expect("running outflow")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A controller on a free loopback port with a store of its own; killed when dropped.
struct Controller {
    child: Child,
    addr: SocketAddr,
    dir: std::path::PathBuf,
}

impl Controller {
    fn start(name: &str) -> Controller {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let dir = std::env::temp_dir().join(format!("outflow-query-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_outflow"))
            .args(["controller", "--listen", &addr.to_string(), "--db"])
            .arg(dir.join("outflow.db"))
            .env_remove("OUTFLOW_TOKEN")
            .spawn()
            .expect("starting the controller");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "the controller never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        Controller { child, addr, dir }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Nothing listens on port 9 of loopback here, so a command that got as far as a request would
/// say "cannot reach": the refusals below must come before that.
const NOWHERE: &str = "127.0.0.1:9";

#[test]
fn bad_filter_values_exit_2_naming_the_value_before_any_request() {
    for (args, words) in [
        (
            vec!["connections", "--outcome", "bogus"],
            "established, refused",
        ),
        (
            vec!["findings", "--outcome", "unanswered"],
            "error, warning, info",
        ),
        (vec!["dns", "--outcome", "established"], "nxdomain"),
        (
            vec!["dns", "--category", "public"],
            "no destination category",
        ),
        (vec!["connections", "--category", "galactic"], "internal"),
        (vec!["connections", "--pod", "a/b/c"], "NAMESPACE/NAME"),
        (vec!["capture", "--pod", "a/b/c"], "NAMESPACE/NAME"),
        (vec!["findings", "-o", "yaml"], "table"),
    ] {
        let mut full = args.clone();
        full.extend(["--controller", NOWHERE]);
        let out = outflow(&full);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(words), "{args:?}: {err}");
        assert!(!err.contains("cannot reach"), "{args:?} was sent: {err}");
        assert!(out.stdout.is_empty(), "{args:?} printed data");
    }
}

#[test]
fn a_controller_address_without_a_scheme_is_reached_over_http() {
    let c = Controller::start("scheme");
    let addr = c.addr.to_string();
    for output in [&["-o", "json"][..], &["--json"], &["--output", "json"]] {
        let mut args = vec!["connections", "--controller", &addr];
        args.extend(output);
        let out = outflow(&args);
        assert_eq!(out.status.code(), Some(0), "{output:?}: {}", stderr(&out));
        let body: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(body, serde_json::json!([]), "{output:?}");
    }
    let out = outflow(&["findings", "--controller", &addr, "--outcome", "error"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("SEVERITY"));
}

#[test]
fn capture_takes_a_bare_pod_name_with_its_namespace_as_kubectl_does() {
    let c = Controller::start("capture");
    let addr = c.addr.to_string();
    let dir = c.dir.to_string_lossy().into_owned();
    let file = format!("{dir}/web.pcapng");
    // The controller knows no pod yet, so it answers for the pod it was asked about: the one
    // that `web -n shop` names, or `web` in `default`.
    for (naming, pod) in [
        (&["web", "-n", "shop"][..], "shop/web"),
        (&["shop/web"], "shop/web"),
        (&["web"], "default/web"),
    ] {
        let mut args = vec!["capture", "--controller", &addr, "-w", &file, "--pod"];
        args.extend(naming);
        let out = outflow(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{naming:?}: {err}");
        assert!(err.contains(&format!("pod {pod} ")), "{naming:?}: {err}");
    }
}
