//! Benchmarks of Cyberun Vault. A benchmark is not a test: it measures, prints the numbers and a
//! ratio against a baseline measured in the same run, and leaves judging to the reader (or to a
//! gate that reads `--json`).

pub mod csi_bench;
pub mod fio;
pub mod fio_jobfile;
pub mod io;
pub mod placement_bench;
pub mod rados_bench;
pub mod s3_bench;
pub mod slo;
pub mod store_bench;
pub mod svg;
