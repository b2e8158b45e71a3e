//! Python tools from PyPI, each pinned and in a venv of its own under
//! `~/.local/share/outflow/`, made on first use and remade when the pin changes.
//!
//! Debian's python3 makes the venv (python3-venv is a setup package); pip installs the pin.
//! A tool that cannot be installed fails the task that needs it: nothing is skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

/// A pinned PyPI tool.
pub struct Tool {
    /// The venv's folder name under `~/.local/share/outflow/`.
    pub venv: &'static str,
    /// `NAME==VERSION`.
    pub pin: &'static str,
    /// The executable in the venv's `bin/`.
    pub bin: &'static str,
}

/// The tool's executable, installing the pin into its venv when it is missing or its
/// `--version` does not name the pinned version.
pub fn ensure(tool: &Tool) -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set: where should the venv go?")?;
    let venv = Path::new(&home)
        .join(".local/share/outflow")
        .join(tool.venv);
    let bin = venv.join("bin").join(tool.bin);
    let (_, version) = tool.pin.split_once("==").expect("the pin is NAME==VERSION");
    let installed = Command::new(&bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(version));
    if installed {
        return Ok(bin);
    }
    eprintln!("installing {} into {}", tool.pin, venv.display());
    // Debian's python3 (python3-venv is a setup package) over whatever else the PATH has.
    let python = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    crate::run(Command::new(python).args(["-m", "venv"]).arg(&venv))?;
    crate::run(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(tool.pin),
    )?;
    Ok(bin)
}
