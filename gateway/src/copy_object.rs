//! CopyObject: read the source as a stream and write it as a new object (same or other bucket).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::checksum::Algo;
use crate::error::{GwError, Result};
use crate::get_object::{Conditions, GetInput};
use crate::layout::Headers;
use crate::put_object::{PutInput, PutOutput};
use crate::vault::Vault;

#[derive(Clone, Debug, Default)]
pub struct CopyInput {
    /// `x-amz-copy-source-if-*`
    pub conditions: Conditions,
    /// MetadataDirective REPLACE: the new headers and user metadata.
    pub replace_meta: Option<(Headers, BTreeMap<String, String>)>,
    /// TaggingDirective REPLACE: the new tags.
    pub replace_tags: Option<Vec<(String, String)>>,
    pub checksum_algo: Option<Algo>,
}

#[derive(Clone, Debug)]
pub struct CopyOutput {
    pub put: PutOutput,
    pub mtime_ms: u64,
}

impl Vault {
    pub async fn copy_object(
        self: &Arc<Self>,
        user: &str,
        (src_bucket, src_key): (&str, &str),
        (dst_bucket, dst_key): (&str, &str),
        input: CopyInput,
    ) -> Result<CopyOutput> {
        let dst = self.bucket_for(user, dst_bucket).await?;
        if src_bucket == dst_bucket
            && src_key == dst_key
            && input.replace_meta.is_none()
            && input.replace_tags.is_none()
        {
            return Err(GwError::InvalidRequest(
                "This copy request is illegal because it is trying to copy an object to itself without changing the \
                 object's metadata, storage class, website redirect location or encryption attributes."
                    .into(),
            ));
        }
        let src = self
            .get_object(user, src_bucket, src_key, GetInput { conditions: input.conditions, ..GetInput::default() })
            .await
            .map_err(|e| match e {
                // A failed copy-source condition is a 412 even for If-None-Match.
                GwError::NotModified => GwError::PreconditionFailed("x-amz-copy-source-if-none-match"),
                other => other,
            })?;
        let (headers, user_meta) = match input.replace_meta {
            Some(m) => m,
            None => (src.meta.headers.clone(), src.meta.user_meta.clone()),
        };
        let algo = input.checksum_algo.or_else(|| src.meta.checksum.as_ref().and_then(|c| Algo::parse(&c.algo).ok()));
        let put = PutInput {
            headers,
            user_meta,
            tags: input.replace_tags.unwrap_or_else(|| src.meta.tags.clone()),
            checksum_algo: algo,
            content_length: Some(src.content_length),
            ..PutInput::default()
        };
        let out = self.put_into(&dst, dst_key, put, src.body).await?;
        Ok(CopyOutput { put: out, mtime_ms: crate::layout::now_ms() })
    }
}
