//! GetObject, HeadObject and GetObjectAttributes: one read op for the head (bytes + metadata),
//! then the other stripes streamed in order.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cyvault_store::{ReadRange, StoreError};
use futures::StreamExt;
use futures::stream;

use crate::data::{self, Body};
use crate::error::{GwError, Result};
use crate::layout::{self, HEAD_XATTR, Layout, ObjectMeta};
use crate::put_object::bare_etag;
use crate::vault::Vault;

/// A byte range as the client asked for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeSpec {
    /// `bytes=first-[last]`
    From { first: u64, last: Option<u64> },
    /// `bytes=-n`
    Suffix(u64),
}

impl RangeSpec {
    /// The half-open byte range within an object of `size`, or InvalidRange.
    pub fn resolve(self, size: u64) -> Result<(u64, u64)> {
        match self {
            RangeSpec::From { first, last } => {
                if first >= size || last.is_some_and(|l| l < first) {
                    return Err(GwError::InvalidRange(size));
                }
                Ok((first, last.map_or(size, |l| (l + 1).min(size))))
            }
            RangeSpec::Suffix(n) => {
                if n == 0 || size == 0 {
                    return Err(GwError::InvalidRange(size));
                }
                Ok((size - n.min(size), size))
            }
        }
    }
}

/// Preconditions (RFC 9110 §13 as S3 applies them).
#[derive(Clone, Debug, Default)]
pub struct Conditions {
    pub if_match: Option<String>,
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<SystemTime>,
    pub if_unmodified_since: Option<SystemTime>,
}

fn etag_in(list: &str, etag: &str) -> bool {
    list.split(',').map(bare_etag).any(|t| t == "*" || t == etag)
}

impl Conditions {
    pub fn check(&self, meta: &ObjectMeta) -> Result<()> {
        let mtime = UNIX_EPOCH + Duration::from_secs(meta.mtime_ms / 1000);
        if let Some(m) = &self.if_match {
            if !etag_in(m, &meta.etag) {
                return Err(GwError::PreconditionFailed("If-Match"));
            }
        } else if let Some(t) = self.if_unmodified_since
            && mtime > t
        {
            return Err(GwError::PreconditionFailed("If-Unmodified-Since"));
        }
        if let Some(m) = &self.if_none_match {
            if etag_in(m, &meta.etag) {
                return Err(GwError::NotModified);
            }
        } else if let Some(t) = self.if_modified_since
            && mtime <= t
        {
            return Err(GwError::NotModified);
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Default)]
pub struct GetInput {
    pub range: Option<RangeSpec>,
    pub part_number: Option<i32>,
    pub conditions: Conditions,
    /// HEAD: metadata only.
    pub head_only: bool,
}

pub struct GetOutput {
    pub meta: ObjectMeta,
    /// The half-open range returned when a range or part was asked for.
    pub range: Option<(u64, u64)>,
    pub content_length: u64,
    pub body: Body,
    /// Parts count when a part was asked for.
    pub parts_count: Option<usize>,
}

impl std::fmt::Debug for GetOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetOutput").field("meta", &self.meta).field("range", &self.range).finish_non_exhaustive()
    }
}

/// Part `n` (1-based) of an object as a byte range.
fn part_range(meta: &ObjectMeta, n: i32) -> Result<((u64, u64), usize)> {
    match &meta.layout {
        Layout::Parts { parts, .. } => {
            let idx = usize::try_from(n - 1).ok().filter(|i| *i < parts.len());
            let Some(i) = idx else {
                return Err(GwError::InvalidRange(meta.size));
            };
            let start: u64 = parts[..i].iter().map(|p| p.size).sum();
            Ok(((start, start + parts[i].size), parts.len()))
        }
        _ if n == 1 => Ok(((0, meta.size), 1)),
        _ => Err(GwError::InvalidRange(meta.size)),
    }
}

impl Vault {
    pub async fn get_object(
        self: &Arc<Self>,
        user: &str,
        bucket: &str,
        key: &str,
        input: GetInput,
    ) -> Result<GetOutput> {
        let b = self.bucket_for(user, bucket).await?;
        let head = self.data_obj(&b, layout::head_name(&b.id, key));
        // First read: the metadata plus, when the start is known, the first bytes wanted.
        let first_read = match (input.head_only, input.range, input.part_number) {
            (true, _, _) | (_, Some(RangeSpec::Suffix(_)), _) | (_, _, Some(_)) => {
                ReadRange::Range { offset: 0, len: 0 }
            }
            (false, Some(RangeSpec::From { first, last }), None) => ReadRange::Range {
                offset: first,
                len: last.map_or(self.opts.stripe_size, |l| (l.saturating_sub(first) + 1).min(self.opts.stripe_size)),
            },
            (false, None, None) => ReadRange::Range { offset: 0, len: self.opts.stripe_size },
        };
        let (reply, xattrs) = match self.store.read_with_xattrs(&head, first_read).await {
            Ok(r) => r,
            Err(StoreError::NotFound(_)) => return Err(GwError::NoSuchKey(key.into())),
            Err(e) => return Err(e.into()),
        };
        let raw = xattrs.get(HEAD_XATTR).ok_or_else(|| GwError::CorruptRecord {
            what: format!("head of {key:?}"),
            why: "no metadata xattr".into(),
        })?;
        let meta: ObjectMeta = layout::decode("object metadata", raw)?;
        input.conditions.check(&meta)?;
        let mut parts_count = None;
        let range = match (input.part_number, input.range) {
            (Some(n), _) => {
                let (r, count) = part_range(&meta, n)?;
                parts_count = Some(count);
                Some(r)
            }
            (None, Some(spec)) => Some(spec.resolve(meta.size)?),
            (None, None) => None,
        };
        let (start, end) = range.unwrap_or((0, meta.size));
        let content_length = end - start;
        if input.head_only {
            return Ok(GetOutput { meta, range, content_length, body: stream::empty().boxed(), parts_count });
        }
        // Bytes of the head the first read brought, when they start where the answer starts.
        let head_bytes: Bytes = match (&meta.layout, first_read) {
            (Layout::Parts { .. }, _) => Bytes::new(),
            (_, ReadRange::Range { offset, .. }) if offset == start && len_nonzero(first_read) => {
                let n = (reply.data.len() as u64).min(content_length) as usize;
                reply.data.slice(..n)
            }
            _ => Bytes::new(),
        };
        let rest = data::plan(&b.id, key, &meta, start + head_bytes.len() as u64, end);
        let tail = data::read_segments(self.clone(), self.data_pool(&b).to_owned(), rest, self.opts.read_ahead);
        let body =
            if head_bytes.is_empty() { tail } else { stream::once(async move { Ok(head_bytes) }).chain(tail).boxed() };
        Ok(GetOutput { meta, range, content_length, body, parts_count })
    }
}

fn len_nonzero(r: ReadRange) -> bool {
    matches!(r, ReadRange::Range { len, .. } if len > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(spec: RangeSpec, size: u64, expect: Option<(u64, u64)>) {
        assert_eq!(spec.resolve(size).ok(), expect, "{spec:?} of {size}");
    }

    #[test]
    fn ranges() {
        check(RangeSpec::From { first: 0, last: Some(9) }, 100, Some((0, 10)));
        check(RangeSpec::From { first: 90, last: Some(200) }, 100, Some((90, 100)));
        check(RangeSpec::From { first: 50, last: None }, 100, Some((50, 100)));
        check(RangeSpec::From { first: 100, last: None }, 100, None);
        check(RangeSpec::From { first: 5, last: Some(4) }, 100, None);
        check(RangeSpec::Suffix(10), 100, Some((90, 100)));
        check(RangeSpec::Suffix(500), 100, Some((0, 100)));
        check(RangeSpec::Suffix(0), 100, None);
        check(RangeSpec::From { first: 0, last: Some(0) }, 0, None);
    }

    #[test]
    fn conditions() {
        let meta = ObjectMeta {
            size: 1,
            etag: "abc".into(),
            mtime_ms: 10_000,
            tag: "t".into(),
            layout: Layout::Inline,
            headers: Default::default(),
            user_meta: Default::default(),
            tags: vec![],
            checksum: None,
        };
        let at = |s| Some(UNIX_EPOCH + Duration::from_secs(s));
        let c = |im: Option<&str>, inm: Option<&str>, ims, ius| Conditions {
            if_match: im.map(String::from),
            if_none_match: inm.map(String::from),
            if_modified_since: ims,
            if_unmodified_since: ius,
        };
        let code = |c: Conditions| c.check(&meta).err().map(|e| e.to_s3().code().as_str().to_string());
        assert_eq!(code(c(Some("\"abc\""), None, None, None)), None);
        assert_eq!(code(c(Some("\"x\""), None, None, None)).as_deref(), Some("PreconditionFailed"));
        assert_eq!(code(c(None, Some("\"abc\""), None, None)).as_deref(), Some("NotModified"));
        assert_eq!(code(c(None, Some("*"), None, None)).as_deref(), Some("NotModified"));
        assert_eq!(code(c(None, None, at(10), None)).as_deref(), Some("NotModified"));
        assert_eq!(code(c(None, None, at(9), None)), None);
        assert_eq!(code(c(None, None, None, at(9))).as_deref(), Some("PreconditionFailed"));
        // If-Match wins over If-Unmodified-Since; If-None-Match over If-Modified-Since.
        assert_eq!(code(c(Some("abc"), None, None, at(9))), None);
        assert_eq!(code(c(None, Some("zzz"), at(10), None)), None);
    }
}
