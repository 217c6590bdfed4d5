//! The gateway's errors: S3 conditions in S3's own names, plus storage failures.
//!
//! [`GwError::to_s3`] is the one place these become `s3s::S3Error`s.

use cyvault_store::StoreError;
use s3s::{S3Error, S3ErrorCode};

pub type Result<T> = std::result::Result<T, GwError>;

#[derive(Debug, thiserror::Error)]
pub enum GwError {
    #[error("the bucket {0:?} does not exist")]
    NoSuchBucket(String),
    #[error("the key {0:?} does not exist")]
    NoSuchKey(String),
    #[error("the multipart upload {0:?} does not exist (completed, aborted or never started)")]
    NoSuchUpload(String),
    #[error("the bucket name {0:?} belongs to another account")]
    BucketAlreadyExists(String),
    #[error("you already own the bucket {0:?}")]
    BucketAlreadyOwnedByYou(String),
    #[error("the bucket {0:?} is not empty")]
    BucketNotEmpty(String),
    #[error("invalid bucket name {0:?}: {1}")]
    InvalidBucketName(String, &'static str),
    #[error("access denied: {0}")]
    AccessDenied(String),
    #[error("the range is not satisfiable for an object of {0} bytes")]
    InvalidRange(u64),
    #[error("a precondition failed: {0}")]
    PreconditionFailed(&'static str),
    #[error("not modified")]
    NotModified,
    #[error("{0}")]
    InvalidPart(String),
    #[error("the parts must be listed in ascending part-number order")]
    InvalidPartOrder,
    #[error("part {0} is {1} bytes; every part but the last must be at least 5 MiB")]
    EntityTooSmall(i32, u64),
    #[error("{0}")]
    BadDigest(String),
    #[error("the Content-MD5 {0:?} is not a base64 MD5 digest")]
    InvalidDigest(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidTag(String),
    #[error("the key is {0} bytes long; the limit is 1024")]
    KeyTooLong(usize),
    #[error("the object is {0} bytes; a single upload is limited to {1} bytes")]
    EntityTooLarge(u64, u64),
    #[error("{0} is not implemented by this gateway")]
    NotImplemented(&'static str),
    #[error("the request body ended early or could not be read: {0}")]
    IncompleteBody(String),
    #[error("the signature of a chunk of the aws-chunked body does not match")]
    ChunkSignatureMismatch,
    #[error("invalid location constraint: {0}")]
    InvalidLocationConstraint(String),
    /// The placement engine found no pool for a new bucket (`code` is `VAULT-PL-…`).
    #[error("{code}: {message}")]
    PlacementRefused { code: &'static str, message: String },
    #[error("internal error: {0}")]
    Internal(String),
    #[error("stored record {what} is unreadable: {why}")]
    CorruptRecord { what: String, why: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl GwError {
    /// True when retrying the same request cannot help.
    pub fn is_permanent(&self) -> bool {
        match self {
            GwError::Store(e) => e.is_permanent(),
            GwError::IncompleteBody(_) => false,
            // Only a lack of headroom can clear by itself.
            GwError::PlacementRefused { code, .. } => *code != "VAULT-PL-003",
            _ => true,
        }
    }

    /// The S3 error code, status and message: the only mapping to `S3Error`.
    pub fn to_s3(&self) -> S3Error {
        use S3ErrorCode as C;
        let code = match self {
            GwError::NoSuchBucket(_) => C::NoSuchBucket,
            GwError::NoSuchKey(_) => C::NoSuchKey,
            GwError::NoSuchUpload(_) => C::NoSuchUpload,
            GwError::BucketAlreadyExists(_) => C::BucketAlreadyExists,
            GwError::BucketAlreadyOwnedByYou(_) => C::BucketAlreadyOwnedByYou,
            GwError::BucketNotEmpty(_) => C::BucketNotEmpty,
            GwError::InvalidBucketName(..) => C::InvalidBucketName,
            GwError::AccessDenied(_) => C::AccessDenied,
            GwError::InvalidRange(_) => C::InvalidRange,
            GwError::PreconditionFailed(_) => C::PreconditionFailed,
            GwError::NotModified => C::NotModified,
            GwError::InvalidPart(_) => C::InvalidPart,
            GwError::InvalidPartOrder => C::InvalidPartOrder,
            GwError::EntityTooSmall(..) => C::EntityTooSmall,
            GwError::BadDigest(_) => C::BadDigest,
            GwError::InvalidDigest(_) => C::InvalidDigest,
            GwError::InvalidArgument(_) => C::InvalidArgument,
            GwError::InvalidRequest(_) => C::InvalidRequest,
            GwError::InvalidTag(_) => C::InvalidTag,
            GwError::KeyTooLong(_) => C::KeyTooLongError,
            GwError::EntityTooLarge(..) => C::EntityTooLarge,
            GwError::NotImplemented(_) => C::NotImplemented,
            GwError::IncompleteBody(_) => C::IncompleteBody,
            GwError::ChunkSignatureMismatch => C::SignatureDoesNotMatch,
            GwError::InvalidLocationConstraint(_) | GwError::PlacementRefused { .. } => C::InvalidLocationConstraint,
            GwError::Internal(_) => C::InternalError,
            GwError::CorruptRecord { .. } => C::InternalError,
            GwError::Store(e) => match e {
                StoreError::NotFound(_) => C::NoSuchKey,
                StoreError::Timeout(_) | StoreError::Busy(_) | StoreError::Conflict(_) => C::SlowDown,
                StoreError::Unavailable(_) => C::ServiceUnavailable,
                StoreError::NoSpace(_) => C::ServiceUnavailable,
                StoreError::InvalidArgument(_) => C::InvalidArgument,
                _ => C::InternalError,
            },
        };
        let msg = match self {
            // Internal details stay in the log; the client gets a stable, short message with the
            // operator-facing code to grep for.
            GwError::Store(e) if !matches!(e, StoreError::InvalidArgument(_) | StoreError::NotFound(_)) => {
                format!("storage error {}: {}", e.code(), short(&e.to_string()))
            }
            other => other.to_string(),
        };
        S3Error::with_message(code, msg)
    }
}

fn short(s: &str) -> String {
    s.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(e: GwError, code: &str, status: u16) {
        let s3 = e.to_s3();
        assert_eq!(s3.code().as_str(), code);
        assert_eq!(s3.status_code().map(|s| s.as_u16()), Some(status));
    }

    #[test]
    fn codes_and_statuses() {
        check(GwError::NoSuchBucket("b".into()), "NoSuchBucket", 404);
        check(GwError::NoSuchKey("k".into()), "NoSuchKey", 404);
        check(GwError::BucketNotEmpty("b".into()), "BucketNotEmpty", 409);
        check(
            GwError::PlacementRefused { code: "VAULT-PL-001", message: "no s3-data pool within 2.0 ms".into() },
            "InvalidLocationConstraint",
            400,
        );
        check(GwError::BucketAlreadyExists("b".into()), "BucketAlreadyExists", 409);
        check(GwError::AccessDenied("x".into()), "AccessDenied", 403);
        check(GwError::InvalidRange(3), "InvalidRange", 416);
        check(GwError::PreconditionFailed("If-Match"), "PreconditionFailed", 412);
        check(GwError::NotModified, "NotModified", 304);
        check(GwError::EntityTooSmall(1, 5), "EntityTooSmall", 400);
        check(GwError::InvalidPartOrder, "InvalidPartOrder", 400);
        check(GwError::BadDigest("x".into()), "BadDigest", 400);
        check(GwError::NotImplemented("PutBucketPolicy"), "NotImplemented", 501);
        check(GwError::Store(StoreError::Unavailable("x".into())), "ServiceUnavailable", 503);
        check(GwError::Store(StoreError::Timeout("x".into())), "SlowDown", 503);
        check(GwError::Store(StoreError::corrupt("x", "y")), "InternalError", 500);
    }
}
