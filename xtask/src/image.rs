//! `cargo xtask image [--debug]`: the one OCI image of agent and controller.
//!
//! The `outflow` binary carries the eBPF object (`outflow_ebpf::OBJECT`, `include_bytes!` of
//! what ebpf/build.rs compiled), so the image is a Debian bookworm root filesystem with the
//! binary's runtime libraries and CA certificates, plus the binary at `/usr/local/bin/outflow`.
//! The root filesystem comes from the Debian archive (mmdebstrap, `extract` variant: the packages
//! and their dependencies unpacked, no shell, no package manager) and is cached under
//! `target/image/` by its package list; umoci turns it into an OCI layout, an oci-archive
//! (`target/image/outflow-image.tar`) and the unpacked bundle the least-privilege test runs.
//! The root `Dockerfile` builds the same image for people with a registry; its runtime package
//! list is checked against `RUNTIME_PACKAGES` here.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::{root_dir, run};

/// The Debian release of the image (and of the Dockerfile's stages).
const SUITE: &str = "bookworm";

/// What the binary needs at run time beyond libc6 and libgcc-s1 (which `debian:bookworm-slim`
/// already has): libpcap for the fallback datapath and captures, CA certificates for an API
/// server or controller behind a public CA. The Dockerfile's runtime stage installs exactly these.
pub const RUNTIME_PACKAGES: &[&str] = &["libpcap0.8", "ca-certificates"];

/// The packages of the root filesystem: the runtime packages and the C runtime they sit on.
fn rootfs_packages() -> Vec<&'static str> {
    let mut p = vec!["libc6", "libgcc-s1"];
    p.extend(RUNTIME_PACKAGES);
    p
}

/// Bumped when `customize` changes, so a cached root filesystem is made again.
const RECIPE: u32 = 1;

/// A script run after the packages are unpacked, with the root filesystem as `$1`: the CA bundle that
/// ca-certificates' maintainer script would have written (the `extract` variant runs none),
/// the users the image runs as, and the directories a container's mounts land on.
fn customize() -> &'static str {
    r#"set -e
cd "$1"
mkdir -p etc/ssl/certs proc sys dev tmp var/lib/outflow usr/local/bin
chmod 1777 tmp
find usr/share/ca-certificates -name '*.crt' | sort | xargs cat > etc/ssl/certs/ca-certificates.crt
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/usr/sbin/nologin\n' > etc/passwd
printf 'root:x:0:\nnonroot:x:65532:\n' > etc/group
chown 65532:65532 var/lib/outflow
rm -rf usr/share/doc usr/share/man usr/share/info usr/share/locale var/cache/apt var/lib/apt/lists
"#
}

/// The image's user when the pod spec names none: the controller's, 65532 (distroless's
/// `nonroot`), so an image run without a securityContext is not root. The DaemonSet's agent sets
/// `runAsUser: 0` and keeps only CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN and CAP_NET_RAW.
const DEFAULT_USER: &str = "65532:65532";

/// Where the image's pieces go.
pub struct ImagePaths {
    /// `target/image/`.
    pub dir: PathBuf,
    /// The OCI layout (`oci-layout`, `index.json`, `blobs/`), tag `latest`.
    pub layout: PathBuf,
    /// The oci-archive: a tar of the layout.
    pub archive: PathBuf,
    /// The unpacked bundle (`rootfs/`, `config.json`).
    pub bundle: PathBuf,
}

impl ImagePaths {
    /// The paths under the workspace's `target/image/`.
    pub fn new(root: &Path) -> ImagePaths {
        let dir = root.join("target/image");
        ImagePaths {
            layout: dir.join("oci"),
            archive: dir.join("outflow-image.tar"),
            bundle: dir.join("bundle"),
            dir,
        }
    }
}

/// `cargo xtask image [--debug]`.
pub fn run_image(args: &[String]) -> Result<()> {
    let debug = args.iter().any(|a| a == "--debug");
    if let Some(other) = args.iter().find(|a| *a != "--debug") {
        bail!("image takes only --debug, not {other}");
    }
    build(debug)
}

/// Builds the binary (debug or release) and the image around it.
pub fn build(debug: bool) -> Result<()> {
    let binary = if debug {
        let root = root_dir();
        run(Command::new("cargo")
            .args(["build", "-p", "outflow"])
            .current_dir(&root))?;
        crate::target_dir().join("debug/outflow")
    } else {
        crate::build_outflow()?
    };
    assemble(&binary, debug)
}

/// Makes the image around a built `outflow` binary; `debug` strips a debug build's DWARF.
pub fn assemble(binary: &Path, debug: bool) -> Result<()> {
    let paths = ImagePaths::new(&root_dir());
    let started = Instant::now();
    let base = base_rootfs(&paths.dir)?;

    for stale in [&paths.layout, &paths.bundle] {
        if stale.exists() {
            std::fs::remove_dir_all(stale)
                .with_context(|| format!("removing {}", stale.display()))?;
        }
    }
    let image = format!("{}:latest", paths.layout.display());
    run(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&paths.layout))?;
    run(Command::new("umoci").args(["new", "--image", &image]))?;
    run(Command::new("umoci").args([
        "config",
        "--image",
        &image,
        "--os",
        "linux",
        "--architecture",
        "amd64",
        "--config.entrypoint",
        "/usr/local/bin/outflow",
        "--config.user",
        DEFAULT_USER,
        "--config.workingdir",
        "/",
        "--config.env",
        "PATH=/usr/local/bin:/usr/bin:/bin",
        "--config.label",
        "org.opencontainers.image.title=outflow",
        "--config.label",
        "org.opencontainers.image.description=outflow agent and controller (pod egress observability)",
    ]))?;
    let mut unpack = Command::new("umoci");
    unpack.args(["unpack", "--image", &image]);
    if !crate::is_root() {
        unpack.arg("--rootless");
    }
    run(unpack.arg(&paths.bundle))?;
    let rootfs = paths.bundle.join("rootfs");
    run(Command::new("cp")
        .arg("-a")
        .arg(base.join("."))
        .arg(&rootfs))?;
    let target = rootfs.join("usr/local/bin/outflow");
    if debug {
        // The debug build's DWARF is 90 % of its 300 MB; symbols stay for backtraces.
        run(Command::new("objcopy")
            .arg("--strip-debug")
            .arg(binary)
            .arg(&target))?;
    } else {
        std::fs::copy(binary, &target).context("copying the binary into the image")?;
    }
    run(Command::new("umoci")
        .args(["repack", "--image", &image])
        .arg(&paths.bundle))?;
    run(Command::new("umoci")
        .args(["gc", "--layout"])
        .arg(&paths.layout))?;

    let _ = std::fs::remove_file(&paths.archive);
    run(Command::new("tar")
        .arg("-C")
        .arg(&paths.layout)
        .arg("-cf")
        .arg(&paths.archive)
        .args(["oci-layout", "index.json", "blobs"]))?;
    // What registries and podman will be given must parse as an image.
    let inspect = Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci-archive:{}", paths.archive.display()))
        .output()
        .context("running skopeo inspect")?;
    if !inspect.status.success() {
        bail!(
            "skopeo does not accept {}: {}",
            paths.archive.display(),
            String::from_utf8_lossy(&inspect.stderr)
        );
    }
    let size = std::fs::metadata(&paths.archive)?.len();
    println!(
        "image: {} ({:.1} MB, {} build, {:.1} s); bundle {}",
        paths.archive.display(),
        size as f64 / 1e6,
        if debug { "debug" } else { "release" },
        started.elapsed().as_secs_f64(),
        paths.bundle.display()
    );
    println!(
        "push: skopeo copy oci-archive:{} docker://REGISTRY/outflow:TAG",
        paths.archive.display()
    );
    Ok(())
}

/// The Debian root filesystem, made once per package list and recipe.
fn base_rootfs(dir: &Path) -> Result<PathBuf> {
    let packages = rootfs_packages();
    let key = format!("rootfs-{SUITE}-r{RECIPE}-{}", packages.join("_"));
    let cached = dir.join(&key);
    if cached.join("usr/lib").is_dir() {
        return Ok(cached);
    }
    std::fs::create_dir_all(dir)?;
    let partial = dir.join(format!("{key}.partial"));
    if partial.exists() {
        std::fs::remove_dir_all(&partial)?;
    }
    let started = Instant::now();
    run(Command::new("mmdebstrap")
        .args(["--variant=extract", "--format=directory", "--quiet"])
        .arg(format!("--include={}", packages.join(",")))
        .arg("--dpkgopt=path-exclude=/usr/share/doc/*")
        .arg("--dpkgopt=path-exclude=/usr/share/man/*")
        .arg("--dpkgopt=path-exclude=/usr/share/locale/*")
        .arg(SUITE)
        .arg(&partial)
        .arg("http://deb.debian.org/debian"))?;
    // The `extract` variant runs no customize hook: finish the tree here.
    run(Command::new("sh")
        .args(["-c", customize(), "customize"])
        .arg(&partial))?;
    std::fs::rename(&partial, &cached)?;
    println!(
        "image: Debian {SUITE} root filesystem made in {:.1} s, cached as {}",
        started.elapsed().as_secs_f64(),
        cached.display()
    );
    Ok(cached)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The packages the Dockerfile's runtime stage installs: the `apt-get install` line after
    /// its last `FROM`.
    fn dockerfile_runtime_packages(dockerfile: &str) -> Vec<String> {
        let runtime = dockerfile
            .rsplit_once("\nFROM ")
            .map_or(dockerfile, |(_, stage)| stage);
        // Join continuation lines so one RUN is one line.
        let joined = runtime.replace("\\\n", " ");
        joined
            .lines()
            .filter_map(|l| l.split_once("apt-get install").map(|(_, rest)| rest))
            .flat_map(|rest| {
                rest.split("&&")
                    .next()
                    .unwrap_or_default()
                    .split_whitespace()
                    .filter(|w| !w.starts_with('-'))
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn dockerfile_runtime_stage_installs_the_image_packages() {
        let dockerfile =
            std::fs::read_to_string(root_dir().join("Dockerfile")).expect("reading Dockerfile");
        let mut found = dockerfile_runtime_packages(&dockerfile);
        found.sort();
        let mut want: Vec<String> = RUNTIME_PACKAGES.iter().map(|p| p.to_string()).collect();
        want.sort();
        assert_eq!(
            found, want,
            "the Dockerfile's runtime packages drifted from xtask/src/image.rs RUNTIME_PACKAGES"
        );
        assert!(
            dockerfile.contains(&format!("debian:{SUITE}-slim")),
            "the Dockerfile's runtime stage is Debian {SUITE}"
        );
    }

    #[test]
    fn runtime_packages_are_read_from_the_last_stage_only() {
        let dockerfile = "FROM rust:1-bookworm AS build\nRUN apt-get install -y clang \\\n  libpcap-dev\n\
             FROM debian:bookworm-slim\nRUN apt-get update && apt-get install -y --no-install-recommends \\\n\
             \x20 libpcap0.8 ca-certificates \\\n  && rm -rf /var/lib/apt/lists/*\n";
        assert_eq!(
            dockerfile_runtime_packages(dockerfile),
            ["libpcap0.8", "ca-certificates"]
        );
    }
}
