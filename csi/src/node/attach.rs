//! Attaching an RBD image to this node as a block device, three ways ([`Transport`]):
//!
//! - **krbd**: the kernel's RBD client (`rbd device map`). The fastest; needs the `rbd` kernel
//!   module.
//! - **rbd-nbd**: librbd in a user-space daemon exporting `/dev/nbdX` (`rbd-nbd map`). Needs the
//!   `nbd` module; the daemon must outlive the plugin's restarts or I/O fails.
//! - **fuse**: librbd in this process, the image served as one file through FUSE
//!   ([`super::fuse`]) and a loop device on that file. Needs only FUSE and loop, which every
//!   kernel has; the volume's I/O stops if this process dies.
//!
//! The command lines are built by pure functions (`*_command`) so they can be checked without
//! the kernel modules.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use super::cmd::CommandLine;
use super::fuse::{BlockSource, FuseHandle, ServeOptions, serve_file_with};
use super::loopdev::{self, LoopOptions};
use super::{NodeError, Result, check_path, path_str};

/// How an image is attached, as a StorageClass parameter spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// `krbd`
    Krbd,
    /// `rbd-nbd`
    Nbd,
    /// `fuse`
    Fuse,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Krbd => "krbd",
            Transport::Nbd => "rbd-nbd",
            Transport::Fuse => "fuse",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Transport {
    type Err = NodeError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "krbd" => Ok(Transport::Krbd),
            "rbd-nbd" => Ok(Transport::Nbd),
            "fuse" => Ok(Transport::Fuse),
            other => {
                Err(NodeError::InvalidArgument(format!("unknown transport {other:?} (want krbd, rbd-nbd or fuse)")))
            }
        }
    }
}

/// Which image to map, and as whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RbdMapSpec {
    pub pool: String,
    /// RADOS namespace inside the pool (`pool/namespace/image`), if any.
    pub namespace: Option<String>,
    pub image: String,
    /// The `ceph.conf` naming the monitors.
    pub ceph_conf: PathBuf,
    /// The cephx user without `client.` (`--id`).
    pub id: String,
    /// A keyring file for that user, when `ceph.conf` does not name one.
    pub keyring: Option<PathBuf>,
    pub read_only: bool,
}

impl RbdMapSpec {
    pub fn new(
        pool: impl Into<String>,
        image: impl Into<String>,
        ceph_conf: impl Into<PathBuf>,
        id: impl Into<String>,
    ) -> Self {
        RbdMapSpec {
            pool: pool.into(),
            namespace: None,
            image: image.into(),
            ceph_conf: ceph_conf.into(),
            id: id.into(),
            keyring: None,
            read_only: false,
        }
    }

    /// `pool/image` or `pool/namespace/image`, every part checked.
    pub fn image_spec(&self) -> Result<String> {
        check_name("pool", &self.pool)?;
        check_name("image", &self.image)?;
        match &self.namespace {
            Some(ns) => {
                check_name("namespace", ns)?;
                Ok(format!("{}/{ns}/{}", self.pool, self.image))
            }
            None => Ok(format!("{}/{}", self.pool, self.image)),
        }
    }

    /// `--id ID -c CONF [--keyring K]`: the options every Ceph tool takes.
    fn auth_args(&self, mut cmd: CommandLine) -> Result<CommandLine> {
        check_name("id", &self.id)?;
        let conf = check_path("ceph.conf", &self.ceph_conf)?;
        cmd = cmd.arg("--id").arg(&self.id).arg("-c").arg(path_str(&conf));
        if let Some(k) = &self.keyring {
            cmd = cmd.arg("--keyring").arg(path_str(&check_path("keyring", k)?));
        }
        Ok(cmd)
    }
}

/// A pool, namespace, image or user name as the Ceph tools take it: non-empty, at most 255
/// bytes, no `/`, `@`, whitespace, control character, and not starting with `-`.
fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('-')
        && !name.chars().any(|c| c == '/' || c == '@' || c.is_whitespace() || c.is_control());
    if ok { Ok(()) } else { Err(NodeError::InvalidArgument(format!("bad {what} name {name:?}"))) }
}

/// `rbd --id ID -c CONF [--keyring K] device map [--read-only] POOL[/NS]/IMAGE`.
pub fn krbd_map_command(spec: &RbdMapSpec) -> Result<CommandLine> {
    let image = spec.image_spec()?;
    let mut cmd = spec.auth_args(CommandLine::new("rbd"))?.arg("device").arg("map");
    if spec.read_only {
        cmd = cmd.arg("--read-only");
    }
    Ok(cmd.arg(image))
}

/// `rbd device unmap DEVICE`.
pub fn krbd_unmap_command(device: &Path) -> Result<CommandLine> {
    let device = check_device("rbd", device)?;
    Ok(CommandLine::new("rbd").arg("device").arg("unmap").arg(device))
}

/// `rbd-nbd --id ID -c CONF [--keyring K] map [--read-only] POOL[/NS]/IMAGE`.
pub fn nbd_map_command(spec: &RbdMapSpec) -> Result<CommandLine> {
    let image = spec.image_spec()?;
    let mut cmd = spec.auth_args(CommandLine::new("rbd-nbd"))?.arg("map");
    if spec.read_only {
        cmd = cmd.arg("--read-only");
    }
    Ok(cmd.arg(image))
}

/// `rbd-nbd unmap DEVICE`.
pub fn nbd_unmap_command(device: &Path) -> Result<CommandLine> {
    let device = check_device("nbd", device)?;
    Ok(CommandLine::new("rbd-nbd").arg("unmap").arg(device))
}

/// `/dev/<prefix>N`, nothing else.
fn check_device(prefix: &str, device: &Path) -> Result<String> {
    let d = path_str(&check_path("device", device)?);
    let ok = d
        .strip_prefix("/dev/")
        .and_then(|n| n.strip_prefix(prefix))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if ok { Ok(d) } else { Err(NodeError::InvalidArgument(format!("{d} is not a /dev/{prefix}N device"))) }
}

/// The device a map command printed (its last non-empty line).
fn mapped_device(cmd: &CommandLine, stdout: &str, prefix: &str) -> Result<PathBuf> {
    let dev = stdout.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("");
    check_device(prefix, Path::new(dev)).map(PathBuf::from).map_err(|_| NodeError::Io {
        context: format!("`{cmd}`"),
        source: std::io::Error::other(format!("unexpected output {stdout:?}")),
    })
}

/// Maps the image with the kernel RBD client; returns `/dev/rbdN`.
pub async fn attach_krbd(spec: &RbdMapSpec) -> Result<PathBuf> {
    let cmd = krbd_map_command(spec)?;
    let out = cmd.run().await?;
    mapped_device(&cmd, &out, "rbd")
}

/// Unmaps a krbd device. Idempotent: a device that does not exist is fine.
pub async fn detach_krbd(device: &Path) -> Result<()> {
    let cmd = krbd_unmap_command(device)?;
    unmap(cmd, device).await
}

/// Maps the image with rbd-nbd; returns `/dev/nbdN`.
pub async fn attach_nbd(spec: &RbdMapSpec) -> Result<PathBuf> {
    let cmd = nbd_map_command(spec)?;
    let out = cmd.run().await?;
    mapped_device(&cmd, &out, "nbd")
}

/// Unmaps an rbd-nbd device. Idempotent: a device that does not exist is fine.
pub async fn detach_nbd(device: &Path) -> Result<()> {
    let cmd = nbd_unmap_command(device)?;
    unmap(cmd, device).await
}

async fn unmap(cmd: CommandLine, device: &Path) -> Result<()> {
    if !device_exists(device).await? {
        return Ok(());
    }
    let out = cmd.output().await?;
    if out.status.success() || !device_exists(device).await? {
        return Ok(());
    }
    let err = cmd.failed(&out);
    if let NodeError::CommandFailed { stderr, .. } = &err {
        if stderr.contains("busy") {
            return Err(NodeError::Busy(format!("{}: {stderr}", device.display())));
        }
        // rbd-nbd: "rbd-nbd: /dev/nbd0 is not mapped"; rbd: "... not mapped".
        if stderr.contains("not mapped") {
            return Ok(());
        }
    }
    Err(err)
}

async fn device_exists(device: &Path) -> Result<bool> {
    match tokio::fs::metadata(device).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(NodeError::Io { context: format!("stat {}", device.display()), source: e }),
    }
}

/// An image attached through FUSE + loop: the loop device, and the FUSE server under it.
#[derive(Debug)]
pub struct FuseAttachment {
    device: PathBuf,
    fuse: FuseHandle,
}

impl FuseAttachment {
    /// The loop device (`/dev/loopN`) to format and mount.
    pub fn device(&self) -> &Path {
        &self.device
    }

    /// The FUSE file the loop device reads and writes.
    pub fn file(&self) -> &Path {
        self.fuse.file()
    }

    pub fn fuse(&self) -> &FuseHandle {
        &self.fuse
    }

    /// After the source grew: makes the FUSE file and then the loop device show the new size,
    /// which it returns (grow the filesystem next).
    pub async fn refresh_size(&self) -> Result<u64> {
        let size = self.fuse.refresh_size().await?;
        loopdev::refresh_size(&self.device).await?;
        Ok(size)
    }

    /// Detaches the loop device, then unmounts FUSE. See [`detach_fuse`].
    pub async fn detach(self) -> Result<()> {
        detach_fuse(self).await
    }
}

/// Serves `source` as `work_dir/name` through FUSE (creating `work_dir` if needed) and puts a
/// loop device (direct I/O) on it. On failure nothing is left mounted or attached.
pub async fn attach_fuse(
    source: Arc<dyn BlockSource>,
    work_dir: &Path,
    name: &str,
    read_only: bool,
) -> Result<FuseAttachment> {
    let work_dir = check_path("FUSE work directory", work_dir)?;
    tokio::fs::create_dir_all(&work_dir).await.map_err(NodeError::io(format!("create {}", work_dir.display())))?;
    let mut fuse = serve_file_with(source, &work_dir, name, ServeOptions { read_only }).await?;
    match loopdev::attach(fuse.file(), LoopOptions { read_only, direct_io: true }).await {
        Ok(device) => Ok(FuseAttachment { device, fuse }),
        Err(e) => {
            if let Err(undo) = fuse.unmount().await {
                tracing::warn!(dir = %work_dir.display(), error = %undo, "could not unmount FUSE after a failed loop attach");
            }
            Err(e)
        }
    }
}

/// Detaches the loop device (waiting until the kernel let go of the file), then unmounts
/// FUSE and waits for its threads. Unmount (and so flush) the filesystem on the device first:
/// a device still mounted is [`NodeError::Busy`] and stays attached and served.
pub async fn detach_fuse(mut attachment: FuseAttachment) -> Result<()> {
    loopdev::detach(&attachment.device).await?;
    attachment.fuse.unmount().await
}

/// Clears what a FUSE attachment left behind when its handle was lost (dropped, or the process
/// serving it died): detaches every loop device on `work_dir/name` (once the server died the
/// kernel shows that file as deleted), then unmounts `work_dir`
/// (a dead FUSE mount answers ENOTCONN to everything but unmount). Idempotent. Unmount the
/// filesystems on those loop devices first, or this is [`NodeError::Busy`].
pub async fn detach_stale_fuse(work_dir: &Path, name: &str) -> Result<()> {
    let work_dir = check_path("FUSE work directory", work_dir)?;
    let file = work_dir.join(name);
    check_path("FUSE file", &file)?;
    for dev in loopdev::find_stale_by_backing_file(&file).await? {
        if let Some(m) = super::mount::find_by_source(&dev).await?.first() {
            return Err(NodeError::Busy(format!("{} is still mounted on {}", dev.display(), m.mount_point.display())));
        }
        loopdev::detach(&dev).await?;
    }
    super::mount::unmount(&work_dir).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RbdMapSpec {
        RbdMapSpec::new("rbd", "pvc-1234", "/etc/ceph/ceph.conf", "csi")
    }

    #[test]
    fn transports_parse_from_storage_class_strings() {
        for t in [Transport::Krbd, Transport::Nbd, Transport::Fuse] {
            assert_eq!(t.as_str().parse::<Transport>().ok(), Some(t));
            assert_eq!(t.to_string(), t.as_str());
        }
        assert!("nbd".parse::<Transport>().is_err());
        assert!("".parse::<Transport>().is_err());
    }

    #[test]
    fn krbd_command_lines() {
        let s = |c: Result<CommandLine>| c.map(|c| c.to_string()).unwrap_or_else(|e| e.to_string());
        assert_eq!(s(krbd_map_command(&spec())), "rbd --id csi -c /etc/ceph/ceph.conf device map rbd/pvc-1234");
        let mut ro = spec();
        ro.read_only = true;
        ro.namespace = Some("tenant-a".into());
        ro.keyring = Some("/etc/ceph/keyring".into());
        assert_eq!(
            s(krbd_map_command(&ro)),
            "rbd --id csi -c /etc/ceph/ceph.conf --keyring /etc/ceph/keyring device map --read-only rbd/tenant-a/pvc-1234"
        );
        assert_eq!(s(krbd_unmap_command(Path::new("/dev/rbd3"))), "rbd device unmap /dev/rbd3");
        assert!(krbd_unmap_command(Path::new("/dev/sda")).is_err());
        assert!(krbd_unmap_command(Path::new("/dev/rbd")).is_err());
    }

    #[test]
    fn nbd_command_lines() {
        let s = |c: Result<CommandLine>| c.map(|c| c.to_string()).unwrap_or_else(|e| e.to_string());
        assert_eq!(s(nbd_map_command(&spec())), "rbd-nbd --id csi -c /etc/ceph/ceph.conf map rbd/pvc-1234");
        let mut ro = spec();
        ro.read_only = true;
        assert_eq!(s(nbd_map_command(&ro)), "rbd-nbd --id csi -c /etc/ceph/ceph.conf map --read-only rbd/pvc-1234");
        assert_eq!(s(nbd_unmap_command(Path::new("/dev/nbd0"))), "rbd-nbd unmap /dev/nbd0");
        assert!(nbd_unmap_command(Path::new("/dev/rbd0")).is_err());
    }

    #[test]
    fn bad_names_are_refused() {
        for (pool, image, id, conf) in [
            ("", "i", "csi", "/c"),
            ("rbd", "a/b", "csi", "/c"),
            ("rbd", "i@snap", "csi", "/c"),
            ("rbd", "-o", "csi", "/c"),
            ("rbd", "i", "c si", "/c"),
            ("rbd", "i", "csi", "rel/ceph.conf"),
        ] {
            let s = RbdMapSpec::new(pool, image, conf, id);
            assert!(krbd_map_command(&s).is_err(), "{s:?}");
            assert!(nbd_map_command(&s).is_err(), "{s:?}");
        }
    }

    #[test]
    fn map_output_is_parsed() {
        let cmd = CommandLine::new("rbd");
        assert_eq!(mapped_device(&cmd, "/dev/rbd0\n", "rbd").ok(), Some(PathBuf::from("/dev/rbd0")));
        assert_eq!(mapped_device(&cmd, "warning: x\n/dev/nbd12\n\n", "nbd").ok(), Some(PathBuf::from("/dev/nbd12")));
        assert!(mapped_device(&cmd, "", "rbd").is_err());
        assert!(mapped_device(&cmd, "/dev/sda\n", "rbd").is_err());
    }

    #[tokio::test]
    async fn detaching_a_device_that_does_not_exist_is_fine() {
        assert!(detach_krbd(Path::new("/dev/rbd987")).await.is_ok());
        assert!(detach_nbd(Path::new("/dev/nbd987")).await.is_ok());
    }
}
