//! Flexible checksums (CRC32, CRC32C, SHA1, SHA256, CRC64NVME) and the MD5 behind ETags.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use md5::{Digest as _, Md5};
use s3s::crypto::{Checksum as _, Crc32, Crc32c, Crc64Nvme, Sha1, Sha256};

use crate::error::{GwError, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algo {
    Crc32,
    Crc32c,
    Sha1,
    Sha256,
    Crc64Nvme,
}

impl Algo {
    pub const ALL: [Algo; 5] = [Algo::Crc32, Algo::Crc32c, Algo::Sha1, Algo::Sha256, Algo::Crc64Nvme];

    pub fn parse(s: &str) -> Result<Algo> {
        match s.to_ascii_uppercase().as_str() {
            "CRC32" => Ok(Algo::Crc32),
            "CRC32C" => Ok(Algo::Crc32c),
            "SHA1" => Ok(Algo::Sha1),
            "SHA256" => Ok(Algo::Sha256),
            "CRC64NVME" => Ok(Algo::Crc64Nvme),
            other => Err(GwError::InvalidRequest(format!("unsupported checksum algorithm {other:?}"))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Algo::Crc32 => "CRC32",
            Algo::Crc32c => "CRC32C",
            Algo::Sha1 => "SHA1",
            Algo::Sha256 => "SHA256",
            Algo::Crc64Nvme => "CRC64NVME",
        }
    }

    /// The trailer / header name: `x-amz-checksum-crc32` …
    pub fn header(self) -> String {
        format!("x-amz-checksum-{}", self.name().to_ascii_lowercase())
    }

    fn digest_len(self) -> usize {
        match self {
            Algo::Crc32 | Algo::Crc32c => 4,
            Algo::Sha1 => 20,
            Algo::Sha256 => 32,
            Algo::Crc64Nvme => 8,
        }
    }

    /// Checks that a base64 value decodes to this algorithm's digest length.
    pub fn check_value(self, b64: &str) -> Result<Vec<u8>> {
        let raw = B64.decode(b64.trim()).map_err(|_| {
            GwError::InvalidRequest(format!("the {} checksum {b64:?} is not valid base64", self.name()))
        })?;
        if raw.len() != self.digest_len() {
            return Err(GwError::InvalidRequest(format!(
                "the {} checksum {b64:?} has {} bytes, expected {}",
                self.name(),
                raw.len(),
                self.digest_len()
            )));
        }
        Ok(raw)
    }
}

/// One running checksum.
pub enum Hasher {
    Crc32(Crc32),
    Crc32c(Crc32c),
    Sha1(Sha1),
    Sha256(Sha256),
    Crc64Nvme(Crc64Nvme),
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hasher")
    }
}

impl Hasher {
    pub fn new(algo: Algo) -> Hasher {
        match algo {
            Algo::Crc32 => Hasher::Crc32(Crc32::new()),
            Algo::Crc32c => Hasher::Crc32c(Crc32c::new()),
            Algo::Sha1 => Hasher::Sha1(Sha1::new()),
            Algo::Sha256 => Hasher::Sha256(Sha256::new()),
            Algo::Crc64Nvme => Hasher::Crc64Nvme(Crc64Nvme::new()),
        }
    }
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Crc32(h) => h.update(data),
            Hasher::Crc32c(h) => h.update(data),
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
            Hasher::Crc64Nvme(h) => h.update(data),
        }
    }
    /// The digest, base64-encoded as S3 sends it.
    pub fn finish_b64(self) -> String {
        B64.encode(self.finish_raw())
    }
    pub fn finish_raw(self) -> Vec<u8> {
        match self {
            Hasher::Crc32(h) => h.finalize().to_vec(),
            Hasher::Crc32c(h) => h.finalize().to_vec(),
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Crc64Nvme(h) => h.finalize().to_vec(),
        }
    }
}

/// One pass over an upload: MD5 for the ETag, plus the requested flexible checksum.
#[derive(Debug)]
pub struct Digests {
    md5: Md5,
    sum: Option<(Algo, Hasher)>,
    pub size: u64,
}

impl Digests {
    pub fn new(algo: Option<Algo>) -> Digests {
        Digests { md5: Md5::new(), sum: algo.map(|a| (a, Hasher::new(a))), size: 0 }
    }
    pub fn update(&mut self, data: &[u8]) {
        self.md5.update(data);
        if let Some((_, h)) = &mut self.sum {
            h.update(data);
        }
        self.size += data.len() as u64;
    }
    /// (MD5, (algorithm, base64 checksum)).
    pub fn finish(self) -> ([u8; 16], Option<(Algo, String)>) {
        let md5: [u8; 16] = self.md5.finalize().into();
        (md5, self.sum.map(|(a, h)| (a, h.finish_b64())))
    }
}

pub fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

/// ETag of a multipart object: MD5 of the concatenated binary part MD5s, `-N`.
pub fn multipart_etag(part_etags: &[String]) -> Result<String> {
    let mut md5 = Md5::new();
    for e in part_etags {
        let raw = hex::decode(e.trim_matches('"'))
            .map_err(|_| GwError::InvalidPart(format!("part ETag {e:?} is not an MD5 hex digest")))?;
        md5.update(&raw);
    }
    Ok(format!("{}-{}", hex::encode(md5.finalize()), part_etags.len()))
}

/// COMPOSITE checksum of a multipart object: the checksum of the concatenated part checksums, `-N`.
pub fn composite(algo: Algo, part_sums_b64: &[String]) -> Result<String> {
    let mut h = Hasher::new(algo);
    for s in part_sums_b64 {
        h.update(&algo.check_value(s)?);
    }
    Ok(format!("{}-{}", h.finish_b64(), part_sums_b64.len()))
}

/// Content-MD5 header check.
pub fn check_content_md5(header_b64: &str, md5: &[u8; 16]) -> Result<()> {
    let want = B64.decode(header_b64.trim()).map_err(|_| GwError::InvalidDigest(header_b64.to_string()))?;
    if want.len() != 16 {
        return Err(GwError::InvalidDigest(header_b64.to_string()));
    }
    if want != md5 {
        return Err(GwError::BadDigest("the Content-MD5 you specified did not match what we received".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(algo: Algo, input: &[u8], expect_b64: &str) {
        let mut h = Hasher::new(algo);
        h.update(input);
        assert_eq!(h.finish_b64(), expect_b64, "{algo:?}");
    }

    #[test]
    fn known_vectors() {
        // "123456789" check values: CRC32 cbf43926, CRC32C e3069283, CRC64/NVME ae8b14860a799888.
        check(Algo::Crc32, b"123456789", &B64.encode(0xcbf4_3926u32.to_be_bytes()));
        check(Algo::Crc32c, b"123456789", &B64.encode(0xe306_9283u32.to_be_bytes()));
        check(Algo::Crc64Nvme, b"123456789", &B64.encode(0xae8b_1486_0a79_9888u64.to_be_bytes()));
        check(Algo::Sha1, b"abc", "qZk+NkcGgWq6PiVxeFDCbJzQ2J0=");
        check(Algo::Sha256, b"", "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn multipart_etag_is_md5_of_md5s() {
        let parts = [md5_hex(b"a"), md5_hex(b"b")];
        let mut cat = hex::decode(&parts[0]).unwrap_or_default();
        cat.extend(hex::decode(&parts[1]).unwrap_or_default());
        assert_eq!(multipart_etag(&parts).ok(), Some(format!("{}-2", md5_hex(&cat))));
        assert!(multipart_etag(&["zz".into()]).is_err());
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(Algo::Crc32.check_value("AAAA").is_err());
        assert!(Algo::Crc32.check_value("AAAAAA==").is_ok());
        assert!(Algo::parse("md5").is_err());
        assert_eq!(Algo::parse("crc64nvme").ok(), Some(Algo::Crc64Nvme));
    }
}
