//! The driver's errors, and the one mapping to gRPC status codes (`From<CsiError> for Status`).
//! Every message starts with a stable `VAULT-CSI-…` code (docs/errors.md) so a `kubectl describe`
//! line can be looked up.

use cyvault_store::StoreError;
use tonic::{Code, Status};

pub type Result<T> = std::result::Result<T, CsiError>;

#[derive(Debug, thiserror::Error)]
pub enum CsiError {
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An id this driver never issued. Lookups answer NOT_FOUND, deletes succeed.
    #[error("malformed id {0}")]
    MalformedId(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("already exists: {0}")]
    AlreadyExists(String),
    #[error("out of range: {0}")]
    OutOfRange(String),
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// The placement engine refused (code is `VAULT-PL-…`), or the pool is full.
    #[error("{code}: {message}")]
    ResourceExhausted { code: String, message: String },
    /// Another operation on the same name or volume is in flight.
    #[error("aborted: {0}")]
    Aborted(String),
    #[error("not implemented: {0}")]
    Unimplemented(String),
    #[error("{context}: {source}")]
    Store {
        context: String,
        #[source]
        source: StoreError,
    },
    #[error("node: {0}")]
    Node(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl CsiError {
    pub fn store(context: impl Into<String>) -> impl FnOnce(StoreError) -> CsiError {
        let context = context.into();
        move |source| CsiError::Store { context, source }
    }

    /// The stable code operators look up.
    pub fn code(&self) -> &'static str {
        match self {
            CsiError::InvalidArgument(_) => "VAULT-CSI-001",
            CsiError::MalformedId(_) => "VAULT-CSI-002",
            CsiError::NotFound(_) => "VAULT-CSI-003",
            CsiError::AlreadyExists(_) => "VAULT-CSI-004",
            CsiError::OutOfRange(_) => "VAULT-CSI-005",
            CsiError::FailedPrecondition(_) => "VAULT-CSI-006",
            CsiError::ResourceExhausted { .. } => "VAULT-CSI-007",
            CsiError::Aborted(_) => "VAULT-CSI-008",
            CsiError::Unimplemented(_) => "VAULT-CSI-009",
            CsiError::Store { .. } => "VAULT-CSI-010",
            CsiError::Node(_) => "VAULT-CSI-011",
            CsiError::Internal(_) => "VAULT-CSI-012",
        }
    }

    pub fn grpc_code(&self) -> Code {
        match self {
            CsiError::InvalidArgument(_) => Code::InvalidArgument,
            CsiError::MalformedId(_) | CsiError::NotFound(_) => Code::NotFound,
            CsiError::AlreadyExists(_) => Code::AlreadyExists,
            CsiError::OutOfRange(_) => Code::OutOfRange,
            CsiError::FailedPrecondition(_) => Code::FailedPrecondition,
            CsiError::ResourceExhausted { .. } => Code::ResourceExhausted,
            CsiError::Aborted(_) => Code::Aborted,
            CsiError::Unimplemented(_) => Code::Unimplemented,
            CsiError::Store { source, .. } => match source {
                StoreError::NotFound(_) => Code::NotFound,
                StoreError::Timeout(_) | StoreError::Unavailable(_) => Code::Unavailable,
                StoreError::Busy(_) | StoreError::Conflict(_) => Code::Aborted,
                StoreError::NoSpace(_) => Code::ResourceExhausted,
                StoreError::InvalidArgument(_) => Code::InvalidArgument,
                StoreError::PermissionDenied(_) => Code::PermissionDenied,
                _ => Code::Internal,
            },
            CsiError::Node(_) | CsiError::Internal(_) => Code::Internal,
        }
    }
}

impl From<CsiError> for Status {
    fn from(e: CsiError) -> Status {
        let code = e.grpc_code();
        let message = match &e {
            // The placement code is already the message's first word.
            CsiError::ResourceExhausted { .. } => e.to_string(),
            CsiError::Store { source, .. } => format!("{} ({}): {e}", e.code(), source.code()),
            _ => format!("{}: {e}", e.code()),
        };
        Status::new(code, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(e: CsiError, code: Code, message: &str) {
        let s = Status::from(e);
        assert_eq!((s.code(), s.message()), (code, message));
    }

    #[test]
    fn statuses() {
        check(
            CsiError::InvalidArgument("volume capabilities are missing".into()),
            Code::InvalidArgument,
            "VAULT-CSI-001: invalid argument: volume capabilities are missing",
        );
        check(
            CsiError::ResourceExhausted { code: "VAULT-PL-001".into(), message: "no rbd pool within 2.0 ms".into() },
            Code::ResourceExhausted,
            "VAULT-PL-001: no rbd pool within 2.0 ms",
        );
        check(
            CsiError::Store { context: "create image".into(), source: StoreError::Unavailable("mon down".into()) },
            Code::Unavailable,
            "VAULT-CSI-010 (VAULT-ST-006): create image: unavailable: mon down",
        );
        check(CsiError::MalformedId("\"x\"".into()), Code::NotFound, "VAULT-CSI-002: malformed id \"x\"");
    }
}
