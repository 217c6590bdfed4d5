//! boto3 (default checksum behaviour) against the real gateway on the local backend: every S3
//! operation the gateway builds, its error codes, auth failures and isolation between two users,
//! through `tests/clients/boto3_suite.py`; the test fails unless every case ran and passed.

#[path = "common/clients.rs"]
mod clients;
mod common;

use clients::{BOTO3_CASES, create_user, parse_summary, run_boto3_suite};
use common::{Backend, Gateway};

#[test]
fn boto3_suite_passes_on_the_local_backend() {
    let mut gw = Gateway::start(Backend::Local);
    let user2 = create_user(&mut gw, "user2");
    let run = run_boto3_suite(&gw, &user2);
    assert!(run.passed >= BOTO3_CASES && run.failed == 0, "{}", run.output);
}

/// The summary parser the suite check relies on: a run of 0 cases, or one without a summary,
/// can never pass.
#[test]
fn suite_summary_is_parsed_strictly() {
    assert_eq!(parse_summary("ok a\nok b\n2 passed, 0 failed, 0 skipped in 1.0s\n"), Some((2, 0, 0)));
    assert_eq!(parse_summary("FAIL a: x\n0 passed, 1 failed, 3 skipped in 0.1s"), Some((0, 1, 3)));
    assert_eq!(parse_summary("Traceback (most recent call last):\n"), None);
    assert_eq!(parse_summary(""), None);
}
