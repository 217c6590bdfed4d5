//! Block I/O through io_uring, measured end to end: the ~1 ms NVMe path of issue 6, side by
//! side with fio.
//!
//! - [`engine`]: one ring over one target (file or block device, O_DIRECT), one aligned buffer
//!   per in-flight slot, registered buffers and files, optional SQPOLL and IOPOLL, batched
//!   submission, short transfers resubmitted, typed errors for refused features.
//! - [`workload`]: fio-style job specs (rw, bs, iodepth, size, runtime, ramp, numjobs,
//!   rwmixread, fsync=1, verify) and running them, one thread and ring per job.
//! - [`aio`]: the same jobs on RBD images (librbd) and RADOS objects (librados), from user
//!   space, with `iodepth` operations in flight on a current-thread runtime.
//! - [`report`]: per-job and aggregate counters, HDR latency percentiles, per-second series,
//!   text and JSON (`schema_version` 1).
//!
//! The only `unsafe` of this module is the io_uring boundary in `engine.rs` (pushing SQEs and
//! registering buffers), each block with the proof that the buffer and descriptor outlive the
//! operation.

pub mod aio;
pub mod engine;
pub mod report;
pub mod workload;

pub use aio::rados_object_name;
pub use engine::{
    BUFFER_ALIGN, Completion, Driver, Engine, Feature, IoError, OpKind, OpRequest, RingOptions, RunStats, Target,
    TargetOptions,
};
pub use report::{
    DirectionReport, DirectionStats, JobInfo, JobReport, JobStats, LatencyRecorder, LatencySummary, Measured, Report,
    SCHEMA_VERSION, SecondSample, TargetKind,
};
pub use workload::{
    CephLogin, DEFAULT_RADOS_OBJECT_SIZE, JobSpec, Progress, RegionLayout, Rng, Rw, TargetSpec, pattern_check,
    pattern_fill, prepare_targets, run, run_job,
};
