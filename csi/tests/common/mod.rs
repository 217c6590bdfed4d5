//! Helpers shared by the node-primitive tests (real loop devices, mounts and FUSE).

#![allow(dead_code)]

use std::path::Path;

use cyvault_csi::node::Result;

pub const MIB: u64 = 1 << 20;

/// The value, or a panic naming the error.
#[track_caller]
pub fn ok<T>(r: Result<T>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

#[track_caller]
pub fn io<T>(r: std::io::Result<T>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

/// Blocking file work off the runtime: the runtime's workers must stay free to serve FUSE.
pub async fn off_runtime<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(std::io::Error::other(e)),
    }
}

/// Writes a file and syncs it, off the runtime.
pub async fn write_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let (path, data) = (path.to_path_buf(), data.to_vec());
    off_runtime(move || {
        use std::io::Write;
        let mut f = std::fs::File::create(&path)?;
        f.write_all(&data)?;
        f.sync_all()
    })
    .await
}

pub async fn read_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let path = path.to_path_buf();
    off_runtime(move || std::fs::read(path)).await
}

/// Recognizable bytes.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed).wrapping_add((i >> 8) as u8)).collect()
}
