//! `cyvault admin`: look at and change stored objects directly (for operators and debugging).

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::Subcommand;
use cyvault_store::{ObjectRef, OmapQuery, ReadRange};

use crate::store_args::StoreArgs;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Objects of the storage layer (pool / namespace / name).
    #[command(subcommand)]
    Object(ObjectCommand),
    /// S3 users (each with its own buckets).
    #[command(subcommand)]
    User(crate::admin_s3::UserCommand),
    /// S3 access keys.
    #[command(subcommand)]
    Key(crate::admin_s3::KeyCommand),
    /// Sweep leftovers of crashed or raced writes: orphan stripes, stale multipart uploads,
    /// index entries that disagree with their objects.
    Gc {
        #[command(flatten)]
        store: crate::settings::S3StoreArgs,
        /// Leave anything younger than this alone [config: gc.grace_secs; default: 3600].
        #[arg(long)]
        grace_secs: Option<u64>,
        /// Abort multipart uploads initiated longer ago than this [default: --grace-secs when
        /// given, else config gc.upload_grace_secs, 7 days].
        #[arg(long)]
        upload_grace_secs: Option<u64>,
        /// Report what would be removed without removing it.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ObjectCommand {
    /// Store a file (or standard input with `-`) as an object.
    Put {
        #[command(flatten)]
        at: At,
        /// File to read, `-` for standard input.
        file: String,
    },
    /// Write an object's bytes to standard output.
    Get {
        #[command(flatten)]
        at: At,
    },
    /// Size, modification time, version, xattrs and omap size of an object.
    Stat {
        #[command(flatten)]
        at: At,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// List the objects of a pool's namespace.
    Ls {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long, default_value = "cyvault")]
        pool: String,
        #[arg(long, default_value = "")]
        namespace: String,
    },
    /// Delete an object with its xattrs and omap.
    Rm {
        #[command(flatten)]
        at: At,
    },
}

#[derive(Debug, clap::Args)]
pub struct At {
    #[command(flatten)]
    store: StoreArgs,
    #[arg(long, default_value = "cyvault")]
    pool: String,
    #[arg(long, default_value = "")]
    namespace: String,
    /// Object name (any UTF-8 without NUL; never a path).
    name: String,
}

impl At {
    fn object(&self) -> ObjectRef {
        ObjectRef::new(&self.pool, &self.namespace, &self.name)
    }
}

pub async fn run(cmd: AdminCommand) -> Result<ExitCode> {
    let cmd = match cmd {
        AdminCommand::Object(c) => c,
        AdminCommand::User(c) => return crate::admin_s3::user(c).await,
        AdminCommand::Key(c) => return crate::admin_s3::key(c).await,
        AdminCommand::Gc { store, grace_secs, upload_grace_secs, dry_run, json } => {
            return crate::admin_s3::gc(store, grace_secs, upload_grace_secs, dry_run, json).await;
        }
    };
    match cmd {
        ObjectCommand::Put { at, file } => {
            let mut data = Vec::new();
            if file == "-" {
                std::io::stdin().read_to_end(&mut data).context("read standard input")?;
            } else {
                data = std::fs::read(&file).with_context(|| format!("read {file}"))?;
            }
            let store = at.store.open().await?;
            let len = data.len();
            let v = store
                .write_full(&at.object(), Bytes::from(data))
                .await
                .with_context(|| format!("write {}", at.object()))?;
            println!("stored {} ({len} bytes, version {v})", at.object());
        }
        ObjectCommand::Get { at } => {
            let store = at.store.open().await?;
            let r = store.read(&at.object(), ReadRange::Full).await.with_context(|| format!("read {}", at.object()))?;
            std::io::stdout().write_all(&r.data).context("write standard output")?;
        }
        ObjectCommand::Stat { at, json } => {
            let store = at.store.open().await?;
            let o = at.object();
            let st = store.stat(&o).await.with_context(|| format!("stat {o}"))?;
            let xattrs = store.xattr_list(&o).await.with_context(|| format!("list xattrs of {o}"))?;
            let omap = store.omap_list(&o, &OmapQuery { max: 100_000, ..OmapQuery::default() }).await?;
            let mtime = st.mtime.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            if json {
                let v = serde_json::json!({
                    "pool": o.pool, "namespace": o.namespace, "name": o.name, "size": st.size,
                    "mtime_unix": mtime, "version": st.version,
                    "xattrs": xattrs.keys().collect::<Vec<_>>(), "omap_keys": omap.entries.len(), "omap_more": omap.more,
                });
                println!("{v}");
            } else {
                println!("object   {o}\nsize     {}\nmtime    {mtime} (unix)\nversion  {}", st.size, st.version);
                println!("xattrs   {}", xattrs.keys().cloned().collect::<Vec<_>>().join(", "));
                println!("omap     {} keys{}", omap.entries.len(), if omap.more { " (more)" } else { "" });
            }
        }
        ObjectCommand::Ls { store, pool, namespace } => {
            let s = store.open().await?;
            let mut token: Option<String> = None;
            let mut out = std::io::stdout().lock();
            loop {
                let page = s
                    .list_objects(&pool, &namespace, token.as_deref(), 1000)
                    .await
                    .with_context(|| format!("list pool {pool}"))?;
                for n in &page.names {
                    writeln!(out, "{n}").context("write standard output")?;
                }
                match page.next {
                    Some(t) => token = Some(t),
                    None => break,
                }
            }
        }
        ObjectCommand::Rm { at } => {
            let store = at.store.open().await?;
            store.remove(&at.object()).await.with_context(|| format!("remove {}", at.object()))?;
            println!("removed {}", at.object());
        }
    }
    Ok(ExitCode::SUCCESS)
}
