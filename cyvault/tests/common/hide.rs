//! Runs `cyvault` in a mount namespace where Ceph's installed libraries are hidden (each one a
//! bind mount of /dev/null, which the loader refuses as it would a missing file).

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

pub const LIBRADOS: &str = "librados.so.2";
pub const LIBRBD: &str = "librbd.so.1";

/// Where the loader would find `soname` (from `ldconfig -p`), resolved, if it is installed.
pub fn installed(soname: &str) -> Option<PathBuf> {
    let out = Command::new("ldconfig").arg("-p").output().unwrap_or_else(|e| panic!("ldconfig -p: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter(|l| l.trim_start().starts_with(&format!("{soname} ")) && l.contains("x86-64"))
        .filter_map(|l| l.split(" => ").nth(1))
        .map(|p| std::fs::canonicalize(p.trim()).unwrap_or_else(|e| panic!("resolve {p}: {e}")))
        .next()
}

/// `cyvault ARGS…` in a new mount namespace where each library of `hide` (a soname) reads as
/// an empty file. The namespace dies with the process. Libraries not installed here need no
/// hiding.
pub fn hidden_cmd(hide: &[&str], args: &[&str]) -> Command {
    assert_eq!(
        uid(),
        0,
        "these tests hide the Ceph libraries with a mount namespace and need root (scripts/test runs as root)"
    );
    let mut script = String::from("set -e\n");
    for soname in hide {
        if let Some(path) = installed(soname) {
            script.push_str(&format!("mount --bind /dev/null '{}'\n", path.display()));
        }
    }
    script.push_str("exec \"$0\" \"$@\"\n");
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script, env!("CARGO_BIN_EXE_cyvault")])
        .args(args)
        .env_remove("CYVAULT_BACKEND")
        .env_remove("CYVAULT_CEPH_CONF")
        .env_remove("CYVAULT_DATA_DIR")
        .stdin(Stdio::null());
    cmd
}

pub fn uid() -> u32 {
    let out = Command::new("id").arg("-u").output().unwrap_or_else(|e| panic!("id -u: {e}"));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(u32::MAX)
}

pub fn run_hidden(hide: &[&str], args: &[&str]) -> Output {
    hidden_cmd(hide, args).output().unwrap_or_else(|e| panic!("run cyvault {args:?}: {e}"))
}

#[track_caller]
pub fn fails_naming_the_package(out: &Output, soname: &str, package: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected a failure, got {:?}; stderr: {stderr}", out.status);
    assert!(out.status.code().is_some(), "it must exit, not die of a signal: {:?}; stderr: {stderr}", out.status);
    assert!(stderr.contains(&format!("{soname} could not be loaded")), "stderr: {stderr}");
    assert!(stderr.contains(&format!("apt-get install {package}")), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
}
