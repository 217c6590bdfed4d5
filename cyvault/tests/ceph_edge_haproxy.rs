//! The edge, live on loopback (the Ceph tier): the rendered HAProxy config, with test addresses
//! and ports given through the renderer's own parameters, terminates TLS for api.cyberun.cloud
//! in front of two `cyvault gateway` processes sharing one RADOS pool. aws-cli talks to it as a
//! client of api.cyberun.cloud would (a private mount namespace resolves the name to 127.0.0.1),
//! two request loops run while one gateway is killed with SIGKILL, HAProxy's stats socket shows
//! the gateway DOWN, and every request succeeds (client-side retries are counted). Then
//! virtual-host-style requests, a foreign Host, and the per-client rate limit (503 SlowDown).

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::net::{Proc, free_port, haproxy_server_status, self_signed_cert, sh, try_sh, url_addr, wait_for};
use common::{Backend, Gateway};
use cyvault_render::Federation;
use cyvault_render::generate::edge::{HaproxyParams, haproxy_cfg};

const DOMAIN: &str = "api.cyberun.cloud";

fn federation() -> Federation {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("read {p}: {e}"));
    Federation::new(&read("deploy/federation.toml"), &read("deploy/placement/cyberun.toml"))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A running HAProxy with the rendered config.
struct Edge {
    port: u16,
    stats: PathBuf,
    proc: Proc,
}

fn start_haproxy(
    dir: &Path,
    cert: &Path,
    backends: Vec<(String, SocketAddr)>,
    tune: impl FnOnce(&mut HaproxyParams),
) -> Edge {
    let fed = federation();
    let mut p = HaproxyParams::from_federation(&fed);
    assert_eq!(p.domain, DOMAIN);
    let port = free_port();
    p.bind = SocketAddr::from(([127, 0, 0, 1], port));
    p.transparent = false;
    p.health_bind = SocketAddr::from(([127, 0, 0, 1], free_port()));
    p.tls_certificate = cert.to_string_lossy().into_owned();
    p.stats_socket = dir.join(format!("haproxy-{port}.sock")).to_string_lossy().into_owned();
    p.backends = backends;
    // The production 20,000 needs more file descriptors than a test process may open.
    p.maxconn = 1000;
    tune(&mut p);
    let cfg = dir.join(format!("haproxy-{port}.cfg"));
    std::fs::write(&cfg, haproxy_cfg(&p)).unwrap_or_else(|e| panic!("{e}"));
    sh("haproxy", &["-c", "-q", "-f", &cfg.to_string_lossy()]);
    let mut cmd = Command::new("haproxy");
    cmd.args(["-db", "-f"]).arg(&cfg);
    let proc = Proc::spawn("haproxy", cmd);
    let stats = PathBuf::from(&p.stats_socket);
    wait_for("HAProxy's stats socket", Duration::from_secs(20), || stats.exists().then_some(()));
    Edge { port, stats, proc }
}

/// aws-cli as a client of api.cyberun.cloud: in a private mount namespace whose /etc/hosts maps
/// the endpoint's names to 127.0.0.1, trusting the test's certificate.
struct Aws {
    env: Vec<(String, String)>,
    hosts: PathBuf,
}

impl Aws {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("unshare");
        c.args(["--mount", "sh", "-c", "mount --bind \"$0\" /etc/hosts && exec aws \"$@\""])
            .arg(&self.hosts)
            .args(args);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let out = self.command(args).output().unwrap_or_else(|e| panic!("aws: {e}"));
        assert!(
            out.status.success(),
            "aws {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

#[derive(Default)]
struct Loops {
    requests: AtomicUsize,
    /// 12 MiB multipart uploads (each several requests).
    uploads: AtomicUsize,
    failures: Mutex<Vec<String>>,
    retries: AtomicUsize,
    keys: Mutex<BTreeSet<String>>,
}

#[test]
fn haproxy_keeps_s3_answering_when_a_gateway_dies_and_throttles_a_greedy_client() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (cert, key) = self_signed_cert(tmp.path(), &[DOMAIN, &format!("*.{DOMAIN}")]);
    std::fs::copy(&key, format!("{}.key", cert.display())).unwrap_or_else(|e| panic!("{e}"));

    // Two gateways on one pool and namespace of the dev cluster.
    let mut ga = Gateway::start_with(Backend::Rados, &["--domain", DOMAIN]);
    let gb = ga.another(&["--domain", DOMAIN]);
    let backends = vec![("gw-a".to_owned(), url_addr(&ga.endpoint)), ("gw-b".to_owned(), url_addr(&gb.endpoint))];
    let edge = start_haproxy(tmp.path(), &cert, backends, |_| {});
    wait_for("both gateways UP behind HAProxy", Duration::from_secs(20), || {
        let st = haproxy_server_status(&edge.stats, "s3_gateways");
        (st.len() == 2 && st.iter().all(|(_, s)| s == "UP")).then_some(())
    });

    let bucket = common::unique("edge").to_lowercase();
    let hosts = tmp.path().join("hosts");
    std::fs::write(&hosts, format!("127.0.0.1 localhost\n127.0.0.1 {DOMAIN}\n127.0.0.1 {bucket}.{DOMAIN}\n"))
        .unwrap_or_else(|e| panic!("{e}"));
    let endpoint = format!("https://{DOMAIN}:{}", edge.port);
    let mut env = common::aws_env(&endpoint, &ga.access_key, &ga.secret_key);
    env.push(("AWS_CA_BUNDLE".into(), cert.to_string_lossy().into_owned()));
    let aws = Arc::new(Aws { env, hosts: hosts.clone() });
    aws.ok(&["s3", "mb", &format!("s3://{bucket}")]);
    let small = tmp.path().join("small.bin");
    std::fs::write(&small, common::pseudo_random(4096, 1)).unwrap_or_else(|e| panic!("{e}"));

    // Two loops of small requests (PUT, then GET of what was put) through the edge, and one of
    // 12 MiB multipart uploads, so that requests are in flight on the gateway when it dies.
    let state = Arc::new(Loops::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut loops = Vec::new();
    let big = tmp.path().join("big.bin");
    std::fs::write(&big, common::pseudo_random(12 << 20, 2)).unwrap_or_else(|e| panic!("{e}"));
    {
        let (aws, state, stop, bucket, big) = (aws.clone(), state.clone(), stop.clone(), bucket.clone(), big.clone());
        loops.push(std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) && i < 100 {
                let key = format!("big-{i:03}");
                let out = aws
                    .command(&["--debug", "s3", "cp", &big.to_string_lossy(), &format!("s3://{bucket}/{key}")])
                    .output()
                    .unwrap_or_else(|e| panic!("aws: {e}"));
                let stderr = String::from_utf8_lossy(&out.stderr);
                state.retries.fetch_add(stderr.matches("Retry needed").count(), Ordering::Relaxed);
                state.uploads.fetch_add(1, Ordering::Relaxed);
                if out.status.success() {
                    state.keys.lock().map(|mut k| k.insert(key)).ok();
                } else {
                    let last: Vec<&str> = stderr.lines().rev().take(3).collect();
                    state.failures.lock().map(|mut f| f.push(format!("cp {key}: {last:?}"))).ok();
                }
                i += 1;
            }
        }));
    }
    for t in 0..2 {
        let (aws, state, stop, bucket, small, dir) =
            (aws.clone(), state.clone(), stop.clone(), bucket.clone(), small.clone(), tmp.path().to_path_buf());
        loops.push(std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) && i < 200 {
                let key = format!("t{t}-{i:03}");
                let out_file = dir.join(format!("get-{t}.bin"));
                for args in [
                    vec![
                        "--debug",
                        "s3api",
                        "put-object",
                        "--bucket",
                        &bucket,
                        "--key",
                        &key,
                        "--body",
                        &small.to_string_lossy(),
                    ],
                    vec![
                        "--debug",
                        "s3api",
                        "get-object",
                        "--bucket",
                        &bucket,
                        "--key",
                        &key,
                        &out_file.to_string_lossy(),
                    ],
                ]
                .iter()
                .map(|a| a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                {
                    let a: Vec<&str> = args.iter().map(String::as_str).collect();
                    let out = aws.command(&a).output().unwrap_or_else(|e| panic!("aws: {e}"));
                    let stderr = String::from_utf8_lossy(&out.stderr);
                    state.retries.fetch_add(stderr.matches("Retry needed").count(), Ordering::Relaxed);
                    state.requests.fetch_add(1, Ordering::Relaxed);
                    if !out.status.success() {
                        let last: Vec<&str> = stderr.lines().rev().take(3).collect();
                        state.failures.lock().map(|mut f| f.push(format!("{} {key}: {last:?}", a[2]))).ok();
                    } else if a[2] == "put-object" {
                        state.keys.lock().map(|mut k| k.insert(key.clone())).ok();
                    }
                }
                i += 1;
            }
        }));
    }
    let requests = || state.requests.load(Ordering::Relaxed);
    wait_for("requests before the kill", Duration::from_secs(120), || (requests() >= 8).then_some(()));
    let before = requests();
    let t = Instant::now();
    let pid = ga.pid();
    ga.kill9();
    let down = wait_for("HAProxy to mark gw-a DOWN", Duration::from_secs(30), || {
        let st = haproxy_server_status(&edge.stats, "s3_gateways");
        st.iter().any(|(n, s)| n == "gw-a" && s.starts_with("DOWN")).then(|| t.elapsed())
    });
    let at_down = requests();
    println!(
        "gw-a (pid {pid}) killed with SIGKILL after {before} requests; HAProxy marked it DOWN after {:.2} s",
        down.as_secs_f64()
    );
    wait_for("requests after gw-a went down", Duration::from_secs(180), || (requests() >= at_down + 12).then_some(()));
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        l.join().unwrap_or_else(|_| panic!("a request loop panicked"));
    }
    let total = requests();
    let retries = state.retries.load(Ordering::Relaxed);
    let failures = state.failures.lock().map(|f| f.clone()).unwrap_or_default();
    let stats = common::net::haproxy_stats(&edge.stats, "show servers state s3_gateways");
    println!(
        "edge failover: {total} small aws-cli requests ({before} before the kill, {} after it) and {} 12 MiB multipart uploads, {} failed, {retries} client retries",
        total - before,
        state.uploads.load(Ordering::Relaxed),
        failures.len()
    );
    println!("show servers state s3_gateways:\n{stats}");
    assert!(failures.is_empty(), "requests failed through the edge: {failures:#?}\nHAProxy:\n{}", edge.proc.output());
    let log = edge.proc.output();
    let down_line = log.lines().find(|l| l.contains("Server s3_gateways/gw-a is DOWN"));
    println!("HAProxy: {}", down_line.unwrap_or("(no DOWN line)"));
    assert!(down_line.is_some(), "HAProxy's log does not say gw-a went down:\n{log}");
    // Both gateways served before the kill (the stats count sessions per server), and gw-b
    // holds every object put through the edge.
    let stat = common::net::haproxy_stats(&edge.stats, "show stat");
    for srv in ["gw-a", "gw-b"] {
        let line = stat.lines().find(|l| l.starts_with(&format!("s3_gateways,{srv},"))).unwrap_or_default();
        let sessions: u64 = line.split(',').nth(7).and_then(|s| s.parse().ok()).unwrap_or(0);
        println!("{srv}: {sessions} sessions");
        assert!(sessions > 0, "{srv} served nothing: {line}");
    }
    let listed =
        aws.ok(&["s3api", "list-objects-v2", "--bucket", &bucket, "--query", "Contents[].Key", "--output", "text"]);
    let listed: BTreeSet<String> = listed.split_whitespace().map(str::to_owned).collect();
    let put = state.keys.lock().map(|k| k.clone()).unwrap_or_default();
    assert_eq!(listed, put, "the bucket lists other keys than were put");

    // Virtual-host style: a presigned URL for BUCKET.api.cyberun.cloud, fetched with curl.
    let config = tmp.path().join("aws-virtual.cfg");
    std::fs::write(&config, "[default]\ns3 =\n    addressing_style = virtual\n").unwrap_or_else(|e| panic!("{e}"));
    let mut vaws = Aws { env: aws.env.clone(), hosts: hosts.clone() };
    vaws.env.push(("AWS_CONFIG_FILE".into(), config.to_string_lossy().into_owned()));
    let url = vaws.ok(&["s3", "presign", &format!("s3://{bucket}/t0-000")]).trim().to_owned();
    assert!(url.starts_with(&format!("https://{bucket}.{DOMAIN}:{}/t0-000?", edge.port)), "{url}");
    let got = tmp.path().join("vhost.bin");
    let resolve = format!("{bucket}.{DOMAIN}:{}:127.0.0.1", edge.port);
    let code = sh(
        "curl",
        &[
            "-sS",
            "-o",
            &got.to_string_lossy(),
            "-w",
            "%{http_code}",
            "--cacert",
            &cert.to_string_lossy(),
            "--resolve",
            &resolve,
            &url,
        ],
    );
    assert_eq!(code, "200");
    assert_eq!(std::fs::read(&got).unwrap_or_default(), std::fs::read(&small).unwrap_or_default());
    // Any other Host is not the S3 endpoint.
    let foreign = sh(
        "curl",
        &[
            "-sS",
            "-k",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--resolve",
            &format!("evil.example:{}:127.0.0.1", edge.port),
            &format!("https://evil.example:{}/{bucket}/t0-000", edge.port),
        ],
    );
    assert_eq!(foreign, "421");
    println!("virtual-host GET via {bucket}.{DOMAIN}: 200; Host evil.example: {foreign}");

    // The per-client rate limit: a second edge with a limit of 20 requests per 10 s; 40 quick
    // requests from one address get 20 answers and then 503 SlowDown.
    let limited = start_haproxy(tmp.path(), &cert, vec![("gw-b".to_owned(), url_addr(&gb.endpoint))], |p| {
        p.rate_limit_requests = 20;
        p.rate_limit_period_secs = 10;
    });
    wait_for("gw-b UP behind the limited edge", Duration::from_secs(20), || {
        haproxy_server_status(&limited.stats, "s3_gateways").iter().all(|(_, s)| s == "UP").then_some(())
    });
    let health = format!("https://{DOMAIN}:{}/_cyvault/health", limited.port);
    let mut args = vec!["-s".to_owned(), "-w".into(), "%{http_code}\\n".into()];
    args.extend([
        "--cacert".into(),
        cert.to_string_lossy().into_owned(),
        "--resolve".into(),
        format!("{DOMAIN}:{}:127.0.0.1", limited.port),
    ]);
    for _ in 0..40 {
        // One connection, 40 requests on it (curl reuses it), each body thrown away.
        args.extend(["-o".into(), "/dev/null".into(), health.clone()]);
    }
    let codes = sh("curl", &args.iter().map(String::as_str).collect::<Vec<_>>());
    let ok = codes.lines().filter(|c| *c == "200").count();
    let slow = codes.lines().filter(|c| *c == "503").count();
    println!("rate limit 20 per 10 s: 40 requests -> {ok} x 200, {slow} x 503");
    assert_eq!(ok + slow, 40, "{codes}");
    assert!((18..=21).contains(&ok) && slow >= 19, "{codes}");
    let body = try_sh(
        "curl",
        &[
            "-s",
            "-i",
            "--cacert",
            &cert.to_string_lossy(),
            "--resolve",
            &format!("{DOMAIN}:{}:127.0.0.1", limited.port),
            &health,
        ],
    );
    let body = String::from_utf8_lossy(&body.stdout);
    assert!(body.starts_with("HTTP/1.1 503") || body.starts_with("HTTP/2 503"), "{body}");
    assert!(body.contains("<Code>SlowDown</Code>") && body.to_ascii_lowercase().contains("retry-after: 1"), "{body}");
    drop(limited);
    drop(edge);
}
