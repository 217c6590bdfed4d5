//! The edge's VRRP failover, live: two network namespaces made here stand for the two edge nodes
//! of deploy/federation.toml, joined by a veth pair carrying their underlay addresses. Each runs
//! the rendered keepalived config (only the interface name differs: the veth end) and the
//! rendered HAProxy config in front of a real `cyvault gateway`, so keepalived's track script asks
//! a real HAProxy's /healthz. The VIP starts on the master; it moves to the backup when the
//! master's HAProxy dies, when its keepalived is stopped, and when its keepalived is killed, and
//! back when the master recovers. Every move is timed and printed.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::net::{Netns, Proc, self_signed_cert, veth, wait_for};
use cyvault_render::Federation;
use cyvault_render::generate::edge::{HaproxyParams, VrrpParams, haproxy_cfg, keepalived_conf};

fn federation() -> Federation {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("read {p}: {e}"));
    Federation::new(&read("deploy/federation.toml"), &read("deploy/placement/cyberun.toml"))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// One edge node: its namespace's processes and files.
struct Edge<'a> {
    ns: &'a Netns,
    iface: String,
    node: String,
    dir: PathBuf,
    fed: &'a Federation,
    cert: PathBuf,
    gateway: Option<SocketAddr>,
    haproxy: Option<Proc>,
    keepalived: Option<Proc>,
    /// Held last so it is dropped (killed) after HAProxy.
    gateway_proc: Option<Proc>,
}

impl Edge<'_> {
    fn start_gateway(&mut self) {
        let mut cmd = self.ns.command(env!("CARGO_BIN_EXE_cyvault"));
        cmd.args(["gateway", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(self.dir.join("gateway"))
            .env("CYVAULT_ROOT_ACCESS_KEY", "AKEDGETEST")
            .env("CYVAULT_ROOT_SECRET_KEY", "edge-test-secret");
        let (p, url) =
            Proc::spawn_ready(&format!("gateway in {}", self.node), cmd, "listening on ", Duration::from_secs(60));
        self.gateway = Some(common::net::url_addr(&url));
        self.gateway_proc = Some(p);
    }

    fn start_haproxy(&mut self) {
        let mut p = HaproxyParams::from_federation(self.fed);
        p.tls_certificate = self.cert.to_string_lossy().into_owned();
        p.stats_socket = self.dir.join("haproxy.sock").to_string_lossy().into_owned();
        p.backends = vec![("gateway".into(), self.gateway.unwrap_or_else(|| panic!("start the gateway first")))];
        // The production 20,000 needs more file descriptors than a test process may open.
        p.maxconn = 1000;
        let cfg = self.dir.join("haproxy.cfg");
        std::fs::write(&cfg, haproxy_cfg(&p)).unwrap_or_else(|e| panic!("{e}"));
        let mut cmd = self.ns.command("haproxy");
        cmd.args(["-db", "-f"]).arg(&cfg);
        self.haproxy = Some(Proc::spawn(&format!("haproxy in {}", self.node), cmd));
        let port = self.fed.spec().edge.health_port;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out =
                self.ns.try_exec("curl", &["-fsS", "-o", "/dev/null", &format!("http://127.0.0.1:{port}/healthz")]);
            if out.status.success() {
                break;
            }
            let exited = self.haproxy.as_mut().and_then(Proc::try_wait);
            if exited.is_some() || Instant::now() > deadline {
                panic!(
                    "HAProxy in {} is not healthy ({exited:?}; curl: {}):\n{}",
                    self.node,
                    String::from_utf8_lossy(&out.stderr),
                    self.haproxy.as_ref().map(Proc::output).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn start_keepalived(&mut self) {
        let mut p =
            VrrpParams::for_node(self.fed, &self.node).unwrap_or_else(|| panic!("{} is not an edge node", self.node));
        p.interface = self.iface.clone();
        let conf = self.dir.join("keepalived.conf");
        std::fs::write(&conf, keepalived_conf(&p)).unwrap_or_else(|e| panic!("{e}"));
        let mut cmd = self.ns.command("keepalived");
        cmd.args(["--dont-fork", "--log-console", "--log-detail", "--vrrp", "-f"])
            .arg(&conf)
            .arg("-p")
            .arg(self.dir.join("keepalived.pid"))
            .arg("-r")
            .arg(self.dir.join("vrrp.pid"));
        self.keepalived = Some(Proc::spawn(&format!("keepalived in {}", self.node), cmd));
    }

    /// The pid of keepalived's VRRP child (it does the work; the parent only supervises).
    fn vrrp_child(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join("vrrp.pid")).ok().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
    }

    fn has_vip(&self, vip: Ipv4Addr) -> bool {
        self.ns.has_address(&self.iface, vip)
    }

    fn logs(&self) -> String {
        [&self.keepalived, &self.haproxy]
            .iter()
            .filter_map(|p| p.as_ref())
            .map(|p| format!("--- {}:\n{}", p.name, p.output()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Waits until the VIP is on `to` and not on `from`; returns how long it took.
fn vip_moves(vip: Ipv4Addr, from: &Edge<'_>, to: &Edge<'_>, since: Instant, what: &str) -> Duration {
    let deadline = since + Duration::from_secs(15);
    loop {
        if to.has_vip(vip) && !from.has_vip(vip) {
            let took = since.elapsed();
            println!("{what}: the VIP moved from {} to {} in {:.2} s", from.node, to.node, took.as_secs_f64());
            return took;
        }
        if Instant::now() > deadline {
            panic!(
                "{what}: the VIP did not move from {} to {} within 15 s\n{}\n{}",
                from.node,
                to.node,
                from.logs(),
                to.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn copy_key_beside(cert: &Path, key: &Path) {
    let mut beside = cert.as_os_str().to_owned();
    beside.push(".key");
    std::fs::copy(key, PathBuf::from(beside)).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn the_vip_follows_a_healthy_haproxy_between_two_edge_namespaces() {
    let fed = federation();
    let e = &fed.spec().edge;
    let names: Vec<String> = e.priorities.keys().cloned().collect();
    let (master, backup) = if e.priorities[&names[0]] > e.priorities[&names[1]] {
        (names[0].clone(), names[1].clone())
    } else {
        (names[1].clone(), names[0].clone())
    };
    let node = |n: &str| fed.node(n).unwrap_or_else(|| panic!("no node {n}"));
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (cert, key) = self_signed_cert(tmp.path(), &["api.cyberun.cloud", "*.api.cyberun.cloud"]);
    copy_key_beside(&cert, &key);

    // The namespaces outlive every process below (locals drop in reverse order).
    let ns_m = Netns::new("kam");
    let ns_b = Netns::new("kab");
    let (if_m, if_b) = veth(
        &ns_m,
        &format!("{}/{}", node(&master).endpoint, e.vip_prefix),
        &ns_b,
        &format!("{}/{}", node(&backup).endpoint, e.vip_prefix),
    );
    let mk = |ns, iface: &str, name: &str| {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        Edge {
            ns,
            iface: iface.to_owned(),
            node: name.to_owned(),
            dir,
            fed: &fed,
            cert: cert.clone(),
            gateway: None,
            haproxy: None,
            keepalived: None,
            gateway_proc: None,
        }
    };
    let mut m = mk(&ns_m, &if_m, &master);
    let mut b = mk(&ns_b, &if_b, &backup);
    for edge in [&mut m, &mut b] {
        edge.start_gateway();
        edge.start_haproxy();
    }
    m.start_keepalived();
    b.start_keepalived();
    let vip = e.vip;
    let t = Instant::now();
    wait_for("the VIP on the master", Duration::from_secs(15), || (m.has_vip(vip) && !b.has_vip(vip)).then_some(()));
    println!(
        "start: the VIP {vip} is on {master} (priority {}) after {:.2} s, not on {backup}",
        e.priorities[&master],
        t.elapsed().as_secs_f64()
    );
    // The VIP is served: HAProxy answers on it, in the master's namespace.
    let out = m.ns.try_exec(
        "curl",
        &[
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
            &cert.to_string_lossy(),
            "--resolve",
            &format!("api.cyberun.cloud:443:{vip}"),
            "https://api.cyberun.cloud/_cyvault/health",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200",
        "HAProxy on the VIP: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut times = Vec::new();
    // 1. The master's HAProxy dies: its track script fails and the backup takes the VIP.
    let t = Instant::now();
    if let Some(mut h) = m.haproxy.take() {
        h.signal_and_wait("KILL");
    }
    times.push(("HAProxy killed on the master", vip_moves(vip, &m, &b, t, "HAProxy killed on the master")));
    // 2. It comes back: the master (higher priority) takes the VIP back.
    let t = Instant::now();
    m.start_haproxy();
    times.push(("HAProxy back (failback)", vip_moves(vip, &b, &m, t, "HAProxy back on the master")));
    // 3. The master's keepalived is stopped (SIGTERM by pid): it hands the VIP over at once.
    let t = Instant::now();
    if let Some(mut k) = m.keepalived.take() {
        k.signal_and_wait("TERM");
    }
    times.push(("keepalived stopped on the master", vip_moves(vip, &m, &b, t, "keepalived stopped on the master")));
    let t = Instant::now();
    m.start_keepalived();
    times.push(("keepalived back (failback)", vip_moves(vip, &b, &m, t, "keepalived back on the master")));
    // 4. The master's keepalived is killed (SIGKILL, parent and VRRP child): nobody releases the
    //    VIP there, and the backup takes it when the adverts stop (3 x advert_int + skew).
    wait_for("keepalived's VRRP child pid file", Duration::from_secs(10), || m.vrrp_child());
    let child = m.vrrp_child().unwrap_or_default();
    let t = Instant::now();
    let _ = common::net::try_sh("kill", &["-KILL", &child]);
    if let Some(mut k) = m.keepalived.take() {
        k.signal_and_wait("KILL");
    }
    let took = wait_for("the VIP on the backup after SIGKILL", Duration::from_secs(15), || {
        b.has_vip(vip).then(|| t.elapsed())
    });
    println!("keepalived killed on the master: the VIP is on {backup} after {:.2} s", took.as_secs_f64());
    times.push(("keepalived killed on the master", took));

    let summary: Vec<String> = times.iter().map(|(w, d)| format!("{w} {:.2} s", d.as_secs_f64())).collect();
    println!("keepalived failover times: {}", summary.join(", "));
    // Failover must take a few seconds; failback also waits for HAProxy to start and pass two
    // health checks, so it gets more room on a loaded machine.
    for (what, d) in &times {
        let limit = Duration::from_secs(if what.contains("failback") { 15 } else { 8 });
        assert!(*d < limit, "{what} took {d:?}: not within {limit:?}");
    }
}
