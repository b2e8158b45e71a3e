//! Shared pieces of the integration tests: running the lab and analysing its captures.

use std::path::{Path, PathBuf};
use std::process::Command;

use outflow_core::capfile::{CaptureReader, MergedReader};
use outflow_core::{Engine, Profile, Report};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_path_buf()
}

/// Whether privileged tests may run: true as root. Not root: a loud skip, or a failure in CI.
pub fn privileged(test: &str) -> bool {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if uid.is_ok_and(|u| u == "0") {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{test} needs root (network namespaces) and CI=true forbids skipping it");
    }
    eprintln!("\n*** SKIPPED {test}: needs root to create network namespaces ***\n");
    false
}

/// A lab of network namespaces (tests/lab/lab.sh), torn down when dropped.
pub struct Lab {
    prefix: String,
}

impl Lab {
    /// Builds the lab under a prefix of its own.
    pub fn up(prefix: &str) -> Lab {
        let lab = Lab {
            prefix: prefix.to_string(),
        };
        lab.script(&["down"]);
        assert!(lab.script(&["up"]), "lab.sh up {prefix} failed");
        lab
    }

    /// Runs the lab's traffic while capturing into `out`.
    pub fn capture(&self, out: &Path) {
        std::fs::create_dir_all(out).expect("creating the capture directory");
        let status = Command::new(root().join("tests/lab/lab.sh"))
            .args(["capture", &self.prefix])
            .arg(out)
            .status()
            .expect("running lab.sh");
        assert!(status.success(), "lab.sh capture failed");
    }

    fn script(&self, args: &[&str]) -> bool {
        Command::new(root().join("tests/lab/lab.sh"))
            .args(&args[..1])
            .arg(&self.prefix)
            .args(&args[1..])
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.script(&["down"]);
    }
}

/// Analyses capture files with a profile, as `outflow analyze` does.
pub fn analyze(files: &[PathBuf], profile: &Profile) -> Report {
    let readers = files
        .iter()
        .map(|f| {
            let file = std::fs::File::open(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            CaptureReader::new(file).unwrap_or_else(|e| panic!("{}: {e}", f.display()))
        })
        .collect();
    let mut merged = MergedReader::new(readers);
    let mut engine = Engine::new(profile);
    if merged.may_hold_duplicates() {
        engine.enable_dedup();
    }
    while merged.advance() {
        engine.observe(&merged.packet().expect("advance returned true"));
    }
    assert!(
        merged.errors().is_empty(),
        "read errors: {:?}",
        merged.errors()
    );
    engine.finish()
}

/// The lab's network profile.
pub fn lab_profile() -> Profile {
    let path = root().join("examples/lab-profile.yaml");
    Profile::from_yaml(
        &std::fs::read_to_string(&path).expect("reading the lab profile"),
        "lab-profile.yaml",
    )
    .expect("the lab profile is valid")
}
