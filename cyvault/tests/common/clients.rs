//! Client-driven S3 flows shared by the local-backend tests (`s3_boto3`, `s3_awscli`, `s3_auth`)
//! and their Ceph-tier twin (`ceph_s3_clients`): users made with `cyvault admin`, the boto3 suite
//! (`tests/clients/boto3_suite.py`), aws-cli flows, and hand-signed requests sent with curl.
//! Declared from a test crate as `#[path = "common/clients.rs"] mod clients;` next to `mod common;`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use crate::common::{Backend, Gateway, aws_env, pseudo_random, run, run_ok, unique};

pub const MIB: usize = 1024 * 1024;

/// Cases in `tests/clients/boto3_suite.py`; all of them run when a second user is given.
pub const BOTO3_CASES: usize = 67;

/// `cyvault/tests/clients`.
pub fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("clients")
}

#[track_caller]
pub fn parse_json(text: &str, what: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"))
}

#[track_caller]
pub fn write(path: &Path, data: &[u8]) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    }
    std::fs::write(path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// `write`, then set the file's mtime 2 s into the past.
#[track_caller]
pub fn write_aged(path: &Path, data: &[u8]) {
    write(path, data);
    let when = std::time::SystemTime::now() - std::time::Duration::from_secs(2);
    let f = std::fs::File::options().write(true).open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.set_modified(when).unwrap_or_else(|e| panic!("set mtime of {}: {e}", path.display()));
}

#[track_caller]
pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// A bucket name no other test uses (S3 rules: lowercase, ≤ 63 characters).
pub fn bucket(tag: &str) -> String {
    let name = unique(&format!("cyv-{tag}")).to_lowercase();
    assert!(name.len() <= 63, "bucket name too long: {name}");
    name
}

/// Lower-case hex MD5 of a file (`md5sum`).
pub fn md5_file(path: &Path) -> String {
    let out = run_ok("md5sum", &[&path.to_string_lossy()], &[], None);
    out.split_whitespace().next().unwrap_or_default().to_string()
}

/// The S3 ETag (without quotes) of an object uploaded in parts of `part_size` bytes.
pub fn multipart_etag(path: &Path, part_size: usize) -> String {
    let code = "import hashlib,sys\n\
                d=open(sys.argv[1],'rb').read();n=int(sys.argv[2])\n\
                ps=[hashlib.md5(d[i:i+n]).digest() for i in range(0,len(d),n)]\n\
                print(hashlib.md5(b''.join(ps)).hexdigest()+'-%d'%len(ps))";
    run_ok("python3", &["-c", code, &path.to_string_lossy(), &part_size.to_string()], &[], None).trim().to_string()
}

// ---------------------------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------------------------

/// A gateway user with one key.
#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    pub access_key: String,
    pub secret_key: String,
}

/// Runs `f` with `cyvault admin` access: on the local backend the gateway is stopped first and
/// started again afterwards (on a new port: read `gw.endpoint` again); on RADOS it keeps running.
pub fn with_admin<T>(gw: &mut Gateway, f: impl FnOnce(&Gateway) -> T) -> T {
    let local = gw.backend == Backend::Local;
    if local {
        gw.stop();
    }
    let out = f(gw);
    if local {
        gw.restart();
    }
    out
}

/// `cyvault admin user create NAME --json` (stopping a local gateway around it).
#[track_caller]
pub fn create_user(gw: &mut Gateway, name: &str) -> User {
    let out = with_admin(gw, |gw| gw.admin_ok(&["user", "create", name, "--json"]));
    user_from_json(&out, name)
}

#[track_caller]
pub fn user_from_json(out: &str, name: &str) -> User {
    let v = parse_json(out, "admin user create --json");
    assert_eq!(v["name"], name, "user create --json: {out}");
    assert!(v["created"].is_string() || v["created"].is_number(), "user create --json has no created: {out}");
    let ak = v["access_key"].as_str().unwrap_or_default().to_string();
    let sk = v["secret_key"].as_str().unwrap_or_default().to_string();
    assert!(!ak.is_empty() && !sk.is_empty(), "user create --json has no key: {out}");
    User { name: name.to_string(), access_key: ak, secret_key: sk }
}

/// The root user of a gateway as a `User`.
pub fn root_user(gw: &Gateway) -> User {
    User { name: "root".into(), access_key: gw.access_key.clone(), secret_key: gw.secret_key.clone() }
}

// ---------------------------------------------------------------------------------------------
// The boto3 suite
// ---------------------------------------------------------------------------------------------

/// What the suite reported.
#[derive(Debug)]
pub struct SuiteRun {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub output: String,
}

/// Reads the suite's closing `N passed, M failed, K skipped in …` line.
pub fn parse_summary(stdout: &str) -> Option<(usize, usize, usize)> {
    let line = stdout.lines().rev().find(|l| l.contains(" passed, ") && l.contains(" failed"))?;
    let mut nums = line.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(|s| s.parse::<usize>());
    let p = nums.next()?.ok()?;
    let f = nums.next()?.ok()?;
    let s = nums.next()?.ok()?;
    Some((p, f, s))
}

/// Runs `boto3_suite.py` against `gw` with its root user and `user2`, and fails the test unless
/// every case passed, none was skipped and at least `BOTO3_CASES` ran.
#[track_caller]
pub fn run_boto3_suite(gw: &Gateway, user2: &User) -> SuiteRun {
    let script = clients_dir().join("boto3_suite.py");
    let mut env = gw.aws_env();
    for (k, v) in [
        ("CYV_USER2_ACCESS_KEY", user2.access_key.as_str()),
        ("CYV_USER2_SECRET_KEY", user2.secret_key.as_str()),
        ("CYV_SUITE_SKIP", ""),
        ("CYV_SUITE_ONLY", ""),
        ("CYV_SUITE_TIMES", "1"),
        ("PYTHONDONTWRITEBYTECODE", "1"),
        ("PYTHONUNBUFFERED", "1"),
    ] {
        env.push((k.to_string(), v.to_string()));
    }
    let out = run("python3", &[&script.to_string_lossy()], &env, None);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("boto3 suite output:\n{stdout}");
    let Some((passed, failed, skipped)) = parse_summary(&stdout) else {
        panic!("the boto3 suite printed no summary ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    };
    let failures: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL ")).collect();
    assert!(
        failed == 0 && failures.is_empty() && out.status.success(),
        "boto3 suite: {failed} of {} cases failed (exit {}):\n{}\n\nstderr:\n{stderr}",
        passed + failed,
        out.status,
        failures.join("\n")
    );
    assert_eq!(skipped, 0, "boto3 suite skipped cases:\n{stdout}");
    assert!(passed >= BOTO3_CASES, "boto3 suite ran {passed} cases, expected at least {BOTO3_CASES}:\n{stdout}");
    SuiteRun { passed, failed, skipped, output: stdout }
}

// ---------------------------------------------------------------------------------------------
// aws-cli
// ---------------------------------------------------------------------------------------------

/// aws-cli v1 with one user's credentials, run in `cwd`.
#[derive(Clone, Debug)]
pub struct Aws {
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
}

impl Aws {
    pub fn new(endpoint: &str, user: &User, cwd: &Path) -> Aws {
        let mut env = aws_env(endpoint, &user.access_key, &user.secret_key);
        env.push(("AWS_MAX_ATTEMPTS".into(), "1".into()));
        env.push(("AWS_RETRY_MODE".into(), "standard".into()));
        Aws { env, cwd: cwd.to_path_buf() }
    }

    /// The gateway's root user.
    pub fn root(gw: &Gateway, cwd: &Path) -> Aws {
        Aws::new(&gw.endpoint, &root_user(gw), cwd)
    }

    /// The same user with an aws config file holding `text` (e.g. `s3 =\n  signature_version = s3v4`).
    pub fn with_config(&self, text: &str) -> Aws {
        let path = self.cwd.join(format!("aws-config-{}", unique("c")));
        write(&path, format!("[default]\n{text}\n").as_bytes());
        let mut a = self.clone();
        a.env.retain(|(k, _)| k != "AWS_CONFIG_FILE");
        a.env.push(("AWS_CONFIG_FILE".into(), path.to_string_lossy().into_owned()));
        a
    }

    /// `aws s3 cp/sync/mv` print progress lines ending in `\r`; ask them not to, so that stdout
    /// holds only the `upload:`/`download:`/`copy:` lines.
    fn quiet<'a>(args: &[&'a str]) -> Vec<&'a str> {
        let mut a = args.to_vec();
        if a.first() == Some(&"s3") && a.get(1).is_some_and(|c| ["cp", "sync", "mv"].contains(c)) {
            a.push("--no-progress");
        }
        a
    }

    pub fn run(&self, args: &[&str]) -> Output {
        run("aws", &Aws::quiet(args), &self.env, Some(&self.cwd))
    }

    /// Runs aws, failing the test when it fails; returns stdout.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        run_ok("aws", &Aws::quiet(args), &self.env, Some(&self.cwd))
    }

    /// Runs aws with `--output json`; an empty answer is `Value::Null`.
    #[track_caller]
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["--output", "json"]);
        let out = self.ok(&a);
        if out.trim().is_empty() { Value::Null } else { parse_json(&out, &format!("aws {args:?}")) }
    }

    /// Runs aws, which must fail with `An error occurred (CODE) when calling the OP operation`.
    /// Returns stderr.
    #[track_caller]
    pub fn fails(&self, args: &[&str], code: &str, op: &str) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if let Some(why) = Aws::check_failure(args, &out, code, op) {
            panic!("{why}");
        }
        stderr
    }

    /// Like `fails`, returning what went wrong instead of panicking.
    pub fn run_expecting(&self, args: &[&str], code: &str, op: &str) -> Option<String> {
        Aws::check_failure(args, &self.run(args), code, op)
    }

    fn check_failure(args: &[&str], out: &Output, code: &str, op: &str) -> Option<String> {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let want = format!("An error occurred ({code}) when calling the {op} operation");
        if !out.status.success() && stderr.contains(&want) {
            return None;
        }
        Some(format!(
            "aws {args:?}: want a failure with `{want}`, got {} with stdout {} stderr {stderr}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        ))
    }
}

/// One aws-cli call that must fail: (who, arguments, error code, operation).
pub type Failing<'a> = (&'a Aws, Vec<&'a str>, &'a str, &'a str);

/// Runs independent failing calls four at a time (aws-cli spends ~0.4 s of CPU starting) and
/// fails the test with every mismatch at once.
#[track_caller]
pub fn expect_failures(cases: &[Failing<'_>]) {
    let mut failures = Vec::new();
    for group in cases.chunks(4) {
        std::thread::scope(|s| {
            let running: Vec<_> =
                group.iter().map(|(aws, args, code, op)| s.spawn(move || aws.run_expecting(args, code, op))).collect();
            for h in running {
                failures.extend(h.join().unwrap_or_else(|_| Some("an aws thread panicked".into())));
            }
        });
    }
    assert!(
        failures.is_empty(),
        "{} of {} aws-cli error cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// `aws s3 ls` lines as (size, key or bucket); directories (`PRE x/`) as (0, "x/").
pub fn ls_entries(out: &str) -> Vec<(u64, String)> {
    let mut v = Vec::new();
    for line in out.lines() {
        let t = line.trim_start();
        if let Some(p) = t.strip_prefix("PRE ") {
            v.push((0, p.to_string()));
            continue;
        }
        // `DATE TIME SIZE KEY` (objects) or `DATE TIME NAME` (buckets).
        let Some((_, rest)) = t.split_once(' ') else { continue };
        let Some((_, rest)) = rest.trim_start().split_once(' ') else { continue };
        let rest = rest.trim_start();
        match rest.split_once(' ') {
            Some((size, key)) if size.chars().all(|c| c.is_ascii_digit()) => {
                v.push((size.parse().unwrap_or(0), key.to_string()))
            }
            _ => v.push((0, rest.to_string())),
        }
    }
    v
}

fn s3url(bucket: &str, key: &str) -> String {
    format!("s3://{bucket}/{key}")
}

/// `aws s3`: mb, ls (buckets, prefixes, objects), cp up and down, rm, rb refused on a non-empty
/// bucket, rm --recursive, rb; ls of the removed bucket is NoSuchBucket.
pub fn s3_basic_flow(aws: &Aws, dir: &Path) {
    let b = bucket("hl");
    assert_eq!(aws.ok(&["s3", "mb", &format!("s3://{b}")]), format!("make_bucket: {b}\n"));
    let buckets = ls_entries(&aws.ok(&["s3", "ls"]));
    assert!(buckets.iter().any(|(_, n)| *n == b), "aws s3 ls does not list {b}: {buckets:?}");
    let a = dir.join("a.txt");
    write(&a, b"alpha");
    let out = aws.ok(&["s3", "cp", &a.to_string_lossy(), &s3url(&b, "single/a.txt")]);
    assert!(
        out.starts_with("upload: ") && out.trim_end().ends_with(&format!("a.txt to s3://{b}/single/a.txt")),
        "{out}"
    );
    aws.ok(&["s3", "cp", &a.to_string_lossy(), &s3url(&b, "single/sp ace \u{fc}.txt")]);
    let down = dir.join("down.txt");
    aws.ok(&["s3", "cp", &s3url(&b, "single/sp ace \u{fc}.txt"), &down.to_string_lossy()]);
    assert_eq!(read(&down), b"alpha");
    assert_eq!(
        ls_entries(&aws.ok(&["s3", "ls", &s3url(&b, "single/")])),
        vec![(5, "a.txt".to_string()), (5, "sp ace \u{fc}.txt".to_string())]
    );
    assert_eq!(ls_entries(&aws.ok(&["s3", "ls", &format!("s3://{b}")])), vec![(0, "single/".to_string())]);
    let out = aws.ok(&["s3", "rm", &s3url(&b, "single/a.txt")]);
    assert_eq!(out.trim(), format!("delete: s3://{b}/single/a.txt"));
    aws.fails(&["s3", "rb", &format!("s3://{b}")], "BucketNotEmpty", "DeleteBucket");
    let out = aws.ok(&["s3", "rm", "--recursive", &format!("s3://{b}")]);
    assert_eq!(out.trim(), format!("delete: s3://{b}/single/sp ace \u{fc}.txt"), "rm --recursive");
    assert_eq!(aws.ok(&["s3", "rb", &format!("s3://{b}")]), format!("remove_bucket: {b}\n"));
    let buckets = ls_entries(&aws.ok(&["s3", "ls"]));
    assert!(!buckets.iter().any(|(_, n)| *n == b), "removed bucket still listed: {buckets:?}");
    aws.fails(&["s3", "ls", &format!("s3://{b}")], "NoSuchBucket", "ListObjectsV2");
}

/// `aws s3 sync`: up (3 files, one empty, one in a directory with a space and a non-ASCII name),
/// again (nothing to do), after a change (one upload), down (same bytes), --delete.
pub fn s3_sync_flow(aws: &Aws, dir: &Path) {
    let b = bucket("sync");
    aws.ok(&["s3", "mb", &format!("s3://{b}")]);
    let src = dir.join("src");
    // Local files older than their uploads: S3 lists LastModified in whole seconds, so a file
    // changed in the same second as its upload would look newer to the next sync.
    write_aged(&src.join("a.txt"), b"alpha");
    write_aged(&src.join("sub dir").join("b \u{fc}.txt"), b"beta beta");
    write_aged(&src.join("empty"), b"");
    let synced = s3url(&b, "synced/");
    let out = aws.ok(&["s3", "sync", &src.to_string_lossy(), &synced]);
    assert_eq!(out.lines().filter(|l| l.starts_with("upload:")).count(), 3, "first sync: {out}");
    let want = vec![
        (5, "synced/a.txt".to_string()),
        (0, "synced/empty".to_string()),
        (9, "synced/sub dir/b \u{fc}.txt".to_string()),
    ];
    assert_eq!(ls_entries(&aws.ok(&["s3", "ls", "--recursive", &synced])), want);
    let out = aws.ok(&["s3", "sync", &src.to_string_lossy(), &synced]);
    assert_eq!(out.trim(), "", "a second sync has nothing to do");
    write_aged(&src.join("a.txt"), b"alpha, changed");
    let out = aws.ok(&["s3", "sync", &src.to_string_lossy(), &synced]);
    let ups: Vec<&str> = out.lines().filter(|l| l.starts_with("upload:")).collect();
    assert!(ups.len() == 1 && ups[0].ends_with(&format!("to s3://{b}/synced/a.txt")), "sync after a change: {out}");
    let back = dir.join("back");
    aws.ok(&["s3", "sync", &synced, &back.to_string_lossy()]);
    assert_eq!(read(&back.join("a.txt")), b"alpha, changed");
    assert_eq!(read(&back.join("sub dir").join("b \u{fc}.txt")), b"beta beta");
    assert_eq!(read(&back.join("empty")), b"");
    std::fs::remove_file(src.join("empty")).unwrap_or_else(|e| panic!("rm: {e}"));
    let out = aws.ok(&["s3", "sync", "--delete", &src.to_string_lossy(), &synced]);
    assert_eq!(out.trim(), format!("delete: s3://{b}/synced/empty"), "sync --delete");
    let left: Vec<String> =
        ls_entries(&aws.ok(&["s3", "ls", "--recursive", &synced])).into_iter().map(|(_, k)| k).collect();
    assert_eq!(left, vec!["synced/a.txt".to_string(), "synced/sub dir/b \u{fc}.txt".to_string()]);
    aws.ok(&["s3", "rb", "--force", &format!("s3://{b}")]);
}

/// `aws s3 cp` of 20 MiB (multipart: 8 + 8 + 4 MiB) up, back and server-side (UploadPartCopy),
/// compared byte for byte, with the exact multipart ETag.
pub fn large_file_flow(aws: &Aws, dir: &Path) {
    let b = bucket("big");
    aws.ok(&["s3", "mb", &format!("s3://{b}")]);
    let src = dir.join("big.bin");
    let data = pseudo_random(20 * MIB, 20);
    write(&src, &data);
    aws.ok(&["s3", "cp", "--only-show-errors", &src.to_string_lossy(), &s3url(&b, "big.bin")]);
    let head = aws.json(&["s3api", "head-object", "--bucket", &b, "--key", "big.bin"]);
    assert_eq!(head["ContentLength"], 20 * MIB as u64);
    let etag = format!("\"{}\"", multipart_etag(&src, 8 * MIB));
    assert!(etag.ends_with("-3\""), "{etag}");
    assert_eq!(head["ETag"], etag.as_str(), "multipart ETag of a 20 MiB aws s3 cp");
    let back = dir.join("back.bin");
    aws.ok(&["s3", "cp", "--only-show-errors", &s3url(&b, "big.bin"), &back.to_string_lossy()]);
    assert!(read(&back) == data, "20 MiB downloaded differ from what was uploaded");
    // A copy this big is a multipart copy made of ranged UploadPartCopy requests.
    aws.ok(&["s3", "cp", "--only-show-errors", &s3url(&b, "big.bin"), &s3url(&b, "copy.bin")]);
    let head = aws.json(&["s3api", "head-object", "--bucket", &b, "--key", "copy.bin"]);
    assert_eq!(head["ContentLength"], 20 * MIB as u64);
    assert_eq!(head["ETag"], etag.as_str(), "ETag of the server-side multipart copy");
    let back2 = dir.join("back2.bin");
    aws.ok(&["s3", "cp", "--only-show-errors", &s3url(&b, "copy.bin"), &back2.to_string_lossy()]);
    assert!(read(&back2) == data, "the server-side copy differs from the original");
    aws.ok(&["s3", "rb", "--force", &format!("s3://{b}")]);
}

/// `aws s3api`: create-bucket, put-object with metadata and content type, head-object,
/// get-object --range, copy-object (COPY and REPLACE), put/get-object-tagging.
pub fn s3api_object_flow(aws: &Aws, dir: &Path) {
    let b = bucket("api");
    let created = aws.json(&["s3api", "create-bucket", "--bucket", &b]);
    assert_eq!(created["Location"], format!("/{b}").as_str(), "create-bucket Location");
    let body = b"0123456789 report body";
    let file = dir.join("report.txt");
    write(&file, body);
    let md5 = md5_file(&file);
    let key = "docs/report one.txt";
    let put = aws.json(&[
        "s3api",
        "put-object",
        "--bucket",
        &b,
        "--key",
        key,
        "--body",
        &file.to_string_lossy(),
        "--content-type",
        "text/x-report",
        "--metadata",
        "color=blue,owner=cyv",
        "--cache-control",
        "max-age=9",
    ]);
    let etag = format!("\"{md5}\"");
    assert_eq!(put["ETag"], etag.as_str(), "put-object ETag");
    let head = aws.json(&["s3api", "head-object", "--bucket", &b, "--key", key]);
    assert_eq!(head["ContentType"], "text/x-report");
    assert_eq!(head["ContentLength"], body.len() as u64);
    assert_eq!(head["ETag"], etag.as_str());
    assert_eq!(head["CacheControl"], "max-age=9");
    assert_eq!(head["Metadata"], serde_json::json!({"color": "blue", "owner": "cyv"}));

    let part = dir.join("part.out");
    let got = aws.json(&[
        "s3api",
        "get-object",
        "--bucket",
        &b,
        "--key",
        key,
        "--range",
        "bytes=2-5",
        &part.to_string_lossy(),
    ]);
    assert_eq!(read(&part), &body[2..=5]);
    assert_eq!(got["ContentRange"], format!("bytes 2-5/{}", body.len()).as_str());
    assert_eq!(got["ContentLength"], 4);

    let cp = aws.json(&[
        "s3api",
        "copy-object",
        "--bucket",
        &b,
        "--key",
        "docs/copy",
        "--copy-source",
        &format!("{b}/{key}"),
    ]);
    assert_eq!(cp["CopyObjectResult"]["ETag"], etag.as_str(), "copy-object ETag");
    let head = aws.json(&["s3api", "head-object", "--bucket", &b, "--key", "docs/copy"]);
    assert_eq!(head["Metadata"], serde_json::json!({"color": "blue", "owner": "cyv"}), "COPY keeps metadata");
    assert_eq!(head["ContentType"], "text/x-report");
    aws.json(&[
        "s3api",
        "copy-object",
        "--bucket",
        &b,
        "--key",
        "docs/replaced",
        "--copy-source",
        &format!("{b}/{key}"),
        "--metadata-directive",
        "REPLACE",
        "--metadata",
        "fresh=yes",
        "--content-type",
        "application/x-new",
    ]);
    let head = aws.json(&["s3api", "head-object", "--bucket", &b, "--key", "docs/replaced"]);
    assert_eq!(head["Metadata"], serde_json::json!({"fresh": "yes"}), "REPLACE metadata");
    assert_eq!(head["ContentType"], "application/x-new");

    aws.ok(&[
        "s3api",
        "put-object-tagging",
        "--bucket",
        &b,
        "--key",
        key,
        "--tagging",
        "TagSet=[{Key=stage,Value=final}]",
    ]);
    let tags = aws.json(&["s3api", "get-object-tagging", "--bucket", &b, "--key", key]);
    assert_eq!(tags["TagSet"], serde_json::json!([{"Key": "stage", "Value": "final"}]));

    aws.ok(&["s3", "rb", "--force", &format!("s3://{b}")]);
}

/// `aws s3api`: list-object-versions and get-bucket-versioning on an unversioned bucket,
/// delete-objects, get-object-attributes (ETag and ObjectSize).
pub fn s3api_versions_attributes_flow(aws: &Aws, dir: &Path) {
    let b = bucket("ver");
    aws.ok(&["s3", "mb", &format!("s3://{b}")]);
    let body = b"0123456789 report body";
    let file = dir.join("report.txt");
    write(&file, body);
    let md5 = md5_file(&file);
    let key = "docs/report one.txt";
    for k in [key, "docs/copy", "docs/replaced"] {
        aws.ok(&["s3api", "put-object", "--bucket", &b, "--key", k, "--body", &file.to_string_lossy()]);
    }
    let versions = aws.json(&["s3api", "list-object-versions", "--bucket", &b, "--prefix", "docs/"]);
    let v: Vec<(String, String, bool)> = versions["Versions"]
        .as_array()
        .unwrap_or_else(|| panic!("list-object-versions has no Versions: {versions}"))
        .iter()
        .map(|v| {
            (
                v["Key"].as_str().unwrap_or_default().to_string(),
                v["VersionId"].as_str().unwrap_or_default().to_string(),
                v["IsLatest"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    // Listed in key order: "docs/replaced" < "docs/report one.txt".
    let want: Vec<(String, String, bool)> =
        ["docs/copy", "docs/replaced", key].iter().map(|k| (k.to_string(), "null".to_string(), true)).collect();
    assert_eq!(v, want, "list-object-versions on an unversioned bucket");
    let ver = aws.json(&["s3api", "get-bucket-versioning", "--bucket", &b]);
    assert!(ver.get("Status").is_none(), "get-bucket-versioning of an unversioned bucket: {ver}");

    let del = aws.json(&[
        "s3api",
        "delete-objects",
        "--bucket",
        &b,
        "--delete",
        &serde_json::json!({"Objects": [{"Key": key}, {"Key": "docs/copy"}, {"Key": "docs/replaced"}]}).to_string(),
    ]);
    let mut deleted: Vec<&str> =
        del["Deleted"].as_array().map(|a| a.iter().filter_map(|d| d["Key"].as_str()).collect()).unwrap_or_default();
    deleted.sort_unstable();
    assert_eq!(deleted, vec!["docs/copy", "docs/replaced", key], "delete-objects: {del}");
    let left = aws.json(&["s3api", "list-objects-v2", "--bucket", &b]);
    assert!(left.get("Contents").is_none(), "objects left after delete-objects: {left}");
    aws.ok(&["s3api", "put-object", "--bucket", &b, "--key", key, "--body", &file.to_string_lossy()]);
    let attrs = aws.json(&[
        "s3api",
        "get-object-attributes",
        "--bucket",
        &b,
        "--key",
        key,
        "--object-attributes",
        "ETag",
        "ObjectSize",
    ]);
    assert_eq!(attrs["ETag"].as_str().map(|s| s.trim_matches('"')), Some(md5.as_str()), "attributes ETag: {attrs}");
    assert_eq!(attrs["ObjectSize"], body.len() as u64);

    aws.ok(&["s3", "rb", "--force", &format!("s3://{b}")]);
}

/// Uploads `keys` (each body = its key) with one `aws s3 sync` of a local tree.
fn sync_keys(aws: &Aws, dir: &Path, b: &str, keys: &[&str]) {
    let tree = dir.join(unique("tree"));
    for k in keys {
        write(&tree.join(k), k.as_bytes());
    }
    aws.ok(&["s3", "sync", "--only-show-errors", &tree.to_string_lossy(), &format!("s3://{b}")]);
}

fn strings(v: &Value, list: &str, field: &str) -> Vec<String> {
    v[list]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x[field].as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// `aws s3api list-objects(-v2)` with --prefix/--delimiter, server pages of one key
/// (--page-size 1: continuation tokens and markers), client paging (--max-items, --starting-token)
/// and --start-after.
pub fn s3api_listing_flow(aws: &Aws, dir: &Path) {
    let b = bucket("ls");
    aws.ok(&["s3", "mb", &format!("s3://{b}")]);
    let keys = ["p/a1", "p/a2", "p/a3", "p/a4", "p/d1/x", "p/d2/y", "p/d2/z", "q/other"];
    sync_keys(aws, dir, &b, &keys);
    let top = ["p/a1", "p/a2", "p/a3", "p/a4"];
    let dirs = ["p/d1/", "p/d2/"];
    for (cmd, paging) in [("list-objects-v2", "--page-size"), ("list-objects", "--page-size")] {
        let all = aws.json(&["s3api", cmd, "--bucket", &b, "--prefix", "p/", "--delimiter", "/", paging, "1"]);
        assert_eq!(strings(&all, "Contents", "Key"), top, "{cmd} --page-size 1: {all}");
        assert_eq!(strings(&all, "CommonPrefixes", "Prefix"), dirs, "{cmd} --page-size 1: {all}");
    }
    let first = aws.json(&["s3api", "list-objects-v2", "--bucket", &b, "--prefix", "p/", "--max-items", "3"]);
    let mut got = strings(&first, "Contents", "Key");
    assert_eq!(got, ["p/a1", "p/a2", "p/a3"], "first page of --max-items 3: {first}");
    let token = first["NextToken"].as_str().unwrap_or_else(|| panic!("no NextToken with --max-items 3: {first}"));
    let rest = aws.json(&["s3api", "list-objects-v2", "--bucket", &b, "--prefix", "p/", "--starting-token", token]);
    got.extend(strings(&rest, "Contents", "Key"));
    assert_eq!(got, keys[..7], "keys over two client pages");
    assert!(rest.get("NextToken").is_none(), "NextToken on the last page: {rest}");
    let after = aws.json(&["s3api", "list-objects-v2", "--bucket", &b, "--start-after", "p/d1/x"]);
    assert_eq!(strings(&after, "Contents", "Key"), ["p/d2/y", "p/d2/z", "q/other"], "--start-after");
    let nested = aws.json(&["s3api", "list-objects-v2", "--bucket", &b, "--prefix", "p/d2/", "--delimiter", "/"]);
    assert_eq!(strings(&nested, "Contents", "Key"), ["p/d2/y", "p/d2/z"]);
    let ls = ls_entries(&aws.ok(&["s3", "ls", &s3url(&b, "p/")]));
    assert_eq!(
        ls,
        vec![
            (0, "d1/".into()),
            (0, "d2/".into()),
            (4, "a1".into()),
            (4, "a2".into()),
            (4, "a3".into()),
            (4, "a4".into())
        ],
        "aws s3 ls s3://b/p/ (prefixes first, then objects)"
    );
    aws.ok(&["s3", "rb", "--force", &format!("s3://{b}")]);
}

/// create-multipart-upload, upload-part ×2, list-parts, list-multipart-uploads,
/// complete-multipart-upload (exact ETag, byte-equal download).
pub fn multipart_by_hand_flow(aws: &Aws, dir: &Path) {
    let b = bucket("mpu");
    aws.ok(&["s3", "mb", &format!("s3://{b}")]);
    let p1 = dir.join("part1");
    let p2 = dir.join("part2");
    let d1 = pseudo_random(5 * MIB, 1);
    let d2 = pseudo_random(100 * 1024 + 1, 2);
    write(&p1, &d1);
    write(&p2, &d2);
    let key = "mp/by hand.bin";
    let up = aws.json(&[
        "s3api",
        "create-multipart-upload",
        "--bucket",
        &b,
        "--key",
        key,
        "--content-type",
        "application/x-hand",
    ]);
    let uid = up["UploadId"].as_str().unwrap_or_else(|| panic!("no UploadId: {up}")).to_string();
    assert_eq!(up["Key"], key);
    let mut parts = Vec::new();
    for (n, p) in [(1, &p1), (2, &p2)] {
        let r = aws.json(&[
            "s3api",
            "upload-part",
            "--bucket",
            &b,
            "--key",
            key,
            "--upload-id",
            &uid,
            "--part-number",
            &n.to_string(),
            "--body",
            &p.to_string_lossy(),
        ]);
        let etag = format!("\"{}\"", md5_file(p));
        assert_eq!(r["ETag"], etag.as_str(), "upload-part {n} ETag");
        parts.push(serde_json::json!({"PartNumber": n, "ETag": etag}));
    }
    let lp = aws.json(&["s3api", "list-parts", "--bucket", &b, "--key", key, "--upload-id", &uid]);
    let sizes: Vec<u64> =
        lp["Parts"].as_array().map(|a| a.iter().filter_map(|p| p["Size"].as_u64()).collect()).unwrap_or_default();
    assert_eq!(sizes, vec![d1.len() as u64, d2.len() as u64], "list-parts: {lp}");
    let lu = aws.json(&["s3api", "list-multipart-uploads", "--bucket", &b]);
    assert_eq!(strings(&lu, "Uploads", "UploadId"), vec![uid.as_str()], "list-multipart-uploads: {lu}");
    assert_eq!(strings(&lu, "Uploads", "Key"), [key], "list-multipart-uploads: {lu}");
    let manifest = dir.join("parts.json");
    write(&manifest, serde_json::json!({ "Parts": parts }).to_string().as_bytes());
    let done = aws.json(&[
        "s3api",
        "complete-multipart-upload",
        "--bucket",
        &b,
        "--key",
        key,
        "--upload-id",
        &uid,
        "--multipart-upload",
        &format!("file://{}", manifest.to_string_lossy()),
    ]);
    let whole = dir.join("whole");
    write(&whole, &[d1.as_slice(), d2.as_slice()].concat());
    let etag = format!("\"{}\"", multipart_etag(&whole, 5 * MIB));
    assert_eq!(done["ETag"], etag.as_str(), "complete-multipart-upload ETag");
    let head = aws.json(&["s3api", "head-object", "--bucket", &b, "--key", key]);
    assert_eq!(head["ContentLength"], (d1.len() + d2.len()) as u64);
    assert_eq!(head["ContentType"], "application/x-hand");
    assert_eq!(head["ETag"], etag.as_str());
    let back = dir.join("back");
    aws.json(&["s3api", "get-object", "--bucket", &b, "--key", key, &back.to_string_lossy()]);
    assert!(read(&back) == read(&whole), "downloaded multipart object differs");
    let lu = aws.json(&["s3api", "list-multipart-uploads", "--bucket", &b]);
    assert!(lu.get("Uploads").is_none(), "uploads left after complete: {lu}");
    aws.ok(&["s3", "rb", "--force", &format!("s3://{b}")]);
}

/// create-multipart-upload, upload-part, abort-multipart-upload: the upload is gone
/// (list-multipart-uploads, list-parts → NoSuchUpload) and no object appeared.
pub fn multipart_abort_flow(aws: &Aws, dir: &Path) {
    let b = bucket("abort");
    aws.ok(&["s3", "mb", &format!("s3://{b}")]);
    let p2 = dir.join("part");
    write(&p2, &pseudo_random(1000, 3));
    let up = aws.json(&["s3api", "create-multipart-upload", "--bucket", &b, "--key", "mp/aborted"]);
    let uid = up["UploadId"].as_str().unwrap_or_default().to_string();
    aws.json(&[
        "s3api",
        "upload-part",
        "--bucket",
        &b,
        "--key",
        "mp/aborted",
        "--upload-id",
        &uid,
        "--part-number",
        "1",
        "--body",
        &p2.to_string_lossy(),
    ]);
    aws.ok(&["s3api", "abort-multipart-upload", "--bucket", &b, "--key", "mp/aborted", "--upload-id", &uid]);
    let lu = aws.json(&["s3api", "list-multipart-uploads", "--bucket", &b]);
    assert!(lu.get("Uploads").is_none(), "uploads left after abort: {lu}");
    aws.fails(
        &["s3api", "list-parts", "--bucket", &b, "--key", "mp/aborted", "--upload-id", &uid],
        "NoSuchUpload",
        "ListParts",
    );
    aws.fails(&["s3api", "head-object", "--bucket", &b, "--key", "mp/aborted"], "404", "HeadObject");
    aws.ok(&["s3", "rb", "--force", &format!("s3://{b}")]);
}

/// GET `url` with curl; returns (HTTP status, body).
pub fn curl(url: &str, extra: &[&str]) -> (u16, String) {
    let mut args = vec!["-s", "-S", "--max-time", "30", "-w", "\n%{http_code}"];
    args.extend_from_slice(extra);
    args.push(url);
    let out = run_ok("curl", &args, &[], None);
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", out.as_str()));
    (code.trim().parse().unwrap_or_else(|_| panic!("curl {url}: no status in {out:?}")), body.to_string())
}

/// `aws s3 presign` (SigV2 query strings, aws-cli v1's default; and SigV4 by config) fetched with
/// curl; a URL for one key does not open another.
pub fn presign_flow(aws: &Aws, dir: &Path) {
    let b = bucket("pre");
    aws.ok(&["s3", "mb", &format!("s3://{b}")]);
    let file = dir.join("shared.txt");
    write(&file, b"shared through a presigned URL");
    aws.ok(&["s3", "cp", "--only-show-errors", &file.to_string_lossy(), &s3url(&b, "pre/shared file.txt")]);
    aws.ok(&["s3", "cp", "--only-show-errors", &file.to_string_lossy(), &s3url(&b, "pre/other.txt")]);
    let v4 = aws.with_config("s3 =\n    signature_version = s3v4");
    for (what, cli, marker) in [("SigV2", aws, "Signature="), ("SigV4", &v4, "X-Amz-Signature=")] {
        let url = cli.ok(&["s3", "presign", &s3url(&b, "pre/shared file.txt"), "--expires-in", "300"]);
        let url = url.trim();
        assert!(url.contains(marker), "{what} presigned URL: {url}");
        assert_eq!(curl(url, &[]), (200, "shared through a presigned URL".to_string()), "{what}: curl {url}");
        let other = url.replace("shared%20file.txt", "other.txt");
        assert_ne!(other, url, "{what}: could not retarget {url}");
        let (st, body) = curl(&other, &[]);
        assert_eq!(st, 403, "{what}: a presigned URL for another key: {body}");
        assert!(body.contains("<Code>SignatureDoesNotMatch</Code>"), "{what}: {body}");
    }
    aws.ok(&["s3", "rb", "--force", &format!("s3://{b}")]);
}

/// S3 errors as aws-cli reports them: (arguments, code, operation), one table.
pub fn error_table_flow(aws: &Aws, dir: &Path) {
    let b = bucket("err");
    let missing = bucket("nosuch");
    aws.ok(&["s3", "mb", &format!("s3://{b}")]);
    let small = dir.join("small");
    write(&small, b"ten bytes!");
    aws.ok(&["s3", "cp", "--only-show-errors", &small.to_string_lossy(), &s3url(&b, "small")]);
    let out = dir.join("out").to_string_lossy().into_owned();
    let (b_url, missing_url, nokey) = (format!("s3://{b}"), format!("s3://{missing}"), format!("{b}/nokey"));
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (vec!["s3api", "get-object", "--bucket", &missing, "--key", "k", &out], "NoSuchBucket", "GetObject"),
        (vec!["s3api", "get-object", "--bucket", &b, "--key", "nokey", &out], "NoSuchKey", "GetObject"),
        (vec!["s3api", "head-object", "--bucket", &b, "--key", "nokey"], "404", "HeadObject"),
        (vec!["s3api", "head-bucket", "--bucket", &missing], "404", "HeadBucket"),
        (vec!["s3api", "list-objects-v2", "--bucket", &missing], "NoSuchBucket", "ListObjectsV2"),
        (vec!["s3", "ls", &missing_url], "NoSuchBucket", "ListObjectsV2"),
        (vec!["s3api", "delete-bucket", "--bucket", &b], "BucketNotEmpty", "DeleteBucket"),
        (vec!["s3", "rb", &b_url], "BucketNotEmpty", "DeleteBucket"),
        (vec!["s3api", "delete-bucket", "--bucket", &missing], "NoSuchBucket", "DeleteBucket"),
        (vec!["s3api", "create-bucket", "--bucket", &b], "BucketAlreadyOwnedByYou", "CreateBucket"),
        (
            vec!["s3api", "get-object", "--bucket", &b, "--key", "small", "--range", "bytes=100-200", &out],
            "InvalidRange",
            "GetObject",
        ),
        (
            vec!["s3api", "copy-object", "--bucket", &b, "--key", "c", "--copy-source", &nokey],
            "NoSuchKey",
            "CopyObject",
        ),
        (
            vec!["s3api", "abort-multipart-upload", "--bucket", &b, "--key", "k", "--upload-id", "no-such-upload"],
            "NoSuchUpload",
            "AbortMultipartUpload",
        ),
        (vec!["s3api", "get-bucket-tagging", "--bucket", &b], "NoSuchTagSet", "GetBucketTagging"),
        (
            vec![
                "s3api",
                "put-bucket-policy",
                "--bucket",
                &b,
                "--policy",
                r#"{"Version":"2012-10-17","Statement":[]}"#,
            ],
            "NotImplemented",
            "PutBucketPolicy",
        ),
    ];
    let cases: Vec<Failing<'_>> = cases.into_iter().map(|(args, code, op)| (aws, args, code, op)).collect();
    expect_failures(&cases);
    aws.ok(&["s3", "rb", "--force", &format!("s3://{b}")]);
}

// ---------------------------------------------------------------------------------------------
// Hand-signed requests (tests/clients/sigv4.py signs, curl sends)
// ---------------------------------------------------------------------------------------------

/// What came back from a raw request.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    /// `<Code>` of an S3 error body.
    pub fn code(&self) -> Option<&str> {
        let start = self.body.find("<Code>")? + "<Code>".len();
        let end = self.body[start..].find("</Code>")? + start;
        Some(&self.body[start..end])
    }

    /// Fails unless this is an S3 error with `status` and `code` whose body carries a non-empty
    /// `<RequestId>`.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!((self.status, self.code()), (status, Some(code)), "reply: {}", self.body);
        assert!(self.body.trim_start().starts_with("<?xml") || self.body.contains("<Error>"), "not XML: {}", self.body);
        let rid = self.body.split_once("<RequestId>").and_then(|(_, r)| r.split_once("</RequestId>")).map(|(r, _)| r);
        assert!(rid.is_some_and(|r| !r.trim().is_empty()), "no <RequestId> in {}", self.body);
    }
}

/// How to sign a raw request: (access key, secret key, clock skew in seconds), or None (anonymous).
pub type Signer<'a> = Option<(&'a str, &'a str, i64)>;

/// Sends `method url` with curl. `sign`: Some((access, secret, clock skew in seconds)) signs it
/// with SigV4 (`tests/clients/sigv4.py`); None sends it anonymously. `body` is uploaded with PUT.
pub fn raw_request(method: &str, url: &str, sign: Signer<'_>, body: Option<&Path>) -> Reply {
    let mut headers = Vec::new();
    if let Some((ak, sk, skew)) = sign {
        let script = clients_dir().join("sigv4.py");
        let skew = skew.to_string();
        let mut args = vec![
            script.to_string_lossy().into_owned(),
            method.to_string(),
            url.to_string(),
            "--access".into(),
            ak.to_string(),
            "--secret".into(),
            sk.to_string(),
            "--skew-secs".into(),
            skew,
        ];
        if let Some(p) = body {
            args.extend(["--payload-file".into(), p.to_string_lossy().into_owned()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_ok("python3", &args, &[("PYTHONDONTWRITEBYTECODE".into(), "1".into())], None);
        headers = out.lines().map(String::from).collect();
    }
    let mut args: Vec<String> = vec!["-X".into(), method.into()];
    for h in &headers {
        args.extend(["-H".into(), h.clone()]);
    }
    if let Some(p) = body {
        args.extend(["--data-binary".into(), format!("@{}", p.to_string_lossy())]);
        // curl would add a form content type; keep what S3 stores neutral.
        args.extend(["-H".into(), "Content-Type: application/octet-stream".into()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, body) = curl(url, &args);
    Reply { status, body }
}

// ---------------------------------------------------------------------------------------------
// Whole tests shared by both tiers
// ---------------------------------------------------------------------------------------------

/// Starts a gateway on `backend` and runs `flow` with aws-cli as its root user in a scratch dir.
pub fn with_root_cli(backend: Backend, flow: fn(&Aws, &Path)) {
    let gw = Gateway::start(backend);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    flow(&Aws::root(&gw, dir.path()), dir.path());
}

/// Root and a second user (made with `cyvault admin user create`) through aws-cli: each lists
/// only its own buckets; every operation on the other's bucket is AccessDenied (a taken name is
/// BucketAlreadyExists); nothing the refused requests tried changed anything. Then `admin user
/// list/delete` and `admin key list` (no secrets) see the user and its bucket.
pub fn isolation_flow(gw: &mut Gateway, dir: &Path) {
    let alice = create_user(gw, "alice");
    let root = Aws::root(gw, dir);
    let al = Aws::new(&gw.endpoint, &alice, dir);
    let (rb, ab) = (bucket("root"), bucket("alice"));
    let file = dir.join("obj.txt");
    write(&file, b"private");
    root.ok(&["s3", "mb", &format!("s3://{rb}")]);
    root.ok(&["s3", "cp", &file.to_string_lossy(), &s3url(&rb, "obj.txt")]);
    al.ok(&["s3", "mb", &format!("s3://{ab}")]);
    al.ok(&["s3", "cp", &file.to_string_lossy(), &s3url(&ab, "obj.txt")]);
    let names = |aws: &Aws| -> Vec<String> { ls_entries(&aws.ok(&["s3", "ls"])).into_iter().map(|(_, n)| n).collect() };
    assert_eq!(names(&al), vec![ab.clone()], "alice lists exactly her bucket");
    let mine = names(&root);
    assert!(mine.contains(&rb) && !mine.contains(&ab), "root lists {mine:?}");

    let out = dir.join("stolen").to_string_lossy().into_owned();
    let ok_path = file.to_string_lossy().into_owned();
    let (rb_url, ab_url) = (format!("s3://{rb}"), format!("s3://{ab}"));
    let denied: Vec<Failing<'_>> = vec![
        (&al, vec!["s3", "ls", &rb_url], "AccessDenied", "ListObjectsV2"),
        (&al, vec!["s3api", "list-objects", "--bucket", &rb], "AccessDenied", "ListObjects"),
        (&al, vec!["s3api", "get-object", "--bucket", &rb, "--key", "obj.txt", &out], "AccessDenied", "GetObject"),
        (&al, vec!["s3api", "head-object", "--bucket", &rb, "--key", "obj.txt"], "403", "HeadObject"),
        (
            &al,
            vec!["s3api", "put-object", "--bucket", &rb, "--key", "new", "--body", &ok_path],
            "AccessDenied",
            "PutObject",
        ),
        (&al, vec!["s3api", "delete-object", "--bucket", &rb, "--key", "obj.txt"], "AccessDenied", "DeleteObject"),
        (&al, vec!["s3api", "get-bucket-location", "--bucket", &rb], "AccessDenied", "GetBucketLocation"),
        (&al, vec!["s3", "rb", &rb_url], "AccessDenied", "DeleteBucket"),
        (&al, vec!["s3api", "create-bucket", "--bucket", &rb], "BucketAlreadyExists", "CreateBucket"),
        (&root, vec!["s3api", "get-object", "--bucket", &ab, "--key", "obj.txt", &out], "AccessDenied", "GetObject"),
        (&root, vec!["s3api", "delete-object", "--bucket", &ab, "--key", "obj.txt"], "AccessDenied", "DeleteObject"),
        (&root, vec!["s3", "ls", &ab_url], "AccessDenied", "ListObjectsV2"),
        (&root, vec!["s3api", "create-bucket", "--bucket", &ab], "BucketAlreadyExists", "CreateBucket"),
    ];
    expect_failures(&denied);
    assert!(!Path::new(&out).exists(), "a refused GetObject wrote {out}");
    for (aws, b) in [(&root, &rb), (&al, &ab)] {
        let listed = ls_entries(&aws.ok(&["s3", "ls", &format!("s3://{b}")]));
        assert_eq!(listed, vec![(7, "obj.txt".to_string())], "{b} after the other user's attempts");
    }

    let (users, deleted, keys) = with_admin(gw, |gw| {
        (
            gw.admin_ok(&["user", "list", "--json"]),
            gw.admin(&["user", "delete", "alice"]),
            gw.admin_ok(&["key", "list", "alice", "--json"]),
        )
    });
    let users = parse_json(&users, "admin user list --json");
    let entry = users.as_array().and_then(|a| a.iter().find(|u| u["name"] == "alice")).cloned();
    assert_eq!(entry.map(|u| u["keys"].clone()), Some(serde_json::json!(1)), "alice in user list: {users}");
    let err = String::from_utf8_lossy(&deleted.stderr).to_lowercase();
    assert!(!deleted.status.success() && err.contains("bucket"), "deleting a user who owns a bucket: {err}");
    let keys = parse_json(&keys, "admin key list alice --json");
    let list = keys.as_array().cloned().unwrap_or_default();
    assert_eq!(list.len(), 1, "alice's keys: {keys}");
    assert_eq!(list[0]["user"], "alice");
    assert_eq!(list[0]["access_key"], alice.access_key.as_str());
    assert!(
        list[0].get("secret_key").is_none() && !keys.to_string().contains(&alice.secret_key),
        "key list shows a secret"
    );
}

/// A user with two keys; `cyvault admin key revoke` of one makes it InvalidAccessKeyId on the very
/// next request (the gateway runs with `--auth-cache-secs 0`), while the other key still works.
/// On RADOS the gateway keeps running through the admin commands.
pub fn revoke_key_flow(backend: Backend, dir: &Path) {
    let mut gw = Gateway::start_with(backend, &["--auth-cache-secs", "0"]);
    let bob = create_user(&mut gw, "bob");
    let out = with_admin(&mut gw, |gw| gw.admin_ok(&["key", "create", "bob", "--json"]));
    let v = parse_json(&out, "admin key create --json");
    assert_eq!(v["user"], "bob", "{out}");
    assert!(v["created"].is_string() || v["created"].is_number(), "key create --json has no created: {out}");
    let second = User {
        name: "bob".into(),
        access_key: v["access_key"].as_str().unwrap_or_default().to_string(),
        secret_key: v["secret_key"].as_str().unwrap_or_default().to_string(),
    };
    assert!(!second.access_key.is_empty() && second.access_key != bob.access_key, "{out}");
    let b = bucket("bob");
    Aws::new(&gw.endpoint, &second, dir).ok(&["s3", "mb", &format!("s3://{b}")]);
    let listed = ls_entries(&Aws::new(&gw.endpoint, &bob, dir).ok(&["s3", "ls"]));
    assert_eq!(listed.iter().map(|(_, n)| n.clone()).collect::<Vec<_>>(), vec![b.clone()], "both keys are bob");

    let keys = with_admin(&mut gw, |gw| {
        gw.admin_ok(&["key", "revoke", &second.access_key]);
        gw.admin_ok(&["key", "list", "bob", "--json"])
    });
    let keys = parse_json(&keys, "admin key list bob --json");
    let left: Vec<&str> =
        keys.as_array().map(|a| a.iter().filter_map(|k| k["access_key"].as_str()).collect()).unwrap_or_default();
    assert_eq!(left, vec![bob.access_key.as_str()], "keys after revoke");
    Aws::new(&gw.endpoint, &second, dir).fails(&["s3", "ls"], "InvalidAccessKeyId", "ListBuckets");
    Aws::new(&gw.endpoint, &second, dir).fails(
        &["s3", "ls", &format!("s3://{b}")],
        "InvalidAccessKeyId",
        "ListObjectsV2",
    );
    let listed = ls_entries(&Aws::new(&gw.endpoint, &bob, dir).ok(&["s3", "ls"]));
    assert_eq!(listed.len(), 1, "bob's other key after the revoke: {listed:?}");
}
