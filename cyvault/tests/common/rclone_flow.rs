//! The rclone round trip shared by `s3_rclone.rs` (local backend) and `ceph_s3_rclone.rs` (RADOS):
//! sync a tree of many small files plus one large multipart file to a bucket, check it, change the
//! tree, sync and check again, copy everything back and compare it byte for byte.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::common::SplitMix;

/// The shape of the tree to sync.
#[derive(Clone, Copy, Debug)]
pub struct TreeSpec {
    /// Small files (0 B to 256 KiB) in nested directories.
    pub files: usize,
    /// Size of the one large file, in MiB (uploaded multipart in 16 MiB chunks).
    pub big_mib: usize,
}

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
const CHUNK_MIB: usize = 16;
const BIG_PATH: &str = "big/blob.bin";
/// Flags of every transfer: parallel, multipart above 16 MiB, and no retries, so that a request
/// the gateway gets wrong fails the command instead of being retried away.
const TRANSFER_FLAGS: &[&str] = &[
    "--transfers",
    "8",
    "--checkers",
    "8",
    "--s3-chunk-size",
    "16M",
    "--s3-upload-cutoff",
    "16M",
    "--s3-upload-concurrency",
    "4",
    "--s3-force-path-style",
    "--retries",
    "1",
    "--low-level-retries",
    "1",
];

/// Relative path of small file `i`: nested directories, a few names with spaces and non-ASCII.
fn small_path(i: usize) -> String {
    let name = match i % 97 {
        0 => format!("with space {i}.txt"),
        1 => format!("ünïcödé-日本語-{i}.bin"),
        2 => format!("emoji 🦀 crab {i}.dat"),
        3 => format!("plus+and=equals,{i}.txt"),
        _ => format!("file-{i:04}.bin"),
    };
    match i % 13 {
        0 => name,
        1 => format!("deep/a/b/c/d/e/{name}"),
        2 => format!("dir with space/ü/{name}"),
        d => format!("d{}/s{}/{name}", d % 5, (i / 13) % 6),
    }
}

/// Size and content of small file `i` at `version` (0 = first sync, 1 = modified).
fn small_content(i: usize, version: u64) -> Vec<u8> {
    let mut rng = SplitMix(((i as u64) << 8) ^ version.wrapping_mul(0xA5A5_5A5A) ^ 0x1234_5678);
    let size = match i % 50 {
        0 => 0,
        1 => 256 * KIB,
        2..=6 => 16 * KIB + rng.below(240 * KIB),
        _ => 1 + rng.below(16 * KIB),
    };
    let mut data = vec![0u8; size];
    rng.fill(&mut data);
    data
}

fn mtime(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn write_file(root: &Path, rel: &str, data: &[u8], modified: SystemTime) {
    let p = root.join(rel);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir {}: {e}", parent.display()));
    }
    std::fs::write(&p, data).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    let f = std::fs::File::options().write(true).open(&p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
    f.set_modified(modified).unwrap_or_else(|e| panic!("set mtime of {}: {e}", p.display()));
}

fn write_big(root: &Path, mib: usize) {
    use std::io::Write;
    let p = root.join(BIG_PATH);
    std::fs::create_dir_all(p.parent().unwrap_or(root)).unwrap_or_else(|e| panic!("mkdir for {BIG_PATH}: {e}"));
    let mut f = std::fs::File::create(&p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
    let mut rng = SplitMix(0xB16_B10B);
    let mut buf = vec![0u8; MIB];
    for _ in 0..mib {
        rng.fill(&mut buf);
        f.write_all(&buf).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    }
    f.set_modified(mtime(1_500_000_000)).unwrap_or_else(|e| panic!("set mtime of {}: {e}", p.display()));
}

/// Every regular file under `root`: relative path -> size.
pub fn walk(root: &Path) -> BTreeMap<String, u64> {
    fn go(root: &Path, dir: &Path, out: &mut BTreeMap<String, u64>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read dir {}: {e}", dir.display()));
        for e in entries {
            let e = e.unwrap_or_else(|e| panic!("read dir {}: {e}", dir.display()));
            let p = e.path();
            let ty = e.file_type().unwrap_or_else(|e| panic!("stat {}: {e}", p.display()));
            if ty.is_dir() {
                go(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap_or(&p).to_string_lossy().into_owned();
                let len = e.metadata().unwrap_or_else(|e| panic!("stat {}: {e}", p.display())).len();
                out.insert(rel, len);
            }
        }
    }
    let mut out = BTreeMap::new();
    go(root, root, &mut out);
    out
}

fn sha256_file(p: &Path) -> String {
    let out = Command::new("sha256sum").arg(p).stdin(Stdio::null()).output();
    let out = out.unwrap_or_else(|e| panic!("run sha256sum: {e}"));
    assert!(out.status.success(), "sha256sum {} failed: {}", p.display(), String::from_utf8_lossy(&out.stderr));
    let s = String::from_utf8_lossy(&out.stdout);
    s.split_whitespace().next().unwrap_or_default().to_string()
}

/// rclone against one S3 endpoint, through a config file of its own.
pub struct Rclone {
    conf: PathBuf,
    pub remote: String,
}

impl Rclone {
    pub fn new(dir: &Path, endpoint: &str, access_key: &str, secret_key: &str) -> Rclone {
        let conf = dir.join("rclone.conf");
        let text = format!(
            "[vault]\ntype = s3\nprovider = Other\naccess_key_id = {access_key}\nsecret_access_key = {secret_key}\n\
             endpoint = {endpoint}\nregion = us-east-1\nforce_path_style = true\n"
        );
        std::fs::write(&conf, text).unwrap_or_else(|e| panic!("write {}: {e}", conf.display()));
        Rclone { conf, remote: "vault".into() }
    }

    /// Runs rclone (without `AWS_CA_BUNDLE`, which makes it fail on plain http).
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new("rclone")
            .arg("--config")
            .arg(&self.conf)
            .args(args)
            .env_remove("AWS_CA_BUNDLE")
            .env_remove("RCLONE_CONFIG")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run rclone (apt-get install rclone): {e}"))
    }

    /// Like `run`, failing the test when rclone fails; returns (stdout, stderr).
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> (String, String) {
        let out = self.run(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "rclone {args:?} failed ({}):\nstdout: {stdout}\nstderr: {stderr}", out.status);
        (stdout, stderr)
    }

    /// Transfer command (`sync`, `copy`) with the shared flags and `-v` for the closing stats.
    #[track_caller]
    pub fn transfer(&self, verb: &str, from: &str, to: &str) -> String {
        let mut args = vec![verb, from, to, "-v"];
        args.extend_from_slice(TRANSFER_FLAGS);
        self.ok(&args).1
    }
}

/// From rclone's closing stats: files transferred ("Transferred: N / N, 100%") and deleted.
fn stats(log: &str) -> (u64, u64) {
    let mut transferred = None;
    let mut deleted = 0;
    for line in log.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("Transferred:") {
            let w: Vec<&str> = rest.split_whitespace().collect();
            if w.len() >= 3
                && w[1] == "/"
                && let (Ok(a), Ok(b)) = (w[0].parse::<u64>(), w[2].trim_end_matches(',').parse::<u64>())
            {
                assert_eq!(a, b, "rclone did not transfer everything: {line}\n{log}");
                transferred = Some(a);
            }
        }
        if let Some(rest) = line.strip_prefix("Deleted:") {
            deleted = rest.split_whitespace().next().and_then(|w| w.parse().ok()).unwrap_or(0);
        }
    }
    (transferred.unwrap_or(0), deleted)
}

#[track_caller]
fn assert_check(rc: &Rclone, src: &Path, remote: &str, files: usize) {
    let out = rc.run(&["check", &src.to_string_lossy(), remote, "--checkers", "8", "--s3-force-path-style"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "rclone check failed ({}): {stderr}", out.status);
    assert!(stderr.contains(": 0 differences found"), "rclone check found differences: {stderr}");
    assert!(
        stderr.contains(&format!(": {files} matching files")),
        "rclone check: expected {files} matching files: {stderr}"
    );
    assert!(!stderr.contains("could not be checked"), "rclone check could not compare some hashes: {stderr}");
    assert!(!stderr.contains("ERROR"), "rclone check logged errors: {stderr}");
}

#[track_caller]
fn assert_listing(rc: &Rclone, remote: &str, local: &BTreeMap<String, u64>) {
    let (json, _) = rc.ok(&["lsjson", "-R", "--files-only", remote]);
    let v: serde_json::Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("rclone lsjson output {json}: {e}"));
    let listed: BTreeMap<String, u64> = v
        .as_array()
        .unwrap_or_else(|| panic!("rclone lsjson: not an array: {json}"))
        .iter()
        .map(|o| (o["Path"].as_str().unwrap_or_default().to_string(), o["Size"].as_u64().unwrap_or(u64::MAX)))
        .collect();
    let missing: Vec<_> = local.keys().filter(|k| !listed.contains_key(*k)).collect();
    let extra: Vec<_> = listed.keys().filter(|k| !local.contains_key(*k)).collect();
    assert!(missing.is_empty() && extra.is_empty(), "listing differs: missing {missing:?}, extra {extra:?}");
    assert_eq!(&listed, local, "listed sizes differ from the local tree");

    let (json, _) = rc.ok(&["size", "--json", remote]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("rclone size output {json}: {e}"));
    assert_eq!(v["count"].as_u64(), Some(local.len() as u64), "rclone size count: {json}");
    assert_eq!(v["bytes"].as_u64(), Some(local.values().sum::<u64>()), "rclone size bytes: {json}");
}

/// ETag of one object through aws-cli (a multipart ETag ends in `-<parts>`).
fn etag(endpoint: &str, access_key: &str, secret_key: &str, bucket: &str, key: &str) -> String {
    let env = crate::common::aws_env(endpoint, access_key, secret_key);
    let out = crate::common::run_ok(
        "aws",
        &["s3api", "head-object", "--bucket", bucket, "--key", key, "--query", "ETag", "--output", "text"],
        &env,
        None,
    );
    out.trim().trim_matches('"').to_string()
}

/// The whole round trip against `endpoint`. Panics with the failing command and its output.
pub fn run(endpoint: &str, access_key: &str, secret_key: &str, spec: TreeSpec) {
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let rc = Rclone::new(tmp.path(), endpoint, access_key, secret_key);
    let src = tmp.path().join("src");
    let bucket = crate::common::unique("rclone").to_lowercase();
    let remote = format!("{}:{bucket}", rc.remote);
    let src_s = src.to_string_lossy().into_owned();

    for i in 0..spec.files {
        write_file(&src, &small_path(i), &small_content(i, 0), mtime(1_600_000_000 + i as u64));
    }
    write_big(&src, spec.big_mib);
    let mut local = walk(&src);
    assert_eq!(local.len(), spec.files + 1, "generated tree");
    eprintln!(
        "[rclone] tree of {} files, {} bytes generated in {:?}",
        local.len(),
        local.values().sum::<u64>(),
        t0.elapsed()
    );

    // First sync: everything is new.
    let t = Instant::now();
    rc.ok(&["mkdir", &remote]);
    let log = rc.transfer("sync", &src_s, &remote);
    assert_eq!(stats(&log), (local.len() as u64, 0), "first sync: (transferred, deleted)\n{log}");
    eprintln!("[rclone] first sync in {:?}", t.elapsed());
    let parts = spec.big_mib.div_ceil(CHUNK_MIB);
    let big_etag = etag(endpoint, access_key, secret_key, &bucket, BIG_PATH);
    assert!(big_etag.ends_with(&format!("-{parts}")), "{BIG_PATH} was not stored as {parts} parts: ETag {big_etag}");
    let t = Instant::now();
    assert_check(&rc, &src, &remote, local.len());
    assert_listing(&rc, &remote, &local);
    eprintln!("[rclone] check, lsjson, size in {:?}", t.elapsed());

    // Change the tree: rewrite some files (same size for some), delete some, add some.
    let modified: Vec<usize> = (0..spec.files).filter(|i| i % 37 == 5 && i % 50 != 0).collect();
    let deleted: Vec<usize> = (0..spec.files).filter(|i| i % 31 == 7 && i % 37 != 5).collect();
    for &i in &modified {
        let mut data = small_content(i, 1);
        if i % 2 == 0 {
            // Same size as before, other bytes: only the hash (and mtime) tells them apart.
            let old = small_content(i, 0);
            data.resize(old.len(), 0);
            if data == old && !data.is_empty() {
                data[0] ^= 0xFF;
            }
        }
        write_file(&src, &small_path(i), &data, mtime(1_700_000_000 + i as u64));
    }
    for &i in &deleted {
        let p = src.join(small_path(i));
        std::fs::remove_file(&p).unwrap_or_else(|e| panic!("remove {}: {e}", p.display()));
    }
    let added = 15;
    for j in 0..added {
        let i = spec.files + j;
        write_file(&src, &format!("added/{}", small_path(i)), &small_content(i, 0), mtime(1_650_000_000 + i as u64));
    }
    local = walk(&src);
    assert_eq!(local.len(), spec.files + 1 - deleted.len() + added, "changed tree");

    let t = Instant::now();
    let log = rc.transfer("sync", &src_s, &remote);
    assert_eq!(
        stats(&log),
        ((modified.len() + added) as u64, deleted.len() as u64),
        "second sync: (transferred, deleted); {} modified, {added} added, {} deleted\n{log}",
        modified.len(),
        deleted.len()
    );
    eprintln!("[rclone] second sync in {:?}", t.elapsed());
    assert_check(&rc, &src, &remote, local.len());
    assert_listing(&rc, &remote, &local);

    // Copy everything back into a fresh directory and compare it byte for byte.
    let back = tmp.path().join("back");
    let t = Instant::now();
    let log = rc.transfer("copy", &remote, &back.to_string_lossy());
    assert_eq!(stats(&log), (local.len() as u64, 0), "copy back: (transferred, deleted)\n{log}");
    eprintln!("[rclone] copy back in {:?}", t.elapsed());
    let got = walk(&back);
    assert_eq!(got, local, "the copied-back tree differs from the source (paths and sizes)");
    for rel in local.keys() {
        let (a, b) = (src.join(rel), back.join(rel));
        if rel == BIG_PATH {
            assert_eq!(sha256_file(&a), sha256_file(&b), "{rel}: content differs (sha256)");
        } else {
            let x = std::fs::read(&a).unwrap_or_else(|e| panic!("read {}: {e}", a.display()));
            let y = std::fs::read(&b).unwrap_or_else(|e| panic!("read {}: {e}", b.display()));
            assert!(x == y, "{rel}: content differs ({} vs {} bytes)", x.len(), y.len());
        }
        let ma = std::fs::metadata(&a).and_then(|m| m.modified()).unwrap_or_else(|e| panic!("mtime of {rel}: {e}"));
        let mb = std::fs::metadata(&b).and_then(|m| m.modified()).unwrap_or_else(|e| panic!("mtime of {rel}: {e}"));
        assert_eq!(ma, mb, "{rel}: modification time (rclone's mtime metadata) did not survive the round trip");
    }

    // Remove it all (multi-object delete, then DeleteBucket).
    rc.ok(&["purge", &remote, "--s3-force-path-style"]);
    let (buckets, _) = rc.ok(&["lsf", &format!("{}:", rc.remote), "--dirs-only"]);
    assert!(!buckets.lines().any(|l| l.trim_end_matches('/') == bucket), "bucket {bucket} still listed: {buckets}");
    eprintln!("[rclone] whole flow in {:?}", t0.elapsed());
}
