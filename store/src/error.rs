//! The one error type of the storage API, and the one place where a librados / librbd errno
//! becomes a variant.

use std::fmt;

/// What went wrong in a storage call. Callers match on the variant to decide what to do; the
/// operator-facing code of each variant is stable (see `docs/errors.md`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object, xattr, pool or image does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// An exclusive create found the object (or image, snapshot) already there.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// A guard did not hold: the object changed since the caller read its version, or another
    /// writer won the race. Re-read and decide again; repeating the same request cannot succeed.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The request is malformed (bad name, empty compound write, remove mixed with other steps).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The backend did not answer in time. Whether the operation took effect is unknown.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The backend is unreachable or shutting down; the operation did not take effect.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The object or image is busy (locked, watched, has children).
    #[error("busy: {0}")]
    Busy(String),
    /// The pool, disk or quota is full.
    #[error("no space left: {0}")]
    NoSpace(String),
    /// The credentials do not allow the operation.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The backend does not support this operation.
    #[error("not supported: {0}")]
    Unsupported(String),
    /// Persisted data failed a check (truncated record, unknown enum tag).
    #[error("corrupt data in {what}: {detail}")]
    Corrupt { what: String, detail: String },
    /// A persisted record has a format version this build does not understand.
    #[error("{what} has format version {found}, this build reads up to {supported}; upgrade cyvault")]
    UnsupportedVersion { what: String, found: u32, supported: u32 },
    /// A local I/O error while doing `context`.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A librados / librbd call failed with an errno that has no variant of its own.
    #[error("{context}: {}", Errno(*errno))]
    Os { context: String, errno: i32 },
    /// A fault-injection plan "crashed" the store at `step`; the handle is dead, reopen it.
    #[error("injected crash at {step}")]
    Crashed { step: String },
    /// librados or librbd is not installed (they are loaded when the first Ceph connection or
    /// RBD handle needs them, so everything without Ceph runs without them).
    #[error("{library} could not be loaded ({reason}); install it: apt-get install {package}")]
    LibraryMissing { library: String, package: String, reason: String },
}

/// Short alias used across the crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// True when repeating the very same request cannot succeed (the caller must change the
    /// request, re-read, or give up); false when a retry with backoff may help.
    pub fn is_permanent(&self) -> bool {
        match self {
            StoreError::Timeout(_) | StoreError::Unavailable(_) | StoreError::Busy(_) | StoreError::Io { .. } => false,
            StoreError::Os { errno, .. } => !is_transient_errno(*errno),
            StoreError::NotFound(_)
            | StoreError::AlreadyExists(_)
            | StoreError::Conflict(_)
            | StoreError::InvalidArgument(_)
            | StoreError::NoSpace(_)
            | StoreError::PermissionDenied(_)
            | StoreError::Unsupported(_)
            | StoreError::Corrupt { .. }
            | StoreError::UnsupportedVersion { .. }
            | StoreError::Crashed { .. }
            | StoreError::LibraryMissing { .. } => true,
        }
    }

    /// The stable operator-facing code of this error (documented in `docs/errors.md`).
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::NotFound(_) => "VAULT-ST-001",
            StoreError::AlreadyExists(_) => "VAULT-ST-002",
            StoreError::Conflict(_) => "VAULT-ST-003",
            StoreError::InvalidArgument(_) => "VAULT-ST-004",
            StoreError::Timeout(_) => "VAULT-ST-005",
            StoreError::Unavailable(_) => "VAULT-ST-006",
            StoreError::Busy(_) => "VAULT-ST-007",
            StoreError::NoSpace(_) => "VAULT-ST-008",
            StoreError::PermissionDenied(_) => "VAULT-ST-009",
            StoreError::Unsupported(_) => "VAULT-ST-010",
            StoreError::Corrupt { .. } => "VAULT-ST-011",
            StoreError::UnsupportedVersion { .. } => "VAULT-ST-012",
            StoreError::Io { .. } => "VAULT-ST-013",
            StoreError::Os { .. } => "VAULT-ST-014",
            StoreError::Crashed { .. } => "VAULT-ST-015",
            StoreError::LibraryMissing { .. } => "VAULT-ST-016",
        }
    }

    /// Maps a negative (or positive) errno returned by librados / librbd to a variant. This is
    /// the only such mapping in the crate; `context` says what was being attempted.
    pub fn from_errno(errno: i32, context: impl Into<String>) -> StoreError {
        let context = context.into();
        let errno = errno.abs();
        match errno {
            libc::ENOENT | libc::ENODATA => StoreError::NotFound(context),
            libc::EEXIST => StoreError::AlreadyExists(context),
            libc::ECANCELED => StoreError::Conflict(context),
            libc::EINVAL | libc::ENAMETOOLONG | libc::E2BIG | libc::EFBIG => {
                StoreError::InvalidArgument(format!("{context}: {}", Errno(errno)))
            }
            libc::ETIMEDOUT => StoreError::Timeout(context),
            libc::ENOTCONN | libc::ESHUTDOWN | libc::ECONNREFUSED | libc::EHOSTUNREACH => {
                StoreError::Unavailable(format!("{context}: {}", Errno(errno)))
            }
            libc::EBUSY | libc::ENOTEMPTY => StoreError::Busy(format!("{context}: {}", Errno(errno))),
            libc::ENOSPC | libc::EDQUOT => StoreError::NoSpace(context),
            libc::EACCES | libc::EPERM => StoreError::PermissionDenied(context),
            libc::EOPNOTSUPP | libc::ENOSYS => StoreError::Unsupported(context),
            _ => StoreError::Os { context, errno },
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> StoreError {
        StoreError::Io { context: context.into(), source }
    }

    /// A `Corrupt` error about `what`.
    pub fn corrupt(what: impl Into<String>, detail: impl Into<String>) -> StoreError {
        StoreError::Corrupt { what: what.into(), detail: detail.into() }
    }
}

fn is_transient_errno(errno: i32) -> bool {
    matches!(errno, libc::EAGAIN | libc::EINTR | libc::EIO | libc::ENOMEM | libc::ECONNRESET)
}

/// Displays an errno as its name and description, e.g. `errno 5 (Input/output error)`.
struct Errno(i32);

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = std::io::Error::from_raw_os_error(self.0).to_string();
        let text = text.split(" (os error").next().unwrap_or(&text);
        write!(f, "errno {} ({text})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(errno: i32, code: &str, permanent: bool) {
        let e = StoreError::from_errno(-errno, "read object x");
        assert_eq!(e.code(), code, "{e}");
        assert_eq!(e.is_permanent(), permanent, "{e}");
    }

    #[test]
    fn errno_mapping() {
        check(libc::ENOENT, "VAULT-ST-001", true);
        check(libc::ENODATA, "VAULT-ST-001", true);
        check(libc::EEXIST, "VAULT-ST-002", true);
        check(libc::ECANCELED, "VAULT-ST-003", true);
        check(libc::EINVAL, "VAULT-ST-004", true);
        check(libc::ETIMEDOUT, "VAULT-ST-005", false);
        check(libc::ESHUTDOWN, "VAULT-ST-006", false);
        check(libc::EBUSY, "VAULT-ST-007", false);
        check(libc::ENOSPC, "VAULT-ST-008", true);
        check(libc::EACCES, "VAULT-ST-009", true);
        check(libc::EIO, "VAULT-ST-014", false);
        check(libc::EXDEV, "VAULT-ST-014", true);
    }

    #[test]
    fn messages_name_the_errno() {
        let e = StoreError::from_errno(-libc::EIO, "write object a");
        assert_eq!(e.to_string(), "write object a: errno 5 (Input/output error)");
    }
}
