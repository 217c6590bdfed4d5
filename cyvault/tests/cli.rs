//! End-to-end: the real `cyvault` binary on the local backend.

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn cyvault(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_cyvault"))
        .args(args)
        .env("CYVAULT_DATA_DIR", dir)
        .env_remove("CYVAULT_BACKEND")
        .env_remove("CYVAULT_CEPH_CONF")
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) => o,
        Err(e) => panic!("run cyvault: {e}"),
    }
}

#[track_caller]
fn succeed(dir: &Path, args: &[&str]) -> String {
    let out = cyvault(dir, args);
    assert!(out.status.success(), "cyvault {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tempdir() -> tempfile::TempDir {
    match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("temp dir: {e}"),
    }
}

#[test]
fn object_round_trip_through_the_binary() {
    let dir = tempdir();
    let store = dir.path().join("store");
    let file = dir.path().join("payload");
    std::fs::write(&file, b"hello vault").unwrap_or_else(|e| panic!("write payload: {e}"));
    let s = store.to_string_lossy().into_owned();
    let f = file.to_string_lossy().into_owned();
    let out = succeed(&store, &["admin", "object", "put", "--data-dir", &s, "../../etc/passwd", &f]);
    assert!(out.contains("stored cyvault/\"../../etc/passwd\" (11 bytes, version 1)"), "{out}");
    assert_eq!(succeed(&store, &["admin", "object", "get", "../../etc/passwd"]), "hello vault");
    let stat = succeed(&store, &["admin", "object", "stat", "--json", "../../etc/passwd"]);
    let v: serde_json::Value = serde_json::from_str(&stat).unwrap_or_else(|e| panic!("stat json {stat}: {e}"));
    assert_eq!(v["size"], 11);
    assert_eq!(v["version"], 1);
    assert_eq!(succeed(&store, &["admin", "object", "ls"]), "../../etc/passwd\n");
    succeed(&store, &["admin", "object", "rm", "../../etc/passwd"]);
    assert_eq!(succeed(&store, &["admin", "object", "ls"]), "");
    assert!(!dir.path().join("etc").exists() && !Path::new("/etc/passwd.cyvault").exists());
}

#[test]
fn errors_are_clear_and_exit_non_zero() {
    let dir = tempdir();
    let out = cyvault(dir.path(), &["admin", "object", "get", "missing"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("error: read cyvault/\"missing\": not found"), "{err}");
    let out = cyvault(dir.path(), &["admin", "object", "get", "--backend", "rados", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ceph-conf"), "names the missing flag");
    let out = cyvault(dir.path(), &["perf", "store", "--compare-rados-bench", "--seconds", "1"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--compare-rados-bench needs --backend rados"));
}

#[test]
fn perf_store_runs_on_the_local_backend_and_speaks_json() {
    let dir = tempdir();
    let out = succeed(dir.path(), &["perf", "store", "--seconds", "1", "--concurrency", "4", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("json {out}: {e}"));
    let phases = &v["rounds"][0]["cyvault"];
    assert_eq!(phases[0]["op"], "write_full");
    assert_eq!(phases[1]["op"], "read");
    assert!(phases[0]["ops"].as_u64().unwrap_or(0) > 0, "wrote something: {out}");
    assert!(phases[1]["ops"].as_u64().unwrap_or(0) > 0, "read something: {out}");
    assert_eq!(phases[1]["errors"], 0);
    // The benchmark cleans up after itself.
    assert_eq!(succeed(dir.path(), &["admin", "object", "ls", "--pool", "cyvault-bench"]), "");
}
