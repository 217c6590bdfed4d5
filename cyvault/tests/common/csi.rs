//! Test harness for `cyvault csi`: starts the real binary on a unix socket in a temp dir and
//! connects the generated gRPC clients to it. Dropping the plugin stops it (by pid) and removes
//! what it left (mounts under its dirs, loop devices over its files).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use cyvault_proto::csi::v1 as pb;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

/// A running CSI plugin.
#[derive(Debug)]
pub struct Plugin {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub args: Vec<String>,
}

pub struct Clients {
    pub identity: pb::identity_client::IdentityClient<Channel>,
    pub controller: pb::controller_client::ControllerClient<Channel>,
    pub node: pb::node_client::NodeClient<Channel>,
}

impl Plugin {
    /// Starts `cyvault csi --mode all` with `extra` arguments; the data and state dirs live in a
    /// temp dir (so `--backend local` needs nothing else).
    pub fn start(extra: &[&str]) -> Plugin {
        let dir =
            tempfile::Builder::new().prefix("cyv-csi").tempdir_in("/tmp").unwrap_or_else(|e| panic!("temp dir: {e}"));
        let socket = dir.path().join("csi.sock");
        let mut args: Vec<String> = vec![
            "csi".into(),
            "--endpoint".into(),
            format!("unix://{}", socket.display()),
            "--node-id".into(),
            "node-1".into(),
            "--data-dir".into(),
            dir.path().join("data").display().to_string(),
            "--state-dir".into(),
            dir.path().join("state").display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut p = Plugin { child: None, dir, socket, args };
        p.spawn();
        p
    }

    pub fn spawn(&mut self) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cyvault"));
        cmd.arg("--log")
            .arg("info")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        cmd.env_remove("CYVAULT_BACKEND").env_remove("CYVAULT_DATA_DIR");
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn cyvault csi: {e}"));
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line.starts_with("listening on ") => break,
                Ok(_) => {}
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait();
                    panic!("cyvault csi did not start within 60 s: {status:?}");
                }
            }
        }
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// SIGTERM, then wait; returns the exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        // SAFETY-free: kill(1) by pid through the standard tool.
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(s)) = child.try_wait() {
                return Some(s);
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub async fn clients(&self) -> Clients {
        let channel = channel(&self.socket).await;
        Clients {
            identity: pb::identity_client::IdentityClient::new(channel.clone()),
            controller: pb::controller_client::ControllerClient::new(channel.clone()),
            node: pb::node_client::NodeClient::new(channel),
        }
    }

    /// A path under the plugin's temp dir (for staging and target paths).
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        self.stop();
        cleanup_under(self.dir.path());
    }
}

/// A gRPC channel over a unix socket.
pub async fn channel(socket: &Path) -> Channel {
    let socket = socket.to_path_buf();
    Endpoint::try_from("http://localhost")
        .unwrap_or_else(|e| panic!("endpoint: {e}"))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(socket).await?)) }
        }))
        .await
        .unwrap_or_else(|e| panic!("connect to the CSI socket: {e}"))
}

/// Unmounts everything mounted under `dir` (deepest first) and detaches loop devices whose
/// backing file is under it, so a failed test leaves nothing behind.
pub fn cleanup_under(dir: &Path) {
    let prefix = dir.display().to_string();
    // Loop devices first: once a FUSE mount under `dir` is detached lazily, a loop device over its
    // file no longer shows a path under `dir` and could not be found any more. Filesystems on
    // them go first.
    if let Ok(out) = Command::new("losetup").arg("-a").output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if line.contains(&prefix)
                && let Some(dev) = line.split(':').next()
            {
                let _ = Command::new("umount").arg("-l").arg(dev).status();
                let _ = Command::new("losetup").arg("-d").arg(dev).status();
            }
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut targets: Vec<String> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(|t| t.replace("\\040", " ")))
        .filter(|t| t.starts_with(&prefix))
        .collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
    for t in targets {
        let _ = Command::new("umount").arg("-l").arg(&t).status();
    }
}

/// The mount points under `dir` right now.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|t| t.starts_with(&prefix))
        .collect()
}

pub fn mount_cap(fs: &str) -> pb::VolumeCapability {
    use pb::volume_capability::{AccessMode, AccessType, MountVolume, access_mode::Mode};
    pb::VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume { fs_type: fs.into(), ..Default::default() })),
        access_mode: Some(AccessMode { mode: Mode::SingleNodeWriter as i32 }),
    }
}

pub fn block_cap() -> pb::VolumeCapability {
    use pb::volume_capability::{AccessMode, AccessType, BlockVolume, access_mode::Mode};
    pb::VolumeCapability {
        access_type: Some(AccessType::Block(BlockVolume {})),
        access_mode: Some(AccessMode { mode: Mode::SingleNodeWriter as i32 }),
    }
}

pub fn create_req(name: &str, bytes: i64, cap: pb::VolumeCapability) -> pb::CreateVolumeRequest {
    pb::CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(pb::CapacityRange { required_bytes: bytes, limit_bytes: 0 }),
        volume_capabilities: vec![cap],
        ..Default::default()
    }
}
