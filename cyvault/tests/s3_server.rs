//! The HTTP edge of the real binary: HTTPS with --tls-cert/--tls-key, virtual-hosted-style
//! addressing with --domain, /_cyvault/metrics, request ids, and a graceful SIGTERM that lets an
//! upload in flight finish.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Backend, Gateway, run, run_ok};

/// curl signing with SigV4 (curl ≥ 7.75), returning (status, body).
fn curl(gw: &Gateway, extra: &[&str], url: &str) -> (u16, String) {
    let user = format!("{}:{}", gw.access_key, gw.secret_key);
    let mut args =
        vec!["-s", "-o", "-", "-w", "\n%{http_code}", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", &user];
    // curl signs the payload hash it is given; S3 requires the header.
    args.extend_from_slice(&["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"]);
    args.extend_from_slice(extra);
    args.push(url);
    let out = run("curl", &args, &[], None);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn port(gw: &Gateway) -> String {
    gw.endpoint.rsplit(':').next().unwrap_or_default().to_string()
}

#[test]
fn https_with_a_certificate_from_the_flags() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let (c, k) = (cert.to_string_lossy().into_owned(), key.to_string_lossy().into_owned());
    run_ok(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            &k,
            "-out",
            &c,
        ],
        &[],
        None,
    );
    let gw = Gateway::start_with(Backend::Local, &["--tls-cert", &c, "--tls-key", &k]);
    assert!(gw.endpoint.starts_with("https://127.0.0.1:"), "{}", gw.endpoint);
    let (code, body) = curl(&gw, &["--cacert", &c, "-X", "PUT"], &format!("{}/tls-bucket", gw.endpoint));
    assert_eq!(code, 200, "{body}");
    let (code, body) = curl(&gw, &["--cacert", &c], &format!("{}/", gw.endpoint));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("<Name>tls-bucket</Name>"), "{body}");
    // Plain HTTP to the TLS port is not served.
    let (code, _) = curl(&gw, &[], &gw.endpoint.replace("https://", "http://"));
    assert_ne!(code, 200);
}

#[test]
fn virtual_hosted_style_with_a_domain() {
    let gw = Gateway::start_with(Backend::Local, &["--domain", "s3.vault.test"]);
    let p = port(&gw);
    let connect = format!("vhost-b.s3.vault.test:{p}:127.0.0.1:{p}");
    let base = format!("http://vhost-b.s3.vault.test:{p}");
    let (code, body) = curl(&gw, &["--connect-to", &connect, "-X", "PUT"], &format!("{base}/"));
    assert_eq!(code, 200, "create bucket by host: {body}");
    let (code, body) = curl(
        &gw,
        &["--connect-to", &connect, "-X", "PUT", "--data-binary", "hello vhost"],
        &format!("{base}/greeting.txt"),
    );
    assert_eq!(code, 200, "{body}");
    let (code, body) = curl(&gw, &["--connect-to", &connect], &format!("{base}/greeting.txt"));
    assert_eq!((code, body.as_str()), (200, "hello vhost"));
    // The same object by path style on the plain endpoint.
    let (code, body) = curl(&gw, &[], &format!("{}/vhost-b/greeting.txt", gw.endpoint));
    assert_eq!((code, body.as_str()), (200, "hello vhost"));
}

#[test]
fn metrics_and_request_ids() {
    let gw = Gateway::start_with(Backend::Local, &["--metrics-listen", "127.0.0.1:0"]);
    let (code, _) = curl(&gw, &["-X", "PUT"], &format!("{}/metrics-b", gw.endpoint));
    assert_eq!(code, 200);
    let (code, body) = curl(&gw, &[], &format!("{}/metrics-b/missing", gw.endpoint));
    assert_eq!(code, 404);
    assert!(body.contains("<Code>NoSuchKey</Code>") && body.contains("<RequestId>"), "{body}");
    let out = run_ok("curl", &["-s", "-D", "-", &format!("{}/_cyvault/metrics", gw.endpoint)], &[], None);
    assert!(out.contains("cyvault_s3_requests_total{operation=\"CreateBucket\",outcome=\"ok\"} 1"), "{out}");
    assert!(out.contains("cyvault_s3_requests_total{operation=\"GetObject\",outcome=\"NoSuchKey\"} 1"), "{out}");
    assert!(out.contains("cyvault_s3_store_op_duration_seconds_bucket"), "{out}");
    assert!(out.contains("cyvault_s3_request_duration_seconds_bucket"), "{out}");
    assert!(out.to_ascii_lowercase().contains("x-amz-request-id: "), "{out}");
    let health = run_ok("curl", &["-s", &format!("{}/_cyvault/health", gw.endpoint)], &[], None);
    assert_eq!(health, "ok\n");
    // The Prometheus convention: GET /metrics on its own address.
    let line =
        gw.banner.iter().find_map(|l| l.strip_prefix("metrics on ")).unwrap_or_else(|| panic!("{:?}", gw.banner));
    let prom = run_ok("curl", &["-sf", line.trim()], &[], None);
    assert!(prom.contains("cyvault_s3_requests_total{operation=\"CreateBucket\",outcome=\"ok\"} 1"), "{prom}");
}

#[test]
fn sigterm_lets_the_upload_in_flight_finish() {
    let mut gw = Gateway::start(Backend::Local);
    let (code, _) = curl(&gw, &["-X", "PUT"], &format!("{}/drain", gw.endpoint));
    assert_eq!(code, 200);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("payload");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&file, &data).unwrap_or_else(|e| panic!("{e}"));
    // ~3 s of upload at 1 MB/s, unsigned payload so curl can stream it.
    let user = format!("{}:{}", gw.access_key, gw.secret_key);
    let upload = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", &user])
        .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", "--limit-rate", "1M", "-T"])
        .arg(&file)
        .arg(format!("{}/drain/slow", gw.endpoint))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn curl: {e}"));
    std::thread::sleep(Duration::from_millis(800));
    let t0 = Instant::now();
    let status = gw.stop();
    let waited = t0.elapsed();
    let out = upload.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "the upload in flight must complete");
    assert!(status.success(), "graceful exit, got {status}");
    assert!(waited > Duration::from_millis(1000), "the gateway left before the upload finished ({waited:?})");
    // Nothing was lost: restart and read it back.
    gw.restart();
    let back = dir.path().join("back");
    let user = format!("{}:{}", gw.access_key, gw.secret_key);
    let b = back.to_string_lossy().into_owned();
    run_ok(
        "curl",
        &[
            "-sf",
            "--aws-sigv4",
            "aws:amz:us-east-1:s3",
            "--user",
            &user,
            "-H",
            "x-amz-content-sha256: UNSIGNED-PAYLOAD",
            "-o",
            &b,
            &format!("{}/drain/slow", gw.endpoint),
        ],
        &[],
        None,
    );
    assert!(std::fs::read(&back).unwrap_or_default() == data, "the object read back differs");
}

#[test]
fn settings_come_from_the_config_file_and_flags_win() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cfg = dir.path().join("cyvault.toml");
    let data = dir.path().join("from-config");
    std::fs::write(
        &cfg,
        format!(
            "[gateway]\nregion = \"eu-vault-1\"\nlisten = \"127.0.0.1:1\"\n\n[storage]\ndata_dir = \"{}\"\n",
            data.display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let c = cfg.to_string_lossy().into_owned();
    // --listen on the command line wins over the file's unusable port 1; the harness's
    // --data-dir wins too, so point the file's data_dir elsewhere and check it stays unused.
    let gw = Gateway::start_with(Backend::Local, &["--config", &c]);
    let (code, _) = curl(&gw, &["-X", "PUT"], &format!("{}/cfg-bucket", gw.endpoint));
    assert_eq!(code, 200);
    let out = run_ok("aws", &["s3api", "get-bucket-location", "--bucket", "cfg-bucket"], &gw.aws_env(), None);
    assert!(out.contains("\"LocationConstraint\": \"eu-vault-1\""), "region from the config file: {out}");
    assert!(!data.exists(), "the --data-dir flag must win over storage.data_dir");
    assert!(gw.data_dir.join("meta.redb").exists());

    // A config with an unknown key is refused with a message naming it.
    std::fs::write(&cfg, "[gateway]\nlisten_address = \"127.0.0.1:0\"\n").unwrap_or_else(|e| panic!("{e}"));
    let out = run(
        env!("CARGO_BIN_EXE_cyvault"),
        &["gateway", "--config", &c, "--data-dir", &data.to_string_lossy()],
        &[],
        None,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listen_address"), "{err}");
}
