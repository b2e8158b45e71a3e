//! Compiles the TC programs with clang into `$OUT_DIR/outflow.bpf.o`, which the crate embeds.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let src = "bpf/outflow.bpf.c";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-changed=include/outflow.h");
    println!("cargo:rerun-if-env-changed=OUTFLOW_CLANG");
    let clang = env::var("OUTFLOW_CLANG").unwrap_or_else(|_| "clang".to_string());
    // The kernel headers' asm/ directory lives under the multiarch include path on Debian.
    let arch = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("aarch64") => "aarch64",
        _ => "x86_64",
    };
    let status = Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        .arg("-Iinclude")
        .arg(format!("-I/usr/include/{arch}-linux-gnu"))
        .args(["-c", src, "-o"])
        .arg(out.join("outflow.bpf.o"))
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("{clang} failed to compile {src} ({s}); see the messages above"),
        Err(e) => panic!(
            "cannot run {clang} ({e}): the kernel programs need clang and libbpf-dev; \
             run `cargo xtask setup` (or apt-get install clang libbpf-dev)"
        ),
    }
}
