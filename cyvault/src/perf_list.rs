//! `cyvault perf list`: how fast a big bucket lists, against the raw omap listing it is built on.
//!
//! The bucket index is sharded (writes spread over objects) and a listing merges the shards in
//! key order; the baseline is the same keys in ONE omap object listed page by page, which is the
//! fastest any listing on this backend can be. Both run in the same process on the same store.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cyvault_gateway::index::ListQuery;
use cyvault_gateway::layout::IndexEntry;
use cyvault_store::{ObjectRef, OmapQuery, WriteOp};
use serde::Serialize;

use crate::settings::S3StoreArgs;

#[derive(Debug, clap::Args)]
pub struct ListBench {
    #[command(flatten)]
    pub store: S3StoreArgs,
    /// Keys in the bucket.
    #[arg(long, default_value_t = 100_000)]
    pub keys: usize,
    /// Keys per page (S3's max-keys).
    #[arg(long, default_value_t = 1000)]
    pub page: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Row {
    what: &'static str,
    pages: usize,
    returned: usize,
    seconds: f64,
    keys_per_sec: f64,
}

fn row(what: &'static str, pages: usize, returned: usize, took: Duration) -> Row {
    let seconds = took.as_secs_f64();
    Row { what, pages, returned, seconds, keys_per_sec: returned as f64 / seconds.max(1e-9) }
}

pub async fn run(args: ListBench) -> Result<ExitCode> {
    let (_, settings, vault) = crate::gateway::open_vault(&args.store, Some(60)).await?;
    let bucket = format!("perf-list-{}", std::process::id());
    let b = vault.create_bucket("perf", &bucket).await.context("create the benchmark bucket")?;
    // 100 "directories" of n/100 keys each: "d042/obj-0000123".
    let keys: Vec<String> = (0..args.keys).map(|i| format!("d{:03}/obj-{i:07}", i % 100)).collect();
    let entry = |i: usize| IndexEntry {
        size: 4096,
        etag: format!("{i:032x}"),
        mtime_ms: 1,
        tag: "bench".into(),
        pending: false,
    };
    let t = Instant::now();
    vault.load_index(&b, keys.iter().enumerate().map(|(i, k)| (k.clone(), entry(i))).collect()).await?;
    let load = t.elapsed();
    // The baseline: the same keys in one omap object.
    let raw = ObjectRef::new(
        settings.pool.clone(),
        settings.namespace.clone(),
        format!("perf-list-raw-{}", std::process::id()),
    );
    for chunk in keys.chunks(1000) {
        let m = chunk.iter().map(|k| (k.clone(), cyvault_gateway::layout::encode(&entry(0)))).collect();
        vault.store().execute(&raw, WriteOp::new().omap_set(m)).await?;
    }

    let mut rows = Vec::new();
    // Raw: one object, pages of `page`.
    let t = Instant::now();
    let (mut after, mut pages, mut n) = (None::<String>, 0, 0);
    loop {
        let p = vault
            .store()
            .omap_list(&raw, &OmapQuery { start_after: after.clone(), prefix: None, max: args.page as u64 })
            .await?;
        pages += 1;
        n += p.entries.len();
        after = p.entries.last().map(|(k, _)| k.clone());
        if !p.more {
            break;
        }
    }
    rows.push(row("raw omap listing, one object (baseline)", pages, n, t.elapsed()));

    let list = |q: ListQuery| {
        let vault = &vault;
        let b = &b;
        async move {
            let t = Instant::now();
            let (mut after, mut pages, mut n) = (None::<String>, 0, 0);
            loop {
                let p = vault.list_index(b, &ListQuery { start_after: after.clone(), ..q.clone() }).await?;
                pages += 1;
                n += p.entries.len() + p.common_prefixes.len();
                if !p.truncated {
                    break;
                }
                after = p.next_marker;
            }
            Ok::<_, anyhow::Error>((pages, n, t.elapsed()))
        }
    };
    let (p, n, d) = list(ListQuery { max_keys: args.page, ..ListQuery::default() }).await?;
    anyhow::ensure!(n == args.keys, "the listing returned {n} keys, not {}", args.keys);
    rows.push(row("bucket listing, all keys (sharded index, merged)", p, n, d));
    let (p, n, d) =
        list(ListQuery { delimiter: Some("/".into()), max_keys: args.page, ..ListQuery::default() }).await?;
    rows.push(row("delimiter '/' at the root (100 common prefixes)", p, n, d));
    let (p, n, d) = list(ListQuery {
        prefix: "d042/".into(),
        delimiter: Some("/".into()),
        max_keys: args.page,
        ..ListQuery::default()
    })
    .await?;
    rows.push(row("one 'directory' with prefix + delimiter", p, n, d));

    let ratio = rows[0].seconds / rows[1].seconds.max(1e-9);
    // Clean up: the raw object and the index shards (no heads were written).
    let _ = vault.store().remove(&raw).await;
    for shard in 0..b.shards {
        let _ = vault
            .store()
            .remove(&ObjectRef::new(
                settings.pool.clone(),
                settings.namespace.clone(),
                cyvault_gateway::layout::index_name(&b.id, shard),
            ))
            .await;
    }
    let _ = vault.delete_bucket("perf", &bucket).await;

    if args.json {
        println!(
            "{}",
            serde_json::json!({ "keys": args.keys, "shards": b.shards, "load_seconds": load.as_secs_f64(), "rows": rows, "ratio_full_listing_vs_raw": ratio })
        );
    } else {
        println!(
            "bucket listing: {} keys in {} index shards ({:?} backend), pages of {}; loaded in {:.2} s",
            args.keys,
            b.shards,
            settings.backend,
            args.page,
            load.as_secs_f64()
        );
        println!("{:<52} {:>6} {:>8} {:>9} {:>12}", "listing", "pages", "entries", "seconds", "entries/s");
        for r in &rows {
            println!("{:<52} {:>6} {:>8} {:>9.3} {:>12.0}", r.what, r.pages, r.returned, r.seconds, r.keys_per_sec);
        }
        println!("ratio full listing / raw one-object listing (throughput): {ratio:.2}");
    }
    Ok(ExitCode::SUCCESS)
}
