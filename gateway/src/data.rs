//! Object bytes: striped writes with bounded memory, and ranged reads across stripes and parts.

use bytes::{Bytes, BytesMut};
use cyvault_store::{ReadRange, StoreError, WriteOp};
use futures::stream::{self, BoxStream, FuturesUnordered};
use futures::{StreamExt, TryStreamExt};

use crate::checksum::{Algo, Digests};
use crate::error::{GwError, Result};
use crate::layout::{self, Layout, OWNER_XATTR, ObjectMeta};
use crate::vault::Vault;

/// A request or response body: chunks of bytes or an error.
pub type Body = BoxStream<'static, Result<Bytes>>;

/// A [`Body`] that is `Sync` (what s3s wants for response bodies): polled through a mutex that
/// only its one consumer ever takes.
pub struct SyncBody(std::sync::Mutex<Body>);

impl std::fmt::Debug for SyncBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SyncBody")
    }
}

impl SyncBody {
    pub fn new(body: Body) -> SyncBody {
        SyncBody(std::sync::Mutex::new(body))
    }
}

impl futures::Stream for SyncBody {
    type Item = std::result::Result<Bytes, std::io::Error>;
    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let body = match this.0.get_mut() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        body.poll_next_unpin(cx).map(|o| o.map(|r| r.map_err(|e| std::io::Error::other(e.to_string()))))
    }
}

/// What a striped write produced.
#[derive(Debug)]
pub struct Written {
    /// Stripe 0 when the caller keeps it (it goes into the head with the metadata).
    pub first: Bytes,
    /// Stripes in all (including a kept first one).
    pub count: u32,
    pub size: u64,
    pub md5: [u8; 16],
    pub checksum: Option<(Algo, String)>,
    /// Names written to the store, to remove if the write is abandoned.
    pub names: Vec<String>,
}

/// How to store one body as stripes.
pub struct StripeSpec<'a> {
    /// The pool the stripes go to (the bucket's data pool).
    pub pool: &'a str,
    /// The object name of stripe `n`.
    pub name: &'a (dyn Fn(u32) -> String + Sync),
    /// The owner tag xattr every written stripe carries.
    pub owner: Bytes,
    /// Keep stripe 0 in memory (it goes into the head) instead of writing it.
    pub keep_first: bool,
    /// The flexible checksum to compute alongside MD5.
    pub algo: Option<Algo>,
    /// Largest body accepted.
    pub limit: u64,
    /// The body's announced length, to size buffers.
    pub size_hint: Option<u64>,
}

impl std::fmt::Debug for StripeSpec<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeSpec")
            .field("keep_first", &self.keep_first)
            .field("algo", &self.algo)
            .finish_non_exhaustive()
    }
}

/// Reads `body` into stripes of `stripe_size` bytes. Stripe `n` goes to `spec.name(n)` with the
/// owner tag xattr, at most `write_depth` writes in flight; with `keep_first`, stripe 0 is
/// returned instead of written. On any error the stripes already written are removed (best
/// effort) before returning.
pub async fn write_stripes(vault: &Vault, mut body: Body, spec: StripeSpec<'_>) -> Result<Written> {
    let StripeSpec { pool, name, owner, keep_first, algo, limit, size_hint } = spec;
    let stripe = vault.opts.stripe_size as usize;
    let depth = vault.opts.write_depth.max(1);
    let mut digests = Digests::new(algo);
    // One allocation per stripe: no regrowth copies, no doubled capacity.
    let reserve = |remaining: Option<u64>| remaining.map_or(stripe, |r| (r as usize).min(stripe));
    let mut buf = BytesMut::with_capacity(reserve(size_hint));
    let mut first = Bytes::new();
    let mut next: u32 = 0;
    let mut names = Vec::new();
    let mut inflight = FuturesUnordered::new();
    let result: Result<()> = async {
        let mut ended = false;
        while !ended {
            match body.next().await {
                Some(chunk) => {
                    let chunk = chunk?;
                    digests.update(&chunk);
                    if digests.size > limit {
                        return Err(GwError::EntityTooLarge(digests.size, limit));
                    }
                    buf.extend_from_slice(&chunk);
                }
                None => ended = true,
            }
            while buf.len() >= stripe || (ended && (!buf.is_empty() || next == 0)) {
                let take = buf.len().min(stripe);
                let data = buf.split_to(take).freeze();
                if buf.capacity() < stripe && !ended {
                    let left = size_hint.map(|h| h.saturating_sub(digests.size) + buf.len() as u64);
                    buf.reserve(reserve(left).saturating_sub(buf.len()));
                }
                let n = next;
                next += 1;
                if n == 0 && keep_first {
                    first = data;
                } else {
                    let obj = vault.data_obj_in(pool, name(n));
                    names.push(obj.name.clone());
                    let op = WriteOp::new().write_full(data).set_xattr(OWNER_XATTR, owner.clone());
                    inflight.push(async move { vault.store.execute(&obj, op).await.map(|_| ()) });
                    while inflight.len() >= depth {
                        if let Some(r) = inflight.next().await {
                            r?;
                        }
                    }
                }
                if ended && buf.is_empty() {
                    break;
                }
            }
        }
        while let Some(r) = inflight.next().await {
            r?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        drop(inflight);
        remove_all(vault, pool, &names).await;
        return Err(e);
    }
    let size = digests.size;
    let (md5, checksum) = digests.finish();
    Ok(Written { first, count: next, size, md5, checksum, names })
}

/// Bytes of a refused request body read and thrown away so the connection stays usable.
const DRAIN_LIMIT: u64 = 16 << 20;

/// Answers `err` for a request whose body was not read: reads (and drops) up to 16 MiB of it
/// first, so the client's keep-alive connection stays usable; past that the connection closes.
pub async fn refuse(mut body: Body, err: GwError) -> GwError {
    let mut seen = 0u64;
    while seen <= DRAIN_LIMIT {
        match body.next().await {
            Some(Ok(chunk)) => seen += chunk.len() as u64,
            _ => break,
        }
    }
    err
}

/// Removes objects, ignoring failures (leftovers are the sweeper's).
pub async fn remove_all(vault: &Vault, pool: &str, names: &[String]) {
    stream::iter(names.iter().cloned())
        .for_each_concurrent(8, |n| async move { vault.remove_data_quietly(pool, &n).await })
        .await;
}

/// One piece of a read: `len` bytes at `offset` of object `name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub name: String,
    pub offset: u64,
    pub len: u64,
}

/// The segments holding bytes [start, end) of the object described by `meta`.
pub fn plan(bid: &str, key: &str, meta: &ObjectMeta, start: u64, end: u64) -> Vec<Segment> {
    let end = end.min(meta.size);
    let mut out = Vec::new();
    if start >= end {
        return out;
    }
    match &meta.layout {
        Layout::Inline => out.push(Segment { name: layout::head_name(bid, key), offset: start, len: end - start }),
        Layout::Striped { stripe, .. } => {
            let mut pos = start;
            while pos < end {
                let n = pos / stripe;
                let within = pos % stripe;
                let len = (stripe - within).min(end - pos);
                let name =
                    if n == 0 { layout::head_name(bid, key) } else { layout::tail_name(bid, &meta.tag, n as u32) };
                out.push(Segment { name, offset: within, len });
                pos += len;
            }
        }
        Layout::Parts { upload, parts } => {
            let mut base = 0u64;
            for p in parts {
                let (ps, pe) = (base, base + p.size);
                base = pe;
                if pe <= start || ps >= end {
                    continue;
                }
                let mut pos = start.max(ps) - ps;
                let stop = end.min(pe) - ps;
                while pos < stop {
                    let n = pos / p.stripe;
                    let within = pos % p.stripe;
                    let len = (p.stripe - within).min(stop - pos);
                    out.push(Segment {
                        name: layout::part_stripe_name(bid, upload, &p.tag, n as u32),
                        offset: within,
                        len,
                    });
                    pos += len;
                }
            }
        }
    }
    out
}

/// Streams the segments in order with `ahead` reads in flight. A segment that comes back short
/// means stored data went missing: the stream ends with an error rather than wrong bytes.
pub fn read_segments(vault: std::sync::Arc<Vault>, pool: String, segments: Vec<Segment>, ahead: usize) -> Body {
    stream::iter(segments)
        .map(move |seg| {
            let vault = vault.clone();
            let obj = vault.data_obj_in(&pool, seg.name.clone());
            async move {
                let got = vault.store.read(&obj, ReadRange::Range { offset: seg.offset, len: seg.len }).await;
                match got {
                    Ok(r) if r.data.len() as u64 == seg.len => Ok(r.data),
                    Ok(r) => Err(GwError::Store(StoreError::corrupt(
                        seg.name.clone(),
                        format!(
                            "stripe holds {} of the {} bytes expected at offset {}",
                            r.data.len(),
                            seg.len,
                            seg.offset
                        ),
                    ))),
                    Err(StoreError::NotFound(_)) => Err(GwError::Store(StoreError::corrupt(
                        seg.name.clone(),
                        "a stripe of this object is missing (overwritten or deleted during the read?)",
                    ))),
                    Err(e) => Err(e.into()),
                }
            }
        })
        .buffered(ahead.max(1))
        .into_stream()
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{Headers, PartRef};

    fn meta(size: u64, layout: Layout) -> ObjectMeta {
        ObjectMeta {
            size,
            etag: String::new(),
            mtime_ms: 0,
            tag: "T".into(),
            layout,
            headers: Headers::default(),
            user_meta: Default::default(),
            tags: vec![],
            checksum: None,
        }
    }

    fn seg(name: &str, offset: u64, len: u64) -> Segment {
        Segment { name: name.into(), offset, len }
    }

    #[track_caller]
    fn check(m: &ObjectMeta, start: u64, end: u64, expect: &[Segment]) {
        assert_eq!(plan("B", "k", m, start, end), expect);
    }

    #[test]
    fn plans() {
        let inline = meta(10, Layout::Inline);
        check(&inline, 0, 10, &[seg("cyv.h.B.k", 0, 10)]);
        check(&inline, 3, 100, &[seg("cyv.h.B.k", 3, 7)]);
        check(&inline, 10, 10, &[]);

        let striped = meta(10, Layout::Striped { stripe: 4, count: 3 });
        check(&striped, 0, 10, &[seg("cyv.h.B.k", 0, 4), seg("cyv.t.B.T.1", 0, 4), seg("cyv.t.B.T.2", 0, 2)]);
        check(&striped, 5, 9, &[seg("cyv.t.B.T.1", 1, 3), seg("cyv.t.B.T.2", 0, 1)]);

        let part = |n: i32, tag: &str, size: u64| PartRef {
            number: n,
            tag: tag.into(),
            size,
            stripe: 4,
            etag: String::new(),
            checksum: None,
        };
        let parts = meta(11, Layout::Parts { upload: "U".into(), parts: vec![part(1, "a", 6), part(3, "b", 5)] });
        check(
            &parts,
            0,
            11,
            &[
                seg("cyv.p.B.U.a.0", 0, 4),
                seg("cyv.p.B.U.a.1", 0, 2),
                seg("cyv.p.B.U.b.0", 0, 4),
                seg("cyv.p.B.U.b.1", 0, 1),
            ],
        );
        check(&parts, 5, 8, &[seg("cyv.p.B.U.a.1", 1, 1), seg("cyv.p.B.U.b.0", 0, 2)]);
    }
}
