//! Mounts and filesystems: the mount table (`/proc/self/mountinfo`), `mount`/`umount`, bind
//! mounts, `mkfs` that never formats a device holding anything, online growth, `statvfs` and
//! device sizes.
//!
//! Mount points are compared with the mount table literally (after [`check_path`]'s
//! normalization), never canonicalized: resolving a path under a dead FUSE mount can hang.
//!
//! Nothing here serializes callers: two concurrent `mkfs_if_blank` calls on one device could
//! both find it blank. The node service runs one operation per volume at a time.

use std::ffi::OsString;
use std::fmt;
use std::io::{Seek, SeekFrom};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::cmd::CommandLine;
use super::{NodeError, Result, check_path, path_str};

/// The mount table this process sees.
pub const MOUNTINFO: &str = "/proc/self/mountinfo";

/// How many mounts stacked on one target [`unmount`] removes before giving up.
const MAX_STACKED: usize = 16;

/// One line of `/proc/self/mountinfo` (see proc(5)), octal escapes (`\040` …) decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub id: u32,
    pub parent_id: u32,
    /// The `st_dev` of files on this mount.
    pub major: u32,
    pub minor: u32,
    /// The directory of the filesystem that forms the root of this mount (`/` unless a bind
    /// mount of a subdirectory).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    /// Per-mount options (`rw,nosuid,relatime`).
    pub options: String,
    pub fs_type: String,
    /// The mount source: a device path, or whatever the filesystem put there.
    pub source: String,
    /// Per-superblock options.
    pub super_options: String,
}

impl MountEntry {
    /// True when this mount is read-only (its per-mount `ro` flag).
    pub fn is_read_only(&self) -> bool {
        self.options.split(',').any(|o| o == "ro")
    }
}

/// Parses the text of a mountinfo file.
pub fn parse_mountinfo(text: &[u8]) -> Result<Vec<MountEntry>> {
    text.split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
        .map(|(n, line)| parse_line(line).ok_or_else(|| bad_line(n + 1, line)))
        .collect()
}

fn bad_line(n: usize, line: &[u8]) -> NodeError {
    NodeError::Io {
        context: format!("parse {MOUNTINFO}"),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("malformed line {n}: {:?}", String::from_utf8_lossy(line)),
        ),
    }
}

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`
fn parse_line(line: &[u8]) -> Option<MountEntry> {
    let mut fields = line.split(|&b| b == b' ').filter(|f| !f.is_empty());
    let id = num(fields.next()?)?;
    let parent_id = num(fields.next()?)?;
    let (major, minor) = {
        let dev = std::str::from_utf8(fields.next()?).ok()?;
        let (a, b) = dev.split_once(':')?;
        (a.parse().ok()?, b.parse().ok()?)
    };
    let root = path(fields.next()?);
    let mount_point = path(fields.next()?);
    let options = text(fields.next()?);
    // Zero or more optional fields, ended by a lone "-".
    loop {
        if fields.next()? == b"-" {
            break;
        }
    }
    let fs_type = text(fields.next()?);
    let source = text(fields.next()?);
    let super_options = fields.next().map(text).unwrap_or_default();
    Some(MountEntry { id, parent_id, major, minor, root, mount_point, options, fs_type, source, super_options })
}

fn num(field: &[u8]) -> Option<u32> {
    std::str::from_utf8(field).ok()?.parse().ok()
}

fn path(field: &[u8]) -> PathBuf {
    PathBuf::from(OsString::from_vec(unescape(field)))
}

fn text(field: &[u8]) -> String {
    String::from_utf8_lossy(&unescape(field)).into_owned()
}

/// Decodes the kernel's `\ooo` octal escapes (space, tab, newline and backslash are written
/// so); any other backslash is kept as it is.
pub fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\'
            && let Some(digits) = field.get(i + 1..i + 4)
            && digits.iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let v = digits.iter().fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(field[i]);
        i += 1;
    }
    out
}

/// This process's mount table.
pub async fn mount_table() -> Result<Vec<MountEntry>> {
    let raw = tokio::fs::read(MOUNTINFO).await.map_err(NodeError::io(format!("read {MOUNTINFO}")))?;
    parse_mountinfo(&raw)
}

/// The mount on `target` (the topmost one when several are stacked), if any.
pub async fn find_by_target(target: &Path) -> Result<Option<MountEntry>> {
    let target = check_path("mount target", target)?;
    Ok(mount_table().await?.into_iter().rev().find(|e| e.mount_point == target))
}

/// Every mount whose source is `source` (a device path), in mount order.
pub async fn find_by_source(source: &Path) -> Result<Vec<MountEntry>> {
    let source = path_str(&check_path("mount source", source)?);
    Ok(mount_table().await?.into_iter().filter(|e| e.source == source).collect())
}

/// True when something is mounted on `target`.
pub async fn is_mounted(target: &Path) -> Result<bool> {
    Ok(find_by_target(target).await?.is_some())
}

/// A filesystem this driver creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FsType {
    Ext4,
    Xfs,
}

impl FsType {
    /// The name `mount -t`, `blkid` and the StorageClass use.
    pub fn as_str(self) -> &'static str {
        match self {
            FsType::Ext4 => "ext4",
            FsType::Xfs => "xfs",
        }
    }
}

impl fmt::Display for FsType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FsType {
    type Err = NodeError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "ext4" => Ok(FsType::Ext4),
            "xfs" => Ok(FsType::Xfs),
            other => {
                Err(NodeError::InvalidArgument(format!("unsupported filesystem type {other:?} (want ext4 or xfs)")))
            }
        }
    }
}

/// `mount -t FSTYPE [-o OPTIONS] SOURCE TARGET`.
pub fn mount_command(source: &Path, target: &Path, fs_type: &str, options: &[&str]) -> Result<CommandLine> {
    let source = check_path("mount source", source)?;
    let target = check_path("mount target", target)?;
    check_fs_type(fs_type)?;
    let mut cmd = CommandLine::new("mount").arg("-t").arg(fs_type);
    if let Some(opts) = join_options(options)? {
        cmd = cmd.arg("-o").arg(opts);
    }
    Ok(cmd.arg(path_str(&source)).arg(path_str(&target)))
}

/// Mounts the filesystem on `source` (a device) at `target` (an existing directory). Refuses
/// ([`NodeError::Busy`]) when something is already mounted on `target`.
pub async fn mount(source: &Path, target: &Path, fs_type: &str, options: &[&str]) -> Result<()> {
    let cmd = mount_command(source, target, fs_type, options)?;
    refuse_if_mounted(target).await?;
    cmd.run().await.map(drop)
}

/// `mount --bind SOURCE TARGET`, and for read-only the remount that makes the new mount
/// read-only (`mount -o remount,bind,ro TARGET`): a plain `--bind -o ro` is ignored by the
/// kernel on older tools, so the two steps are explicit.
pub fn bind_mount_commands(source: &Path, target: &Path, read_only: bool) -> Result<Vec<CommandLine>> {
    let source = check_path("bind source", source)?;
    let target = check_path("bind target", target)?;
    let mut cmds = vec![CommandLine::new("mount").arg("--bind").arg(path_str(&source)).arg(path_str(&target))];
    if read_only {
        cmds.push(CommandLine::new("mount").arg("-o").arg("remount,bind,ro").arg(path_str(&target)));
    }
    Ok(cmds)
}

/// Bind-mounts `source` (a directory or a file) on `target` (the same kind, existing). With
/// `read_only` the new mount is made read-only and checked to be so; if that fails the bind
/// is undone, so a failed read-only bind never leaves a writable one behind. Refuses
/// ([`NodeError::Busy`]) when something is already mounted on `target`.
pub async fn bind_mount(source: &Path, target: &Path, read_only: bool) -> Result<()> {
    let cmds = bind_mount_commands(source, target, read_only)?;
    refuse_if_mounted(target).await?;
    let mut cmds = cmds.into_iter();
    if let Some(bind) = cmds.next() {
        bind.run().await?;
    }
    let Some(remount) = cmds.next() else { return Ok(()) };
    let made_ro = match remount.run().await {
        Ok(_) => match find_by_target(target).await {
            Ok(Some(e)) if e.is_read_only() => Ok(()),
            Ok(e) => Err(NodeError::Busy(format!(
                "bind mount on {} is not read-only after remount: {:?}",
                target.display(),
                e.map(|e| e.options)
            ))),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    if let Err(e) = made_ro {
        if let Err(undo) = unmount(target).await {
            tracing::warn!(target = %target.display(), error = %undo, "could not undo a bind mount that failed to become read-only");
        }
        return Err(e);
    }
    Ok(())
}

async fn refuse_if_mounted(target: &Path) -> Result<()> {
    match find_by_target(target).await? {
        Some(e) => Err(NodeError::Busy(format!(
            "{} is already a mount point (of {} {})",
            target.display(),
            e.fs_type,
            e.source
        ))),
        None => Ok(()),
    }
}

/// Unmounts `target`, every mount stacked on it included. Idempotent: a target that is not
/// mounted (or does not exist) is fine. A busy filesystem is [`NodeError::Busy`].
pub async fn unmount(target: &Path) -> Result<()> {
    let target = check_path("unmount target", target)?;
    for _ in 0..MAX_STACKED {
        if find_by_target(&target).await?.is_none() {
            return Ok(());
        }
        let cmd = CommandLine::new("umount").arg(path_str(&target));
        let out = cmd.output().await?;
        if out.status.success() {
            continue;
        }
        // Raced with another unmount: fine.
        if find_by_target(&target).await?.is_none() {
            return Ok(());
        }
        let err = cmd.failed(&out);
        if let NodeError::CommandFailed { stderr, .. } = &err
            && stderr.contains("busy")
        {
            return Err(NodeError::Busy(format!("cannot unmount {}: {stderr}", target.display())));
        }
        return Err(err);
    }
    Err(NodeError::Busy(format!("{} still mounted after {MAX_STACKED} unmounts", target.display())))
}

/// What `blkid -p` found on a device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Signature {
    /// `TYPE`: a filesystem (or swap, LVM member, …).
    fs_type: Option<String>,
    /// `PTTYPE`: a partition table.
    pt_type: Option<String>,
}

impl Signature {
    fn describe(&self) -> String {
        match (&self.fs_type, &self.pt_type) {
            (Some(t), _) => t.clone(),
            (None, Some(p)) => format!("a {p} partition table"),
            (None, None) => "an unknown signature".into(),
        }
    }
}

/// `blkid -p -o export DEVICE`: low-level probing (no cache) of superblocks and partition
/// tables. Exit 0: found; 2: nothing; 8: ambivalent (several signatures).
pub fn probe_command(device: &Path) -> Result<CommandLine> {
    let device = check_path("device", device)?;
    Ok(CommandLine::new("blkid").arg("-p").arg("-o").arg("export").arg(path_str(&device)))
}

fn parse_probe(stdout: &str) -> Signature {
    let mut sig = Signature::default();
    for line in stdout.lines() {
        match line.split_once('=') {
            Some(("TYPE", v)) => sig.fs_type = Some(v.to_owned()),
            Some(("PTTYPE", v)) => sig.pt_type = Some(v.to_owned()),
            _ => {}
        }
    }
    sig
}

async fn probe(device: &Path) -> Result<Option<Signature>> {
    let cmd = probe_command(device)?;
    check_device(device).await?;
    let out = cmd.output().await?;
    match out.status.code() {
        Some(0) => Ok(Some(parse_probe(&String::from_utf8_lossy(&out.stdout)))),
        Some(2) => Ok(None),
        Some(8) => {
            Ok(Some(Signature { fs_type: Some("several signatures (blkid: ambivalent result)".into()), pt_type: None }))
        }
        _ => Err(cmd.failed(&out)),
    }
}

/// The device must exist and be a block device or a regular file.
async fn check_device(device: &Path) -> Result<()> {
    match tokio::fs::metadata(device).await {
        Ok(m) if m.file_type().is_block_device() || m.is_file() => Ok(()),
        Ok(_) => Err(NodeError::InvalidArgument(format!("{} is neither a block device nor a file", device.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(NodeError::NotFound(format!("device {}", device.display())))
        }
        Err(e) => Err(NodeError::Io { context: format!("stat {}", device.display()), source: e }),
    }
}

/// The filesystem type on `device` (`ext4`, `xfs`, …), `None` when it holds no filesystem
/// signature. A partition table alone is not a filesystem: `None`.
pub async fn fs_type(device: &Path) -> Result<Option<String>> {
    Ok(probe(device).await?.and_then(|s| s.fs_type))
}

/// The `mkfs` for `fs` on `device`. ext4: `-F` (the device was just probed blank; also lets it
/// run on a regular file), no reserved blocks, no discard pass (a new RBD image is already
/// zero and discards through FUSE are not supported), lazy inode-table and journal init.
/// xfs: `-K` (no discard); no `-f`, so mkfs.xfs still refuses anything it recognizes.
pub fn mkfs_command(device: &Path, fs: FsType) -> Result<CommandLine> {
    let device = path_str(&check_path("device", device)?);
    Ok(match fs {
        FsType::Ext4 => CommandLine::new("mkfs.ext4")
            .arg("-F")
            .arg("-m0")
            .arg("-Enodiscard,lazy_itable_init=1,lazy_journal_init=1")
            .arg(device),
        FsType::Xfs => CommandLine::new("mkfs.xfs").arg("-K").arg(device),
    })
}

/// Formats `device` with `fs` only if it holds no signature at all. Returns true when it
/// formatted, false when `fs` was already there. Anything else on it (another filesystem, a
/// partition table, several signatures) is [`NodeError::FilesystemMismatch`] and the device is
/// left untouched.
pub async fn mkfs_if_blank(device: &Path, fs: FsType) -> Result<bool> {
    let cmd = mkfs_command(device, fs)?;
    match probe(device).await? {
        None => {
            cmd.run().await?;
            Ok(true)
        }
        Some(sig) if sig.fs_type.as_deref() == Some(fs.as_str()) => Ok(false),
        Some(sig) => Err(NodeError::FilesystemMismatch {
            device: device.to_path_buf(),
            found: sig.describe(),
            wanted: fs.as_str().into(),
        }),
    }
}

/// The command growing a mounted filesystem to its device's size: `resize2fs DEVICE` (ext4),
/// `xfs_growfs MOUNT_POINT` (xfs).
pub fn grow_command(device: &Path, mount_point: &Path, fs: FsType) -> Result<CommandLine> {
    let device = check_path("device", device)?;
    let mount_point = check_path("mount point", mount_point)?;
    Ok(match fs {
        FsType::Ext4 => CommandLine::new("resize2fs").arg(path_str(&device)),
        FsType::Xfs => CommandLine::new("xfs_growfs").arg(path_str(&mount_point)),
    })
}

/// Grows the filesystem on `device`, mounted at `mount_point`, to fill the device (online).
/// Online ext4 growth needs `CAP_SYS_RESOURCE` (the kernel answers EPERM without it, which
/// resize2fs reports as "Permission denied to resize filesystem"); see [`grow_fs_offline`].
pub async fn grow_fs(device: &Path, mount_point: &Path, fs: FsType) -> Result<()> {
    let cmd = grow_command(device, mount_point, fs)?;
    if !is_mounted(mount_point).await? {
        return Err(NodeError::NotFound(format!("nothing is mounted on {}", mount_point.display())));
    }
    cmd.run().await.map(drop)
}

/// The commands growing an unmounted ext4 filesystem: `e2fsck -f -p DEVICE` (resize2fs wants a
/// freshly checked filesystem), then `resize2fs DEVICE`. xfs grows only while mounted.
pub fn grow_offline_commands(device: &Path, fs: FsType) -> Result<Vec<CommandLine>> {
    let device = path_str(&check_path("device", device)?);
    match fs {
        FsType::Ext4 => Ok(vec![
            CommandLine::new("e2fsck").arg("-f").arg("-p").arg(device.clone()),
            CommandLine::new("resize2fs").arg(device),
        ]),
        FsType::Xfs => Err(NodeError::InvalidArgument("xfs can only grow while mounted (xfs_growfs)".into())),
    }
}

/// Grows the unmounted ext4 filesystem on `device` to fill it (e.g. when staging a volume that
/// was expanded while detached). Refuses ([`NodeError::Busy`]) while the device is mounted.
/// e2fsck exit codes 1 and 2 (errors corrected) are accepted; 4 and above fail.
pub async fn grow_fs_offline(device: &Path, fs: FsType) -> Result<()> {
    let cmds = grow_offline_commands(device, fs)?;
    if let Some(m) = find_by_source(device).await?.first() {
        return Err(NodeError::Busy(format!("{} is mounted on {}", device.display(), m.mount_point.display())));
    }
    check_device(device).await?;
    for (i, cmd) in cmds.iter().enumerate() {
        let out = cmd.output().await?;
        let fsck_fixed = i == 0 && matches!(out.status.code(), Some(1 | 2));
        if !out.status.success() && !fsck_fixed {
            return Err(cmd.failed(&out));
        }
    }
    Ok(())
}

/// Capacity and usage of the filesystem holding a path (`statvfs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeStats {
    pub bytes_total: u64,
    /// Available to unprivileged users (`f_bavail`).
    pub bytes_available: u64,
    pub bytes_used: u64,
    pub inodes_total: u64,
    pub inodes_free: u64,
    pub inodes_used: u64,
}

/// `statvfs(path)`, off the runtime (it can block on a dead network or FUSE mount).
pub async fn volume_stats(path: &Path) -> Result<VolumeStats> {
    let path = check_path("path", path)?;
    let shown = path.display().to_string();
    let st = tokio::task::spawn_blocking(move || rustix::fs::statvfs(&path))
        .await
        .map_err(|e| NodeError::Io { context: format!("statvfs {shown}"), source: std::io::Error::other(e) })?
        .map_err(|e| NodeError::Io { context: format!("statvfs {shown}"), source: e.into() })?;
    let frsize = st.f_frsize;
    Ok(VolumeStats {
        bytes_total: st.f_blocks.saturating_mul(frsize),
        bytes_available: st.f_bavail.saturating_mul(frsize),
        bytes_used: st.f_blocks.saturating_sub(st.f_bfree).saturating_mul(frsize),
        inodes_total: st.f_files,
        inodes_free: st.f_ffree,
        inodes_used: st.f_files.saturating_sub(st.f_ffree),
    })
}

/// The size in bytes of a block device (or a regular file): the offset of its end, which is
/// what `BLKGETSIZE64` reports for a block device, without an ioctl.
pub async fn device_size(path: &Path) -> Result<u64> {
    let path = check_path("device", path)?;
    let shown = path.display().to_string();
    tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
        let mut f = std::fs::File::open(&path)?;
        f.seek(SeekFrom::End(0))
    })
    .await
    .map_err(|e| NodeError::Io { context: format!("size of {shown}"), source: std::io::Error::other(e) })?
    .map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            NodeError::NotFound(format!("device {shown}"))
        } else {
            NodeError::Io { context: format!("size of {shown}"), source: e }
        }
    })
}

fn check_fs_type(fs_type: &str) -> Result<()> {
    let ok = !fs_type.is_empty()
        && !fs_type.starts_with('-')
        && fs_type.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok { Ok(()) } else { Err(NodeError::InvalidArgument(format!("bad filesystem type {fs_type:?}"))) }
}

/// Joins mount options with commas; each must be non-empty and hold no comma, whitespace or
/// NUL (one option must not smuggle in another).
fn join_options(options: &[&str]) -> Result<Option<String>> {
    for o in options {
        if o.is_empty() || o.contains(',') || o.contains('\0') || o.chars().any(char::is_whitespace) {
            return Err(NodeError::InvalidArgument(format!("bad mount option {o:?}")));
        }
    }
    Ok(if options.is_empty() { None } else { Some(options.join(",")) })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
100 27 7:3 / /var/lib/kubelet/pods/a\\040b/volumes/my\\011vol ro,relatime shared:5 master:2 - ext4 /dev/loop3 rw
101 27 0:55 /sub\\134dir /mnt/back\\\\slash rw - tmpfs tmp\\040fs rw,size=10k
102 27 0:56 / /mnt/new\\012line rw - fuse.cyvault cyvault rw,user_id=0,group_id=0
";

    #[test]
    fn parses_mountinfo_with_escapes_and_optional_fields() {
        let e = parse_mountinfo(SAMPLE.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(e.len(), 5);
        assert_eq!(e[0].mount_point, Path::new("/proc"));
        assert_eq!((e[1].id, e[1].parent_id, e[1].major, e[1].minor), (36, 35, 98, 0));
        assert_eq!(e[1].root, Path::new("/mnt1"));
        assert_eq!((e[1].fs_type.as_str(), e[1].source.as_str()), ("ext3", "/dev/root"));
        assert_eq!(e[1].super_options, "rw,errors=continue");
        assert!(!e[1].is_read_only());
        assert_eq!(e[2].mount_point, Path::new("/var/lib/kubelet/pods/a b/volumes/my\tvol"));
        assert!(e[2].is_read_only());
        assert_eq!((e[2].fs_type.as_str(), e[2].source.as_str()), ("ext4", "/dev/loop3"));
        assert_eq!(e[3].root, Path::new("/sub\\dir"));
        // A backslash not followed by three octal digits stays as it is.
        assert_eq!(e[3].mount_point, Path::new("/mnt/back\\\\slash"));
        assert_eq!(e[3].source, "tmp fs");
        assert_eq!(e[4].mount_point, Path::new("/mnt/new\nline"));
        assert_eq!(e[4].fs_type, "fuse.cyvault");
    }

    #[test]
    fn malformed_mountinfo_is_an_error_not_a_panic() {
        for bad in ["22 27 0:21 / /proc rw,relatime proc proc rw", "x 27 0:21 / /p rw - a b c", "1 2 3 / /p rw - a b"] {
            assert!(parse_mountinfo(bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(parse_mountinfo(b"").is_ok_and(|v| v.is_empty()));
        assert_eq!(unescape(b"\\"), b"\\");
        assert_eq!(unescape(b"a\\04"), b"a\\04");
        assert_eq!(unescape(b"\\777"), b"\\777");
    }

    #[test]
    fn real_mountinfo_parses_and_has_root() {
        let raw = std::fs::read(MOUNTINFO).unwrap_or_default();
        let e = parse_mountinfo(&raw).unwrap_or_else(|e| panic!("{e}"));
        assert!(e.iter().any(|e| e.mount_point == Path::new("/")), "{e:?}");
    }

    #[test]
    fn command_lines() {
        let p = Path::new;
        let m = mount_command(p("/dev/loop0"), p("/mnt/x/"), "ext4", &["noatime", "discard"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.to_string(), "mount -t ext4 -o noatime,discard /dev/loop0 /mnt/x");
        let m = mount_command(p("/dev/loop0"), p("/mnt/x"), "xfs", &[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.to_string(), "mount -t xfs /dev/loop0 /mnt/x");
        assert!(mount_command(p("/dev/loop0"), p("/mnt/x"), "ext4", &["ro,exec"]).is_err());
        assert!(mount_command(p("/dev/loop0"), p("/mnt/x"), "ext4", &[""]).is_err());
        assert!(mount_command(p("/dev/loop0"), p("/mnt/x"), "-o", &[]).is_err());
        assert!(mount_command(p("dev/loop0"), p("/mnt/x"), "ext4", &[]).is_err());
        let b: Vec<String> = bind_mount_commands(p("/a"), p("/b"), true)
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(b, ["mount --bind /a /b", "mount -o remount,bind,ro /b"]);
        assert_eq!(bind_mount_commands(p("/a"), p("/b"), false).map(|v| v.len()).ok(), Some(1));
        let mk = |fs| mkfs_command(p("/dev/loop1"), fs).map(|c| c.to_string()).unwrap_or_default();
        assert_eq!(mk(FsType::Ext4), "mkfs.ext4 -F -m0 -Enodiscard,lazy_itable_init=1,lazy_journal_init=1 /dev/loop1");
        assert_eq!(mk(FsType::Xfs), "mkfs.xfs -K /dev/loop1");
        let g = |fs| grow_command(p("/dev/loop1"), p("/mnt/v"), fs).map(|c| c.to_string()).unwrap_or_default();
        assert_eq!(g(FsType::Ext4), "resize2fs /dev/loop1");
        assert_eq!(g(FsType::Xfs), "xfs_growfs /mnt/v");
        let off: Vec<String> = grow_offline_commands(p("/dev/loop1"), FsType::Ext4)
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(off, ["e2fsck -f -p /dev/loop1", "resize2fs /dev/loop1"]);
        assert!(grow_offline_commands(p("/dev/loop1"), FsType::Xfs).is_err());
        assert_eq!(
            probe_command(p("/dev/loop1")).map(|c| c.to_string()).ok().as_deref(),
            Some("blkid -p -o export /dev/loop1")
        );
    }

    #[test]
    fn fs_types_and_probe_output() {
        assert_eq!("ext4".parse::<FsType>().ok(), Some(FsType::Ext4));
        assert_eq!("xfs".parse::<FsType>().ok(), Some(FsType::Xfs));
        assert!("btrfs".parse::<FsType>().is_err());
        let s = parse_probe("DEVNAME=/dev/loop0\nUUID=1234\nBLOCK_SIZE=4096\nTYPE=ext4\n");
        assert_eq!(s.fs_type.as_deref(), Some("ext4"));
        let s = parse_probe("DEVNAME=/dev/loop0\nPTUUID=abcd\nPTTYPE=dos\n");
        assert_eq!(s.fs_type, None);
        assert_eq!(s.describe(), "a dos partition table");
    }
}
