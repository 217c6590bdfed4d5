//! SigV4 secrets come from the key records in the backend (through the vault's short cache).

use std::sync::Arc;

use s3s::auth::{S3Auth, SecretKey};
use s3s::{S3Result, s3_error};

use crate::vault::Vault;

#[derive(Debug)]
pub struct VaultAuth {
    vault: Arc<Vault>,
}

impl VaultAuth {
    pub fn new(vault: Arc<Vault>) -> VaultAuth {
        VaultAuth { vault }
    }
}

#[async_trait::async_trait]
impl S3Auth for VaultAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.vault.key_record(access_key).await? {
            Some(k) => Ok(SecretKey::from(k.secret_key)),
            None => {
                Err(s3_error!(InvalidAccessKeyId, "The AWS access key Id you provided does not exist in our records."))
            }
        }
    }
}
