//! deploy/ as the real tools see it: `cyvault deploy render --check` (and that it catches drift),
//! `cyvault deploy validate` on the repository (every document strictly against ../shared's
//! schemas, every kustomize build, every cluster's Flux graph) and on a copy with planted
//! mistakes, `haproxy -c` and `keepalived -t` on the committed edge configs (and on broken
//! ones), and `cyvault deploy wireguard`'s refusals.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::net::{sh, try_sh};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The reference schemas beside the repository (`../shared`; CI has them there).
fn shared() -> PathBuf {
    let p = repo().join("../shared");
    assert!(
        p.join("crds/README.md").is_file(),
        "{} has no crds/README.md: the reference schemas must be in ../shared",
        p.display()
    );
    p
}

fn cyvault(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cyvault"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run cyvault: {e}"))
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A copy of the repository's deploy/ in a temp dir (the root to pass as --root).
fn copy_of_deploy() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    sh("cp", &["-r", &repo().join("deploy").to_string_lossy(), &tmp.path().to_string_lossy()]);
    tmp
}

fn edit(path: &Path, from: &str, to: &str) {
    let s = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert!(s.contains(from), "{} has no {from:?}", path.display());
    std::fs::write(path, s.replacen(from, to, 1)).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

#[test]
fn committed_generated_files_match_their_sources() {
    let root = repo();
    let out = cyvault(&["deploy", "render", "--check", "--root", &root.to_string_lossy()]);
    println!("{}", text(&out));
    assert!(out.status.success(), "deploy/ drifted from its description:\n{}", text(&out));
    assert!(text(&out).contains("generated files match"), "{}", text(&out));
}

#[test]
fn render_check_lists_every_drifted_file_and_render_repairs_them() {
    let tmp = copy_of_deploy();
    let root = tmp.path().to_string_lossy().into_owned();
    let d = tmp.path().join("deploy");
    edit(&d.join("apps/vault-edge/haproxy.cfg"), "balance leastconn", "balance roundrobin");
    std::fs::remove_file(d.join("infrastructure/rook-ceph/cluster/pools.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let stale = d.join("hosts/wireguard/gone-1.conf.tmpl");
    std::fs::write(&stale, format!("{}\n", cyvault_render::text::HEADER)).unwrap_or_else(|e| panic!("{e}"));
    let out = cyvault(&["deploy", "render", "--check", "--root", &root]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    expect_test::expect![[r#"
        VAULT-DP-300: 3 generated files drifted from their sources; run `cyvault deploy render`:
          deploy/apps/vault-edge/haproxy.cfg (differs)
          deploy/infrastructure/rook-ceph/cluster/pools.yaml (missing)
          deploy/hosts/wireguard/gone-1.conf.tmpl (no longer generated)
    "#]]
    .assert_eq(&t);
    // A change to the description is a drift too, until rendered.
    edit(&d.join("federation.toml"), "node_port = 30900", "node_port = 30901");
    let out = cyvault(&["deploy", "render", "--root", &root]);
    assert!(out.status.success(), "{}", text(&out));
    let out = cyvault(&["deploy", "render", "--check", "--root", &root]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!stale.exists());
    let cfg = std::fs::read_to_string(d.join("apps/vault-edge/haproxy.cfg")).unwrap_or_default();
    assert!(cfg.contains("server aux-4 10.100.3.44:30901"), "{cfg}");
}

/// The summary line's numbers: documents, files, builds, built documents, clusters, Flux
/// Kustomizations, HelmReleases, schemas, problems.
fn summary(out: &str) -> Vec<usize> {
    let line =
        out.lines().find(|l| l.starts_with("deploy validate: ")).unwrap_or_else(|| panic!("no summary in:\n{out}"));
    line.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).filter_map(|s| s.parse().ok()).collect()
}

#[test]
fn every_manifest_validates_strictly_and_every_overlay_builds() {
    let out = cyvault(&[
        "deploy",
        "validate",
        "--root",
        &repo().to_string_lossy(),
        "--shared",
        &shared().to_string_lossy(),
        "--list-kinds",
    ]);
    let t = text(&out);
    println!("{t}");
    assert!(out.status.success(), "deploy validate found problems:\n{t}");
    let n = summary(&t);
    // Every directory with a kustomization.yaml was built.
    let dirs = common_kustomization_dirs(&repo().join("deploy"));
    assert_eq!(n[2], dirs, "kustomize builds vs directories with a kustomization.yaml: {t}");
    assert!(n[0] >= 80 && n[3] >= 100, "too few documents validated: {t}");
    assert_eq!((n[4], n.last().copied()), (4, Some(0)), "{t}");
    // Every kind we use has a schema from ../shared or a listed exception, and the catalog
    // holds the upstream CRDs (Flux, Rook, Karmada, snapshotter), Cilium's and our own.
    for kind in [
        "apps/v1 Deployment",
        "kustomize.toolkit.fluxcd.io/v1 Kustomization",
        "helm.toolkit.fluxcd.io/v2 HelmRelease",
        "ceph.rook.io/v1 CephBlockPool",
        "policy.karmada.io/v1alpha1 ClusterOverridePolicy",
        "cluster.karmada.io/v1alpha1 Cluster",
        "cilium.io/v2 CiliumNetworkPolicy",
        "snapshot.storage.k8s.io/v1 VolumeSnapshotClass",
        "vault.cyberun.cloud/v1alpha1 PlacementPolicy",
    ] {
        assert!(t.contains(&format!("schema {kind}: ")), "no schema for {kind}:\n{t}");
    }
    assert!(t.contains("exception policy/v1 PodDisruptionBudget: "), "{t}");
}

fn common_kustomization_dirs(dir: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            n += common_kustomization_dirs(&p);
        } else if p.file_name().is_some_and(|f| f == "kustomization.yaml") {
            n += 1;
        }
    }
    n
}

/// Mistakes planted in a copy of deploy/, each of which must be reported with its file, document,
/// object and path.
#[test]
fn validate_rejects_planted_mistakes_with_file_document_object_and_path() {
    let tmp = copy_of_deploy();
    let d = tmp.path().join("deploy");
    // A misspelled field (built-in kind), a wrong type, a misspelled CRD field, a misspelled
    // Cilium field, a misspelled Karmada Cluster field.
    edit(&d.join("apps/vault-csi/base/controller.yaml"), "  replicas: 2\n", "  replicaz: 2\n");
    edit(
        &d.join("apps/vault-csi/base/node.yaml"),
        "terminationGracePeriodSeconds: 60",
        "terminationGracePeriodSeconds: sixty",
    );
    edit(&d.join("infrastructure/rook-ceph/cluster/pools.yaml"), "  deviceClass: nvme\n", "  deviceClas: nvme\n");
    edit(&d.join("apps/vault-gateway/network-policy.yaml"), "      toPorts:", "      toPort:");
    edit(
        &d.join("infrastructure/karmada/federation/clusters.yaml"),
        "  syncMode: Push\n",
        "  syncMode: Push\n  apiEndpiont: x\n",
    );
    // An unknown kind and a Secret with data, listed by the kustomization.
    std::fs::write(
        d.join("apps/vault-gateway/extra.yaml"),
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  namespace: vault-gateway\nstringData:\n  k: v\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    edit(
        &d.join("apps/vault-gateway/kustomization.yaml"),
        "  - network-policy.yaml\n",
        "  - network-policy.yaml\n  - extra.yaml\n",
    );
    // A file no kustomization lists; a kustomization naming a missing file.
    std::fs::write(
        d.join("apps/vault-csi/base/forgotten.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    edit(
        &d.join("infrastructure/sources/kustomization.yaml"),
        "  - git-repositories.yaml\n",
        "  - git-repositories.yaml\n  - missing.yaml\n",
    );
    // Flux: a dependsOn to nothing, a cycle, an unpinned chart version.
    edit(&d.join("clusters/auxiliary/apps.yaml"), "    - name: vault-gateway\n", "    - name: vault-gatway\n");
    edit(
        &d.join("clusters/aegis/infrastructure.yaml"),
        "  path: ./deploy/infrastructure/sources\n",
        "  path: ./deploy/infrastructure/sources\n  dependsOn:\n    - name: cilium\n",
    );
    edit(&d.join("infrastructure/rook-ceph/operator/helmrelease.yaml"), "version: v1.20.6", "version: v1.20.5");
    // A private key.
    edit(
        &d.join("hosts/wireguard/aux-1.conf.tmpl"),
        "[Interface]\n",
        "[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n",
    );

    let out = cyvault(&[
        "deploy",
        "validate",
        "--root",
        &tmp.path().to_string_lossy(),
        "--shared",
        &shared().to_string_lossy(),
    ]);
    let t = text(&out);
    println!("{t}");
    assert_eq!(out.status.code(), Some(1), "{t}");
    for want in [
        "VAULT-DP-200: deploy/apps/vault-csi/base/controller.yaml document 1 (Deployment vault-csi/vault-csi-controller) at .spec: Additional properties are not allowed ('replicaz' was unexpected)",
        "VAULT-DP-200: deploy/apps/vault-csi/base/node.yaml document 1 (DaemonSet vault-csi/vault-csi-node) at .spec.template.spec.terminationGracePeriodSeconds: \"sixty\" is not of types \"null\", \"integer\"",
        "VAULT-DP-200: deploy/infrastructure/rook-ceph/cluster/pools.yaml document 1 (CephBlockPool rook-ceph/rbd-nvme) at .spec: Additional properties are not allowed ('deviceClas' was unexpected)",
        "VAULT-DP-200: deploy/apps/vault-gateway/network-policy.yaml document 1 (CiliumNetworkPolicy vault-gateway/vault-gateway) at .spec.ingress[0]: Additional properties are not allowed ('toPort' was unexpected)",
        "VAULT-DP-200: deploy/infrastructure/karmada/federation/clusters.yaml document 1 (Cluster destroyer) at .spec: Additional properties are not allowed ('apiEndpiont' was unexpected)",
        "VAULT-DP-201: deploy/apps/vault-gateway/extra.yaml document 1 (Widget w) at .apiVersion: example.com/v1 Widget: no schema knows this kind",
        "VAULT-DP-208: deploy/apps/vault-gateway/extra.yaml document 2 (Secret vault-gateway/s) at .data: a Secret with data in Git",
        "VAULT-DP-209: deploy/apps/vault-csi/base/forgotten.yaml: no kustomization lists this file",
        "VAULT-DP-204: kubectl kustomize deploy/infrastructure/sources: ",
        "(Kustomization flux-system/vault-edge) at .spec.dependsOn[0]: no Kustomization flux-system/vault-gatway in cluster auxiliary",
        "at .spec.dependsOn: dependsOn goes round: flux-system/cilium -> flux-system/sources -> flux-system/cilium",
        "(HelmRelease rook-ceph/rook-ceph) at .spec.chart.spec.version: chart rook-ceph is \"v1.20.5\"; rook is pinned at v1.20.6",
        "VAULT-DP-208: deploy/hosts/wireguard/aux-1.conf.tmpl: line 8 holds a WireGuard private key",
    ] {
        assert!(t.contains(want), "missing {want:?} in:\n{t}");
    }
}

/// Runs `haproxy -c` on a config whose certificate path is `/etc/haproxy/certs/…`, with a
/// throw-away certificate there: inside a private mount namespace, a tmpfs over /etc/haproxy
/// holds it, so the committed file is checked byte for byte and the host is not touched.
fn haproxy_check(config: &Path, tmp: &Path) -> Output {
    let (cert, key) = common::net::self_signed_cert(tmp, &["api.cyberun.cloud", "*.api.cyberun.cloud"]);
    let script = format!(
        "mount -t tmpfs tmpfs /etc/haproxy && mkdir /etc/haproxy/certs && cp {c} /etc/haproxy/certs/api.cyberun.cloud.pem && \
         cp {k} /etc/haproxy/certs/api.cyberun.cloud.pem.key && exec haproxy -c -f {cfg}",
        c = cert.display(),
        k = key.display(),
        cfg = config.display()
    );
    try_sh("unshare", &["--mount", "sh", "-c", &script])
}

#[test]
fn haproxy_accepts_the_committed_edge_config_and_refuses_a_broken_one() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let committed = repo().join("deploy/apps/vault-edge/haproxy.cfg");
    let fed = cyvault_render::Federation::new(
        &std::fs::read_to_string(repo().join("deploy/federation.toml")).unwrap_or_default(),
        &std::fs::read_to_string(repo().join("deploy/placement/cyberun.toml")).unwrap_or_default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(fed.spec().edge.tls_certificate.starts_with("/etc/haproxy/certs/"), "the check mounts certificates there");
    let out = haproxy_check(&committed, tmp.path());
    println!("haproxy -c {}: {}", committed.display(), text(&out));
    assert!(out.status.success(), "haproxy -c refused the committed config:\n{}", text(&out));
    assert!(text(&out).contains("Configuration file is valid"), "{}", text(&out));

    let broken = tmp.path().join("broken.cfg");
    let cfg = std::fs::read_to_string(&committed).unwrap_or_default();
    std::fs::write(&broken, cfg.replace("balance leastconn", "balance leastconnection"))
        .unwrap_or_else(|e| panic!("{e}"));
    let out = haproxy_check(&broken, tmp.path());
    println!("haproxy -c (planted mistake): {}", text(&out));
    assert!(!out.status.success(), "haproxy -c accepted a broken config");
    assert!(text(&out).contains("broken.cfg:") && text(&out).contains("balance only supports"), "{}", text(&out));
}

#[test]
fn keepalived_accepts_every_committed_edge_config_and_refuses_a_broken_one() {
    let dir = repo().join("deploy/apps/vault-edge");
    let mut checked = 0;
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let p = e.path();
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if !(name.starts_with("keepalived-") && name.ends_with(".conf")) {
            continue;
        }
        let out = try_sh("keepalived", &["-t", "-f", &p.to_string_lossy()]);
        println!("keepalived -t {name}: exit {:?} {}", out.status.code(), text(&out));
        assert!(out.status.success(), "keepalived -t refused {name}:\n{}", text(&out));
        checked += 1;
    }
    assert_eq!(checked, 2, "one keepalived config per edge node");
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let broken = tmp.path().join("broken.conf");
    let cfg = std::fs::read_to_string(dir.join("keepalived-aux-edge-1.conf")).unwrap_or_default();
    std::fs::write(&broken, cfg.replace("virtual_router_id 51", "virtual_router_id 300"))
        .unwrap_or_else(|e| panic!("{e}"));
    let out = try_sh("keepalived", &["-t", "-f", &broken.to_string_lossy()]);
    println!("keepalived -t (planted mistake): exit {:?} {}", out.status.code(), text(&out));
    assert!(!out.status.success(), "keepalived -t accepted a broken config");
    assert!(text(&out).contains("300"), "{}", text(&out));
}

#[test]
fn wireguard_renders_only_with_well_kept_keys() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let keys = tmp.path().join("keys");
    std::fs::create_dir(&keys).unwrap_or_else(|e| panic!("{e}"));
    let (private, _) = common::net::wg_keypair();
    let key_file = tmp.path().join("private.key");
    std::fs::write(&key_file, &private).unwrap_or_else(|e| panic!("{e}"));
    let root = repo().to_string_lossy().into_owned();
    let args = |extra: &[&str]| {
        let mut a = vec!["deploy", "wireguard", "--root", &root, "--node", "aux-1"];
        a.extend_from_slice(extra);
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run = |a: Vec<String>| cyvault(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let kf = key_file.to_string_lossy().into_owned();
    let kd = keys.to_string_lossy().into_owned();
    // A key file others may read is refused.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap_or_else(|e| panic!("{e}"));
    let out = run(args(&[
        "--private-key-file",
        &kf,
        "--public-keys-dir",
        &kd,
        "--format",
        "setconf",
        "--peer",
        "destroyer-1",
    ]));
    assert!(!out.status.success() && text(&out).contains("readable by others"), "{}", text(&out));
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap_or_else(|e| panic!("{e}"));
    // A peer without a public key is refused.
    let out = run(args(&[
        "--private-key-file",
        &kf,
        "--public-keys-dir",
        &kd,
        "--format",
        "setconf",
        "--peer",
        "destroyer-1",
    ]));
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("VAULT-DP-111: no public key for peer destroyer-1"), "{}", text(&out));
    // With the key: wg-quick's format holds no secret, setconf's does.
    let (_, peer_public) = common::net::wg_keypair();
    std::fs::write(keys.join("destroyer-1.pub"), &peer_public).unwrap_or_else(|e| panic!("{e}"));
    let out = run(args(&["--private-key-file", &kf, "--public-keys-dir", &kd, "--peer", "destroyer-1"]));
    assert!(out.status.success(), "{}", text(&out));
    let quick = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!quick.contains(private.trim()), "the wg-quick format must not hold the private key:\n{quick}");
    assert!(quick.contains(&format!("PublicKey = {}", peer_public.trim())), "{quick}");
    assert!(quick.contains(&format!("PostUp = wg set %i private-key {kf}")), "{quick}");
    assert!(quick.contains("Address = 10.100.3.41/16") && quick.contains("Endpoint = 198.51.100.21:51820"), "{quick}");
    assert_eq!(quick.matches("[Peer]").count(), 1, "{quick}");
    let conf = tmp.path().join("wg.conf");
    let out = run(args(&[
        "--private-key-file",
        &kf,
        "--public-keys-dir",
        &kd,
        "--format",
        "setconf",
        "--peer",
        "destroyer-1",
        "--output",
        &conf.to_string_lossy(),
    ]));
    assert!(out.status.success(), "{}", text(&out));
    let mode = std::fs::metadata(&conf).map(|m| m.permissions().mode() & 0o777).unwrap_or(0);
    assert_eq!(mode, 0o600, "the setconf output holds the private key");
    assert!(std::fs::read_to_string(&conf).unwrap_or_default().contains(&format!("PrivateKey = {}", private.trim())));
}
