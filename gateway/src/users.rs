//! Users and access keys, stored in the backend (`cyv.users`) so every gateway shares them.

use std::collections::BTreeMap;

use bytes::Bytes;
use cyvault_store::{StoreError, WriteOp};
use serde::Serialize;
use tracing::info;

use crate::error::{GwError, Result};
use crate::layout::{self, KeyRecord, USERS_OBJECT, UserRecord, now_ms};
use crate::vault::{CAS_ATTEMPTS, Vault, cas_exhausted};

/// The user that root credentials act as.
pub const ROOT_USER: &str = "root";

/// A user with how many keys it has (what `admin user list` shows).
#[derive(Clone, Debug, Serialize)]
pub struct UserInfo {
    pub name: String,
    pub created: String,
    pub keys: usize,
}

/// A key without its secret (what `admin key list` shows).
#[derive(Clone, Debug, Serialize)]
pub struct KeyInfo {
    pub user: String,
    pub access_key: String,
    pub created: String,
}

/// A fresh key with its secret (shown once).
#[derive(Clone, Debug, Serialize)]
pub struct NewKey {
    pub user: String,
    pub access_key: String,
    pub secret_key: String,
    pub created: String,
}

pub fn rfc3339(ms: u64) -> String {
    let t = time::OffsetDateTime::UNIX_EPOCH + time::Duration::milliseconds(ms as i64);
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

fn validate_user_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    if !ok {
        return Err(GwError::InvalidArgument(format!(
            "user name {name:?}: use 1-64 characters from a-z A-Z 0-9 - _ . @"
        )));
    }
    Ok(())
}

/// A new access key id: 20 characters, `CYV` + base32-ish upper case, like AWS's.
fn new_access_key() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut raw = [0u8; 17];
    rand::fill(&mut raw[..]);
    let tail: String = raw.iter().map(|b| ALPHABET[(*b as usize) % 32] as char).collect();
    format!("CYV{tail}")
}

fn new_secret_key() -> String {
    use base64::Engine as _;
    let mut raw = [0u8; 30];
    rand::fill(&mut raw[..]);
    base64::engine::general_purpose::STANDARD.encode(raw)
}

impl Vault {
    async fn users_page(&self, prefix: &str) -> Result<Vec<(String, Bytes)>> {
        self.omap_all(USERS_OBJECT, Some(prefix)).await
    }

    pub(crate) async fn key_record_uncached(&self, access_key: &str) -> Result<Option<KeyRecord>> {
        let k = format!("k.{access_key}");
        match self.store.omap_get(&self.obj(USERS_OBJECT), std::slice::from_ref(&k)).await {
            Ok(m) => m.get(&k).map(|raw| layout::decode("key record", raw)).transpose(),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn user_exists(&self, name: &str) -> Result<bool> {
        let k = format!("u.{name}");
        match self.store.omap_get(&self.obj(USERS_OBJECT), std::slice::from_ref(&k)).await {
            Ok(m) => Ok(m.contains_key(&k)),
            Err(StoreError::NotFound(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates a user with a first key.
    pub async fn create_user(&self, name: &str) -> Result<NewKey> {
        validate_user_name(name)?;
        if name == ROOT_USER {
            return Err(GwError::InvalidArgument("\"root\" is reserved for the root credentials".into()));
        }
        let obj = self.obj(USERS_OBJECT);
        let created_ms = now_ms();
        let (ak, sk) = (new_access_key(), new_secret_key());
        for _ in 0..CAS_ATTEMPTS {
            let (version, vals) = self.read_for_update(&obj, &[format!("u.{name}")]).await?;
            if !vals.is_empty() {
                return Err(GwError::InvalidArgument(format!("the user {name:?} already exists")));
            }
            let user = UserRecord { name: name.to_string(), created_ms };
            let key = KeyRecord { access_key: ak.clone(), secret_key: sk.clone(), user: name.to_string(), created_ms };
            let entries = BTreeMap::from([
                (format!("u.{name}"), layout::encode(&user)),
                (format!("k.{ak}"), layout::encode(&key)),
            ]);
            if self.try_cas(&obj, version, WriteOp::new().omap_set(entries)).await? {
                info!(user = name, access_key = %ak, "created user");
                return Ok(NewKey { user: name.into(), access_key: ak, secret_key: sk, created: rfc3339(created_ms) });
            }
        }
        Err(cas_exhausted("create user"))
    }

    pub async fn list_users(&self) -> Result<Vec<UserInfo>> {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for (_, raw) in self.users_page("k.").await? {
            let k: KeyRecord = layout::decode("key record", &raw)?;
            *counts.entry(k.user).or_default() += 1;
        }
        let mut out = Vec::new();
        for (_, raw) in self.users_page("u.").await? {
            let u: UserRecord = layout::decode("user record", &raw)?;
            out.push(UserInfo {
                keys: counts.get(&u.name).copied().unwrap_or(0),
                created: rfc3339(u.created_ms),
                name: u.name,
            });
        }
        if let Some(n) = counts.get(ROOT_USER) {
            out.insert(0, UserInfo { name: ROOT_USER.into(), created: String::new(), keys: *n });
        }
        Ok(out)
    }

    /// Deletes a user and its keys; refused while it owns buckets.
    pub async fn delete_user(&self, name: &str) -> Result<()> {
        if name == ROOT_USER {
            return Err(GwError::InvalidArgument("the root user cannot be deleted".into()));
        }
        if !self.user_exists(name).await? {
            return Err(GwError::InvalidArgument(format!("no user {name:?}")));
        }
        let owned: Vec<String> =
            self.all_buckets().await?.into_iter().filter(|b| b.owner == name).map(|b| b.name).collect();
        if !owned.is_empty() {
            return Err(GwError::InvalidArgument(format!(
                "the user {name:?} still owns {} bucket(s): {}; delete them first",
                owned.len(),
                owned.join(", ")
            )));
        }
        let keys: Vec<String> = self.list_keys(Some(name)).await?.into_iter().map(|k| k.access_key).collect();
        let mut remove = vec![format!("u.{name}")];
        remove.extend(keys.iter().map(|k| format!("k.{k}")));
        self.store.omap_remove(&self.obj(USERS_OBJECT), &remove).await?;
        for k in &keys {
            self.forget_key(k);
        }
        info!(user = name, keys = keys.len(), "deleted user");
        Ok(())
    }

    pub async fn create_key(&self, user: &str) -> Result<NewKey> {
        if user != ROOT_USER && !self.user_exists(user).await? {
            return Err(GwError::InvalidArgument(format!("no user {user:?}")));
        }
        let created_ms = now_ms();
        let key =
            KeyRecord { access_key: new_access_key(), secret_key: new_secret_key(), user: user.into(), created_ms };
        self.store
            .omap_set(
                &self.obj(USERS_OBJECT),
                BTreeMap::from([(format!("k.{}", key.access_key), layout::encode(&key))]),
            )
            .await?;
        info!(user, access_key = %key.access_key, "created key");
        Ok(NewKey {
            user: user.into(),
            access_key: key.access_key,
            secret_key: key.secret_key,
            created: rfc3339(created_ms),
        })
    }

    pub async fn list_keys(&self, user: Option<&str>) -> Result<Vec<KeyInfo>> {
        let mut out = Vec::new();
        for (_, raw) in self.users_page("k.").await? {
            let k: KeyRecord = layout::decode("key record", &raw)?;
            if user.is_none_or(|u| u == k.user) {
                out.push(KeyInfo { user: k.user, access_key: k.access_key, created: rfc3339(k.created_ms) });
            }
        }
        Ok(out)
    }

    pub async fn revoke_key(&self, access_key: &str) -> Result<()> {
        if self.key_record_uncached(access_key).await?.is_none() {
            return Err(GwError::InvalidArgument(format!("no access key {access_key:?}")));
        }
        self.store.omap_remove(&self.obj(USERS_OBJECT), &[format!("k.{access_key}")]).await?;
        self.forget_key(access_key);
        info!(access_key, "revoked key");
        Ok(())
    }

    /// The current root access key stored in the backend, if any.
    pub async fn stored_root_key(&self) -> Result<Option<KeyRecord>> {
        let obj = self.obj(USERS_OBJECT);
        let ak = match self.store.omap_get(&obj, &["root".to_string()]).await {
            Ok(m) => m.get("root").map(|v| String::from_utf8_lossy(v).into_owned()),
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        match ak {
            Some(ak) => self.key_record_uncached(&ak).await,
            None => Ok(None),
        }
    }

    /// Makes (access, secret) the root credentials, retiring a different previous root key.
    pub async fn set_root_key(&self, access_key: &str, secret_key: &str) -> Result<()> {
        if access_key.is_empty() || secret_key.is_empty() {
            return Err(GwError::InvalidArgument("root access and secret keys must not be empty".into()));
        }
        let previous = self.stored_root_key().await?;
        if let Some(p) = &previous
            && p.access_key == access_key
            && p.secret_key == secret_key
        {
            return Ok(());
        }
        let key = KeyRecord {
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            user: ROOT_USER.into(),
            created_ms: now_ms(),
        };
        let mut op = WriteOp::new().omap_set(BTreeMap::from([
            (format!("k.{access_key}"), layout::encode(&key)),
            ("root".to_string(), Bytes::from(access_key.to_string())),
        ]));
        if let Some(p) = previous
            && p.access_key != access_key
        {
            op = op.omap_remove(vec![format!("k.{}", p.access_key)]);
            self.forget_key(&p.access_key);
        }
        self.store.execute(&self.obj(USERS_OBJECT), op).await?;
        self.forget_key(access_key);
        Ok(())
    }

    /// Generates root credentials and stores them.
    pub async fn generate_root_key(&self) -> Result<NewKey> {
        let (ak, sk) = (new_access_key(), new_secret_key());
        self.set_root_key(&ak, &sk).await?;
        Ok(NewKey { user: ROOT_USER.into(), access_key: ak, secret_key: sk, created: rfc3339(now_ms()) })
    }
}
