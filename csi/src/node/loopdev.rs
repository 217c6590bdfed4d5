//! Loop devices over files (`losetup`), and finding them again through sysfs
//! (`/sys/block/loopN/loop/backing_file`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::cmd::CommandLine;
use super::{NodeError, Result, check_path, path_str};

/// Where the kernel lists block devices.
pub const SYS_BLOCK: &str = "/sys/block";

/// How long [`find_by_backing_file`] tries to resolve the file's canonical path.
const CANONICALIZE_WAIT: Duration = Duration::from_secs(2);

/// How long [`detach`] waits for the kernel to release a detached device.
const DETACH_WAIT: Duration = Duration::from_secs(10);

/// How a file is attached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoopOptions {
    /// `--read-only`.
    pub read_only: bool,
    /// `--direct-io=on`: the loop device opens its file with `O_DIRECT` and submits requests
    /// asynchronously, so several are in flight at once and the page cache holds no second
    /// copy. Needs a file that supports `O_DIRECT` (ext4, xfs, our FUSE file).
    pub direct_io: bool,
}

/// `losetup --find --show [--read-only] [--direct-io=on] FILE`.
pub fn attach_command(file: &Path, opts: LoopOptions) -> Result<CommandLine> {
    let file = check_path("backing file", file)?;
    let mut cmd = CommandLine::new("losetup").arg("--find").arg("--show");
    if opts.read_only {
        cmd = cmd.arg("--read-only");
    }
    if opts.direct_io {
        cmd = cmd.arg("--direct-io=on");
    }
    Ok(cmd.arg(path_str(&file)))
}

/// Attaches `file` to a free loop device and returns the device (`/dev/loopN`).
pub async fn attach(file: &Path, opts: LoopOptions) -> Result<PathBuf> {
    let cmd = attach_command(file, opts)?;
    match tokio::fs::metadata(file).await {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(NodeError::InvalidArgument(format!("{} is not a regular file", file.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(NodeError::NotFound(format!("backing file {}", file.display())));
        }
        Err(e) => return Err(NodeError::Io { context: format!("stat {}", file.display()), source: e }),
    }
    let out = cmd.run().await?;
    let dev = out.trim();
    if !dev.starts_with("/dev/loop") {
        return Err(NodeError::Io {
            context: format!("`{cmd}`"),
            source: std::io::Error::other(format!("unexpected output {dev:?}")),
        });
    }
    Ok(PathBuf::from(dev))
}

/// The loop devices currently backed by `file`, read from sysfs. The file is matched by its
/// path as given and as canonicalized (the kernel shows the path it opened). A device whose
/// file was deleted since (or sits on a FUSE mount whose server died) is not included: see
/// [`find_stale_by_backing_file`].
pub async fn find_by_backing_file(file: &Path) -> Result<Vec<PathBuf>> {
    Ok(find_matching(file).await?.into_iter().filter(|(_, deleted)| !deleted).map(|(dev, _)| dev).collect())
}

/// The loop devices backed by `file` or by a file that was at that path: the kernel shows
/// `PATH (deleted)` once the file was unlinked, or once the FUSE connection serving it was
/// aborted. For clearing what a dead attachment left behind; never reuse such a device.
pub async fn find_stale_by_backing_file(file: &Path) -> Result<Vec<PathBuf>> {
    Ok(find_matching(file).await?.into_iter().map(|(dev, _)| dev).collect())
}

/// Devices on `file`, each with whether the kernel marks its file deleted.
async fn find_matching(file: &Path) -> Result<Vec<(PathBuf, bool)>> {
    let file = check_path("backing file", file)?;
    // The kernel shows the canonical path. Resolving it stats every component, which on a
    // FUSE mount whose server hangs would hang too: give up on it after a while.
    let canonical =
        tokio::time::timeout(CANONICALIZE_WAIT, tokio::fs::canonicalize(&file)).await.ok().and_then(|r| r.ok());
    let candidates: Vec<&Path> = std::iter::once(file.as_path()).chain(canonical.as_deref()).collect();
    let mut found = Vec::new();
    for (dev, backing) in list_in(Path::new(SYS_BLOCK)).await? {
        let backing = backing.as_os_str().as_encoded_bytes();
        for c in &candidates {
            let c = c.as_os_str().as_encoded_bytes();
            if backing == c {
                found.push((dev, false));
                break;
            }
            if backing.strip_prefix(c) == Some(DELETED.as_bytes()) {
                found.push((dev, true));
                break;
            }
        }
    }
    Ok(found)
}

/// What the kernel appends to the path of an unlinked file.
const DELETED: &str = " (deleted)";

/// Every bound loop device and its backing file, from `sys_block` (normally [`SYS_BLOCK`]).
/// A backing file that was deleted shows with the kernel's ` (deleted)` suffix.
pub async fn list_in(sys_block: &Path) -> Result<Vec<(PathBuf, PathBuf)>> {
    let mut dir = match tokio::fs::read_dir(sys_block).await {
        Ok(d) => d,
        Err(e) => return Err(NodeError::Io { context: format!("list {}", sys_block.display()), source: e }),
    };
    let mut out = Vec::new();
    loop {
        let entry = match dir.next_entry().await {
            Ok(Some(e)) => e,
            Ok(None) => break,
            Err(e) => return Err(NodeError::Io { context: format!("list {}", sys_block.display()), source: e }),
        };
        let name = entry.file_name();
        let Some(name) = name.to_str().filter(|n| is_loop_name(n)) else { continue };
        if let Some(backing) = read_backing(sys_block, name).await? {
            out.push((PathBuf::from(format!("/dev/{name}")), backing));
        }
    }
    out.sort();
    Ok(out)
}

/// The file backing `device` (`/dev/loopN`), `None` when the device is not bound (or does
/// not exist).
pub async fn backing_file(device: &Path) -> Result<Option<PathBuf>> {
    let name = loop_name(device)?;
    read_backing(Path::new(SYS_BLOCK), &name).await
}

async fn read_backing(sys_block: &Path, name: &str) -> Result<Option<PathBuf>> {
    let p = sys_block.join(name).join("loop").join("backing_file");
    match tokio::fs::read(&p).await {
        Ok(mut raw) => {
            if raw.last() == Some(&b'\n') {
                raw.pop();
            }
            use std::os::unix::ffi::OsStringExt;
            Ok(Some(PathBuf::from(std::ffi::OsString::from_vec(raw))))
        }
        // No `loop/` directory: not bound (or gone).
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound) || e.raw_os_error() == Some(libc::ENXIO) => Ok(None),
        Err(e) => Err(NodeError::Io { context: format!("read {}", p.display()), source: e }),
    }
}

fn is_loop_name(name: &str) -> bool {
    name.strip_prefix("loop").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// `loopN` from `/dev/loopN`; anything else is refused, so these functions never run
/// `losetup` on some other device.
fn loop_name(device: &Path) -> Result<String> {
    let device = check_path("loop device", device)?;
    match device.to_str().and_then(|d| d.strip_prefix("/dev/")) {
        Some(name) if is_loop_name(name) => Ok(name.to_owned()),
        _ => Err(NodeError::InvalidArgument(format!("{} is not a loop device (/dev/loopN)", device.display()))),
    }
}

/// `losetup --detach DEVICE`.
pub fn detach_command(device: &Path) -> Result<CommandLine> {
    let name = loop_name(device)?;
    Ok(CommandLine::new("losetup").arg("--detach").arg(format!("/dev/{name}")))
}

/// Detaches `device` and waits until the kernel has let go of its backing file. Idempotent: a
/// device that is not bound (or does not exist) is fine. If the device is still open (e.g.
/// mounted), the kernel only marks it to detach on last close: that is [`NodeError::Busy`]
/// after a short wait.
pub async fn detach(device: &Path) -> Result<()> {
    let cmd = detach_command(device)?;
    if backing_file(device).await?.is_none() {
        return Ok(());
    }
    let out = cmd.output().await?;
    if !out.status.success() {
        if backing_file(device).await?.is_none() {
            return Ok(());
        }
        return Err(cmd.failed(&out));
    }
    let deadline = tokio::time::Instant::now() + DETACH_WAIT;
    while backing_file(device).await?.is_some() {
        if tokio::time::Instant::now() >= deadline {
            return Err(NodeError::Busy(format!(
                "{} is still open; it will detach when its last user closes it",
                device.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// `losetup --set-capacity DEVICE`.
pub fn refresh_size_command(device: &Path) -> Result<CommandLine> {
    let name = loop_name(device)?;
    Ok(CommandLine::new("losetup").arg("--set-capacity").arg(format!("/dev/{name}")))
}

/// Makes `device` take the current size of its backing file (after the file grew).
pub async fn refresh_size(device: &Path) -> Result<()> {
    let cmd = refresh_size_command(device)?;
    if backing_file(device).await?.is_none() {
        return Err(NodeError::NotFound(format!("loop device {} is not attached", device.display())));
    }
    cmd.run().await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines() {
        let p = Path::new;
        let s = |c: Result<CommandLine>| c.map(|c| c.to_string()).unwrap_or_else(|e| e.to_string());
        assert_eq!(s(attach_command(p("/v/f.img"), LoopOptions::default())), "losetup --find --show /v/f.img");
        assert_eq!(
            s(attach_command(p("/v/f.img"), LoopOptions { read_only: true, direct_io: true })),
            "losetup --find --show --read-only --direct-io=on /v/f.img"
        );
        assert_eq!(s(detach_command(p("/dev/loop12"))), "losetup --detach /dev/loop12");
        assert_eq!(s(refresh_size_command(p("/dev/loop0"))), "losetup --set-capacity /dev/loop0");
        for bad in ["/dev/sda", "/dev/loop", "/dev/loopx", "loop0", "/dev/loop0p1", "/sys/loop0"] {
            assert!(detach_command(p(bad)).is_err(), "{bad}");
        }
        assert!(attach_command(p("rel/file"), LoopOptions::default()).is_err());
    }

    #[tokio::test]
    async fn lists_bound_devices_from_sysfs() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let sys = dir.path();
        for (name, backing) in
            [("loop0", Some("/data/a.img\n")), ("loop1", None), ("loop7", Some("/data/b (deleted)\n"))]
        {
            let d = sys.join(name);
            std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{e}"));
            if let Some(b) = backing {
                std::fs::create_dir_all(d.join("loop")).unwrap_or_else(|e| panic!("{e}"));
                std::fs::write(d.join("loop/backing_file"), b).unwrap_or_else(|e| panic!("{e}"));
            }
        }
        std::fs::create_dir_all(sys.join("sda/loop")).unwrap_or_else(|e| panic!("{e}"));
        let got = list_in(sys).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            got,
            vec![
                (PathBuf::from("/dev/loop0"), PathBuf::from("/data/a.img")),
                (PathBuf::from("/dev/loop7"), PathBuf::from("/data/b (deleted)")),
            ]
        );
    }
}
