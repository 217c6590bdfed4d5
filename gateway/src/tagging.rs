//! Object tagging (stored in the head's metadata, updated by compare-and-swap) and tag rules.

use cyvault_store::{Guard, StoreError, WriteOp};

use crate::error::{GwError, Result};
use crate::layout::{self, HEAD_XATTR};
use crate::vault::{CAS_ATTEMPTS, Vault, cas_exhausted};

/// S3's tag limits: at most `max` tags, keys ≤ 128 and values ≤ 256 characters, keys unique.
pub fn validate_tags(tags: &[(String, String)], max: usize) -> Result<()> {
    if tags.len() > max {
        return Err(GwError::InvalidTag(format!("at most {max} tags are allowed")));
    }
    let mut seen = std::collections::HashSet::new();
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 {
            return Err(GwError::InvalidTag(format!("the tag key {k:?} must have 1 to 128 characters")));
        }
        if v.chars().count() > 256 {
            return Err(GwError::InvalidTag(format!("the value of tag {k:?} is longer than 256 characters")));
        }
        if !seen.insert(k) {
            return Err(GwError::InvalidTag(format!("the tag key {k:?} appears twice")));
        }
    }
    Ok(())
}

/// Parses `x-amz-tagging` (URL query form `k1=v1&k2=v2`).
pub fn parse_tagging_header(s: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for pair in s.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let dec = |x: &str| {
            urlencoding::decode(&x.replace('+', " "))
                .map(|c| c.into_owned())
                .map_err(|_| GwError::InvalidTag(format!("the tag {x:?} is not valid URL encoding")))
        };
        out.push((dec(k)?, dec(v)?));
    }
    Ok(out)
}

impl Vault {
    pub async fn get_object_tagging(&self, user: &str, bucket: &str, key: &str) -> Result<Vec<(String, String)>> {
        let b = self.bucket_for(user, bucket).await?;
        match self.head_meta(&b, key).await? {
            Some((m, _)) => Ok(m.tags),
            None => Err(GwError::NoSuchKey(key.into())),
        }
    }

    /// Replaces an object's tags (`None` removes them).
    pub async fn put_object_tagging(
        &self,
        user: &str,
        bucket: &str,
        key: &str,
        tags: Vec<(String, String)>,
    ) -> Result<()> {
        validate_tags(&tags, 10)?;
        let b = self.bucket_for(user, bucket).await?;
        let head = self.data_obj(&b, layout::head_name(&b.id, key));
        for _ in 0..CAS_ATTEMPTS {
            let Some((mut meta, version)) = self.head_meta(&b, key).await? else {
                return Err(GwError::NoSuchKey(key.into()));
            };
            meta.tags = tags.clone();
            let op = WriteOp::new().guard(Guard::Version(version)).set_xattr(HEAD_XATTR, layout::encode(&meta));
            match self.store.execute(&head, op).await {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict(_)) => continue,
                Err(StoreError::NotFound(_)) => return Err(GwError::NoSuchKey(key.into())),
                Err(e) => return Err(e.into()),
            }
        }
        Err(cas_exhausted("put object tagging"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_form() {
        let got = parse_tagging_header("a=1&b%20c=x+y&empty=").unwrap_or_default();
        assert_eq!(got, vec![("a".into(), "1".into()), ("b c".into(), "x y".into()), ("empty".into(), String::new())]);
        assert!(validate_tags(&got, 10).is_ok());
        assert!(validate_tags(&[("k".into(), "1".into()), ("k".into(), "2".into())], 10).is_err());
        assert!(validate_tags(&[(String::new(), "1".into())], 10).is_err());
    }
}
