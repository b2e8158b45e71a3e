//! Project automation: `cargo xtask setup | demo | test | api-conformance | manifests | image | install | bench-analyze`.
//!
//! Everything a fresh machine needs is installed from here (Debian packages with apt-get), so the
//! README's two commands work on a machine that has only the Rust toolchain.

use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};

mod api_conformance;
mod bench;
mod bench_concurrent;
mod bench_controller;
mod bench_live;
mod bench_view;
mod demo;
mod gen;
mod image;
mod install;
mod manifests;
mod syn_gen;
mod venv;

/// Debian packages the build, the labs and the benchmarks use.
const PACKAGES: &[&str] = &[
    "clang",
    "llvm",
    "libpcap-dev",
    "libbpf-dev",
    "tcpdump",
    "tshark",
    "dnsmasq-base",
    "nginx-light",
    "tinyproxy",
    "iperf3",
    "hping3",
    "bpftool",
    "dnsutils",
    "iproute2",
    "curl",
    "chromium",
    "chromium-driver",
    "procps",
    "time",
    "python3-venv",
    "mmdebstrap",
    "umoci",
    "skopeo",
    "binutils",
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("setup") => setup(),
        Some("demo") => demo::run_demo(&args[1..]),
        Some("test") => test(),
        Some("manifests") => setup().and_then(|()| manifests::run()),
        Some("api-conformance") => setup()
            .and_then(|()| build_debug_outflow())
            .and_then(|outflow| api_conformance::run(&outflow)),
        Some("bench-analyze") => bench::run(&args[1..]),
        Some("bench-live") => bench_live::run(&args[1..]),
        Some("bench-controller") => bench_controller::run(&args[1..]),
        Some("bench-view") => bench_view::run(&args[1..]),
        Some("syn-gen") => syn_gen::run(&args[1..]),
        Some("image") => image::run_image(&args[1..]),
        Some("install") => install::run(&args[1..]),
        Some("fuzz") => flag(&args[1..], "--seconds", 300).and_then(fuzz),
        _ => {
            eprintln!("usage: cargo xtask <setup | demo [--once] | test | api-conformance | manifests | image [--debug] | install [--prefix DIR] | fuzz [--seconds N] | bench-analyze [--packets N] | bench-live [--seconds N] [--rounds N] [--only PART] | bench-controller [--agents 50,100,200] [--seconds N] [--interval N] | bench-view [--nodes N] [--recent-every MIN]>");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a command, failing with its name if it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn root_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Installs the Debian packages that are missing.
fn setup() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            let out = Command::new("dpkg-query").args(["-W", "-f=${Status}", p]).output();
            !matches!(out, Ok(o) if String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("installing {}", missing.join(" "));
    install_packages(&missing)
}

/// Installs Debian packages with apt-get (through sudo when not root).
fn install_packages(packages: &[&str]) -> Result<()> {
    let sudo = if is_root() { vec![] } else { vec!["sudo"] };
    let apt = |args: &[&str]| {
        let mut c = Command::new(sudo.first().copied().unwrap_or("apt-get"));
        if !sudo.is_empty() {
            c.arg("apt-get");
        }
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        run(&mut c)
    };
    apt(&["update", "-qq"])?;
    let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
    install.extend(packages);
    apt(&install)
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// Sets up and runs every check and test; the tests run last so their summary closes the output.
fn test() -> Result<()> {
    setup()?;
    let root = root_dir();
    run(Command::new("cargo")
        .args(["fmt", "--all", "--check"])
        .current_dir(&root))?;
    run(Command::new("cargo")
        .args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])
        .current_dir(&root))?;
    manifests::run()?;
    // A short coverage-guided run of every fuzz target; `cargo xtask fuzz` runs longer.
    fuzz(20)?;
    // The image-agent test runs the binary the tests build, from the image (debug: faster).
    run(Command::new("cargo")
        .args(["test", "--workspace", "--no-run"])
        .current_dir(&root))?;
    image::assemble(&root.join("target/debug/outflow"), true)?;
    // The API against its OpenAPI document, on a real controller on loopback.
    api_conformance::run(&root.join("target/debug/outflow"))?;
    cargo_test_with_summary(&root)
}

/// The middle value (the upper one of an even count); `v` must not be empty.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The mean of `v` and the half-width of its 95 % confidence interval (Student's t; normal
/// beyond 30 samples), so a benchmark can say whether a ratio is resolved from its goal or lost
/// in the machine's noise. `None` for fewer than two values.
pub fn mean_ci95(v: &[f64]) -> Option<(f64, f64)> {
    if v.len() < 2 {
        return None;
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    // t(0.975, df) for df = 1..=30.
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    let t = T.get(v.len() - 2).copied().unwrap_or(1.96);
    Some((mean, t * (var / n).sqrt()))
}

/// The value after `name` in `args`, or `default` when the flag is absent.
pub fn flag<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> Result<T> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{name} needs a value of the right kind")),
    }
}

/// Builds the debug `outflow` binary (as the tests do) and returns its path.
fn build_debug_outflow() -> Result<std::path::PathBuf> {
    let root = root_dir();
    run(Command::new("cargo")
        .args(["build", "-p", "outflow"])
        .current_dir(&root))?;
    Ok(target_dir().join("debug/outflow"))
}

/// Where cargo puts what it builds: CARGO_TARGET_DIR when set, else the workspace's target/.
fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or(root_dir().join("target"), Into::into)
}

/// Builds the release `outflow` binary and returns its path.
pub fn build_outflow() -> Result<std::path::PathBuf> {
    let root = root_dir();
    run(Command::new("cargo")
        .args(["build", "--release", "-p", "outflow"])
        .current_dir(&root))?;
    Ok(target_dir().join("release/outflow"))
}

/// Runs each cargo-fuzz target for `seconds` (stable toolchain, no sanitizer), seeded with the
/// capture fixtures. A crash fails the run and leaves its input in `fuzz/artifacts/`.
fn fuzz(seconds: u64) -> Result<()> {
    let root = root_dir();
    let installed = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    let fuzz_dir = root.join("fuzz");
    let seeds = fuzz_dir.join("corpus/capfile");
    std::fs::create_dir_all(&seeds)?;
    for entry in std::fs::read_dir(root.join("core/tests/fixtures"))? {
        let path = entry?.path();
        if path
            .extension()
            .is_some_and(|e| e == "pcap" || e == "pcapng")
        {
            std::fs::copy(&path, seeds.join(path.file_name().expect("a file")))?;
        }
    }
    for target in ["frames", "dns", "capfile"] {
        let corpus = fuzz_dir.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        // libFuzzer reports every new input; keep that in a log and show its verdict.
        let log_path = fuzz_dir.join(format!("fuzz-{target}.log"));
        let log = std::fs::File::create(&log_path)?;
        let status = Command::new("cargo")
            .args(["fuzz", "run", target, "-s", "none"])
            .arg(&corpus)
            .args(["--", "-seed=1", "-rss_limit_mb=4096"])
            .arg(format!("-max_total_time={seconds}"))
            .current_dir(&fuzz_dir)
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()?;
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        if !status.success() {
            eprintln!("{}", lines[lines.len().saturating_sub(60)..].join("\n"));
            bail!("fuzz target {target} failed; the input is in fuzz/artifacts/{target}/, the log in {}", log_path.display());
        }
        let done = lines
            .iter()
            .rev()
            .find(|l| l.starts_with("Done "))
            .copied()
            .unwrap_or("done");
        println!("fuzz {target}: {done}, no crash");
    }
    Ok(())
}

/// Runs `cargo test --workspace`, passing its output through, and closes with one line that adds
/// up every test binary's result (cargo's own last line is often a doc-test run of 0 tests).
fn cargo_test_with_summary(root: &std::path::Path) -> Result<()> {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new("cargo")
        .args(["test", "--workspace", "--color", "never"])
        .current_dir(root)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting cargo test")?;
    let (mut passed, mut failed, mut ignored) = (0u64, 0u64, 0u64);
    let stdout = child.stdout.take().expect("stdout is piped");
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            for part in rest.split(';') {
                let mut words = part.split_whitespace().rev();
                let (Some(kind), Some(n)) = (words.next(), words.next()) else {
                    continue;
                };
                let n: u64 = n.parse().unwrap_or(0);
                match kind {
                    "passed" => passed += n,
                    "failed" => failed += n,
                    "ignored" => ignored += n,
                    _ => {}
                }
            }
        }
    }
    let status = child.wait()?;
    println!("\ntests: {passed} passed, {failed} failed, {ignored} skipped");
    if !status.success() {
        bail!("cargo test failed with {status}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::mean_ci95;

    #[test]
    fn confidence_interval_uses_students_t_for_few_samples() {
        // Mean 2, standard error 1, t(0.975, 1) = 12.706.
        let (mean, half) = mean_ci95(&[1.0, 3.0]).expect("two samples");
        assert_eq!(mean, 2.0);
        assert!((half - 12.706).abs() < 1e-9, "{half}");
        // 40 samples alternating 0.98 and 1.02: standard error 0.02 × sqrt(40/39) / sqrt(40).
        let v: Vec<f64> = (0..40)
            .map(|i| if i % 2 == 0 { 0.98 } else { 1.02 })
            .collect();
        let (mean, half) = mean_ci95(&v).expect("forty samples");
        assert!((mean - 1.0).abs() < 1e-12);
        let se = (0.02f64.powi(2) * 40.0 / 39.0 / 40.0).sqrt();
        assert!((half - 1.96 * se).abs() < 1e-12, "{half}");
        assert_eq!(mean_ci95(&[1.0]), None);
    }
}
