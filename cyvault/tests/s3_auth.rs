//! Authentication and authorization of the real gateway on the local backend, with curl and
//! hand-signed requests: anonymous, wrong-signature, unknown-key, skewed-clock and expired-URL
//! requests fail with the right S3 error XML (with a RequestId) and change nothing; users are
//! isolated from each other; a revoked key stops working; generated root credentials are printed
//! once, stored 0600, and work.

#[path = "common/clients.rs"]
mod clients;
mod common;

use std::os::unix::fs::PermissionsExt;

use clients::{Aws, Signer, bucket, raw_request, read, write};
use common::{Backend, Gateway};

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"))
}

/// A gateway with one bucket holding `obj.txt` = "hello auth"; returns (gateway, bucket, dir).
fn gateway_with_object() -> (Gateway, String, tempfile::TempDir) {
    let gw = Gateway::start(Backend::Local);
    let dir = tempdir();
    let aws = Aws::root(&gw, dir.path());
    let b = bucket("auth");
    let file = dir.path().join("obj.txt");
    write(&file, b"hello auth");
    aws.ok(&["s3", "mb", &format!("s3://{b}")]);
    aws.ok(&["s3", "cp", &file.to_string_lossy(), &format!("s3://{b}/obj.txt")]);
    (gw, b, dir)
}

#[test]
fn anonymous_requests_are_access_denied() {
    let (gw, b, dir) = gateway_with_object();
    let ep = &gw.endpoint;
    let body = dir.path().join("body");
    write(&body, b"anonymous bytes");
    for (method, path, upload) in [
        ("GET", String::new(), false),
        ("GET", format!("/{b}"), false),
        ("GET", format!("/{b}?list-type=2"), false),
        ("GET", format!("/{b}/obj.txt"), false),
        ("GET", format!("/{b}?location"), false),
        ("PUT", format!("/{b}/obj.txt"), true),
        ("PUT", format!("/{b}/new.txt"), true),
        ("DELETE", format!("/{b}/obj.txt"), false),
        ("DELETE", format!("/{b}"), false),
        ("PUT", format!("/{}", bucket("anon")), false),
    ] {
        let url = format!("{ep}{path}");
        let reply = raw_request(method, &url, None, upload.then_some(body.as_path()));
        eprintln!("anonymous {method} {url}: {} {}", reply.status, reply.body);
        reply.assert_error(403, "AccessDenied");
    }
    let aws = Aws::root(&gw, dir.path());
    let listed = aws.ok(&["s3", "ls", &format!("s3://{b}")]);
    assert_eq!(clients::ls_entries(&listed), vec![(10, "obj.txt".to_string())], "bucket after anonymous writes");
    let got = dir.path().join("got");
    aws.ok(&["s3", "cp", &format!("s3://{b}/obj.txt"), &got.to_string_lossy()]);
    assert_eq!(read(&got), b"hello auth");
}

#[test]
fn bad_signatures_unknown_keys_and_skewed_clocks_are_refused() {
    let (gw, b, dir) = gateway_with_object();
    let url = format!("{}/{b}/obj.txt", gw.endpoint);
    let (ak, sk) = (gw.access_key.as_str(), gw.secret_key.as_str());
    // The hand-made signer is right: the same request, correctly signed, succeeds.
    let ok = raw_request("GET", &url, Some((ak, sk, 0)), None);
    assert_eq!((ok.status, ok.body.as_str()), (200, "hello auth"), "correctly signed GET");
    let ok = raw_request("GET", &url, Some((ak, sk, -10 * 60)), None);
    assert_eq!(ok.status, 200, "a clock 10 minutes slow is within the 15 minutes allowed: {}", ok.body);

    let wrong_secret = format!("{sk}x");
    let cases: [(&str, Signer<'_>, u16, &str); 5] = [
        ("wrong secret", Some((ak, &wrong_secret, 0)), 403, "SignatureDoesNotMatch"),
        ("unknown key", Some(("AKIDNOSUCHKEY0000000", sk, 0)), 403, "InvalidAccessKeyId"),
        ("clock 20 min slow", Some((ak, sk, -20 * 60)), 403, "RequestTimeTooSkewed"),
        ("clock 20 min fast", Some((ak, sk, 20 * 60)), 403, "RequestTimeTooSkewed"),
        ("clock a day slow", Some((ak, sk, -86_400)), 403, "RequestTimeTooSkewed"),
    ];
    let body = dir.path().join("evil");
    write(&body, b"overwritten");
    for (what, sign, status, code) in cases {
        for (method, upload) in [("GET", None), ("PUT", Some(body.as_path())), ("DELETE", None)] {
            let reply = raw_request(method, &url, sign, upload);
            eprintln!("{what}: {method}: {} {}", reply.status, reply.body);
            reply.assert_error(status, code);
        }
        let list = raw_request("GET", &format!("{}/", gw.endpoint), sign, None);
        list.assert_error(status, code);
    }
    let ok = raw_request("GET", &url, Some((ak, sk, 0)), None);
    assert_eq!((ok.status, ok.body.as_str()), (200, "hello auth"), "object after the refused requests");
    // A correctly signed PUT with a body goes through.
    let put = raw_request("PUT", &format!("{}/{b}/signed.txt", gw.endpoint), Some((ak, sk, 0)), Some(&body));
    assert_eq!(put.status, 200, "signed PUT: {}", put.body);
    let got = raw_request("GET", &format!("{}/{b}/signed.txt", gw.endpoint), Some((ak, sk, 0)), None);
    assert_eq!((got.status, got.body.as_str()), (200, "overwritten"));
}

#[test]
fn expired_presigned_urls_are_access_denied() {
    let (gw, b, dir) = gateway_with_object();
    let aws = Aws::root(&gw, dir.path());
    let v4 = aws.with_config("s3 =\n    signature_version = s3v4");
    let target = format!("s3://{b}/obj.txt");
    let mut urls = Vec::new();
    for cli in [&aws, &v4] {
        let fresh = cli.ok(&["s3", "presign", &target, "--expires-in", "600"]).trim().to_string();
        assert_eq!(clients::curl(&fresh, &[]), (200, "hello auth".to_string()), "unexpired {fresh}");
        urls.push(cli.ok(&["s3", "presign", &target, "--expires-in", "1"]).trim().to_string());
    }
    std::thread::sleep(std::time::Duration::from_millis(2200));
    for url in &urls {
        let (status, body) = clients::curl(url, &[]);
        let reply = clients::Reply { status, body };
        eprintln!("expired {url}: {} {}", reply.status, reply.body);
        reply.assert_error(403, "AccessDenied");
    }
}

#[test]
fn users_only_see_and_touch_their_own_buckets() {
    let mut gw = Gateway::start(Backend::Local);
    let dir = tempdir();
    clients::isolation_flow(&mut gw, dir.path());
}

#[test]
fn a_revoked_key_is_invalid_access_key_id() {
    let dir = tempdir();
    clients::revoke_key_flow(Backend::Local, dir.path());
}

#[test]
fn generated_root_credentials_are_printed_once_stored_0600_and_work() {
    let mut gw = Gateway::start_generated_root(Backend::Local);
    let first_banner = gw.banner.join("\n");
    assert!(!gw.access_key.is_empty(), "no `root access key: …` line in {first_banner:?}");
    assert!(gw.secret_key.len() >= 16, "no usable `root secret key: …` line in {first_banner:?}");
    let creds = gw.data_dir.join("root-credentials");
    let meta = std::fs::metadata(&creds).unwrap_or_else(|e| panic!("{}: {e}", creds.display()));
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "mode of {}", creds.display());
    let stored = String::from_utf8_lossy(&read(&creds)).into_owned();
    assert!(stored.contains(&gw.access_key), "{} does not hold the access key", creds.display());

    let dir = tempdir();
    let b = bucket("genroot");
    Aws::root(&gw, dir.path()).ok(&["s3", "mb", &format!("s3://{b}")]);
    let mut wrong = clients::root_user(&gw);
    wrong.secret_key.push('x');
    Aws::new(&gw.endpoint, &wrong, dir.path()).fails(&["s3", "ls"], "SignatureDoesNotMatch", "ListBuckets");

    gw.stop();
    let (ak, sk) = (gw.access_key.clone(), gw.secret_key.clone());
    gw.restart_generated_root();
    let banner = gw.banner.join("\n");
    assert!(
        !banner.to_lowercase().contains("secret") && !banner.contains(&sk),
        "a restart on the same data dir printed a secret: {banner:?}"
    );
    assert_eq!((gw.access_key.as_str(), gw.secret_key.as_str()), (ak.as_str(), sk.as_str()));
    let listed = clients::ls_entries(&Aws::root(&gw, dir.path()).ok(&["s3", "ls"]));
    assert_eq!(listed.into_iter().map(|(_, n)| n).collect::<Vec<_>>(), vec![b], "root's buckets after a restart");
    // Generated access keys look like AWS's: 20 upper-case letters and digits.
    assert!(
        gw.access_key.len() == 20 && gw.access_key.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()),
        "generated access key {:?} is not 20 upper-case letters and digits: {first_banner:?}",
        gw.access_key
    );
}
