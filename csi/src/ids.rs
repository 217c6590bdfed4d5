//! Volume and snapshot ids: versioned, and carrying what a later call needs (the pool and the
//! uuid naming the image), so DeleteVolume or NodeStage never needs a lookup to find the image.
//!
//! Format 1: `cyv1:<kind>:<pool>:<uuid>` where kind is `v` (volume) or `s` (snapshot) and uuid is
//! 32 lowercase hex digits. Pools may not contain `:`. At most 128 bytes, as the CSI spec asks.

use std::fmt;

use crate::error::CsiError;

/// What an id names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IdKind {
    Volume,
    Snapshot,
}

/// A parsed volume or snapshot id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectId {
    pub kind: IdKind,
    pub pool: String,
    pub uuid: String,
}

/// Longest id the spec lets a plugin return.
pub const MAX_ID_LEN: usize = 128;

impl ObjectId {
    pub fn new(kind: IdKind, pool: &str, uuid: &str) -> Result<ObjectId, CsiError> {
        let id = ObjectId { kind, pool: pool.to_owned(), uuid: uuid.to_owned() };
        id.check()?;
        Ok(id)
    }

    fn check(&self) -> Result<(), CsiError> {
        if self.pool.is_empty() || self.pool.contains(':') || self.pool.contains('\0') {
            return Err(CsiError::InvalidArgument(format!("pool {:?} cannot be named in an id", self.pool)));
        }
        if self.uuid.len() != 32 || !self.uuid.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
            return Err(CsiError::InvalidArgument(format!("{:?} is not a 32-digit lowercase hex uuid", self.uuid)));
        }
        if self.to_string().len() > MAX_ID_LEN {
            return Err(CsiError::InvalidArgument(format!(
                "pool name {:?} is too long for a {MAX_ID_LEN}-byte id",
                self.pool
            )));
        }
        Ok(())
    }

    /// Parses an id; anything that is not a well-formed format-1 id of `kind` is NotFound for a
    /// lookup (the spec's answer for an unknown id), so callers choose how to report it.
    pub fn parse(kind: IdKind, text: &str) -> Result<ObjectId, CsiError> {
        let bad = |why: &str| CsiError::MalformedId(format!("{text:?}: {why}"));
        let rest = text.strip_prefix("cyv1:").ok_or_else(|| bad("not an id of this driver (format cyv1:…)"))?;
        let (k, rest) = rest.split_once(':').ok_or_else(|| bad("no kind"))?;
        let want = match kind {
            IdKind::Volume => "v",
            IdKind::Snapshot => "s",
        };
        if k != want {
            return Err(bad(match kind {
                IdKind::Volume => "a snapshot id, not a volume id",
                IdKind::Snapshot => "a volume id, not a snapshot id",
            }));
        }
        let (pool, uuid) = rest.rsplit_once(':').ok_or_else(|| bad("no uuid"))?;
        let id = ObjectId { kind, pool: pool.to_owned(), uuid: uuid.to_owned() };
        id.check().map_err(|e| bad(&e.to_string()))?;
        Ok(id)
    }

    /// The RBD image (or local file) holding the volume or snapshot.
    pub fn image(&self) -> String {
        match self.kind {
            IdKind::Volume => format!("csi-vol-{}", self.uuid),
            IdKind::Snapshot => format!("csi-snap-{}", self.uuid),
        }
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = match self.kind {
            IdKind::Volume => "v",
            IdKind::Snapshot => "s",
        };
        write!(f, "cyv1:{k}:{}:{}", self.pool, self.uuid)
    }
}

/// A fresh uuid: 128 random bits as 32 hex digits.
pub fn new_uuid() -> String {
    let a: u128 = rand::random();
    format!("{a:032x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(kind: IdKind, text: &str, expect: Result<(&str, &str), &str>) {
        let got = ObjectId::parse(kind, text).map(|id| (id.pool.clone(), id.uuid.clone())).map_err(|e| e.to_string());
        let expect = expect.map(|(p, u)| (p.to_owned(), u.to_owned())).map_err(str::to_owned);
        assert_eq!(got, expect);
    }

    const U: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn ids_round_trip_and_reject_garbage() {
        let id = ObjectId::new(IdKind::Volume, "rbd", U).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(id.to_string(), format!("cyv1:v:rbd:{U}"));
        assert_eq!(ObjectId::parse(IdKind::Volume, &id.to_string()).ok(), Some(id.clone()));
        assert_eq!(id.image(), format!("csi-vol-{U}"));
        check(IdKind::Volume, &format!("cyv1:v:rbd.fast-1:{U}"), Ok(("rbd.fast-1", U)));
        check(IdKind::Volume, "pvc-123", Err("malformed id \"pvc-123\": not an id of this driver (format cyv1:…)"));
        check(
            IdKind::Volume,
            &format!("cyv1:s:rbd:{U}"),
            Err(&format!("malformed id \"cyv1:s:rbd:{U}\": a snapshot id, not a volume id")),
        );
        check(
            IdKind::Snapshot,
            "cyv1:s:rbd:XYZ",
            Err("malformed id \"cyv1:s:rbd:XYZ\": invalid argument: \"XYZ\" is not a 32-digit lowercase hex uuid"),
        );
        check(
            IdKind::Volume,
            &format!("cyv1:v::{U}"),
            Err(&format!("malformed id \"cyv1:v::{U}\": invalid argument: pool \"\" cannot be named in an id")),
        );
        assert!(ObjectId::new(IdKind::Volume, &"p".repeat(100), U).is_err());
        assert_eq!(new_uuid().len(), 32);
        assert_ne!(new_uuid(), new_uuid());
    }
}
