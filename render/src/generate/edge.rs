//! The edge: HAProxy (TLS termination for the S3 endpoint, health checks against every gateway
//! node, per-client rate limits) and Keepalived (the VIP by VRRP, tracking HAProxy's health) on
//! the edge nodes.
//!
//! Both configs are rendered from parameters ([`HaproxyParams`], [`VrrpParams`]) that
//! [`HaproxyParams::from_federation`] and [`VrrpParams::for_node`] fill from the description; the
//! live tests fill them with loopback or network-namespace addresses instead, so the config they
//! run is this code's output, not an edited copy.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use super::Files;
use crate::Federation;
use crate::spec::NodeRole;
use crate::text::header;

pub const DIR: &str = "deploy/apps/vault-edge";

/// What `haproxy.cfg` says.
#[derive(Clone, Debug)]
pub struct HaproxyParams {
    /// The S3 frontend's address (the VIP and port 443 in production).
    pub bind: SocketAddr,
    /// Bind even when the address is not (yet) on this host: the backup holds no VIP.
    pub transparent: bool,
    /// The S3 domain: `DOMAIN` and `*.DOMAIN` are served, any other Host is refused.
    pub domain: String,
    /// The PEM HAProxy serves (certificate chain; the key beside it as `PEM.key`).
    pub tls_certificate: String,
    pub stats_socket: String,
    /// `/healthz` for keepalived's track script.
    pub health_bind: SocketAddr,
    /// (name, address) of each gateway backend.
    pub backends: Vec<(String, SocketAddr)>,
    pub rate_limit_requests: u32,
    pub rate_limit_period_secs: u32,
    pub max_connections_per_client: u32,
    /// Health-check interval; a server is down after two failed checks.
    pub check_interval_ms: u32,
    /// Connections HAProxy holds at once (it needs about twice as many file descriptors).
    pub maxconn: u32,
}

impl HaproxyParams {
    /// The production edge of the description.
    pub fn from_federation(f: &Federation) -> HaproxyParams {
        let e = &f.spec().edge;
        let g = &f.spec().gateway;
        HaproxyParams {
            bind: SocketAddr::V4(SocketAddrV4::new(e.vip, e.https_port)),
            transparent: true,
            domain: g.domain.clone(),
            tls_certificate: e.tls_certificate.clone(),
            stats_socket: e.stats_socket.clone(),
            health_bind: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, e.health_port)),
            backends: f
                .nodes_with(&g.cluster, NodeRole::Gateway)
                .iter()
                .map(|n| (n.name.clone(), SocketAddr::V4(SocketAddrV4::new(n.overlay_address, g.node_port))))
                .collect(),
            rate_limit_requests: e.rate_limit_requests,
            rate_limit_period_secs: e.rate_limit_period_secs,
            max_connections_per_client: e.max_connections_per_client,
            check_interval_ms: 1000,
            maxconn: 20000,
        }
    }
}

/// The S3 error body of a throttled request (what S3 itself answers with 503).
const SLOW_DOWN: &str = "<?xml version=\\\"1.0\\\" encoding=\\\"UTF-8\\\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><Resource>%[path]</Resource><RequestId>%[unique-id]</RequestId></Error>";

/// `haproxy.cfg`.
pub fn haproxy_cfg(p: &HaproxyParams) -> String {
    let servers: String = p.backends.iter().map(|(name, addr)| format!("    server {name} {addr}\n")).collect();
    format!(
        "{hdr}global
    log stdout format raw local0 info
    stats socket {stats} mode 600 level admin
    stats timeout 30s
    maxconn {maxconn}
    ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets
    ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256
    tune.ssl.default-dh-param 2048

defaults
    mode http
    log global
    option httplog
    option dontlognull
    option forwardfor
    unique-id-format %{{+X}}o%ci%cp%fi%fp%Ts%rt
    timeout connect 2s
    timeout client 60s
    # Large objects stream for a long time; the gateway answers slow requests itself.
    timeout server 300s
    timeout http-request 10s
    timeout http-keep-alive 10s
    timeout queue 10s
    # A request that finds its gateway gone (connection refused, reset before any response) is
    # sent again to another one: clients see no error when a gateway dies.
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response response-timeout

# Keepalived's track script asks this: it fails when no gateway is up, so the VIP moves to an
# edge node that still reaches one.
frontend health
    bind {health}
    monitor-uri /healthz
    monitor fail if {{ nbsrv(s3_gateways) lt 1 }}

frontend s3
    bind {bind}{transparent} ssl crt {cert} alpn h2,http/1.1
    unique-id-header X-Request-Id
    # Per-client limits: connections at once, and requests per period (S3 answers a throttled
    # request with 503 SlowDown, which every S3 SDK retries with backoff).
    stick-table type ipv6 size 1m expire {expire}s store conn_cur,http_req_rate({period}s)
    tcp-request connection track-sc0 src
    tcp-request connection reject if {{ sc_conn_cur(0) gt {max_conn} }}
    http-request return status 503 content-type application/xml hdr Retry-After 1 lf-string \"{slow_down}\" if {{ sc_http_req_rate(0) gt {rate} }}
    # The S3 endpoint: {domain} (path style) and *.{domain} (virtual-host style).
    http-request set-var(txn.host) req.hdr(host),field(1,:),lower
    acl s3_host var(txn.host) -m str {domain}
    acl s3_vhost var(txn.host) -m end .{domain}
    http-request deny deny_status 421 unless s3_host || s3_vhost
    http-request set-header X-Forwarded-Proto https
    default_backend s3_gateways

backend s3_gateways
    balance leastconn
    option httpchk
    http-check send meth GET uri /_cyvault/health
    http-check expect status 200
    default-server check inter {inter}ms fastinter {fast}ms downinter {inter}ms fall 2 rise 2 maxconn 2000
{servers}",
        hdr = header(&[
            "HAProxy on the edge nodes: TLS for the S3 endpoint, every gateway node behind it.",
            "The certificate and its key are mounted from the Secret vault-edge-tls at deploy time.",
        ]),
        stats = p.stats_socket,
        health = p.health_bind,
        bind = p.bind,
        transparent = if p.transparent { " transparent" } else { "" },
        cert = p.tls_certificate,
        expire = (p.rate_limit_period_secs * 6).max(60),
        period = p.rate_limit_period_secs,
        max_conn = p.max_connections_per_client,
        rate = p.rate_limit_requests,
        slow_down = SLOW_DOWN,
        domain = p.domain,
        inter = p.check_interval_ms,
        fast = (p.check_interval_ms / 2).max(100),
        maxconn = p.maxconn,
    )
}

/// What one edge node's `keepalived.conf` says.
#[derive(Clone, Debug)]
pub struct VrrpParams {
    pub router_id: String,
    pub interface: String,
    pub vip: Ipv4Addr,
    pub vip_prefix: u8,
    pub virtual_router_id: u8,
    pub priority: u8,
    pub advert_int_secs: u8,
    pub master: bool,
    /// This node's address and its peers' on `interface` (VRRP by unicast: providers drop
    /// multicast).
    pub unicast_src: Ipv4Addr,
    pub unicast_peers: Vec<Ipv4Addr>,
    /// The command whose failure takes this node out of the election.
    pub track_command: String,
}

/// The track script: HAProxy's `/healthz` answers 200 while it runs and reaches a gateway.
pub fn track_command(health_port: u16) -> String {
    format!("/usr/bin/curl -fsS -o /dev/null --max-time 1 http://127.0.0.1:{health_port}/healthz")
}

impl VrrpParams {
    /// The VRRP instance of edge node `name`, when it is one.
    pub fn for_node(f: &Federation, name: &str) -> Option<VrrpParams> {
        let e = &f.spec().edge;
        let node = f.node(name)?;
        let priority = *e.priorities.get(name)?;
        let top = e.priorities.values().copied().max().unwrap_or(priority);
        Some(VrrpParams {
            router_id: name.to_owned(),
            interface: e.interface.clone(),
            vip: e.vip,
            vip_prefix: e.vip_prefix,
            virtual_router_id: e.virtual_router_id,
            priority,
            advert_int_secs: e.advert_int_secs,
            master: priority == top,
            unicast_src: node.endpoint,
            unicast_peers: f
                .nodes_with(&e.cluster, NodeRole::Edge)
                .iter()
                .filter(|n| n.name != name)
                .map(|n| n.endpoint)
                .collect(),
            track_command: track_command(e.health_port),
        })
    }
}

/// `keepalived.conf` of one edge node.
pub fn keepalived_conf(p: &VrrpParams) -> String {
    let peers: String = p.unicast_peers.iter().map(|ip| format!("        {ip}\n")).collect();
    format!(
        "{hdr}global_defs {{
    router_id {id}
    # Track scripts run as root and must not be writable by anyone else.
    script_user root
    enable_script_security
}}

vrrp_script chk_haproxy {{
    script \"{track}\"
    interval 1
    timeout 2
    fall 2
    rise 2
}}

vrrp_instance vault_edge {{
    state {state}
    interface {iface}
    virtual_router_id {vrid}
    priority {prio}
    advert_int {advert}
    version 3
    unicast_src_ip {src}
    unicast_peer {{
{peers}    }}
    virtual_ipaddress {{
        {vip}/{prefix} dev {iface}
    }}
    track_script {{
        chk_haproxy
    }}
}}
",
        hdr = header(&[
            &format!(
                "Keepalived on edge node {}: VRRP for the S3 endpoint's VIP, which follows a healthy",
                p.router_id
            ),
            "HAProxy. No authentication block: VRRPv3 has none, and a password here would be a secret.",
        ]),
        id = p.router_id,
        track = p.track_command,
        state = if p.master { "MASTER" } else { "BACKUP" },
        iface = p.interface,
        vrid = p.virtual_router_id,
        prio = p.priority,
        advert = p.advert_int_secs,
        src = p.unicast_src,
        vip = p.vip,
        prefix = p.vip_prefix,
    )
}

/// HAProxy's image: the version the edge tests run (Debian's haproxy 2.6.12).
pub const HAPROXY_IMAGE: &str = "docker.io/library/haproxy:2.6.12";
/// Keepalived's image, built from deploy/images/edge-keepalived/ (Debian's keepalived 2.2.7 and curl).
pub const KEEPALIVED_IMAGE: &str = "ghcr.io/cyberun/edge-keepalived:2.2.7";

pub fn render(f: &Federation, out: &mut Files) {
    out.insert(format!("{DIR}/haproxy.cfg"), haproxy_cfg(&HaproxyParams::from_federation(f)));
    let e = &f.spec().edge;
    let mut conf_files = Vec::new();
    for n in f.nodes_with(&e.cluster, NodeRole::Edge) {
        if let Some(p) = VrrpParams::for_node(f, &n.name) {
            let file = format!("keepalived-{}.conf", n.name);
            out.insert(format!("{DIR}/{file}"), keepalived_conf(&p));
            conf_files.push(file);
        }
    }
    let files: String = conf_files.iter().map(|c| format!("      - {c}\n")).collect();
    out.insert(
        format!("{DIR}/kustomization.yaml"),
        format!(
            "{}apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - namespace.yaml
  - daemonset.yaml
# The configs become ConfigMaps whose names carry a hash of their content, so a changed config
# rolls the DaemonSet.
configMapGenerator:
  - name: vault-edge-haproxy
    namespace: vault-edge
    files:
      - haproxy.cfg
  - name: vault-edge-keepalived
    namespace: vault-edge
    files:
{files}",
            header(&["The edge: HAProxy and Keepalived on the edge nodes, with their rendered configs."])
        ),
    );
    out.insert(format!("{DIR}/daemonset.yaml"), daemonset(f));
}

fn daemonset(f: &Federation) -> String {
    let e = &f.spec().edge;
    let (cert_dir, cert_file) = e.tls_certificate.rsplit_once('/').unwrap_or(("/etc/haproxy/certs", "tls.pem"));
    let stats_dir = e.stats_socket.rsplit_once('/').map_or("/var/run/haproxy", |(d, _)| d);
    format!(
        "{hdr}apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: vault-edge
  namespace: vault-edge
  labels:
{labels4}spec:
  selector:
    matchLabels:
      app.kubernetes.io/name: vault-edge
  updateStrategy:
    type: RollingUpdate
    rollingUpdate:
      # One edge node at a time: the other keeps the VIP.
      maxUnavailable: 1
  template:
    metadata:
      labels:
{labels8}    spec:
      # The VIP and VRRP live on the node's own interface.
      hostNetwork: true
      dnsPolicy: ClusterFirstWithHostNet
      nodeSelector:
        vault.cyberun.cloud/edge: \"true\"
      tolerations:
        - key: vault.cyberun.cloud/edge
          operator: Exists
          effect: NoSchedule
      priorityClassName: system-node-critical
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: 30
      containers:
        - name: haproxy
          image: {haproxy}
          args: [haproxy, -W, -db, -f, /usr/local/etc/haproxy/haproxy.cfg]
          securityContext:
            runAsUser: 0
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities:
              drop: [ALL]
              # Port 443, and binding the VIP before this node holds it (bind ... transparent).
              add: [NET_BIND_SERVICE, NET_ADMIN]
          readinessProbe:
            httpGet:
              host: 127.0.0.1
              path: /healthz
              port: {health}
            periodSeconds: 2
          livenessProbe:
            httpGet:
              host: 127.0.0.1
              path: /healthz
              port: {health}
            periodSeconds: 10
            # /healthz also fails when no gateway is up: that is keepalived's business, not a
            # reason to restart HAProxy.
            failureThreshold: 30
          resources:
            requests:
              cpu: 500m
              memory: 256Mi
            limits:
              memory: 1Gi
          volumeMounts:
            - name: haproxy-config
              mountPath: /usr/local/etc/haproxy
              readOnly: true
            - name: tls
              mountPath: {cert_dir}
              readOnly: true
            - name: run
              mountPath: {stats_dir}
        - name: keepalived
          image: {keepalived}
          command:
            - /bin/sh
            - -c
            - exec keepalived --dont-fork --log-console --log-detail --vrrp -f \"/etc/keepalived/keepalived-$NODE_NAME.conf\"
          env:
            - name: NODE_NAME
              valueFrom:
                fieldRef:
                  fieldPath: spec.nodeName
          securityContext:
            runAsUser: 0
            allowPrivilegeEscalation: false
            capabilities:
              drop: [ALL]
              add: [NET_ADMIN, NET_BROADCAST, NET_RAW]
          resources:
            requests:
              cpu: 50m
              memory: 32Mi
            limits:
              memory: 128Mi
          volumeMounts:
            - name: keepalived-config
              mountPath: /etc/keepalived
              readOnly: true
      volumes:
        - name: haproxy-config
          configMap:
            name: vault-edge-haproxy
        - name: keepalived-config
          configMap:
            name: vault-edge-keepalived
        # The certificate of {domain} and *.{domain}, created at deploy time (cert-manager or
        # by hand): HAProxy reads the key from the file beside the certificate.
        - name: tls
          secret:
            secretName: vault-edge-tls
            items:
              - key: tls.crt
                path: {cert_file}
              - key: tls.key
                path: {cert_file}.key
        - name: run
          emptyDir: {{}}
",
        hdr = header(&[
            "HAProxy and Keepalived on every edge node (labelled vault.cyberun.cloud/edge=true), with",
            "the node's own network: keepalived picks its node's config by the node name.",
        ]),
        labels4 = super::labels("vault-edge", 4),
        labels8 = super::labels("vault-edge", 8),
        haproxy = HAPROXY_IMAGE,
        keepalived = KEEPALIVED_IMAGE,
        health = e.health_port,
        domain = f.spec().gateway.domain,
    )
}
