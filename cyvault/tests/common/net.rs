//! Network namespaces, veth pairs and processes for the live deploy tests. Every guard undoes
//! what it made when dropped, also when the test panics: processes are killed by pid and waited
//! for, namespaces deleted (which deletes the interfaces inside them). Names carry the test's pid
//! and a counter, so tests running side by side never share one.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A short name unique to this process and call: `<tag><pid><n>`, at most 15 bytes (the limit of
/// interface names).
pub fn short_name(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("{tag}{}{n}", std::process::id() % 1_000_000);
    assert!(name.len() <= 15, "interface name {name} is too long");
    name
}

/// Runs a command, failing the test with its output when it fails.
#[track_caller]
pub fn sh(program: &str, args: &[&str]) -> String {
    let out =
        Command::new(program).args(args).stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command and returns its output whatever its status.
pub fn try_sh(program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("run {program}: {e}"))
}

/// A free TCP port on 127.0.0.1 (free when asked; the kernel does not hand it out again soon).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    l.local_addr().map(|a| a.port()).unwrap_or_else(|e| panic!("local_addr: {e}"))
}

/// Polls `f` every 20 ms until it returns `Some`, or fails the test after `timeout`.
#[track_caller]
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A network namespace made by the test.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("cyv-{tag}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        sh("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NAME ARGS…`
    #[track_caller]
    pub fn ip(&self, args: &[&str]) -> String {
        let mut a = vec!["-n", self.name.as_str()];
        a.extend_from_slice(args);
        sh("ip", &a)
    }

    /// A command that runs inside the namespace (`ip netns exec NAME PROGRAM`; ip execs the
    /// program, so the child's pid is the program's).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs a command inside the namespace, failing the test when it fails.
    #[track_caller]
    pub fn exec(&self, program: &str, args: &[&str]) -> String {
        let mut a = vec!["netns", "exec", self.name.as_str(), program];
        a.extend_from_slice(args);
        sh("ip", &a)
    }

    pub fn try_exec(&self, program: &str, args: &[&str]) -> Output {
        let mut a = vec!["netns", "exec", self.name.as_str(), program];
        a.extend_from_slice(args);
        try_sh("ip", &a)
    }

    /// Whether `addr` is on interface `dev` in this namespace.
    pub fn has_address(&self, dev: &str, addr: Ipv4Addr) -> bool {
        let out = try_sh("ip", &["-n", &self.name, "-4", "-o", "addr", "show", "dev", dev]);
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace().any(|w| w.split('/').next() == Some(addr.to_string().as_str()))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Anything still running in it (a guard that was leaked) is killed first, by pid.
        let out = try_sh("ip", &["netns", "pids", &self.name]);
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = try_sh("kill", &["-KILL", pid]);
        }
        let _ = try_sh("ip", &["netns", "del", &self.name]);
    }
}

/// A veth pair with one end in each namespace, up, with the given addresses (`a.b.c.d/len`).
/// The ends go with their namespaces.
pub fn veth(a: &Netns, a_addr: &str, b: &Netns, b_addr: &str) -> (String, String) {
    let (ea, eb) = (short_name("cva"), short_name("cvb"));
    sh("ip", &["link", "add", &ea, "netns", &a.name, "type", "veth", "peer", "name", &eb, "netns", &b.name]);
    for (ns, dev, addr) in [(a, &ea, a_addr), (b, &eb, b_addr)] {
        ns.ip(&["addr", "add", addr, "dev", dev]);
        ns.ip(&["link", "set", dev, "up"]);
    }
    (ea, eb)
}

/// A process the test started. Dropping it kills it by pid and waits.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    /// Lines it printed (stdout and stderr), for failure messages.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Proc {
    /// Spawns `cmd` with its output captured line by line.
    pub fn spawn(name: &str, mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        for stream in [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
            child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(mut l) = log.lock() {
                        l.push(line);
                    }
                }
            });
        }
        Proc { name: name.to_owned(), child: Some(child), log }
    }

    /// Spawns `cmd` and waits until it prints a line starting with `ready` (returning the rest
    /// of that line), failing the test with its output after `timeout`.
    pub fn spawn_ready(name: &str, cmd: Command, ready: &str, timeout: Duration) -> (Proc, String) {
        let mut p = Proc::spawn(name, cmd);
        let rest = wait_for(&format!("{name} to print {ready:?}"), timeout, || {
            if let Some(st) = p.try_wait() {
                panic!("{name} exited ({st}) before it was ready:\n{}", p.output());
            }
            p.lines().iter().find_map(|l| l.strip_prefix(ready).map(|r| r.trim().to_owned()))
        });
        (p, rest)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn lines(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn output(&self) -> String {
        self.lines().join("\n")
    }

    /// Its exit status, if it has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGTERM, up to 5 s for a clean exit, then SIGKILL; never fails (for Drop impls).
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take()
            && !signal_and_reap(&mut c, "TERM", Duration::from_secs(5))
        {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `signal` (e.g. "TERM", "KILL") to the process by pid and waits for it to exit.
    pub fn signal_and_wait(&mut self, signal: &str) {
        let Some(mut c) = self.child.take() else { return };
        if !signal_and_reap(&mut c, signal, Duration::from_secs(20)) {
            let _ = c.kill();
            let _ = c.wait();
            panic!("{} did not exit within 20 s of SIG{signal}", self.name);
        }
    }
}

/// Sends `signal` to the child by pid; whether it exited (and was reaped) within `timeout`.
fn signal_and_reap(c: &mut Child, signal: &str, timeout: Duration) -> bool {
    let _ = try_sh("kill", &[&format!("-{signal}"), &c.id().to_string()]);
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = c.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A self-signed certificate for `names` (the first is the subject), valid one day:
/// (certificate PEM path, key PEM path). The certificate is also its own CA.
pub fn self_signed_cert(dir: &Path, names: &[&str]) -> (PathBuf, PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let san = names.iter().map(|n| format!("DNS:{n}")).collect::<Vec<_>>().join(",");
    sh(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            &format!("/CN={}", names[0]),
            "-addext",
            &format!("subjectAltName={san}"),
            "-keyout",
            &key.to_string_lossy(),
            "-out",
            &cert.to_string_lossy(),
        ],
    );
    (cert, key)
}

/// Asks HAProxy's stats socket `command` and returns the answer.
pub fn haproxy_stats(socket: &Path, command: &str) -> String {
    let mut s =
        std::os::unix::net::UnixStream::connect(socket).unwrap_or_else(|e| panic!("connect {}: {e}", socket.display()));
    s.write_all(format!("{command}\n").as_bytes()).unwrap_or_else(|e| panic!("write stats socket: {e}"));
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap_or_else(|e| panic!("read stats socket: {e}"));
    out
}

/// The status (UP, DOWN, …) of each server of `backend` in `show stat` (CSV).
pub fn haproxy_server_status(socket: &Path, backend: &str) -> Vec<(String, String)> {
    let csv = haproxy_stats(socket, "show stat");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").trim_start_matches("# ").split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (Some(px), Some(sv), Some(st)) = (col("pxname"), col("svname"), col("status")) else {
        panic!("unexpected show stat header: {header:?}")
    };
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f.get(px) == Some(&backend) && !matches!(f.get(sv), Some(&"BACKEND") | Some(&"FRONTEND")))
        .map(|f| (f[sv].to_owned(), f[st].to_owned()))
        .collect()
}

/// The `listening on URL` address of a gateway as a socket address.
pub fn url_addr(url: &str) -> SocketAddr {
    let hostport = url.split("://").nth(1).unwrap_or(url).trim_end_matches('/');
    hostport.parse().unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// A fresh WireGuard key pair from `wg genkey` and `wg pubkey`: (private, public), trimmed.
pub fn wg_keypair() -> (String, String) {
    let private = sh("wg", &["genkey"]).trim().to_owned();
    let mut c = Command::new("wg")
        .arg("pubkey")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("wg pubkey: {e}"));
    if let Some(mut stdin) = c.stdin.take() {
        stdin.write_all(private.as_bytes()).unwrap_or_else(|e| panic!("wg pubkey: {e}"));
    }
    let out = c.wait_with_output().unwrap_or_else(|e| panic!("wg pubkey: {e}"));
    assert!(out.status.success(), "wg pubkey failed");
    (private, String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
