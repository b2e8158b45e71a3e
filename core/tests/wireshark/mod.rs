//! Wireshark's tools as the judges of pcapng files, shared by the tests that need them.

use std::process::Command;

/// Runs a Wireshark tool and returns its standard output; a refusal fails the test. A missing
/// tool is a skip said out loud outside CI and a failure in CI.
pub fn tool(program: &str, args: &[&str]) -> Option<String> {
    match Command::new(program).args(args).output() {
        Ok(out) => {
            assert!(
                out.status.success(),
                "{program} {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Some(String::from_utf8_lossy(&out.stdout).into_owned())
        }
        Err(e) => {
            let need = format!("{program} ({e}; `cargo xtask setup` installs it)");
            assert!(!outflow_tests::required(program, &need, false));
            None
        }
    }
}
