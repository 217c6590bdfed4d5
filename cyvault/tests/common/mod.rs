//! Shared by the end-to-end tests: start the real `cyvault gateway` on 127.0.0.1:0, on the local
//! backend or (Ceph tier) on the dev cluster, and stop it by pid.

#![allow(dead_code)]

pub mod csi;
pub mod hide;
pub mod net;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Which storage the gateway runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Local,
    /// The dev cluster from `scripts/test` (`CYVAULT_CEPH_CONF`); each gateway gets a namespace
    /// of its own in `CYVAULT_CEPH_POOL`, so tests never see each other's buckets.
    Rados,
}

/// A name no other test (or earlier run) uses.
pub fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{tag}-{}-{}", std::process::id(), nanos % 1_000_000_000_000)
}

fn ceph_conf() -> String {
    let conf = std::env::var("CYVAULT_CEPH_CONF").unwrap_or_default();
    assert!(
        !conf.is_empty(),
        "CYVAULT_CEPH_CONF is not set: the Ceph tier needs the dev cluster; run it through scripts/test \
         (or start scripts/dev-cluster and eval its `env` output)"
    );
    conf
}

/// A running gateway. Dropping it kills the process (by pid) and waits for it.
#[derive(Debug)]
pub struct Gateway {
    child: Option<Child>,
    pub backend: Backend,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    /// The data dir (local backend: the store; both: where generated root credentials go).
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    /// `--namespace` on RADOS.
    pub namespace: String,
    /// Extra `cyvault gateway` arguments given at start (kept for restarts).
    pub extra_args: Vec<String>,
    /// What the gateway printed to stdout before it was ready.
    pub banner: Vec<String>,
}

impl Gateway {
    /// Starts a gateway with fresh storage and random root credentials.
    pub fn start(backend: Backend) -> Gateway {
        Gateway::start_with(backend, &[])
    }

    /// Like `start`, with extra `cyvault gateway` arguments.
    pub fn start_with(backend: Backend, extra: &[&str]) -> Gateway {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let mut gw = Gateway {
            child: None,
            backend,
            endpoint: String::new(),
            access_key: format!("AK{}", unique("root").replace('-', "").to_uppercase()),
            secret_key: format!("sk-{}", unique("secret")),
            data_dir: tmp.path().join("data"),
            _tmp: Some(tmp),
            namespace: unique("e2e"),
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            banner: Vec::new(),
        };
        gw.spawn();
        gw
    }

    /// The `--backend …` arguments shared by `gateway` and `admin`.
    pub fn backend_args(&self) -> Vec<String> {
        let mut a = vec!["--data-dir".to_string(), self.data_dir.to_string_lossy().into_owned()];
        if self.backend == Backend::Rados {
            a.extend(["--backend".into(), "rados".into(), "--ceph-conf".into(), ceph_conf()]);
            a.extend(["--ceph-id".into(), std::env::var("CYVAULT_CEPH_ID").unwrap_or_else(|_| "admin".into())]);
            a.extend(["--pool".into(), std::env::var("CYVAULT_CEPH_POOL").unwrap_or_else(|_| "cyvault-test".into())]);
            a.extend(["--namespace".into(), self.namespace.clone()]);
        }
        a
    }

    fn spawn(&mut self) {
        self.spawn_with(true);
    }

    /// Starts the process; with `root_env`, hands it our root credentials, else lets it use or
    /// generate its own (and picks up the keys it prints).
    fn spawn_with(&mut self, root_env: bool) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cyvault"));
        cmd.args(["--log", "info", "gateway", "--listen", "127.0.0.1:0"])
            .args(self.backend_args())
            .args(&self.extra_args);
        if root_env {
            cmd.env("CYVAULT_ROOT_ACCESS_KEY", &self.access_key).env("CYVAULT_ROOT_SECRET_KEY", &self.secret_key);
        } else {
            cmd.env_remove("CYVAULT_ROOT_ACCESS_KEY").env_remove("CYVAULT_ROOT_SECRET_KEY");
        }
        cmd.env_remove("CYVAULT_BACKEND")
            .env_remove("CYVAULT_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn cyvault gateway: {e}"));
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout pipe"));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    // Keep draining so the gateway never blocks on a full pipe.
                }
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        self.banner.clear();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("listening on ") {
                        self.endpoint = url.trim().to_string();
                        break;
                    }
                    if let Some(k) = line.strip_prefix("root access key: ") {
                        self.access_key = k.trim().to_string();
                    }
                    if let Some(k) = line.strip_prefix("root secret key: ") {
                        self.secret_key = k.trim().to_string();
                    }
                    self.banner.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait();
                    panic!(
                        "gateway did not print `listening on …` within 60 s (exit: {status:?}); it printed {:?}",
                        self.banner
                    );
                }
            }
        }
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a graceful exit (fails the test after 30 s).
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let Some(mut c) = self.child.take() else { panic!("gateway is not running") };
        // SAFETY-free: kill(1) by pid, the child we started.
        let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return st;
            }
            if std::time::Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!("gateway did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the gateway again on the same storage (a new port: read `endpoint` again).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill9 the gateway first");
        self.spawn();
    }

    /// Runs `cyvault admin ARGS…` against the same backend (for the local backend the gateway
    /// must be stopped: the data dir has one opener at a time).
    pub fn admin(&self, args: &[&str]) -> Output {
        cyvault_admin(&self.backend_args(), args)
    }

    /// Like `admin`, failing the test when the command fails; returns stdout.
    #[track_caller]
    pub fn admin_ok(&self, args: &[&str]) -> String {
        let out = self.admin(args);
        assert!(
            out.status.success(),
            "cyvault admin {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Environment for aws-cli / boto3 with the root credentials.
    pub fn aws_env(&self) -> Vec<(String, String)> {
        aws_env(&self.endpoint, &self.access_key, &self.secret_key)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn cyvault_admin(backend_args: &[String], args: &[&str]) -> Output {
    // `admin <group> [<verb>] [backend args] [rest]`: the backend flags belong to the leaf
    // command, right after the subcommand words.
    let split = args.iter().take(2).take_while(|a| !a.starts_with('-')).count();
    Command::new(env!("CARGO_BIN_EXE_cyvault"))
        .arg("admin")
        .args(&args[..split])
        .args(backend_args)
        .args(&args[split..])
        .env_remove("CYVAULT_BACKEND")
        .env_remove("CYVAULT_DATA_DIR")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run cyvault admin: {e}"))
}

/// Environment for aws-cli / boto3 / s3cmd-free tools: endpoint, keys, region, no config files.
pub fn aws_env(endpoint: &str, access_key: &str, secret_key: &str) -> Vec<(String, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID".into(), access_key.into()),
        ("AWS_SECRET_ACCESS_KEY".into(), secret_key.into()),
        ("AWS_DEFAULT_REGION".into(), "us-east-1".into()),
        ("AWS_REGION".into(), "us-east-1".into()),
        ("AWS_ENDPOINT_URL".into(), endpoint.into()),
        ("AWS_CONFIG_FILE".into(), "/dev/null".into()),
        ("AWS_SHARED_CREDENTIALS_FILE".into(), "/dev/null".into()),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ("AWS_PAGER".into(), String::new()),
    ]
}

/// Runs a command with extra environment; returns its output.
pub fn run(program: &str, args: &[&str], env: &[(String, String)], cwd: Option<&Path>) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    cmd.output().unwrap_or_else(|e| panic!("run {program}: {e}"))
}

/// Like `run`, failing the test (with both streams) when the command fails; returns stdout.
#[track_caller]
pub fn run_ok(program: &str, args: &[&str], env: &[(String, String)], cwd: Option<&Path>) -> String {
    let out = run(program, args, env, cwd);
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Generated root credentials (added for s3_auth.rs)
// ---------------------------------------------------------------------------------------------

impl Gateway {
    /// Starts a gateway with fresh storage and WITHOUT `CYVAULT_ROOT_ACCESS_KEY`/`_SECRET_KEY`,
    /// so that it generates root credentials itself. `access_key`/`secret_key` are taken from the
    /// `root access key: …`/`root secret key: …` lines it prints (left empty when it prints none).
    pub fn start_generated_root(backend: Backend) -> Gateway {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let mut gw = Gateway {
            child: None,
            backend,
            endpoint: String::new(),
            access_key: String::new(),
            secret_key: String::new(),
            data_dir: tmp.path().join("data"),
            _tmp: Some(tmp),
            namespace: unique("e2e"),
            extra_args: Vec::new(),
            banner: Vec::new(),
        };
        gw.restart_generated_root();
        gw
    }

    /// Starts the gateway again on the same storage without the root-credential environment
    /// (a new port). Keeps the known keys when the gateway prints none.
    pub fn restart_generated_root(&mut self) {
        assert!(self.child.is_none(), "stop or kill9 the gateway first");
        self.spawn_with(false);
    }
}

impl Gateway {
    /// A second gateway process on the same storage (same RADOS pool and namespace, same root
    /// credentials), as behind a load balancer. Only meaningful on RADOS: the local backend has
    /// one opener per data dir.
    pub fn another(&self, extra: &[&str]) -> Gateway {
        assert_eq!(self.backend, Backend::Rados, "several gateways share state on RADOS only");
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let mut gw = Gateway {
            child: None,
            backend: self.backend,
            endpoint: String::new(),
            access_key: self.access_key.clone(),
            secret_key: self.secret_key.clone(),
            data_dir: tmp.path().join("data"),
            _tmp: Some(tmp),
            namespace: self.namespace.clone(),
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            banner: Vec::new(),
        };
        gw.spawn();
        gw
    }
}

/// splitmix64: deterministic pseudo-random numbers, reproducible from a seed.
#[derive(Debug)]
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `len` deterministic incompressible bytes, different per `seed`.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; len];
    SplitMix(seed).fill(&mut out);
    out
}
