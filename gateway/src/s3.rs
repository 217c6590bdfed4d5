//! The s3s adapter: translates S3 DTOs to the core's calls and back. No S3 semantics here.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use futures::{StreamExt, TryStreamExt};
use s3s::dto::*;
use s3s::{S3, S3Error, S3Request, S3Response, S3Result, s3_error};

use crate::checksum::Algo;
use crate::copy_object::CopyInput;
use crate::data::Body;
use crate::error::GwError;
use crate::get_object::{Conditions, GetInput, RangeSpec};
use crate::index::ListQuery;
use crate::layout::{Headers, IndexEntry, Layout, ObjectMeta, StoredChecksum};
use crate::metrics::Metrics;
use crate::multipart::{CompletedPart as CorePart, CreateUploadInput};
use crate::put_object::{ExpectedChecksum, PutInput};
use crate::vault::Vault;

impl From<GwError> for S3Error {
    fn from(e: GwError) -> S3Error {
        if matches!(&e, GwError::Store(_) | GwError::CorruptRecord { .. }) {
            tracing::error!(error = %e, "request failed in storage");
        }
        e.to_s3()
    }
}

/// The `S3` implementation served by s3s.
#[derive(Clone, Debug)]
pub struct Gateway {
    vault: Arc<Vault>,
    metrics: Arc<Metrics>,
    region: String,
}

impl Gateway {
    pub fn new(vault: Arc<Vault>, metrics: Arc<Metrics>, region: String) -> Gateway {
        Gateway { vault, metrics, region }
    }

    async fn user<T>(&self, req: &S3Request<T>) -> S3Result<String> {
        let Some(c) = &req.credentials else {
            return Err(s3_error!(AccessDenied, "anonymous requests are not allowed"));
        };
        match self.vault.key_record(&c.access_key).await? {
            Some(k) => Ok(k.user),
            None => Err(s3_error!(InvalidAccessKeyId)),
        }
    }

    /// Runs one operation, recording its outcome and latency.
    async fn timed<T>(&self, op: &'static str, fut: impl Future<Output = S3Result<T>>) -> S3Result<T> {
        let start = Instant::now();
        let r = fut.await;
        let outcome = match &r {
            Ok(_) => "ok".to_string(),
            Err(e) => e.code().as_str().to_string(),
        };
        self.metrics.observe_op(op, &outcome, start.elapsed());
        r
    }
}

fn time_of(ms: u64) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_millis(ms - ms % 1000))
}

fn system_time(t: &Timestamp) -> SystemTime {
    let odt: time::OffsetDateTime = t.clone().into();
    odt.into()
}

fn http_date(t: &Timestamp) -> Option<String> {
    let mut buf = Vec::new();
    t.format(TimestampFormat::HttpDate, &mut buf).ok()?;
    String::from_utf8(buf).ok()
}

fn parse_http_date(s: &str) -> Option<Timestamp> {
    Timestamp::parse(TimestampFormat::HttpDate, s).ok()
}

fn etag(s: &str) -> ETag {
    ETag::Strong(s.to_string())
}

fn cond(c: &Option<ETagCondition>) -> Option<String> {
    c.as_ref().map(|c| match c {
        ETagCondition::Any => "*".to_string(),
        ETagCondition::ETag(e) => e.value().to_string(),
    })
}

fn body_of(blob: Option<StreamingBlob>) -> Body {
    match blob {
        Some(b) => b
            .map_err(|e| {
                // A chunk of an `aws-chunked` body whose signature does not verify.
                // (s3s does not export its error type; its Display is stable: "…: SignatureMismatch".)
                if e.to_string().ends_with("SignatureMismatch") {
                    GwError::ChunkSignatureMismatch
                } else {
                    GwError::IncompleteBody(e.to_string())
                }
            })
            .boxed(),
        None => futures::stream::empty().boxed(),
    }
}

fn user_meta(m: Option<Metadata>) -> BTreeMap<String, String> {
    m.map(|m| m.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect()).unwrap_or_default()
}

fn out_meta(m: &BTreeMap<String, String>) -> Option<Metadata> {
    (!m.is_empty()).then(|| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

fn range_spec(r: Option<Range>) -> Option<RangeSpec> {
    r.map(|r| match r {
        Range::Int { first, last } => RangeSpec::From { first, last },
        Range::Suffix { length } => RangeSpec::Suffix(length),
    })
}

/// The checksum algorithm a request names (explicitly, by a value header, or by its trailer).
fn algo_of<T>(
    req: &S3Request<T>,
    named: Option<&ChecksumAlgorithm>,
    values: &[(Algo, Option<&String>)],
) -> S3Result<Option<Algo>> {
    if let Some(a) = named {
        return Ok(Some(Algo::parse(a.as_str())?));
    }
    for (a, v) in values {
        if v.is_some() {
            return Ok(Some(*a));
        }
    }
    if let Some(t) = req.headers.get("x-amz-trailer").and_then(|v| v.to_str().ok()) {
        for a in Algo::ALL {
            if t.trim().eq_ignore_ascii_case(&a.header()) {
                return Ok(Some(a));
            }
        }
    }
    Ok(None)
}

/// Where the expected checksum value comes from: a header, or the `aws-chunked` trailer.
fn expected_of<T>(req: &S3Request<T>, algo: Option<Algo>, values: &[(Algo, Option<&String>)]) -> ExpectedChecksum {
    for (a, v) in values {
        if let Some(v) = v
            && Some(*a) == algo
        {
            return ExpectedChecksum::Header((*v).clone());
        }
    }
    let trailer = req.headers.get("x-amz-trailer").and_then(|v| v.to_str().ok()).map(|s| s.trim().to_ascii_lowercase());
    if let (Some(name), Some(th)) = (trailer, req.trailing_headers.clone())
        && name.starts_with("x-amz-checksum-")
    {
        return ExpectedChecksum::Trailer(Box::new(move || {
            th.read(|h| h.get(name.as_str()).and_then(|v| v.to_str().ok()).map(str::to_string)).flatten()
        }));
    }
    ExpectedChecksum::None
}

macro_rules! checksum_values {
    ($i:expr) => {
        [
            (Algo::Crc32, $i.checksum_crc32.as_ref()),
            (Algo::Crc32c, $i.checksum_crc32c.as_ref()),
            (Algo::Sha1, $i.checksum_sha1.as_ref()),
            (Algo::Sha256, $i.checksum_sha256.as_ref()),
            (Algo::Crc64Nvme, $i.checksum_crc64nvme.as_ref()),
        ]
    };
}

/// Fills the checksum fields of an output from a stored checksum.
macro_rules! set_checksum {
    ($out:expr, $sum:expr) => {
        if let Some(c) = $sum {
            let v = Some(c.value.clone());
            match Algo::parse(&c.algo) {
                Ok(Algo::Crc32) => $out.checksum_crc32 = v,
                Ok(Algo::Crc32c) => $out.checksum_crc32c = v,
                Ok(Algo::Sha1) => $out.checksum_sha1 = v,
                Ok(Algo::Sha256) => $out.checksum_sha256 = v,
                Ok(Algo::Crc64Nvme) => $out.checksum_crc64nvme = v,
                Err(_) => {}
            }
        }
    };
}

/// The fields GetObject and HeadObject answer alike: validators, length and range, metadata and
/// the stored headers (with the request's `response-*` overrides).
macro_rules! object_output {
    ($ty:ident { $($field:ident: $value:expr),* $(,)? }, $i:expr, $out:expr, $sum:expr) => {{
        let (i, out, m) = ($i, &$out, &$out.meta);
        let mut o = $ty {
            $($field: $value,)*
            content_length: Some(out.content_length as i64),
            content_range: out.range.map(|(s, e)| format!("bytes {s}-{}/{}", e.saturating_sub(1), m.size)),
            accept_ranges: Some("bytes".into()),
            e_tag: Some(etag(&m.etag)),
            last_modified: Some(time_of(m.mtime_ms)),
            metadata: out_meta(&m.user_meta),
            content_type: i.response_content_type.clone().or_else(|| m.headers.content_type.clone()),
            content_encoding: i.response_content_encoding.clone().or_else(|| m.headers.content_encoding.clone()),
            content_disposition: i.response_content_disposition.clone().or_else(|| m.headers.content_disposition.clone()),
            content_language: i.response_content_language.clone().or_else(|| m.headers.content_language.clone()),
            cache_control: i.response_cache_control.clone().or_else(|| m.headers.cache_control.clone()),
            expires: i.response_expires.clone().or_else(|| m.headers.expires.as_deref().and_then(parse_http_date)),
            parts_count: out.parts_count.map(|n| n as i32),
            checksum_type: $sum.as_ref().map(checksum_type),
            ..Default::default()
        };
        set_checksum!(o, $sum.as_ref());
        o
    }};
}

/// The preconditions of a GetObject / HeadObject input.
macro_rules! conditions_of {
    ($i:expr) => {
        Conditions {
            if_match: cond(&$i.if_match),
            if_none_match: cond(&$i.if_none_match),
            if_modified_since: $i.if_modified_since.as_ref().map(system_time),
            if_unmodified_since: $i.if_unmodified_since.as_ref().map(system_time),
        }
    };
}

fn checksum_type(c: &StoredChecksum) -> ChecksumType {
    ChecksumType::from(c.kind.clone())
}

fn headers_in(
    content_type: Option<String>,
    content_encoding: Option<String>,
    content_disposition: Option<String>,
    content_language: Option<String>,
    cache_control: Option<String>,
    expires: Option<&Timestamp>,
) -> Headers {
    Headers {
        content_type,
        content_encoding,
        content_disposition,
        content_language,
        cache_control,
        expires: expires.and_then(http_date),
    }
}

fn tags_in(t: Option<&String>) -> S3Result<Vec<(String, String)>> {
    Ok(match t {
        Some(s) => crate::tagging::parse_tagging_header(s)?,
        None => vec![],
    })
}

fn tag_set(tags: &[(String, String)]) -> TagSet {
    tags.iter().map(|(k, v)| Tag { key: Some(k.clone()), value: Some(v.clone()) }).collect()
}

fn tags_from(set: TagSet) -> Vec<(String, String)> {
    set.into_iter().map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default())).collect()
}

fn copy_source(c: &CopySource) -> S3Result<(String, String)> {
    match c {
        CopySource::Bucket { bucket, key, version_id } => {
            if version_id.as_deref().is_some_and(|v| v != "null") {
                return Err(s3_error!(NoSuchVersion, "this gateway keeps one version per key (version id \"null\")"));
            }
            Ok((bucket.to_string(), key.to_string()))
        }
        _ => Err(s3_error!(NotImplemented, "access point copy sources are not supported")),
    }
}

/// `bytes=a-b` of x-amz-copy-source-range.
fn copy_range(s: Option<&String>) -> S3Result<Option<RangeSpec>> {
    let Some(s) = s else { return Ok(None) };
    let bad = || s3_error!(InvalidArgument, "x-amz-copy-source-range must be bytes=first-last");
    let r = s.trim().strip_prefix("bytes=").ok_or_else(bad)?;
    let (a, b) = r.split_once('-').ok_or_else(bad)?;
    let first: u64 = a.parse().map_err(|_| bad())?;
    let last: u64 = b.parse().map_err(|_| bad())?;
    if last < first {
        return Err(bad());
    }
    Ok(Some(RangeSpec::From { first, last: Some(last) }))
}

/// Percent-encodes for `encoding-type=url` (everything but unreserved characters and `/`).
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn enc(url: bool, s: String) -> String {
    if url { url_encode(&s) } else { s }
}

/// Whether a listing asked for `encoding-type=url`.
fn url_encoded(e: Option<&EncodingType>) -> bool {
    e.is_some_and(|e| e.as_str() == EncodingType::URL)
}

fn common_prefixes(url: bool, prefixes: Vec<String>) -> Option<CommonPrefixList> {
    Some(prefixes.into_iter().map(|p| CommonPrefix { prefix: Some(enc(url, p)) }).collect())
}

fn token_of(marker: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(marker)
}

fn marker_of(token: &str) -> S3Result<String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|v| String::from_utf8(v).ok())
        .ok_or_else(|| s3_error!(InvalidArgument, "the continuation token is not one this gateway issued"))
}

fn max_keys(m: Option<i32>) -> S3Result<usize> {
    match m {
        None => Ok(1000),
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "max-keys must not be negative")),
        Some(n) => Ok((n as usize).min(1000)),
    }
}

fn owner(user: &str) -> Owner {
    Owner { id: Some(user.to_string()), display_name: Some(user.to_string()) }
}

fn object_of(key: String, e: &IndexEntry, url: bool, owner_of: Option<&str>) -> Object {
    Object {
        key: Some(enc(url, key)),
        size: Some(e.size as i64),
        e_tag: Some(etag(&e.etag)),
        last_modified: Some(time_of(e.mtime_ms)),
        storage_class: Some(ObjectStorageClass::from_static(ObjectStorageClass::STANDARD)),
        owner: owner_of.map(owner),
        ..Object::default()
    }
}

impl Gateway {
    async fn list(
        &self,
        user: &str,
        bucket: &str,
        prefix: Option<String>,
        delimiter: Option<String>,
        start_after: Option<String>,
        max: usize,
    ) -> S3Result<crate::index::ListPage> {
        let b = self.vault.bucket_for(user, bucket).await?;
        let q = ListQuery { prefix: prefix.unwrap_or_default(), delimiter, start_after, max_keys: max };
        Ok(self.vault.list_index(&b, &q).await?)
    }
}

fn meta_checksum_out(meta: &ObjectMeta, enabled: bool, whole: bool) -> Option<StoredChecksum> {
    if enabled && whole { meta.checksum.clone() } else { None }
}

#[async_trait::async_trait]
impl S3 for Gateway {
    async fn list_buckets(&self, req: S3Request<ListBucketsInput>) -> S3Result<S3Response<ListBucketsOutput>> {
        self.timed("ListBuckets", async {
            let user = self.user(&req).await?;
            let prefix = req.input.prefix.clone().unwrap_or_default();
            let buckets: Vec<Bucket> = self
                .vault
                .list_buckets(&user)
                .await?
                .into_iter()
                .filter(|b| b.name.starts_with(&prefix))
                .map(|b| Bucket {
                    name: Some(b.name),
                    creation_date: Some(time_of(b.created_ms)),
                    bucket_region: Some(self.region.clone()),
                })
                .collect();
            Ok(S3Response::new(ListBucketsOutput {
                buckets: Some(buckets),
                owner: Some(owner(&user)),
                ..Default::default()
            }))
        })
        .await
    }

    async fn create_bucket(&self, req: S3Request<CreateBucketInput>) -> S3Result<S3Response<CreateBucketOutput>> {
        self.timed("CreateBucket", async {
            let user = self.user(&req).await?;
            let location = req
                .input
                .create_bucket_configuration
                .as_ref()
                .and_then(|c| c.location_constraint.as_ref())
                .map(|l| l.as_str().to_owned());
            self.vault.create_bucket_at(&user, &req.input.bucket, location.as_deref()).await?;
            Ok(S3Response::new(CreateBucketOutput { location: Some(format!("/{}", req.input.bucket)) }))
        })
        .await
    }

    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
        self.timed("HeadBucket", async {
            let user = self.user(&req).await?;
            self.vault.bucket_for(&user, &req.input.bucket).await?;
            Ok(S3Response::new(HeadBucketOutput { bucket_region: Some(self.region.clone()), ..Default::default() }))
        })
        .await
    }

    async fn delete_bucket(&self, req: S3Request<DeleteBucketInput>) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.timed("DeleteBucket", async {
            let user = self.user(&req).await?;
            self.vault.delete_bucket(&user, &req.input.bucket).await?;
            Ok(S3Response::new(DeleteBucketOutput {}))
        })
        .await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.timed("GetBucketLocation", async {
            let user = self.user(&req).await?;
            self.vault.bucket_for(&user, &req.input.bucket).await?;
            // us-east-1 is spelled as an empty LocationConstraint.
            let loc = (self.region != "us-east-1").then(|| BucketLocationConstraint::from(self.region.clone()));
            Ok(S3Response::new(GetBucketLocationOutput { location_constraint: loc }))
        })
        .await
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        self.timed("GetBucketVersioning", async {
            let user = self.user(&req).await?;
            self.vault.bucket_for(&user, &req.input.bucket).await?;
            Ok(S3Response::new(GetBucketVersioningOutput::default()))
        })
        .await
    }

    async fn put_object(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        self.timed("PutObject", async {
            let user = self.user(&req).await?;
            let values = checksum_values!(req.input);
            let algo = algo_of(&req, req.input.checksum_algorithm.as_ref(), &values)?;
            let expected = expected_of(&req, algo, &values);
            let i = &req.input;
            let input = PutInput {
                headers: headers_in(
                    i.content_type.clone(),
                    i.content_encoding.clone().filter(|e| e != "aws-chunked"),
                    i.content_disposition.clone(),
                    i.content_language.clone(),
                    i.cache_control.clone(),
                    i.expires.as_ref(),
                ),
                user_meta: user_meta(i.metadata.clone()),
                tags: tags_in(i.tagging.as_ref())?,
                content_md5: i.content_md5.clone(),
                checksum_algo: algo,
                checksum: expected,
                if_none_match_star: matches!(i.if_none_match, Some(ETagCondition::Any)),
                if_match: cond(&i.if_match),
                content_length: i.content_length.and_then(|n| u64::try_from(n).ok()),
            };
            if matches!(i.if_none_match, Some(ETagCondition::ETag(_))) {
                return Err(s3_error!(NotImplemented, "If-None-Match on PUT supports only *"));
            }
            let (bucket, key) = (i.bucket.clone(), i.key.clone());
            let mut req = req;
            let body = body_of(req.input.body.take());
            let out = self.vault.put_object(&user, &bucket, &key, input, body).await?;
            self.metrics.bytes_in(out.size);
            let mut o = PutObjectOutput { e_tag: Some(etag(&out.etag)), ..Default::default() };
            if let Some(c) = &out.checksum {
                o.checksum_type = Some(checksum_type(c));
            }
            set_checksum!(o, out.checksum.as_ref());
            Ok(S3Response::new(o))
        })
        .await
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        self.timed("GetObject", async {
            let user = self.user(&req).await?;
            let i = &req.input;
            if i.version_id.as_deref().is_some_and(|v| v != "null") {
                return Err(s3_error!(NoSuchVersion));
            }
            let input = GetInput {
                range: range_spec(i.range),
                part_number: i.part_number,
                conditions: conditions_of!(i),
                head_only: false,
            };
            let mut out = self.vault.get_object(&user, &i.bucket, &i.key, input).await?;
            self.metrics.bytes_out(out.content_length);
            let enabled = i.checksum_mode.as_ref().is_some_and(|c| c.as_str() == ChecksumMode::ENABLED);
            let sum = meta_checksum_out(&out.meta, enabled, out.range.is_none());
            let tag_count = (!out.meta.tags.is_empty()).then_some(out.meta.tags.len() as i32);
            let body = std::mem::replace(&mut out.body, futures::stream::empty().boxed());
            let body = Some(StreamingBlob::wrap(crate::data::SyncBody::new(body)));
            let o = object_output!(GetObjectOutput { body: body, tag_count: tag_count }, i, out, sum);
            let status = (out.range.is_some() && i.part_number.is_none()).then_some(http::StatusCode::PARTIAL_CONTENT);
            let mut resp = S3Response::new(o);
            resp.status = status;
            Ok(resp)
        })
        .await
    }

    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        self.timed("HeadObject", async {
            let user = self.user(&req).await?;
            let i = &req.input;
            let input = GetInput {
                range: range_spec(i.range),
                part_number: i.part_number,
                conditions: conditions_of!(i),
                head_only: true,
            };
            let out = self.vault.get_object(&user, &i.bucket, &i.key, input).await?;
            let enabled = i.checksum_mode.as_ref().is_some_and(|c| c.as_str() == ChecksumMode::ENABLED);
            let sum = meta_checksum_out(&out.meta, enabled, out.range.is_none());
            let o = object_output!(HeadObjectOutput {}, i, out, sum);
            let mut resp = S3Response::new(o);
            if out.range.is_some() && i.part_number.is_none() {
                resp.status = Some(http::StatusCode::PARTIAL_CONTENT);
            }
            Ok(resp)
        })
        .await
    }

    async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.timed("DeleteObject", async {
            let user = self.user(&req).await?;
            if req.input.version_id.as_deref().is_some_and(|v| v != "null") {
                return Ok(S3Response::new(DeleteObjectOutput::default()));
            }
            self.vault.delete_object(&user, &req.input.bucket, &req.input.key).await?;
            Ok(S3Response::new(DeleteObjectOutput::default()))
        })
        .await
    }

    async fn delete_objects(&self, req: S3Request<DeleteObjectsInput>) -> S3Result<S3Response<DeleteObjectsOutput>> {
        self.timed("DeleteObjects", async {
            let user = self.user(&req).await?;
            let quiet = req.input.delete.quiet.unwrap_or(false);
            let keys: Vec<String> = req.input.delete.objects.iter().map(|o| o.key.clone()).collect();
            let results = self.vault.delete_objects(&user, &req.input.bucket, keys).await?;
            let (mut deleted, mut errors) = (Vec::new(), Vec::new());
            for r in results {
                match r.error {
                    None if !quiet => deleted.push(DeletedObject { key: Some(r.key), ..Default::default() }),
                    None => {}
                    Some(e) => {
                        let s3 = e.to_s3();
                        errors.push(Error {
                            key: Some(r.key),
                            code: Some(s3.code().as_str().to_string()),
                            message: s3.message().map(str::to_string),
                            version_id: None,
                        });
                    }
                }
            }
            Ok(S3Response::new(DeleteObjectsOutput {
                deleted: Some(deleted),
                errors: Some(errors),
                ..Default::default()
            }))
        })
        .await
    }

    async fn copy_object(&self, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
        self.timed("CopyObject", async {
            let user = self.user(&req).await?;
            let i = &req.input;
            let (sb, sk) = copy_source(&i.copy_source)?;
            let replace = i.metadata_directive.as_ref().is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
            let replace_tags = i.tagging_directive.as_ref().is_some_and(|d| d.as_str() == TaggingDirective::REPLACE);
            let input = CopyInput {
                conditions: Conditions {
                    if_match: cond(&i.copy_source_if_match),
                    if_none_match: cond(&i.copy_source_if_none_match),
                    if_modified_since: i.copy_source_if_modified_since.as_ref().map(system_time),
                    if_unmodified_since: i.copy_source_if_unmodified_since.as_ref().map(system_time),
                },
                replace_meta: replace.then(|| {
                    (
                        headers_in(
                            i.content_type.clone(),
                            i.content_encoding.clone(),
                            i.content_disposition.clone(),
                            i.content_language.clone(),
                            i.cache_control.clone(),
                            i.expires.as_ref(),
                        ),
                        user_meta(i.metadata.clone()),
                    )
                }),
                replace_tags: if replace_tags { Some(tags_in(i.tagging.as_ref())?) } else { None },
                checksum_algo: i.checksum_algorithm.as_ref().map(|a| Algo::parse(a.as_str())).transpose()?,
            };
            let out = self.vault.copy_object(&user, (&sb, &sk), (&i.bucket, &i.key), input).await?;
            let mut r = CopyObjectResult {
                e_tag: Some(etag(&out.put.etag)),
                last_modified: Some(time_of(out.mtime_ms)),
                checksum_type: out.put.checksum.as_ref().map(checksum_type),
                ..Default::default()
            };
            set_checksum!(r, out.put.checksum.as_ref());
            Ok(S3Response::new(CopyObjectOutput { copy_object_result: Some(r), ..Default::default() }))
        })
        .await
    }

    async fn list_objects(&self, req: S3Request<ListObjectsInput>) -> S3Result<S3Response<ListObjectsOutput>> {
        self.timed("ListObjects", async {
            let user = self.user(&req).await?;
            let i = &req.input;
            let url = url_encoded(i.encoding_type.as_ref());
            let max = max_keys(i.max_keys)?;
            let marker = i.marker.clone().filter(|m| !m.is_empty());
            let page = self.list(&user, &i.bucket, i.prefix.clone(), i.delimiter.clone(), marker, max).await?;
            let next_marker = if i.delimiter.is_some() { page.next_marker.clone().map(|m| enc(url, m)) } else { None };
            Ok(S3Response::new(ListObjectsOutput {
                name: Some(i.bucket.clone()),
                prefix: Some(enc(url, i.prefix.clone().unwrap_or_default())),
                marker: Some(enc(url, i.marker.clone().unwrap_or_default())),
                delimiter: i.delimiter.clone().map(|d| enc(url, d)),
                max_keys: Some(max as i32),
                is_truncated: Some(page.truncated),
                next_marker,
                encoding_type: i.encoding_type.clone(),
                contents: Some(page.entries.into_iter().map(|(k, e)| object_of(k, &e, url, Some(&user))).collect()),
                common_prefixes: common_prefixes(url, page.common_prefixes),
                ..Default::default()
            }))
        })
        .await
    }

    async fn list_objects_v2(&self, req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.timed("ListObjectsV2", async {
            let user = self.user(&req).await?;
            let i = &req.input;
            let url = url_encoded(i.encoding_type.as_ref());
            let max = max_keys(i.max_keys)?;
            let after = match &i.continuation_token {
                Some(t) if !t.is_empty() => Some(marker_of(t)?),
                _ => i.start_after.clone().filter(|s| !s.is_empty()),
            };
            let page = self.list(&user, &i.bucket, i.prefix.clone(), i.delimiter.clone(), after, max).await?;
            let fetch_owner = i.fetch_owner.unwrap_or(false);
            let count = page.entries.len() + page.common_prefixes.len();
            Ok(S3Response::new(ListObjectsV2Output {
                name: Some(i.bucket.clone()),
                prefix: Some(enc(url, i.prefix.clone().unwrap_or_default())),
                delimiter: i.delimiter.clone().map(|d| enc(url, d)),
                max_keys: Some(max as i32),
                key_count: Some(count as i32),
                is_truncated: Some(page.truncated),
                continuation_token: i.continuation_token.clone(),
                next_continuation_token: page.next_marker.as_deref().map(token_of),
                start_after: i.start_after.clone().map(|s| enc(url, s)),
                encoding_type: i.encoding_type.clone(),
                contents: Some(
                    page.entries
                        .into_iter()
                        .map(|(k, e)| object_of(k, &e, url, fetch_owner.then_some(user.as_str())))
                        .collect(),
                ),
                common_prefixes: common_prefixes(url, page.common_prefixes),
                ..Default::default()
            }))
        })
        .await
    }

    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        self.timed("ListObjectVersions", async {
            let user = self.user(&req).await?;
            let i = &req.input;
            let url = url_encoded(i.encoding_type.as_ref());
            let max = max_keys(i.max_keys)?;
            let after = i.key_marker.clone().filter(|s| !s.is_empty());
            let page = self.list(&user, &i.bucket, i.prefix.clone(), i.delimiter.clone(), after, max).await?;
            let versions = page
                .entries
                .into_iter()
                .map(|(k, e)| ObjectVersion {
                    key: Some(enc(url, k)),
                    version_id: Some("null".into()),
                    is_latest: Some(true),
                    size: Some(e.size as i64),
                    e_tag: Some(etag(&e.etag)),
                    last_modified: Some(time_of(e.mtime_ms)),
                    storage_class: Some(ObjectVersionStorageClass::from_static(ObjectVersionStorageClass::STANDARD)),
                    owner: Some(owner(&user)),
                    ..Default::default()
                })
                .collect();
            Ok(S3Response::new(ListObjectVersionsOutput {
                name: Some(i.bucket.clone()),
                prefix: Some(enc(url, i.prefix.clone().unwrap_or_default())),
                delimiter: i.delimiter.clone().map(|d| enc(url, d)),
                key_marker: Some(enc(url, i.key_marker.clone().unwrap_or_default())),
                version_id_marker: Some(i.version_id_marker.clone().unwrap_or_default()),
                max_keys: Some(max as i32),
                is_truncated: Some(page.truncated),
                next_key_marker: page.next_marker.clone().map(|m| enc(url, m)),
                next_version_id_marker: page.next_marker.as_ref().map(|_| "null".to_string()),
                encoding_type: i.encoding_type.clone(),
                versions: Some(versions),
                common_prefixes: common_prefixes(url, page.common_prefixes),
                ..Default::default()
            }))
        })
        .await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.timed("CreateMultipartUpload", async {
            let user = self.user(&req).await?;
            let i = &req.input;
            let algo = i.checksum_algorithm.as_ref().map(|a| Algo::parse(a.as_str())).transpose()?;
            let input = CreateUploadInput {
                headers: headers_in(
                    i.content_type.clone(),
                    i.content_encoding.clone(),
                    i.content_disposition.clone(),
                    i.content_language.clone(),
                    i.cache_control.clone(),
                    i.expires.as_ref(),
                ),
                user_meta: user_meta(i.metadata.clone()),
                tags: tags_in(i.tagging.as_ref())?,
                checksum_algo: algo,
                checksum_type: i.checksum_type.as_ref().map(|t| t.as_str().to_string()),
            };
            let upload = self.vault.create_upload(&user, &i.bucket, &i.key, input).await?;
            Ok(S3Response::new(CreateMultipartUploadOutput {
                bucket: Some(i.bucket.clone()),
                key: Some(i.key.clone()),
                upload_id: Some(upload),
                checksum_algorithm: i.checksum_algorithm.clone(),
                checksum_type: algo.map(|_| {
                    i.checksum_type.clone().unwrap_or_else(|| ChecksumType::from_static(ChecksumType::COMPOSITE))
                }),
                ..Default::default()
            }))
        })
        .await
    }

    async fn upload_part(&self, req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        self.timed("UploadPart", async {
            let user = self.user(&req).await?;
            let values = checksum_values!(req.input);
            let algo = algo_of(&req, req.input.checksum_algorithm.as_ref(), &values)?;
            let expected = expected_of(&req, algo, &values);
            let (bucket, key, upload, number, md5) = (
                req.input.bucket.clone(),
                req.input.key.clone(),
                req.input.upload_id.clone(),
                req.input.part_number,
                req.input.content_md5.clone(),
            );
            let len = req.input.content_length.and_then(|n| u64::try_from(n).ok());
            let mut req = req;
            let body = body_of(req.input.body.take());
            let part =
                crate::multipart::PartInput { number, content_md5: md5, checksum_algo: algo, expected, size_hint: len };
            let p = self.vault.upload_part(&user, (&bucket, &key, &upload), part, body).await?;
            self.metrics.bytes_in(p.size);
            let mut o = UploadPartOutput { e_tag: Some(etag(&p.etag)), ..Default::default() };
            set_checksum!(o, p.checksum.as_ref());
            Ok(S3Response::new(o))
        })
        .await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        self.timed("UploadPartCopy", async {
            let user = self.user(&req).await?;
            let i = &req.input;
            let (sb, sk) = copy_source(&i.copy_source)?;
            let conditions = Conditions {
                if_match: cond(&i.copy_source_if_match),
                if_none_match: cond(&i.copy_source_if_none_match),
                if_modified_since: i.copy_source_if_modified_since.as_ref().map(system_time),
                if_unmodified_since: i.copy_source_if_unmodified_since.as_ref().map(system_time),
            };
            let range = copy_range(i.copy_source_range.as_ref())?;
            let p = self
                .vault
                .upload_part_copy(&user, (&sb, &sk), range, conditions, &i.bucket, &i.key, &i.upload_id, i.part_number)
                .await?;
            Ok(S3Response::new(UploadPartCopyOutput {
                copy_part_result: Some(CopyPartResult {
                    e_tag: Some(etag(&p.etag)),
                    last_modified: Some(time_of(p.mtime_ms)),
                    ..Default::default()
                }),
                ..Default::default()
            }))
        })
        .await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        self.timed("CompleteMultipartUpload", async {
            let user = self.user(&req).await?;
            let i = &req.input;
            let parts: Vec<CorePart> = i
                .multipart_upload
                .as_ref()
                .and_then(|m| m.parts.as_ref())
                .map(|ps| {
                    ps.iter()
                        .map(|p| CorePart {
                            number: p.part_number.unwrap_or(0),
                            etag: p.e_tag.as_ref().map(|e| e.value().to_string()).unwrap_or_default(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            let star = matches!(i.if_none_match, Some(ETagCondition::Any));
            let out = self.vault.complete_upload(&user, &i.bucket, &i.key, &i.upload_id, parts, star).await?;
            let mut o = CompleteMultipartUploadOutput {
                bucket: Some(i.bucket.clone()),
                key: Some(i.key.clone()),
                e_tag: Some(etag(&out.etag)),
                location: Some(format!("/{}/{}", i.bucket, i.key)),
                checksum_type: out.checksum.as_ref().map(checksum_type),
                ..Default::default()
            };
            set_checksum!(o, out.checksum.as_ref());
            Ok(S3Response::new(o))
        })
        .await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.timed("AbortMultipartUpload", async {
            let user = self.user(&req).await?;
            let i = &req.input;
            self.vault.abort_upload(&user, &i.bucket, &i.key, &i.upload_id).await?;
            Ok(S3Response::new(AbortMultipartUploadOutput::default()))
        })
        .await
    }

    async fn list_parts(&self, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
        self.timed("ListParts", async {
            let user = self.user(&req).await?;
            let i = &req.input;
            let marker = i.part_number_marker.filter(|m| *m > 0);
            let max = i.max_parts.unwrap_or(1000).max(0) as usize;
            let (rec, page) = self.vault.list_parts(&user, &i.bucket, &i.key, &i.upload_id, marker, max).await?;
            let parts = page
                .parts
                .iter()
                .map(|p| {
                    let mut part = Part {
                        part_number: Some(p.number),
                        e_tag: Some(etag(&p.etag)),
                        size: Some(p.size as i64),
                        last_modified: Some(time_of(p.mtime_ms)),
                        ..Default::default()
                    };
                    set_checksum!(part, p.checksum.as_ref());
                    part
                })
                .collect();
            Ok(S3Response::new(ListPartsOutput {
                bucket: Some(i.bucket.clone()),
                key: Some(i.key.clone()),
                upload_id: Some(i.upload_id.clone()),
                part_number_marker: i.part_number_marker,
                next_part_number_marker: page.next_marker,
                max_parts: Some(max.clamp(1, 1000) as i32),
                is_truncated: Some(page.truncated),
                parts: Some(parts),
                owner: Some(owner(&rec.owner)),
                initiator: Some(Initiator { id: Some(rec.owner.clone()), display_name: Some(rec.owner.clone()) }),
                storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                checksum_algorithm: rec.checksum_algo.clone().map(ChecksumAlgorithm::from),
                ..Default::default()
            }))
        })
        .await
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        self.timed("ListMultipartUploads", async {
            let user = self.user(&req).await?;
            let i = &req.input;
            let prefix = i.prefix.clone().unwrap_or_default();
            let max = i.max_uploads.unwrap_or(1000).clamp(0, 1000) as usize;
            let all = self
                .vault
                .list_uploads(&user, &i.bucket, &prefix, i.key_marker.as_deref(), i.upload_id_marker.as_deref())
                .await?;
            let mut uploads = Vec::new();
            let mut prefixes: Vec<String> = Vec::new();
            let mut truncated = false;
            let mut last: Option<(String, String)> = None;
            for u in all {
                if uploads.len() + prefixes.len() >= max {
                    truncated = true;
                    break;
                }
                if let Some(d) = i.delimiter.as_deref().filter(|d| !d.is_empty())
                    && let Some(p) = u.key[prefix.len()..].find(d)
                {
                    let cp = format!("{prefix}{}", &u.key[prefix.len()..prefix.len() + p + d.len()]);
                    if prefixes.last() != Some(&cp) {
                        prefixes.push(cp);
                    }
                    continue;
                }
                last = Some((u.key.clone(), u.upload.clone()));
                uploads.push(MultipartUpload {
                    key: Some(u.key.clone()),
                    upload_id: Some(u.upload.clone()),
                    initiated: Some(time_of(u.initiated_ms)),
                    owner: Some(owner(&u.owner)),
                    initiator: Some(Initiator { id: Some(u.owner.clone()), display_name: Some(u.owner.clone()) }),
                    storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                    checksum_algorithm: u.checksum_algo.clone().map(ChecksumAlgorithm::from),
                    ..Default::default()
                });
            }
            Ok(S3Response::new(ListMultipartUploadsOutput {
                bucket: Some(i.bucket.clone()),
                prefix: i.prefix.clone(),
                delimiter: i.delimiter.clone(),
                key_marker: i.key_marker.clone(),
                upload_id_marker: i.upload_id_marker.clone(),
                max_uploads: Some(max as i32),
                is_truncated: Some(truncated),
                next_key_marker: truncated.then(|| last.clone().map(|l| l.0)).flatten(),
                next_upload_id_marker: truncated.then(|| last.map(|l| l.1)).flatten(),
                uploads: Some(uploads),
                common_prefixes: Some(prefixes.into_iter().map(|p| CommonPrefix { prefix: Some(p) }).collect()),
                ..Default::default()
            }))
        })
        .await
    }

    async fn get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        self.timed("GetObjectTagging", async {
            let user = self.user(&req).await?;
            let tags = self.vault.get_object_tagging(&user, &req.input.bucket, &req.input.key).await?;
            Ok(S3Response::new(GetObjectTaggingOutput { tag_set: tag_set(&tags), version_id: None }))
        })
        .await
    }

    async fn put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        self.timed("PutObjectTagging", async {
            let user = self.user(&req).await?;
            let i = req.input;
            self.vault.put_object_tagging(&user, &i.bucket, &i.key, tags_from(i.tagging.tag_set)).await?;
            Ok(S3Response::new(PutObjectTaggingOutput::default()))
        })
        .await
    }

    async fn delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        self.timed("DeleteObjectTagging", async {
            let user = self.user(&req).await?;
            self.vault.put_object_tagging(&user, &req.input.bucket, &req.input.key, vec![]).await?;
            let mut resp = S3Response::new(DeleteObjectTaggingOutput::default());
            resp.status = Some(http::StatusCode::NO_CONTENT);
            Ok(resp)
        })
        .await
    }

    async fn get_bucket_tagging(
        &self,
        req: S3Request<GetBucketTaggingInput>,
    ) -> S3Result<S3Response<GetBucketTaggingOutput>> {
        self.timed("GetBucketTagging", async {
            let user = self.user(&req).await?;
            let b = self.vault.bucket_for(&user, &req.input.bucket).await?;
            match b.tags {
                Some(t) => Ok(S3Response::new(GetBucketTaggingOutput { tag_set: tag_set(&t) })),
                None => Err(s3_error!(NoSuchTagSet, "the bucket has no tag set")),
            }
        })
        .await
    }

    async fn put_bucket_tagging(
        &self,
        req: S3Request<PutBucketTaggingInput>,
    ) -> S3Result<S3Response<PutBucketTaggingOutput>> {
        self.timed("PutBucketTagging", async {
            let user = self.user(&req).await?;
            let i = req.input;
            self.vault.put_bucket_tagging(&user, &i.bucket, tags_from(i.tagging.tag_set)).await?;
            Ok(S3Response::new(PutBucketTaggingOutput::default()))
        })
        .await
    }

    async fn delete_bucket_tagging(
        &self,
        req: S3Request<DeleteBucketTaggingInput>,
    ) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
        self.timed("DeleteBucketTagging", async {
            let user = self.user(&req).await?;
            self.vault.delete_bucket_tagging(&user, &req.input.bucket).await?;
            let mut resp = S3Response::new(DeleteBucketTaggingOutput::default());
            resp.status = Some(http::StatusCode::NO_CONTENT);
            Ok(resp)
        })
        .await
    }

    async fn get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        self.timed("GetObjectAttributes", async {
            let user = self.user(&req).await?;
            let i = &req.input;
            let out = self
                .vault
                .get_object(&user, &i.bucket, &i.key, GetInput { head_only: true, ..GetInput::default() })
                .await?;
            let m = out.meta;
            // The header is one comma-separated list; s3s may hand it over as one element.
            let want = |a: &str| i.object_attributes.iter().flat_map(|x| x.as_str().split(',')).any(|x| x.trim() == a);
            let mut o = GetObjectAttributesOutput { last_modified: Some(time_of(m.mtime_ms)), ..Default::default() };
            if want(ObjectAttributes::ETAG) {
                o.e_tag = Some(etag(&m.etag));
            }
            if want(ObjectAttributes::OBJECT_SIZE) {
                o.object_size = Some(m.size as i64);
            }
            if want(ObjectAttributes::STORAGE_CLASS) {
                o.storage_class = Some(StorageClass::from_static(StorageClass::STANDARD));
            }
            if want(ObjectAttributes::CHECKSUM)
                && let Some(c) = &m.checksum
            {
                let mut sum = Checksum { checksum_type: Some(checksum_type(c)), ..Default::default() };
                set_checksum!(sum, Some(c));
                o.checksum = Some(sum);
            }
            if want(ObjectAttributes::OBJECT_PARTS)
                && let Layout::Parts { parts, .. } = &m.layout
            {
                let marker: i32 = i.part_number_marker.unwrap_or(0);
                let max = i.max_parts.unwrap_or(1000).clamp(1, 1000) as usize;
                let after: Vec<_> = parts.iter().filter(|p| p.number > marker).collect();
                let truncated = after.len() > max;
                let shown: Vec<ObjectPart> = after
                    .iter()
                    .take(max)
                    .map(|p| {
                        let mut op =
                            ObjectPart { part_number: Some(p.number), size: Some(p.size as i64), ..Default::default() };
                        if let (Some(c), Some(v)) = (&m.checksum, &p.checksum) {
                            set_checksum!(
                                op,
                                Some(&StoredChecksum { algo: c.algo.clone(), value: v.clone(), kind: c.kind.clone() })
                            );
                        }
                        op
                    })
                    .collect();
                o.object_parts = Some(GetObjectAttributesParts {
                    total_parts_count: Some(parts.len() as i32),
                    part_number_marker: i.part_number_marker,
                    next_part_number_marker: if truncated { shown.last().and_then(|p| p.part_number) } else { None },
                    max_parts: Some(max as i32),
                    is_truncated: Some(truncated),
                    parts: Some(shown),
                });
            }
            Ok(S3Response::new(o))
        })
        .await
    }
}
