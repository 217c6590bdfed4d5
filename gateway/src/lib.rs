//! The S3 gateway: S3 semantics in modules named after the operations, with the `s3s` adapter
//! at the edge, storing objects through `cyvault-store`.
//!
//! Not built yet: this crate holds no code until the S3 gateway issue (#3) lands. It is a
//! workspace member now so that the dependency direction (gateway → store) is fixed from the start.
