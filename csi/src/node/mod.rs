//! Node-side primitives of the CSI node plugin: attaching an RBD image to this node as a block
//! device, putting a filesystem on it, mounting it where the kubelet asks, and the reverse.
//! Plain functions and types, no gRPC.
//!
//! - [`mount`]: `/proc/self/mountinfo`, `mount`/`umount`, bind mounts (read-only done right),
//!   `mkfs` only on blank devices, online growth, `statvfs`, device sizes.
//! - [`loopdev`]: loop devices over files (`losetup`).
//! - [`fuse`]: one [`fuse::BlockSource`] (a local file, an RBD image) served as one regular file
//!   through FUSE, so a loop device can sit on it: block access without kernel RBD.
//! - [`attach`]: the three ways to attach an image ([`attach::Transport`]): krbd, rbd-nbd, and
//!   FUSE + loop.
//!
//! Everything that runs a tool is async (`tokio::process`) and reports failures as
//! [`NodeError::CommandFailed`] with the program, its arguments, its exit status and its
//! stderr. Every path a caller passes is validated first ([`check_path`]): absolute, UTF-8, no
//! NUL, no `..`. Nothing here panics.
//!
//! Runtime tools (Debian packages): `mount`, `umount`, `losetup`, `blkid`, `blockdev` (mount,
//! util-linux), `mkfs.ext4`, `resize2fs` (e2fsprogs), `mkfs.xfs`, `xfs_growfs` (xfsprogs); `rbd`
//! (ceph-common) for krbd and `rbd-nbd` for nbd. FUSE needs `/dev/fuse` and root, no package.

pub mod attach;
mod cmd;
pub mod fuse;
pub mod loopdev;
pub mod mount;

use std::path::{Component, Path, PathBuf};
use std::process::ExitStatus;

pub use cmd::CommandLine;

/// Result of the node primitives.
pub type Result<T, E = NodeError> = std::result::Result<T, E>;

/// What failed on the node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A tool ran and exited unsuccessfully (or was killed by a signal).
    #[error("`{program} {}` failed ({status}): {stderr}", args.join(" "))]
    CommandFailed {
        program: String,
        args: Vec<String>,
        status: ExitStatus,
        /// Its standard error (trimmed, at most [`cmd::MAX_STDERR`] bytes), or its standard
        /// output when it wrote nothing to standard error.
        stderr: String,
    },
    /// A tool could not be started at all (not installed, not executable).
    #[error("cannot run `{program}`: {source}")]
    CommandUnavailable {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// A path, device, mount or image that should exist does not.
    #[error("not found: {0}")]
    NotFound(String),
    /// The thing is already in use: a target already mounted, a device still open.
    #[error("already in use: {0}")]
    Busy(String),
    /// A caller's argument is unusable (relative path, bad name, unknown filesystem type).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The device already holds a filesystem (or another signature) other than the one asked
    /// for: it is never reformatted.
    #[error("{device} already holds {found}, not {wanted}: refusing to format it")]
    FilesystemMismatch { device: PathBuf, found: String, wanted: String },
    /// A system call or file operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A block source backed by the store (an RBD image) failed.
    #[error("{context}: {source}")]
    Store {
        context: String,
        #[source]
        source: cyvault_store::StoreError,
    },
}

impl NodeError {
    /// An `Io` error with its context.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> NodeError {
        let context = context.into();
        move |source| NodeError::Io { context, source }
    }

    /// The exit code of a failed command (`None` for other errors and for signals).
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            NodeError::CommandFailed { status, .. } => status.code(),
            _ => None,
        }
    }

    /// The closest errno, for answering the kernel (FUSE) and for callers that need one.
    pub fn errno(&self) -> i32 {
        use cyvault_store::StoreError as S;
        match self {
            NodeError::NotFound(_) => libc::ENOENT,
            NodeError::Busy(_) => libc::EBUSY,
            NodeError::InvalidArgument(_) | NodeError::FilesystemMismatch { .. } => libc::EINVAL,
            NodeError::Io { source, .. } | NodeError::CommandUnavailable { source, .. } => {
                source.raw_os_error().unwrap_or(libc::EIO)
            }
            NodeError::Store { source, .. } => match source {
                S::NotFound(_) => libc::ENOENT,
                S::InvalidArgument(_) => libc::EINVAL,
                S::NoSpace(_) => libc::ENOSPC,
                S::PermissionDenied(_) => libc::EACCES,
                S::Busy(_) => libc::EBUSY,
                S::Timeout(_) => libc::ETIMEDOUT,
                S::Unsupported(_) => libc::EOPNOTSUPP,
                S::Os { errno, .. } if *errno > 0 => *errno,
                S::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
                _ => libc::EIO,
            },
            NodeError::CommandFailed { .. } => libc::EIO,
        }
    }
}

/// Validates a caller's path: absolute, valid UTF-8 (it is passed to tools and compared with
/// `/proc/self/mountinfo`), no NUL byte, no `..` component. Returns it normalized (no `.`
/// components, no repeated or trailing `/`).
pub fn check_path(what: &str, path: &Path) -> Result<PathBuf> {
    let Some(s) = path.to_str() else {
        return Err(NodeError::InvalidArgument(format!("{what} {} is not valid UTF-8", path.display())));
    };
    if s.contains('\0') {
        return Err(NodeError::InvalidArgument(format!("{what} {s:?} contains a NUL byte")));
    }
    if !path.is_absolute() {
        return Err(NodeError::InvalidArgument(format!("{what} {s:?} is not an absolute path")));
    }
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => out.push(part),
            Component::ParentDir => {
                return Err(NodeError::InvalidArgument(format!("{what} {s:?} contains `..`")));
            }
            Component::Prefix(_) => {
                return Err(NodeError::InvalidArgument(format!("{what} {s:?} is not a Unix path")));
            }
        }
    }
    Ok(out)
}

/// The validated path as a `&str` (it was checked to be UTF-8).
fn path_str(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_validated_and_normalized() {
        let ok = |p: &str| check_path("p", Path::new(p)).map(|p| p.to_string_lossy().into_owned());
        assert_eq!(ok("/a/b/").ok().as_deref(), Some("/a/b"));
        assert_eq!(ok("//a/./b").ok().as_deref(), Some("/a/b"));
        assert_eq!(ok("/").ok().as_deref(), Some("/"));
        assert!(matches!(ok("a/b"), Err(NodeError::InvalidArgument(_))));
        assert!(matches!(ok(""), Err(NodeError::InvalidArgument(_))));
        assert!(matches!(ok("/a/../b"), Err(NodeError::InvalidArgument(_))));
        assert!(matches!(ok("/a\0b"), Err(NodeError::InvalidArgument(_))));
    }

    #[test]
    fn errno_mapping() {
        assert_eq!(NodeError::NotFound("x".into()).errno(), 2);
        assert_eq!(NodeError::InvalidArgument("x".into()).errno(), 22);
        let io = NodeError::Io { context: "c".into(), source: std::io::Error::from_raw_os_error(28) };
        assert_eq!(io.errno(), 28);
        let st = NodeError::Store { context: "c".into(), source: cyvault_store::StoreError::NoSpace("full".into()) };
        assert_eq!(st.errno(), 28);
    }
}
