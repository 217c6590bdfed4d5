//! Multipart uploads: parts are written as stripes of their own; CompleteMultipartUpload writes
//! a head whose manifest lists them, so no byte is copied.

use std::collections::BTreeMap;
use std::sync::Arc;

use cyvault_store::{Guard, StoreError};

use crate::checksum::{self, Algo};
use crate::data::{self, Body};
use crate::error::{GwError, Result};
use crate::get_object::{GetInput, RangeSpec};
use crate::layout::{
    self, BucketRecord, Headers, Layout, ObjectMeta, OwnerTag, PartRecord, PartRef, StoredChecksum, UploadRecord,
};
use crate::put_object::{ExpectedChecksum, PutOutput, bare_etag, validate_key, verify_checksum};
use crate::vault::Vault;

pub const MIN_PART_SIZE: u64 = 5 << 20;
pub const MAX_PART_NUMBER: i32 = 10_000;

#[derive(Debug, Default)]
pub struct CreateUploadInput {
    pub headers: Headers,
    pub user_meta: BTreeMap<String, String>,
    pub tags: Vec<(String, String)>,
    pub checksum_algo: Option<Algo>,
    /// COMPOSITE (default) or FULL_OBJECT.
    pub checksum_type: Option<String>,
}

/// Everything about an UploadPart except where it goes and its bytes.
#[derive(Debug, Default)]
pub struct PartInput {
    pub number: i32,
    pub content_md5: Option<String>,
    pub checksum_algo: Option<Algo>,
    pub expected: ExpectedChecksum,
    /// The body's announced length, to size buffers.
    pub size_hint: Option<u64>,
}

#[derive(Debug)]
pub struct CompletedPart {
    pub number: i32,
    pub etag: String,
}

/// A page of ListParts.
#[derive(Debug, Default)]
pub struct PartsPage {
    pub parts: Vec<PartRecord>,
    pub truncated: bool,
    pub next_marker: Option<i32>,
}

fn check_part_number(n: i32) -> Result<()> {
    if !(1..=MAX_PART_NUMBER).contains(&n) {
        return Err(GwError::InvalidArgument(format!("part number {n} is outside 1..=10000")));
    }
    Ok(())
}

impl Vault {
    async fn upload_record(&self, b: &BucketRecord, key: &str, upload: &str) -> Result<UploadRecord> {
        let name = self.obj(layout::uploads_name(&b.id));
        let got = match self.store.omap_get(&name, &[upload.to_string()]).await {
            Ok(m) => m,
            Err(StoreError::NotFound(_)) => BTreeMap::new(),
            Err(e) => return Err(e.into()),
        };
        match got.get(upload) {
            Some(raw) => {
                let rec: UploadRecord = layout::decode("upload record", raw)?;
                if rec.key != key {
                    return Err(GwError::NoSuchUpload(upload.into()));
                }
                Ok(rec)
            }
            None => Err(GwError::NoSuchUpload(upload.into())),
        }
    }

    pub async fn create_upload(&self, user: &str, bucket: &str, key: &str, input: CreateUploadInput) -> Result<String> {
        validate_key(key)?;
        crate::tagging::validate_tags(&input.tags, 10)?;
        if let Some(t) = &input.checksum_type
            && t != "COMPOSITE"
            && t != "FULL_OBJECT"
        {
            return Err(GwError::InvalidRequest(format!("unknown checksum type {t:?}")));
        }
        let b = self.bucket_for(user, bucket).await?;
        let upload = format!("{}{}", layout::random_id(4), layout::random_id(12));
        let rec = UploadRecord {
            key: key.into(),
            upload: upload.clone(),
            initiated_ms: layout::now_ms(),
            owner: user.into(),
            headers: input.headers,
            user_meta: input.user_meta,
            tags: input.tags,
            checksum_algo: input.checksum_algo.map(|a| a.name().to_string()),
            checksum_type: input.checksum_type,
        };
        self.store
            .omap_set(&self.obj(layout::uploads_name(&b.id)), BTreeMap::from([(upload.clone(), layout::encode(&rec))]))
            .await?;
        Ok(upload)
    }

    /// Writes one part (replacing an earlier upload of the same number).
    pub async fn upload_part(
        &self,
        user: &str,
        (bucket, key, upload): (&str, &str, &str),
        part: PartInput,
        body: Body,
    ) -> Result<PartRecord> {
        let PartInput { number, content_md5, checksum_algo, expected, size_hint } = part;
        let checked = async {
            check_part_number(number)?;
            let b = self.bucket_for(user, bucket).await?;
            let rec = self.upload_record(&b, key, upload).await?;
            Ok::<_, GwError>((b, rec))
        };
        let (b, rec) = match checked.await {
            Ok(x) => x,
            Err(e) => return Err(data::refuse(body, e).await),
        };
        let algo = checksum_algo.or_else(|| rec.checksum_algo.as_deref().and_then(|a| Algo::parse(a).ok())).or(
            match &expected {
                ExpectedChecksum::None => None,
                _ => Some(Algo::Sha256),
            },
        );
        let ptag = layout::random_id(6);
        let owner = layout::encode(&OwnerTag {
            bucket: b.id.clone(),
            key: key.into(),
            tag: ptag.clone(),
            upload: Some(upload.into()),
            created_ms: layout::now_ms(),
        });
        let names = |n: u32| layout::part_stripe_name(&b.id, upload, &ptag, n);
        let spec = data::StripeSpec {
            pool: self.data_pool(&b),
            name: &names,
            owner,
            keep_first: false,
            algo,
            limit: self.opts.max_put_size,
            size_hint,
        };
        let w = data::write_stripes(self, body, spec).await?;
        let check = (|| {
            if let Some(md5) = &content_md5 {
                checksum::check_content_md5(md5, &w.md5)?;
            }
            verify_checksum(&expected, w.checksum.as_ref())
        })();
        if let Err(e) = check {
            data::remove_all(self, self.data_pool(&b), &w.names).await;
            return Err(e);
        }
        let part = PartRecord {
            number,
            tag: ptag,
            size: w.size,
            stripe: self.opts.stripe_size,
            etag: hex::encode(w.md5),
            mtime_ms: layout::now_ms(),
            checksum: w.checksum.map(|(a, v)| StoredChecksum {
                algo: a.name().into(),
                value: v,
                kind: "COMPOSITE".into(),
            }),
        };
        let parts_obj = self.obj(layout::parts_name(&b.id, upload));
        let key_n = layout::part_key(number);
        // The record that this part replaces, to remove its stripes once the new one is in.
        let old = match self.store.omap_get(&parts_obj, std::slice::from_ref(&key_n)).await {
            Ok(m) => m.get(&key_n).map(|raw| layout::decode::<PartRecord>("part record", raw)).transpose()?,
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        if let Err(e) = self.store.omap_set(&parts_obj, BTreeMap::from([(key_n, layout::encode(&part))])).await {
            data::remove_all(self, self.data_pool(&b), &w.names).await;
            return Err(e.into());
        }
        // Aborted or completed meanwhile? Then this part is garbage: take it back out.
        if self.upload_record(&b, key, upload).await.is_err() {
            data::remove_all(self, self.data_pool(&b), &w.names).await;
            return Err(GwError::NoSuchUpload(upload.into()));
        }
        if let Some(old) = old {
            data::remove_all(self, self.data_pool(&b), &part_stripes(&b.id, upload, &old.tag, old.size, old.stripe))
                .await;
        }
        Ok(part)
    }

    /// UploadPartCopy: a part whose bytes come from an existing object (optionally a range).
    #[allow(clippy::too_many_arguments)]
    pub async fn upload_part_copy(
        self: &Arc<Self>,
        user: &str,
        (src_bucket, src_key): (&str, &str),
        range: Option<RangeSpec>,
        conditions: crate::get_object::Conditions,
        bucket: &str,
        key: &str,
        upload: &str,
        number: i32,
    ) -> Result<PartRecord> {
        let src = self
            .get_object(user, src_bucket, src_key, GetInput { range, conditions, ..GetInput::default() })
            .await
            .map_err(|e| match e {
                GwError::NotModified => GwError::PreconditionFailed("x-amz-copy-source-if-none-match"),
                other => other,
            })?;
        let part = PartInput { number, size_hint: Some(src.content_length), ..PartInput::default() };
        self.upload_part(user, (bucket, key, upload), part, src.body).await
    }

    async fn all_parts(&self, b: &BucketRecord, upload: &str) -> Result<Vec<PartRecord>> {
        let all = self.omap_all(&layout::parts_name(&b.id, upload), None).await?;
        all.iter().map(|(_, raw)| layout::decode::<PartRecord>("part record", raw)).collect()
    }

    pub async fn list_parts(
        &self,
        user: &str,
        bucket: &str,
        key: &str,
        upload: &str,
        marker: Option<i32>,
        max: usize,
    ) -> Result<(UploadRecord, PartsPage)> {
        let b = self.bucket_for(user, bucket).await?;
        let rec = self.upload_record(&b, key, upload).await?;
        let all: Vec<PartRecord> =
            self.all_parts(&b, upload).await?.into_iter().filter(|p| marker.is_none_or(|m| p.number > m)).collect();
        let max = max.clamp(1, 1000);
        let truncated = all.len() > max;
        let parts: Vec<PartRecord> = all.into_iter().take(max).collect();
        let next_marker = if truncated { parts.last().map(|p| p.number) } else { None };
        Ok((rec, PartsPage { parts, truncated, next_marker }))
    }

    pub async fn complete_upload(
        &self,
        user: &str,
        bucket: &str,
        key: &str,
        upload: &str,
        listed: Vec<CompletedPart>,
        if_none_match_star: bool,
    ) -> Result<PutOutput> {
        let b = self.bucket_for(user, bucket).await?;
        let rec = self.upload_record(&b, key, upload).await?;
        if listed.is_empty() {
            return Err(GwError::InvalidRequest("You must specify at least one part".into()));
        }
        let stored: BTreeMap<i32, PartRecord> =
            self.all_parts(&b, upload).await?.into_iter().map(|p| (p.number, p)).collect();
        if listed.windows(2).any(|w| w[0].number >= w[1].number) {
            return Err(GwError::InvalidPartOrder);
        }
        let mut refs = Vec::new();
        for (i, lp) in listed.iter().enumerate() {
            let Some(p) = stored.get(&lp.number) else {
                return Err(GwError::InvalidPart(format!("part {} was not uploaded", lp.number)));
            };
            if bare_etag(&lp.etag) != p.etag {
                return Err(GwError::InvalidPart(format!(
                    "part {} has ETag {:?}, not {:?}",
                    lp.number, p.etag, lp.etag
                )));
            }
            if i + 1 < listed.len() && p.size < MIN_PART_SIZE {
                return Err(GwError::EntityTooSmall(lp.number, p.size));
            }
            refs.push(PartRef {
                number: p.number,
                tag: p.tag.clone(),
                size: p.size,
                stripe: p.stripe,
                etag: p.etag.clone(),
                checksum: p.checksum.as_ref().map(|c| c.value.clone()),
            });
        }
        let etag = checksum::multipart_etag(&refs.iter().map(|r| r.etag.clone()).collect::<Vec<_>>())?;
        let checksum = match rec.checksum_algo.as_deref().map(Algo::parse).transpose()? {
            Some(algo) if rec.checksum_type.as_deref() != Some("FULL_OBJECT") => {
                let sums: Option<Vec<String>> = refs.iter().map(|r| r.checksum.clone()).collect();
                match sums {
                    Some(s) => Some(StoredChecksum {
                        algo: algo.name().into(),
                        value: checksum::composite(algo, &s)?,
                        kind: "COMPOSITE".into(),
                    }),
                    None => None,
                }
            }
            _ => None,
        };
        let meta = ObjectMeta {
            size: refs.iter().map(|r| r.size).sum(),
            etag,
            mtime_ms: layout::now_ms(),
            tag: layout::random_id(8),
            layout: Layout::Parts { upload: upload.into(), parts: refs },
            headers: rec.headers.clone(),
            user_meta: rec.user_meta.clone(),
            tags: rec.tags.clone(),
            checksum,
        };
        let guard = if if_none_match_star { Guard::CreateExclusive } else { Guard::None };
        self.commit_head(&b, key, &meta, bytes::Bytes::new(), guard).await?;
        // The upload is over: parts not used go, the records go; used stripes now belong to the head.
        let used: std::collections::HashSet<&str> = match &meta.layout {
            Layout::Parts { parts, .. } => parts.iter().map(|p| p.tag.as_str()).collect(),
            _ => Default::default(),
        };
        for p in stored.values().filter(|p| !used.contains(p.tag.as_str())) {
            data::remove_all(self, self.data_pool(&b), &part_stripes(&b.id, upload, &p.tag, p.size, p.stripe)).await;
        }
        self.drop_upload_records(&b, upload).await;
        Ok(PutOutput { etag: meta.etag, checksum: meta.checksum, size: meta.size })
    }

    async fn drop_upload_records(&self, b: &BucketRecord, upload: &str) {
        self.remove_quietly(&layout::parts_name(&b.id, upload)).await;
        if let Err(e) = self.store.omap_remove(&self.obj(layout::uploads_name(&b.id)), &[upload.to_string()]).await
            && !matches!(e, StoreError::NotFound(_))
        {
            tracing::warn!(upload, error = %e, "could not drop the upload record; the sweeper will");
        }
    }

    pub async fn abort_upload(&self, user: &str, bucket: &str, key: &str, upload: &str) -> Result<()> {
        let b = self.bucket_for(user, bucket).await?;
        let rec = self.upload_record(&b, key, upload).await?;
        self.abort_upload_records(&b, &rec).await
    }

    /// Removes an upload's parts and records. An upload whose Complete wrote the head but died
    /// before dropping the records is over, not abandoned: the parts that head uses stay (they
    /// are the object's data now) and only the records and unused parts go.
    pub(crate) async fn abort_upload_records(&self, b: &BucketRecord, rec: &UploadRecord) -> Result<()> {
        let completed: std::collections::HashSet<String> = match self.head_meta(b, &rec.key).await? {
            Some((m, _)) => match m.layout {
                Layout::Parts { upload, parts } if upload == rec.upload => parts.into_iter().map(|p| p.tag).collect(),
                _ => Default::default(),
            },
            None => Default::default(),
        };
        // The record goes first so racing UploadParts notice and clean up after themselves.
        match self.store.omap_remove(&self.obj(layout::uploads_name(&b.id)), std::slice::from_ref(&rec.upload)).await {
            Ok(_) | Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        for p in self.all_parts(b, &rec.upload).await? {
            if completed.contains(&p.tag) {
                continue;
            }
            data::remove_all(self, self.data_pool(b), &part_stripes(&b.id, &rec.upload, &p.tag, p.size, p.stripe))
                .await;
        }
        self.remove_quietly(&layout::parts_name(&b.id, &rec.upload)).await;
        Ok(())
    }

    pub(crate) async fn all_uploads(&self, b: &BucketRecord) -> Result<Vec<UploadRecord>> {
        let all = self.omap_all(&layout::uploads_name(&b.id), None).await?;
        let mut out: Vec<UploadRecord> =
            all.iter().map(|(_, raw)| layout::decode::<UploadRecord>("upload record", raw)).collect::<Result<_>>()?;
        out.sort_by(|a, b| (&a.key, a.initiated_ms, &a.upload).cmp(&(&b.key, b.initiated_ms, &b.upload)));
        Ok(out)
    }

    /// Uploads in progress, in key then initiation order, after (key, upload id) markers.
    pub async fn list_uploads(
        &self,
        user: &str,
        bucket: &str,
        prefix: &str,
        key_marker: Option<&str>,
        upload_marker: Option<&str>,
    ) -> Result<Vec<UploadRecord>> {
        let b = self.bucket_for(user, bucket).await?;
        let all = self.all_uploads(&b).await?;
        Ok(all
            .into_iter()
            .filter(|u| u.key.starts_with(prefix))
            .filter(|u| match key_marker {
                None | Some("") => true,
                Some(k) => match upload_marker {
                    Some(m) if !m.is_empty() => u.key.as_str() > k || (u.key == k && u.upload.as_str() > m),
                    _ => u.key.as_str() > k,
                },
            })
            .collect())
    }
}

/// The stripe objects of one part.
pub(crate) fn part_stripes(bid: &str, upload: &str, ptag: &str, size: u64, stripe: u64) -> Vec<String> {
    let n = size.div_ceil(stripe.max(1)).max(1) as u32;
    (0..n).map(|i| layout::part_stripe_name(bid, upload, ptag, i)).collect()
}
