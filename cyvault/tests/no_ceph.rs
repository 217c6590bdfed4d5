//! End-to-end: `cyvault` on a machine without Ceph's libraries.
//!
//! The binary does not link librados or librbd; it loads them when a Ceph backend, an RBD
//! volume or a Ceph benchmark first needs them. These tests hide the installed libraries in a
//! mount namespace of their own (`unshare --mount`, bind-mounting /dev/null over each library,
//! which makes the loader fail as it would on a machine without the packages) and check that the
//! gateway serves S3 on the embedded backend there, and that asking for Ceph says which Debian
//! package to install instead of failing at exec time.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::hide::{LIBRADOS, LIBRBD, fails_naming_the_package, hidden_cmd, run_hidden};

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"))
}

fn ceph_conf(dir: &Path) -> String {
    // Never reached: the library is refused before the file is read.
    let conf = dir.join("ceph.conf");
    std::fs::write(&conf, "[global]\nmon_host = 127.0.0.1:1\n").unwrap_or_else(|e| panic!("write ceph.conf: {e}"));
    conf.to_string_lossy().into_owned()
}

#[test]
fn the_binary_does_not_link_ceph() {
    let out = Command::new("ldd").arg(env!("CARGO_BIN_EXE_cyvault")).output().unwrap_or_else(|e| panic!("ldd: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "ldd: {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("libc.so.6"), "ldd printed the dependencies: {text}");
    for lib in ["librados", "librbd", "libceph"] {
        assert!(!text.contains(lib), "cyvault must load {lib} at run time, not link it: {text}");
    }
}

#[test]
fn without_ceph_the_gateway_serves_s3_on_the_embedded_backend() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let mut child =
        hidden_cmd(&[LIBRADOS, LIBRBD], &["gateway", "--listen", "127.0.0.1:0", "--data-dir", &data.to_string_lossy()])
            .env("CYVAULT_ROOT_ACCESS_KEY", "AKNOCEPHTEST")
            .env("CYVAULT_ROOT_SECRET_KEY", "no-ceph-secret")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn the gateway: {e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout pipe"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let endpoint = loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                if let Some(url) = line.strip_prefix("listening on ") {
                    break Some(url.trim().to_string());
                }
            }
            Err(_) => break None,
        }
    };
    let result = std::panic::catch_unwind(|| {
        let Some(endpoint) = &endpoint else { panic!("the gateway did not start without the Ceph libraries") };
        let env = common::aws_env(endpoint, "AKNOCEPHTEST", "no-ceph-secret");
        let file = dir.path().join("object");
        std::fs::write(&file, b"stored without ceph").unwrap_or_else(|e| panic!("write: {e}"));
        common::run_ok("aws", &["s3", "mb", "s3://no-ceph"], &env, None);
        common::run_ok("aws", &["s3", "cp", &file.to_string_lossy(), "s3://no-ceph/object"], &env, None);
        let got = common::run_ok("aws", &["s3", "cp", "s3://no-ceph/object", "-"], &env, None);
        assert_eq!(got, "stored without ceph");
    });
    // Stop what we started, by pid (the namespace goes with it).
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let stop = Instant::now() + Duration::from_secs(30);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < stop {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

#[test]
fn without_librados_ceph_commands_say_what_to_install() {
    let dir = tempdir();
    let conf = ceph_conf(dir.path());
    let data = dir.path().join("data").to_string_lossy().into_owned();
    let state = dir.path().join("state").to_string_lossy().into_owned();
    let endpoint = format!("unix://{}/csi.sock", dir.path().display());
    let cases: &[(&str, &[&str])] = &[
        (
            "gateway on rados",
            &["gateway", "--listen", "127.0.0.1:0", "--backend", "rados", "--ceph-conf", &conf, "--data-dir", &data],
        ),
        (
            "csi on rados",
            &[
                "csi",
                "--endpoint",
                &endpoint,
                "--backend",
                "rados",
                "--ceph-conf",
                &conf,
                "--state-dir",
                &state,
                "--node-id",
                "n1",
            ],
        ),
        ("perf io on rbd", &["perf", "io", "--target", "rbd:rbd/img", "--ceph-conf", &conf, "--runtime", "1"]),
    ];
    for (what, args) in cases {
        let out = run_hidden(&[LIBRADOS, LIBRBD], args);
        eprintln!("{what}: {}", String::from_utf8_lossy(&out.stderr).trim());
        fails_naming_the_package(&out, LIBRADOS, "librados2");
    }
}
