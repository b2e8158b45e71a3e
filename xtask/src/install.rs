//! `cargo xtask install [--prefix DIR]`: the release `outflow` into `DIR/bin` (default
//! `~/.local`), and `kubectl-outflow` beside it, a symlink kubectl finds as its plugin.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Builds the release binary and installs it with its kubectl plugin link.
pub fn run(args: &[String]) -> Result<()> {
    let prefix = match args.iter().position(|a| a == "--prefix") {
        Some(i) => PathBuf::from(args.get(i + 1).context("--prefix needs a directory")?),
        None => PathBuf::from(std::env::var("HOME").context("HOME is not set: give --prefix DIR")?)
            .join(".local"),
    };
    let binary = crate::build_outflow()?;
    let bin = prefix.join("bin");
    install(&binary, &bin)?;
    println!(
        "installed {} and {} (the kubectl plugin)",
        bin.join("outflow").display(),
        bin.join("kubectl-outflow").display()
    );
    let on_path =
        std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d == bin));
    if !on_path {
        println!(
            "{} is not on PATH: add it, e.g. export PATH=\"{}:$PATH\"",
            bin.display(),
            bin.display()
        );
    }
    Ok(())
}

/// Copies `binary` to `bin/outflow` and points `bin/kubectl-outflow` at it (a link already
/// there is replaced: an earlier install's).
pub fn install(binary: &Path, bin: &Path) -> Result<()> {
    std::fs::create_dir_all(bin).with_context(|| format!("creating {}", bin.display()))?;
    let target = bin.join("outflow");
    // Copied to a temporary name and renamed, so a running outflow is not overwritten in place.
    let partial = bin.join(".outflow.partial");
    std::fs::copy(binary, &partial)
        .with_context(|| format!("copying {} to {}", binary.display(), bin.display()))?;
    std::fs::rename(&partial, &target)
        .with_context(|| format!("replacing {}", target.display()))?;
    let plugin = bin.join("kubectl-outflow");
    match std::fs::symlink_metadata(&plugin) {
        Ok(m) if m.file_type().is_symlink() => std::fs::remove_file(&plugin)?,
        Ok(_) => anyhow::bail!(
            "{} exists and is not a link: remove it, then install again",
            plugin.display()
        ),
        Err(_) => {}
    }
    std::os::unix::fs::symlink("outflow", &plugin)
        .with_context(|| format!("linking {}", plugin.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_the_binary_and_its_plugin_link_and_installs_again() {
        let dir = std::env::temp_dir().join(format!("outflow-install-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let built = dir.join("built");
        std::fs::write(&built, "first").unwrap();
        let bin = dir.join("prefix/bin");
        install(&built, &bin).unwrap();
        std::fs::write(&built, "second").unwrap();
        install(&built, &bin).expect("an earlier install is replaced");
        let plugin = bin.join("kubectl-outflow");
        assert_eq!(std::fs::read_link(&plugin).unwrap(), Path::new("outflow"));
        assert_eq!(std::fs::read_to_string(&plugin).unwrap(), "second");
        // A file of the user's under the plugin's name is not overwritten.
        std::fs::remove_file(&plugin).unwrap();
        std::fs::write(&plugin, "mine").unwrap();
        let err = install(&built, &bin).unwrap_err().to_string();
        assert!(err.contains("not a link"), "{err}");
        assert_eq!(std::fs::read_to_string(&plugin).unwrap(), "mine");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
