//! PutObject: stream the body into stripes, commit the head in one atomic op, then index it.

use std::collections::BTreeMap;

use bytes::Bytes;
use cyvault_store::{Guard, ReadRange, StoreError, WriteOp};
use tracing::debug;

use crate::checksum::{Algo, check_content_md5};
use crate::data::{self, Body};
use crate::error::{GwError, Result};
use crate::layout::{
    self, BucketRecord, HEAD_XATTR, Headers, IndexEntry, Layout, ObjectMeta, OwnerTag, StoredChecksum,
};
use crate::vault::Vault;

/// Where the checksum to verify comes from.
#[derive(Default)]
pub enum ExpectedChecksum {
    /// Compute only if an algorithm was named.
    #[default]
    None,
    /// From a request header, known up front.
    Header(String),
    /// From an `aws-chunked` trailer, known once the body has been read.
    Trailer(Box<dyn Fn() -> Option<String> + Send + Sync>),
}

impl std::fmt::Debug for ExpectedChecksum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExpectedChecksum::None => f.write_str("None"),
            ExpectedChecksum::Header(v) => write!(f, "Header({v})"),
            ExpectedChecksum::Trailer(_) => f.write_str("Trailer"),
        }
    }
}

/// Everything about a PUT except the bytes.
#[derive(Debug, Default)]
pub struct PutInput {
    pub headers: Headers,
    pub user_meta: BTreeMap<String, String>,
    pub tags: Vec<(String, String)>,
    pub content_md5: Option<String>,
    pub checksum_algo: Option<Algo>,
    pub checksum: ExpectedChecksum,
    /// `If-None-Match: *`: only create.
    pub if_none_match_star: bool,
    /// `If-Match: etag`: only replace this version.
    pub if_match: Option<String>,
    /// The body's length when the request says it (sizes buffers; not trusted otherwise).
    pub content_length: Option<u64>,
}

#[derive(Clone, Debug)]
pub struct PutOutput {
    pub etag: String,
    pub checksum: Option<StoredChecksum>,
    pub size: u64,
}

pub fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(GwError::InvalidArgument("the object key is empty".into()));
    }
    if key.len() > 1024 {
        return Err(GwError::KeyTooLong(key.len()));
    }
    if key.contains('\0') {
        return Err(GwError::InvalidArgument("the object key contains a NUL character".into()));
    }
    Ok(())
}

/// Strips quotes and a weak prefix from an ETag as clients send it.
pub fn bare_etag(s: &str) -> &str {
    s.trim().trim_start_matches("W/").trim_matches('"')
}

/// Verifies the flexible checksum of an upload against what the client said.
pub(crate) fn verify_checksum(expected: &ExpectedChecksum, computed: Option<&(Algo, String)>) -> Result<()> {
    let want = match expected {
        ExpectedChecksum::None => return Ok(()),
        ExpectedChecksum::Header(v) => Some(v.clone()),
        ExpectedChecksum::Trailer(f) => f(),
    };
    let (Some(want), Some((algo, got))) = (want, computed) else {
        if matches!(expected, ExpectedChecksum::Trailer(_)) {
            return Err(GwError::InvalidRequest("the announced checksum trailer was missing".into()));
        }
        return Ok(());
    };
    algo.check_value(&want)?;
    if want.trim() != got {
        return Err(GwError::BadDigest(format!(
            "the {} you specified did not match the calculated checksum",
            algo.name()
        )));
    }
    Ok(())
}

impl Vault {
    /// Reads the head's metadata and version (`None` when there is no such object).
    pub(crate) async fn head_meta(&self, b: &BucketRecord, key: &str) -> Result<Option<(ObjectMeta, u64)>> {
        match self
            .store
            .read_with_xattrs(&self.data_obj(b, layout::head_name(&b.id, key)), ReadRange::Range { offset: 0, len: 0 })
            .await
        {
            Ok((r, x)) => {
                let raw = x.get(HEAD_XATTR).ok_or_else(|| GwError::CorruptRecord {
                    what: format!("head of {key:?}"),
                    why: "no metadata xattr".into(),
                })?;
                Ok(Some((layout::decode("object metadata", raw)?, r.version)))
            }
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn put_object(
        &self,
        user: &str,
        bucket: &str,
        key: &str,
        input: PutInput,
        body: Body,
    ) -> Result<PutOutput> {
        let b = match self.bucket_for(user, bucket).await {
            Ok(b) => b,
            Err(e) => return Err(data::refuse(body, e).await),
        };
        self.put_into(&b, key, input, body).await
    }

    /// The PUT machinery, shared with CopyObject.
    pub(crate) async fn put_into(&self, b: &BucketRecord, key: &str, input: PutInput, body: Body) -> Result<PutOutput> {
        let guard = match self.put_guard(b, key, &input).await {
            Ok(g) => g,
            Err(e) => return Err(data::refuse(body, e).await),
        };
        self.put_checked(b, key, input, body, guard).await
    }

    /// Checks a PUT's key, tags and preconditions before any byte is read; returns the guard
    /// for the head write.
    async fn put_guard(&self, b: &BucketRecord, key: &str, input: &PutInput) -> Result<Guard> {
        validate_key(key)?;
        crate::tagging::validate_tags(&input.tags, 10)?;
        let mut guard = Guard::None;
        if input.if_none_match_star {
            guard = Guard::CreateExclusive;
        }
        if let Some(want) = &input.if_match {
            match self.head_meta(b, key).await? {
                Some((m, v)) if bare_etag(want) == "*" || m.etag == bare_etag(want) => guard = Guard::Version(v),
                Some(_) => return Err(GwError::PreconditionFailed("If-Match")),
                None => return Err(GwError::NoSuchKey(key.into())),
            }
        }
        if input.if_none_match_star && self.head_meta(b, key).await?.is_some() {
            return Err(GwError::PreconditionFailed("If-None-Match"));
        }
        Ok(guard)
    }

    async fn put_checked(
        &self,
        b: &BucketRecord,
        key: &str,
        input: PutInput,
        body: Body,
        guard: Guard,
    ) -> Result<PutOutput> {
        let tag = layout::random_id(8);
        let owner = layout::encode(&OwnerTag {
            bucket: b.id.clone(),
            key: key.into(),
            tag: tag.clone(),
            upload: None,
            created_ms: layout::now_ms(),
        });
        let names = |n: u32| layout::tail_name(&b.id, &tag, n);
        let algo = input.checksum_algo.or(match &input.checksum {
            ExpectedChecksum::None => None,
            _ => Some(Algo::Sha256),
        });
        let spec = data::StripeSpec {
            pool: self.data_pool(b),
            name: &names,
            owner,
            keep_first: true,
            algo,
            limit: self.opts.max_put_size,
            size_hint: input.content_length,
        };
        let w = data::write_stripes(self, body, spec).await?;
        let check = (|| {
            if let Some(md5) = &input.content_md5 {
                check_content_md5(md5, &w.md5)?;
            }
            verify_checksum(&input.checksum, w.checksum.as_ref())
        })();
        if let Err(e) = check {
            data::remove_all(self, self.data_pool(b), &w.names).await;
            return Err(e);
        }
        let meta = ObjectMeta {
            size: w.size,
            etag: hex::encode(w.md5),
            mtime_ms: layout::now_ms(),
            tag: tag.clone(),
            layout: if w.count <= 1 {
                Layout::Inline
            } else {
                Layout::Striped { stripe: self.opts.stripe_size, count: w.count }
            },
            headers: input.headers,
            user_meta: input.user_meta,
            tags: input.tags,
            checksum: w.checksum.map(|(a, v)| StoredChecksum {
                algo: a.name().into(),
                value: v,
                kind: "FULL_OBJECT".into(),
            }),
        };
        if let Err(e) = self.commit_head(b, key, &meta, w.first, guard).await {
            data::remove_all(self, self.data_pool(b), &w.names).await;
            return Err(e);
        }
        debug!(bucket = %b.name, key, size = meta.size, stripes = w.count, "put object");
        Ok(PutOutput { etag: meta.etag, checksum: meta.checksum, size: meta.size })
    }

    /// Writes the head (bytes + metadata in one atomic op: the commit point), then the index.
    pub(crate) async fn commit_head(
        &self,
        b: &BucketRecord,
        key: &str,
        meta: &ObjectMeta,
        first: Bytes,
        guard: Guard,
    ) -> Result<()> {
        // 1. The index entry goes in pending: from now on listings ask the head about this key.
        let settled = IndexEntry::of(meta);
        let pending = settled.clone().pending();
        self.index_set(b, key, &pending).await?;
        // 2. The head: the commit point.
        let op = WriteOp::new().guard(guard).write_full(first).set_xattr(HEAD_XATTR, layout::encode(meta));
        let written = match self.store.execute(&self.data_obj(b, layout::head_name(&b.id, key)), op).await {
            Ok(_) => Ok(()),
            Err(StoreError::AlreadyExists(_)) => Err(GwError::PreconditionFailed("If-None-Match")),
            Err(StoreError::Conflict(_)) => Err(GwError::PreconditionFailed("If-Match")),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = written {
            // Settle the entry to whatever head is there (conditional on our pending entry, so a
            // newer writer's is left alone; listings are right meanwhile).
            if let Ok(head) = self.head_meta(b, key).await {
                let now = head.map(|(m, _)| IndexEntry::of(&m));
                self.index_settle(b, key, &pending, now.as_ref());
            }
            return Err(e);
        }
        // 3. Settle the entry in the background (group-committed); until then listings read the head.
        self.index_settle(b, key, &pending, Some(&settled));
        Ok(())
    }
}
