//! `cyvault admin user|key|gc`: S3 users, access keys and the sweeper.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Subcommand;

use crate::gateway::open_vault;
use crate::settings::S3StoreArgs;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user with a first access key (the secret is shown once).
    Create {
        #[command(flatten)]
        store: S3StoreArgs,
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// List users with how many keys each has.
    List {
        #[command(flatten)]
        store: S3StoreArgs,
        #[arg(long)]
        json: bool,
    },
    /// Delete a user and its keys (refused while it owns buckets).
    Delete {
        #[command(flatten)]
        store: S3StoreArgs,
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create another access key for a user (`root` included); the secret is shown once.
    Create {
        #[command(flatten)]
        store: S3StoreArgs,
        user: String,
        #[arg(long)]
        json: bool,
    },
    /// List access keys (never secrets), optionally of one user.
    List {
        #[command(flatten)]
        store: S3StoreArgs,
        user: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke an access key (gateways stop accepting it within their cache time).
    Revoke {
        #[command(flatten)]
        store: S3StoreArgs,
        access_key: String,
    },
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

pub async fn user(cmd: UserCommand) -> Result<ExitCode> {
    match cmd {
        UserCommand::Create { store, name, json } => {
            let (_, _, vault) = open_vault(&store, Some(0)).await?;
            let k = vault.create_user(&name).await.with_context(|| format!("create user {name:?}"))?;
            if json {
                print_json(&serde_json::json!({
                    "name": k.user, "created": k.created, "access_key": k.access_key, "secret_key": k.secret_key
                }))?;
            } else {
                println!("created user {}\naccess key: {}\nsecret key: {}", k.user, k.access_key, k.secret_key);
            }
        }
        UserCommand::List { store, json } => {
            let (_, _, vault) = open_vault(&store, Some(0)).await?;
            let users = vault.list_users().await?;
            if json {
                print_json(&users)?;
            } else {
                println!("{:<24} {:>4}  CREATED", "USER", "KEYS");
                for u in users {
                    println!("{:<24} {:>4}  {}", u.name, u.keys, u.created);
                }
            }
        }
        UserCommand::Delete { store, name } => {
            let (_, _, vault) = open_vault(&store, Some(0)).await?;
            vault.delete_user(&name).await.with_context(|| format!("delete user {name:?}"))?;
            println!("deleted user {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn key(cmd: KeyCommand) -> Result<ExitCode> {
    match cmd {
        KeyCommand::Create { store, user, json } => {
            let (_, _, vault) = open_vault(&store, Some(0)).await?;
            let k = vault.create_key(&user).await.with_context(|| format!("create a key for {user:?}"))?;
            if json {
                print_json(&k)?;
            } else {
                println!("access key: {}\nsecret key: {}", k.access_key, k.secret_key);
            }
        }
        KeyCommand::List { store, user, json } => {
            let (_, _, vault) = open_vault(&store, Some(0)).await?;
            let keys = vault.list_keys(user.as_deref()).await?;
            if json {
                print_json(&keys)?;
            } else {
                println!("{:<24} {:<24} CREATED", "ACCESS KEY", "USER");
                for k in keys {
                    println!("{:<24} {:<24} {}", k.access_key, k.user, k.created);
                }
            }
        }
        KeyCommand::Revoke { store, access_key } => {
            let (_, _, vault) = open_vault(&store, Some(0)).await?;
            vault.revoke_key(&access_key).await.with_context(|| format!("revoke {access_key:?}"))?;
            println!("revoked {access_key}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn gc(
    store: S3StoreArgs,
    grace_secs: Option<u64>,
    upload_grace_secs: Option<u64>,
    dry_run: bool,
    json: bool,
) -> Result<ExitCode> {
    let (cfg, _, vault) = open_vault(&store, Some(0)).await?;
    let grace = Duration::from_secs(grace_secs.unwrap_or(cfg.gc.grace_secs));
    let upload_grace = Duration::from_secs(upload_grace_secs.or(grace_secs).unwrap_or(cfg.gc.upload_grace_secs));
    let rep = vault.gc(grace, upload_grace, dry_run).await.context("sweep")?;
    if json {
        print_json(&rep)?;
    } else {
        let verb = if dry_run { "would remove" } else { "removed" };
        println!(
            "scanned {} objects; {verb} {} orphan objects ({} bytes); aborted {} stale uploads; fixed {} index entries",
            rep.objects_scanned,
            rep.orphan_objects_removed,
            rep.orphan_bytes,
            rep.uploads_aborted,
            rep.index_entries_fixed
        );
    }
    Ok(ExitCode::SUCCESS)
}
