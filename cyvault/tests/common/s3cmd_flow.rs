//! The s3cmd session shared by `s3_s3cmd` (local backend) and `ceph_s3_s3cmd` (RADOS): bucket and
//! object commands, a multipart put, sync both ways, recursive delete, and s3cmd's own exit codes
//! and messages for a missing bucket, a missing key and a non-empty bucket.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::common::{self, pseudo_random};

const MIB: usize = 1024 * 1024;

struct S3cmd {
    config: PathBuf,
}

impl S3cmd {
    fn new(dir: &Path, endpoint: &str, access_key: &str, secret_key: &str) -> S3cmd {
        let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
        let config = dir.join("s3cfg");
        let text = format!(
            "[default]\naccess_key = {access_key}\nsecret_key = {secret_key}\nhost_base = {host}\nhost_bucket = {host}\n\
             use_https = False\nsignature_v2 = False\nbucket_location = us-east-1\nprogress_meter = False\n"
        );
        std::fs::write(&config, text).unwrap_or_else(|e| panic!("write {}: {e}", config.display()));
        S3cmd { config }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("s3cmd")
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run s3cmd (apt-get install s3cmd): {e}"))
    }

    /// Runs s3cmd, failing the test when it fails; returns stdout.
    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "s3cmd {args:?} failed ({}):\nstdout: {stdout}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Runs s3cmd expecting exit code `code` and `message` on stderr.
    #[track_caller]
    fn fails(&self, args: &[&str], code: i32, message: &str) {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(code),
            "s3cmd {args:?}: expected exit code {code}\nstdout: {}\nstderr: {stderr}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(stderr.contains(message), "s3cmd {args:?}: expected {message:?} on stderr, got: {stderr}");
    }

    /// `ls` output as (uri, size) pairs; directories have size `None`.
    #[track_caller]
    fn ls(&self, args: &[&str]) -> Vec<(String, Option<u64>)> {
        parse_ls(&self.ok(args))
    }
}

/// `s3cmd ls`/`la` output as sorted (uri, size) pairs; directories have size `None`.
#[track_caller]
fn parse_ls(out: &str) -> Vec<(String, Option<u64>)> {
    let mut rows = Vec::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let w: Vec<&str> = line.split_whitespace().collect();
        let uri_at = line.find("s3://").unwrap_or_else(|| panic!("s3cmd ls: no uri in {line:?}"));
        let uri = line[uri_at..].to_string();
        match w.first() {
            Some(&"DIR") => rows.push((uri, None)),
            _ => {
                let size = w.get(2).and_then(|s| s.parse().ok());
                assert!(size.is_some(), "s3cmd ls: no size in {line:?}");
                rows.push((uri, size));
            }
        }
    }
    rows.sort();
    rows
}

fn write(p: &Path, data: &[u8]) {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
    }
    std::fs::write(p, data).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn md5_file(p: &Path) -> String {
    let out = common::run_ok("md5sum", &[&p.to_string_lossy()], &[], None);
    out.split_whitespace().next().unwrap_or_default().to_string()
}

fn count_lines(out: &str, prefix: &str) -> usize {
    out.lines().filter(|l| l.starts_with(prefix)).count()
}

/// The whole s3cmd session against one endpoint.
pub fn s3cmd_flow(endpoint: &str, access_key: &str, secret_key: &str) {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let s3 = S3cmd::new(tmp.path(), endpoint, access_key, secret_key);
    let b = common::unique("s3cmd").to_lowercase();
    let bu = format!("s3://{b}");
    let t0 = std::time::Instant::now();

    // Buckets.
    assert_eq!(s3.ok(&["mb", &bu]), format!("Bucket '{bu}/' created\n"));
    let buckets = s3.ok(&["ls"]);
    assert!(buckets.lines().any(|l| l.ends_with(&format!("  {bu}"))), "s3cmd ls does not list {bu}: {buckets}");

    // Objects: a small one, one with a space and non-ASCII in its key, a 30 MiB multipart one.
    let small = tmp.path().join("small.txt");
    write(&small, &pseudo_random(1000, 1));
    let odd = tmp.path().join("odd");
    write(&odd, b"odd key\n");
    let big = tmp.path().join("big.bin");
    write(&big, &pseudo_random(30 * MIB, 2));
    let out = s3.ok(&["put", &small.to_string_lossy(), &format!("{bu}/small.txt")]);
    assert!(out.starts_with("upload: '") && out.contains(&format!(" -> '{bu}/small.txt' (1000 bytes")), "{out}");
    s3.ok(&["put", &odd.to_string_lossy(), &format!("{bu}/dir/ünï file.txt")]);
    let out = s3.ok(&["put", "--multipart-chunk-size-mb=5", &big.to_string_lossy(), &format!("{bu}/dir/big.bin")]);
    assert!(out.contains(&format!(" -> '{bu}/dir/big.bin' ({} bytes", 30 * MIB)), "{out}");
    let etag = common::run_ok(
        "aws",
        &["s3api", "head-object", "--bucket", &b, "--key", "dir/big.bin", "--query", "ETag", "--output", "text"],
        &common::aws_env(endpoint, access_key, secret_key),
        None,
    );
    assert!(etag.trim().trim_matches('"').ends_with("-6"), "30 MiB in 5 MiB chunks must be 6 parts, ETag {etag}");

    // Listings.
    assert_eq!(
        s3.ls(&["ls", &bu]),
        vec![(format!("{bu}/dir/"), None), (format!("{bu}/small.txt"), Some(1000))],
        "s3cmd ls {bu}"
    );
    assert_eq!(
        s3.ls(&["ls", "--recursive", &bu]),
        vec![
            (format!("{bu}/dir/big.bin"), Some(30 * MIB as u64)),
            (format!("{bu}/dir/ünï file.txt"), Some(8)),
            (format!("{bu}/small.txt"), Some(1000)),
        ],
        "s3cmd ls --recursive {bu}"
    );
    let all: Vec<_> = s3.ls(&["la"]).into_iter().filter(|r| r.0.starts_with(&format!("{bu}/"))).collect();
    assert_eq!(all, vec![(format!("{bu}/dir/"), None), (format!("{bu}/small.txt"), Some(1000))], "s3cmd la");

    // info: size and MD5 (for the multipart object s3cmd reads it from its own metadata).
    let info = s3.ok(&["info", &format!("{bu}/dir/big.bin")]);
    assert!(info.contains(&format!("File size: {}\n", 30 * MIB)), "s3cmd info: {info}");
    assert!(info.contains(&format!("MD5 sum:   {}\n", md5_file(&big))), "s3cmd info: {info}");
    let info = s3.ok(&["info", &format!("{bu}/small.txt")]);
    assert!(info.contains("File size: 1000\n"), "s3cmd info: {info}");
    assert!(info.contains(&format!("MD5 sum:   {}\n", md5_file(&small))), "s3cmd info: {info}");

    // get and compare.
    let got = tmp.path().join("got");
    for (key, local) in [("dir/big.bin", &big), ("small.txt", &small), ("dir/ünï file.txt", &odd)] {
        let dst = got.join(key.replace('/', "_"));
        std::fs::create_dir_all(&got).unwrap_or_else(|e| panic!("mkdir: {e}"));
        let out = s3.ok(&["get", &format!("{bu}/{key}"), &dst.to_string_lossy()]);
        assert!(out.starts_with(&format!("download: '{bu}/{key}' -> ")), "{out}");
        assert!(read(&dst) == read(local), "{key}: downloaded bytes differ");
    }

    // sync a small directory up, again (no-op), changed (one upload, one delete), and back down.
    let tree = tmp.path().join("tree");
    let files = ["a.txt", "sub/b.bin", "sub/deeper/c.bin", "sub/deeper/empty", "with space.txt"];
    for (i, f) in files.iter().enumerate() {
        write(&tree.join(f), &pseudo_random(if *f == "sub/deeper/empty" { 0 } else { 100 + i * 3000 }, 10 + i as u64));
    }
    let tree_s = format!("{}/", tree.to_string_lossy());
    let out = s3.ok(&["sync", &tree_s, &format!("{bu}/tree/")]);
    assert_eq!(count_lines(&out, "upload: "), files.len(), "first sync: {out}");
    let out = s3.ok(&["sync", &tree_s, &format!("{bu}/tree/")]);
    assert_eq!(count_lines(&out, "upload: "), 0, "second sync of an unchanged tree uploaded: {out}");
    write(&tree.join("a.txt"), b"changed content");
    std::fs::remove_file(tree.join("sub/b.bin")).unwrap_or_else(|e| panic!("rm: {e}"));
    let out = s3.ok(&["sync", "--delete-removed", &tree_s, &format!("{bu}/tree/")]);
    assert_eq!(count_lines(&out, "upload: "), 1, "sync after a change: {out}");
    assert!(out.contains(&format!("delete: '{bu}/tree/sub/b.bin'")), "sync --delete-removed: {out}");
    let listed: Vec<String> = s3.ls(&["ls", "--recursive", &format!("{bu}/tree/")]).into_iter().map(|r| r.0).collect();
    let expect: Vec<String> = ["a.txt", "sub/deeper/c.bin", "sub/deeper/empty", "with space.txt"]
        .iter()
        .map(|f| format!("{bu}/tree/{f}"))
        .collect();
    assert_eq!(listed, expect, "objects after sync --delete-removed");
    let back = tmp.path().join("back");
    std::fs::create_dir_all(&back).unwrap_or_else(|e| panic!("mkdir: {e}"));
    let out = s3.ok(&["sync", &format!("{bu}/tree/"), &format!("{}/", back.to_string_lossy())]);
    assert_eq!(count_lines(&out, "download: "), 4, "sync down: {out}");
    for f in ["a.txt", "sub/deeper/c.bin", "sub/deeper/empty", "with space.txt"] {
        assert!(read(&back.join(f)) == read(&tree.join(f)), "{f}: synced-down bytes differ");
    }

    // del, then the error exits.
    assert_eq!(s3.ok(&["del", &format!("{bu}/small.txt")]), format!("delete: '{bu}/small.txt'\n"));
    let missing_bucket = format!("s3://{}", common::unique("nobucket").to_lowercase());
    s3.fails(&["ls", &missing_bucket], 12, "404 (NoSuchBucket)");
    s3.fails(&["put", &small.to_string_lossy(), &format!("{missing_bucket}/x")], 12, "404 (NoSuchBucket)");
    s3.fails(
        &["get", &format!("{bu}/small.txt"), &got.join("gone").to_string_lossy()],
        64,
        &format!("Source object '{bu}/small.txt' does not exist"),
    );
    s3.fails(&["info", &format!("{bu}/small.txt")], 12, "404 (NoSuchKey)");
    s3.fails(&["rb", &bu], 13, "409 (BucketNotEmpty)");

    // del --recursive empties the bucket, rb removes it.
    let out = s3.ok(&["del", "--recursive", "--force", &format!("{bu}/")]);
    assert_eq!(count_lines(&out, "delete: "), 6, "del --recursive: {out}");
    assert_eq!(s3.ls(&["ls", "--recursive", &bu]), vec![], "bucket not empty after del --recursive");
    assert_eq!(s3.ok(&["rb", &bu]), format!("Bucket '{bu}/' removed\n"));
    let buckets = s3.ok(&["ls"]);
    assert!(!buckets.contains(&bu), "{bu} still listed after rb: {buckets}");
    s3.fails(&["ls", &bu], 12, "404 (NoSuchBucket)");
    eprintln!("[s3cmd] whole flow in {:?}", t0.elapsed());
}
