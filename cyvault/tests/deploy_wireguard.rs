//! The WireGuard mesh, live: two network namespaces stand for two nodes of deploy/federation.toml
//! (aux-1 in Auxiliary, destroyer-1 in Destroyer), joined by a veth underlay carrying their
//! public endpoints. Keys are made here with `wg genkey` as the deploy-time secrets; each node's
//! config comes from `cyvault deploy wireguard` reading the repository's description, and
//! `wireguard-go` (userspace: this kernel has no wireguard module) runs it after `wg setconf`.
//! A `cyvault gateway` in aux-1's namespace listens on aux-1's overlay address only, and aws-cli
//! in destroyer-1's namespace puts and gets an object there. The traffic went through the tunnel:
//! the tunnel's transfer counters grow by at least the payload, the route to the overlay address
//! is the tunnel, and with the tunnel down the address is unreachable.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::net::{Netns, Proc, sh, short_name, veth, wait_for, wg_keypair};

const A: &str = "aux-1";
const B: &str = "destroyer-1";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn cyvault(args: &[&str]) -> String {
    sh(env!("CARGO_BIN_EXE_cyvault"), args)
}

/// The value of `Key = value` in a WireGuard config.
fn field<'a>(conf: &'a str, key: &str) -> &'a str {
    conf.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.trim_start().strip_prefix('=')).map(str::trim))
        .unwrap_or_else(|| panic!("no {key} in:\n{conf}"))
}

/// (received, sent) bytes of the tunnel's one peer (`wg show IFACE transfer`).
fn transfer(ns: &Netns, iface: &str) -> (u64, u64) {
    let out = ns.exec("wg", &["show", iface, "transfer"]);
    let f: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(f.len(), 3, "one peer expected: {out}");
    (f[1].parse().unwrap_or(0), f[2].parse().unwrap_or(0))
}

/// One node's tunnel: its interface and wireguard-go. Dropping it stops wireguard-go with SIGTERM,
/// so it removes its control socket (the interface goes with the namespace).
struct Node {
    iface: String,
    overlay: String,
    wg: Option<Proc>,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut p) = self.wg.take() {
            p.terminate();
        }
        let _ = std::fs::remove_file(format!("/var/run/wireguard/{}.sock", self.iface));
    }
}

fn bring_up(ns: &Netns, node: &str, peer: &str, keys: &Path, dir: &Path) -> Node {
    let root = repo().to_string_lossy().into_owned();
    let key_file = dir.join(format!("{node}.key"));
    let conf = dir.join(format!("{node}.setconf"));
    let (kf, kd, cf) = (key_file.to_string_lossy(), keys.to_string_lossy(), conf.to_string_lossy());
    let base = [
        "deploy",
        "wireguard",
        "--root",
        &root,
        "--node",
        node,
        "--private-key-file",
        &kf,
        "--public-keys-dir",
        &kd,
        "--peer",
        peer,
    ];
    // wg-quick's form says the address; the setconf form is what `wg setconf` takes.
    let quick = cyvault(&base);
    cyvault(&[&base[..], &["--format", "setconf", "--output", &cf]].concat());
    let overlay = field(&quick, "Address").to_owned();
    let mtu = field(&quick, "MTU").to_owned();
    let iface = short_name("cvw");
    let mut cmd = ns.command("wireguard-go");
    cmd.args(["-f", &iface]);
    let wg = Proc::spawn(&format!("wireguard-go {node}"), cmd);
    let sock = PathBuf::from(format!("/var/run/wireguard/{iface}.sock"));
    wait_for(&format!("wireguard-go's socket for {node}"), Duration::from_secs(10), || sock.exists().then_some(()));
    ns.exec("wg", &["setconf", &iface, &cf]);
    ns.ip(&["address", "add", &overlay, "dev", &iface]);
    ns.ip(&["link", "set", &iface, "mtu", &mtu, "up"]);
    println!("{node}: {iface} {overlay} mtu {mtu}, {}", ns.exec("wg", &["show", &iface]).replace('\n', " | "));
    Node { iface, overlay: overlay.split('/').next().unwrap_or_default().to_owned(), wg: Some(wg) }
}

#[test]
fn s3_between_two_nodes_goes_through_the_rendered_wireguard_mesh() {
    let read = |p: &str| std::fs::read_to_string(repo().join(p)).unwrap_or_else(|e| panic!("read {p}: {e}"));
    let fed = cyvault_render::Federation::new(&read("deploy/federation.toml"), &read("deploy/placement/cyberun.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let endpoint = |n: &str| fed.node(n).unwrap_or_else(|| panic!("no node {n}")).endpoint;
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let keys = tmp.path().join("public-keys");
    std::fs::create_dir(&keys).unwrap_or_else(|e| panic!("{e}"));
    for node in [A, B] {
        // The deploy-time secrets: a private key per host (mode 0600), public keys collected.
        let (private, public) = wg_keypair();
        let kf = tmp.path().join(format!("{node}.key"));
        std::fs::write(&kf, format!("{private}\n")).unwrap_or_else(|e| panic!("{e}"));
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&kf, std::fs::Permissions::from_mode(0o600)).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(keys.join(format!("{node}.pub")), format!("{public}\n")).unwrap_or_else(|e| panic!("{e}"));
    }

    // The underlay: both endpoints on one veth (the description puts them in one /24).
    let ns_a = Netns::new("wga");
    let ns_b = Netns::new("wgb");
    veth(&ns_a, &format!("{}/24", endpoint(A)), &ns_b, &format!("{}/24", endpoint(B)));
    let mut a = bring_up(&ns_a, A, B, &keys, tmp.path());
    let b = bring_up(&ns_b, B, A, &keys, tmp.path());

    // The gateway listens on aux-1's overlay address and nowhere else.
    let port = 9000;
    let listen = format!("{}:{port}", a.overlay);
    let mut cmd = ns_a.command(env!("CARGO_BIN_EXE_cyvault"));
    cmd.args(["gateway", "--listen", &listen, "--data-dir"])
        .arg(tmp.path().join("gateway"))
        .env("CYVAULT_ROOT_ACCESS_KEY", "AKWIREGUARDTEST")
        .env("CYVAULT_ROOT_SECRET_KEY", "wireguard-test-secret");
    let (_gateway, url) =
        Proc::spawn_ready("gateway on aux-1's overlay address", cmd, "listening on ", Duration::from_secs(60));
    assert_eq!(url, format!("http://{listen}"));

    // destroyer-1 reaches it through the tunnel: the route says so.
    let route = ns_b.ip(&["route", "get", &a.overlay]);
    assert!(route.contains(&format!("dev {}", b.iface)), "the route to {} is not the tunnel: {route}", a.overlay);

    let env = common::aws_env(&url, "AKWIREGUARDTEST", "wireguard-test-secret");
    let aws = |args: &[&str]| {
        let mut c = ns_b.command("aws");
        c.args(args);
        for (k, v) in &env {
            c.env(k, v);
        }
        let out = c.output().unwrap_or_else(|e| panic!("aws: {e}"));
        assert!(
            out.status.success(),
            "aws {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let payload = common::pseudo_random(1 << 20, 7);
    let up = tmp.path().join("up.bin");
    let down = tmp.path().join("down.bin");
    std::fs::write(&up, &payload).unwrap_or_else(|e| panic!("{e}"));
    let (rx0, tx0) = transfer(&ns_b, &b.iface);
    aws(&["s3", "mb", "s3://mesh"]);
    aws(&["s3", "cp", &up.to_string_lossy(), "s3://mesh/blob.bin"]);
    aws(&["s3", "cp", "s3://mesh/blob.bin", &down.to_string_lossy()]);
    let listed = aws(&["s3", "ls", "s3://mesh/"]);
    let (rx1, tx1) = transfer(&ns_b, &b.iface);
    assert_eq!(std::fs::read(&down).unwrap_or_default(), payload, "the object came back different");
    assert!(listed.contains("1048576 blob.bin"), "{listed}");
    let (sent, received) = (tx1 - tx0, rx1 - rx0);
    println!(
        "through the tunnel from {B}: sent {sent} bytes, received {received} bytes for a {} byte object up and down",
        payload.len()
    );
    assert!(
        sent >= payload.len() as u64,
        "the tunnel carried {sent} bytes out, less than the {} byte PUT",
        payload.len()
    );
    assert!(
        received >= payload.len() as u64,
        "the tunnel carried {received} bytes in, less than the {} byte GET",
        payload.len()
    );
    // aux-1 saw the same traffic on its end.
    let (a_rx, a_tx) = transfer(&ns_a, &a.iface);
    assert!(a_rx >= payload.len() as u64 && a_tx >= payload.len() as u64, "aux-1's end: rx {a_rx}, tx {a_tx}");

    // No way around the tunnel: with it down, the overlay address is unreachable.
    let health = format!("http://{listen}/_cyvault/health");
    let ok = ns_b.try_exec("curl", &["-fsS", "--max-time", "5", &health]);
    assert!(ok.status.success(), "the health check through the tunnel failed: {}", String::from_utf8_lossy(&ok.stderr));
    ns_b.ip(&["link", "set", &b.iface, "down"]);
    let cut = ns_b.try_exec("curl", &["-sS", "--max-time", "5", &health]);
    println!(
        "tunnel down: curl {health} -> exit {:?}: {}",
        cut.status.code(),
        String::from_utf8_lossy(&cut.stderr).trim()
    );
    assert!(!cut.status.success(), "the overlay address answered with the tunnel down");
    let no_route = ns_b.try_exec("ip", &["route", "get", &a.overlay]);
    assert!(
        !no_route.status.success() || !String::from_utf8_lossy(&no_route.stdout).contains("dev"),
        "a route around the tunnel: {}",
        String::from_utf8_lossy(&no_route.stdout)
    );
    // And with the peer's wireguard-go gone, the tunnel carries nothing either.
    ns_b.ip(&["link", "set", &b.iface, "up"]);
    if let Some(mut p) = a.wg.take() {
        p.signal_and_wait("TERM");
    }
    let dead = ns_b.try_exec("curl", &["-sS", "--max-time", "3", &health]);
    println!(
        "aux-1's wireguard-go stopped: curl -> exit {:?}: {}",
        dead.status.code(),
        String::from_utf8_lossy(&dead.stderr).trim()
    );
    assert!(!dead.status.success(), "the overlay address answered with aux-1's tunnel gone");
}
