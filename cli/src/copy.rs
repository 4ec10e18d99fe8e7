//! `fsmstore copy`: every dialogue of one database, table or layout written into another
//! with its state, data and write time ([`fsmstore::copy`]), and `--verify`.

use std::process::ExitCode;

use anyhow::Context;
use fsmstore::copy::{CopyOptions, CopyReport, VerifyReport};
use fsmstore::core::DatabaseUrl;
use fsmstore::{Database, SchemaPolicy, Scheme, StorageOptions};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use crate::args::{with_access, Access, CopyArgs, Global};
use crate::output;

pub(crate) async fn run(global: &Global, args: CopyArgs) -> anyhow::Result<ExitCode> {
    let from_url = args.from.as_deref().unwrap_or(&global.url);
    let from = open(from_url, Access::ReadOnly, SchemaPolicy::Verify)
        .await
        .context("opening the source (--from)")?;
    let result = async {
        // The destination's table is created or upgraded unless its URL says otherwise
        // (Redis keyspaces move only by `migrate`).
        let policy = if args.dry_run || Scheme::of(&args.to)? == Scheme::Redis {
            SchemaPolicy::Verify
        } else {
            SchemaPolicy::Upgrade
        };
        let access = if args.dry_run {
            Access::ReadOnly
        } else {
            Access::ReadWrite
        };
        let to = open(&args.to, access, policy).await.with_context(|| {
            if args.dry_run {
                "opening the destination (--to) read-only for the dry run: it compares with the table there, so a destination without one can not be opened; a real run creates it, and every row would be new"
            } else {
                "opening the destination (--to)"
            }
        })?;
        let done = copy_and_verify(global, &args, from_url, &from, &to).await;
        let closed = to.close().await;
        let code = done?;
        closed?;
        anyhow::Ok(code)
    }
    .await;
    let closed = from.close().await;
    let code = result?;
    closed?;
    Ok(code)
}

/// Opens `url` for `access`, with `policy` unless the URL sets `schema=` itself.
async fn open(url: &str, access: Access, policy: SchemaPolicy) -> anyhow::Result<Database> {
    let url = with_access(url, access)?;
    let options = if DatabaseUrl::parameter_of(&url, "schema")?.is_some() {
        StorageOptions::default()
    } else {
        StorageOptions::default().schema(policy)
    };
    Ok(fsmstore::open_with(&url, options).await?)
}

fn bar(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {what} [{{bar:40}}] {{pos}}/{{len}} rows ({{per_sec}}, {{eta}})"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

async fn copy_and_verify(
    global: &Global,
    args: &CopyArgs,
    from_url: &str,
    from: &Database,
    to: &Database,
) -> anyhow::Result<ExitCode> {
    let (source, destination) = (from.inspect(), to.inspect());
    let total = source.stats().await?.rows;
    let options = CopyOptions::default()
        .batch(args.batch)
        .replace(args.replace)
        .dry_run(args.dry_run)
        .after(args.after.clone());
    // A dry run with --verify only compares.
    let report = if args.dry_run && args.verify {
        None
    } else {
        let progress = bar(total, if args.dry_run { "checking" } else { "copying" });
        let mut resume = args.after.clone();
        let copied = fsmstore::copy::copy(&*source, &*destination, &options, |report| {
            progress.set_position(report.read);
            resume.clone_from(&report.last_id);
        })
        .await;
        progress.finish_and_clear();
        Some(copied.with_context(|| match &resume {
            Some(id) => format!(
                "the copy stopped; every row up to {id:?} is written: run it again (it skips what is there) or resume with --after {id:?}"
            ),
            None => "the copy stopped before its first batch was written".to_owned(),
        })?)
    };
    let checked = if args.verify {
        let progress = bar(total + destination.stats().await?.rows, "comparing");
        let checked = fsmstore::copy::verify(
            &*source,
            &*destination,
            args.batch,
            options.in_flight,
            |read| progress.set_position(read),
        )
        .await;
        progress.finish_and_clear();
        Some(checked?)
    } else {
        None
    };
    let (from_shown, to_shown) = (
        side(from_url, &source.options().table),
        side(&args.to, &destination.options().table),
    );
    if global.json {
        output::json(&json!({
            "from": from_shown,
            "to": to_shown,
            "copy": report.as_ref().map(|r| copy_json(r, args.dry_run)),
            "verify": checked.as_ref().map(verify_json),
        }));
    } else {
        if let Some(report) = &report {
            print_copy(report, args, &from_shown, &to_shown);
        }
        if let Some(checked) = &checked {
            print_verify(checked);
        }
    }
    let skipped = report.as_ref().is_some_and(|r| !r.skipped.is_empty());
    let differ = checked.as_ref().is_some_and(|c| !c.clean());
    Ok(if skipped || differ {
        ExitCode::from(crate::exit::FAILURE)
    } else {
        ExitCode::SUCCESS
    })
}

/// A side as the report names it: its URL without a password, and its table (a Redis
/// keyspace has none).
fn side(url: &str, table: &fsmstore::TableName) -> String {
    match Scheme::of(url) {
        Ok(Scheme::Redis) => output::redact(url),
        _ => format!("{} (table {})", output::redact(url), table.as_str()),
    }
}

fn copy_json(report: &CopyReport, dry_run: bool) -> Value {
    json!({
        "read": report.read,
        "new": report.new,
        "replaced": report.replaced,
        "kept": report.kept,
        "unchanged": report.unchanged,
        "expired": report.expired,
        "expired_at_destination": report.expired_at_destination,
        "skipped": report.skipped.iter().map(|(id, why)| json!({"id": id, "error": why})).collect::<Vec<_>>(),
        "last_id": report.last_id,
        "dry_run": dry_run,
    })
}

fn verify_json(checked: &VerifyReport) -> Value {
    let list = |(n, ids): &(u64, Vec<String>)| json!({"count": n, "first_ids": ids});
    json!({
        "clean": checked.clean(),
        "compared": checked.compared,
        "same": checked.same,
        "missing": list(&checked.missing),
        "differing": list(&checked.differing),
        "only_at_destination": list(&checked.only_at_destination),
    })
}

fn print_copy(report: &CopyReport, args: &CopyArgs, from: &str, to: &str) {
    let verb = if args.dry_run { "would copy" } else { "copied" };
    println!(
        "{verb} {} of {} read from {from} to {to}: {} new, {} replaced; {} unchanged, {} kept{}, {} expired at the source{}",
        output::count(report.new + report.replaced, "row", "rows"),
        report.read,
        report.new,
        report.replaced,
        report.unchanged,
        report.kept,
        if report.kept > 0 && !args.replace {
            " (written later at the destination, or a side keeps no write time; --replace overwrites them)"
        } else {
            ""
        },
        report.expired,
        if report.expired_at_destination > 0 {
            format!(
                ", {} past the destination's shorter TTL (not copied)",
                report.expired_at_destination
            )
        } else {
            String::new()
        },
    );
    for (id, why) in &report.skipped {
        eprintln!("skipped {id}: {why}");
    }
}

fn print_verify(checked: &VerifyReport) {
    let ids = |(n, ids): &(u64, Vec<String>)| {
        if *n as usize > ids.len() {
            format!("{}, …", ids.join(", "))
        } else {
            ids.join(", ")
        }
    };
    if checked.clean() {
        println!(
            "verified: both sides hold the same {} (state and data, and the write time where both keep one)",
            output::count(checked.same, "dialogue", "dialogues")
        );
        return;
    }
    println!(
        "verify: {} of {} the same; they differ:",
        checked.same, checked.compared
    );
    for (what, list) in [
        ("missing at the destination", &checked.missing),
        ("different at the destination", &checked.differing),
        ("only at the destination", &checked.only_at_destination),
    ] {
        if list.0 > 0 {
            println!("  {} {what}: {}", list.0, ids(list));
        }
    }
}
