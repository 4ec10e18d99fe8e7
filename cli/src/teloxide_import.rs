//! `fsmstore teloxide-import`: moves the dialogues of teloxide's own storages into the FSM
//! table, in the layout `fsmstore-teloxide` reads: each dialogue becomes the row of its
//! chat (aiogram's `FSMStrategy.CHAT` key, `--bot` for the bot id) with the dialogue's
//! variant as state and its fields as data. The sources, all written with teloxide's
//! `Json` serializer:
//!
//! - `SqliteStorage`, `PostgresStorage`: table `teloxide_dialogues (chat_id BIGINT PRIMARY
//!   KEY, dialogue BLOB/BYTEA)` (and the same table on MySQL);
//! - `RedisStorage`: one string key per chat, the chat id in decimal.
//!
//! The source is read, never changed. A dialogue the FSM table already holds is kept
//! unless `--replace` (an import run again after the bot went live would otherwise put its
//! users back on old steps); the check and the write hold the key's isolation lock, so a
//! bot handler that locks its key on a server (PostgreSQL, MySQL, Redis) never interleaves
//! with them. On SQLite the lock is this process's own: stop the bot while importing. Rows that are not JSON, and
//! rows the storage would refuse (a NUL character, nesting deeper than 31 levels, data
//! over `max_data_bytes`), are listed and skipped (exit 1); every other row is written.

use std::process::ExitCode;

use anyhow::Context;
use fsmstore::core::dialogue_value;
use fsmstore::migrate::Dialect;
use fsmstore::{BotId, ChatId, Scheme, StorageKey, TableName, UserId};
use serde_json::json;

use crate::args::{Access, Global, TeloxideImportArgs};
use crate::output;

/// One row of `teloxide_dialogues`: its chat and the dialogue's bytes (`None`: SQL `NULL`).
/// A SQLite column holds any type, so a `TEXT` value is read as its bytes.
type SourceRow = (i64, Option<Vec<u8>>);

/// teloxide's table when `--from` is not given.
const TELOXIDE_TABLE: &str = "teloxide_dialogues";

pub(crate) async fn run(global: &Global, args: TeloxideImportArgs) -> anyhow::Result<ExitCode> {
    let source_url = args.source.as_deref().unwrap_or(&global.url);
    let (rows, from) = read_source(source_url, args.from.as_deref())
        .await
        .context("reading teloxide's storage")?;
    let access = if args.dry_run {
        Access::ReadOnly
    } else {
        Access::ReadWrite
    };
    let report = global
        .with_database(fsmstore::SchemaPolicy::Verify, access, async |db| {
            let storage = db.storage();
            let isolation = db.isolation();
            let mut report = Report::default();
            for (chat, bytes) in rows {
                // teloxide's `Json` serializer wrote `serde_json::to_vec(&dialogue)`; a NULL
                // or text that is not JSON is listed and skipped like any bad row.
                let Some(Ok(value)) = bytes
                    .as_deref()
                    .map(serde_json::from_slice::<serde_json::Value>)
                else {
                    report.not_json.push(chat);
                    continue;
                };
                let (state, data) = dialogue_value::encode(value);
                let key = StorageKey::new(BotId(args.bot), ChatId(chat), UserId(chat));
                // What the storage would refuse (NUL, nesting, size), refused here in both
                // modes, so a dry run sees it and a real run writes every other row.
                if let Err(err) = storage.options().record_row_id(&key, Some(&state), &data) {
                    report.refused.push((chat, err.to_string()));
                    continue;
                }
                // The key's lock (not in a dry run, which writes nothing): a handler of
                // this chat that locks it sees the row before or after, never between.
                let lock = if args.dry_run {
                    None
                } else {
                    Some(isolation.lock(&key).await?)
                };
                let there = !storage.get_record(&key).await?.is_empty();
                if there && !args.replace {
                    report.kept += 1;
                } else {
                    if !args.dry_run {
                        storage.set_record(&key, Some(&state), &data).await?;
                    }
                    if there {
                        report.replaced += 1;
                    } else {
                        report.new += 1;
                    }
                }
                // Released before the next key: on Redis a dropped lock is released by a
                // task that the command's exit would cut short.
                if let Some(lock) = lock {
                    lock.release().await;
                }
            }
            Ok(report)
        })
        .await?;
    let verb = if args.dry_run {
        "would import"
    } else {
        "imported"
    };
    if global.json {
        output::json(&json!({
            "from": from,
            "imported": report.new + report.replaced,
            "new": report.new,
            "replaced": report.replaced,
            "kept": report.kept,
            "not_json": report.not_json,
            "refused": report.refused.iter().map(|(chat, why)| json!({"chat": chat, "error": why})).collect::<Vec<_>>(),
            "dry_run": args.dry_run,
        }));
    } else {
        println!(
            "{verb} {} from {from} into {}: {} new, {} replaced; {} kept (already there{})",
            output::count(report.new + report.replaced, "dialogue", "dialogues"),
            global.table,
            report.new,
            report.replaced,
            report.kept,
            if args.replace {
                ""
            } else {
                "; --replace overwrites them"
            },
        );
        for (chat, why) in &report.refused {
            eprintln!("skipped chat {chat}: {why}");
        }
        if !report.not_json.is_empty() {
            eprintln!(
                "skipped {} that {} not JSON (NULL, a number, or written with teloxide's Bincode or CBOR serializer?); chats: {:?}",
                output::count(report.not_json.len() as u64, "row", "rows"),
                if report.not_json.len() == 1 { "is" } else { "are" },
                report.not_json
            );
        }
    }
    Ok(if report.not_json.is_empty() && report.refused.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::exit::FAILURE)
    })
}

#[derive(Debug, Default)]
struct Report {
    /// Written where the FSM table had no dialogue.
    new: u64,
    /// Written over a dialogue the FSM table held (`--replace`).
    replaced: u64,
    /// Left as the FSM table holds them (no `--replace`).
    kept: u64,
    not_json: Vec<i64>,
    /// Rows the storage would refuse, and why.
    refused: Vec<(i64, String)>,
}

/// Every dialogue of teloxide's storage at `url`, by chat id, and what the report calls
/// the source: its table (`from`, or teloxide's default) on an SQL database, its keyspace
/// on Redis.
async fn read_source(url: &str, from: Option<&str>) -> anyhow::Result<(Vec<SourceRow>, String)> {
    if Scheme::of(url)? == Scheme::Redis {
        if let Some(from) = from {
            anyhow::bail!(
                "--from {from}: teloxide's RedisStorage has no table (it keeps each dialogue under its chat id); give the Redis URL it was opened with"
            );
        }
        let storage = fsmstore::redis::RedisStorage::connect(url).await?;
        let mut rows = Vec::new();
        storage
            .teloxide_dialogues(|page| {
                rows.extend(page.into_iter().map(|(chat, bytes)| (chat, Some(bytes))));
                Ok(())
            })
            .await?;
        fsmstore::Storage::close(&storage).await?;
        rows.sort_unstable_by_key(|(chat, _)| *chat);
        return Ok((rows, "teloxide's Redis keys".to_owned()));
    }
    let from = TableName::new(from.unwrap_or(TELOXIDE_TABLE))?;
    let rows = read_rows(url, &from)
        .await
        .with_context(|| format!("reading teloxide's table {}", from.as_str()))?;
    Ok((rows, from.as_str().to_owned()))
}

/// Every row of `from`, by chat id, with the driver of the URL's backend.
async fn read_rows(url: &str, from: &TableName) -> anyhow::Result<Vec<SourceRow>> {
    match Scheme::of(url)? {
        Scheme::Sqlite => {
            let config = fsmstore::sqlite::SqliteConfig::from_url(url)?;
            let fsmstore::sqlite::SqliteLocation::File(path) = config.location else {
                anyhow::bail!("an in-memory SQLite database holds no teloxide table");
            };
            let select = select(Dialect::Sqlite, from);
            tokio::task::spawn_blocking(move || {
                use fsmstore::sqlite::rusqlite::{Connection, OpenFlags};
                let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
                let mut statement = conn.prepare(&select)?;
                let rows = statement
                    .query_map([], |row| {
                        use fsmstore::sqlite::rusqlite::types::ValueRef;
                        let bytes = match row.get_ref(1)? {
                            ValueRef::Blob(bytes) | ValueRef::Text(bytes) => Some(bytes.to_vec()),
                            ValueRef::Null | ValueRef::Integer(_) | ValueRef::Real(_) => None,
                        };
                        Ok((row.get(0)?, bytes))
                    })?
                    .collect::<Result<Vec<SourceRow>, _>>()?;
                Ok(rows)
            })
            .await?
        }
        Scheme::Postgres => {
            let config = fsmstore::postgres::PgConfig::from_url(url)?;
            let (client, _driver) = config.connect().await?;
            // Unnamed (nothing prepared): also through a transaction pooler.
            let rows = client
                .query_typed(&select(Dialect::Postgres, from), &[])
                .await?;
            rows.iter()
                .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                .collect()
        }
        Scheme::Mysql => {
            use fsmstore::mysql::sqlx::{self, Connection};
            let config = fsmstore::mysql::MysqlConfig::from_url(url)?;
            let mut conn = sqlx::MySqlConnection::connect_with(&config.connect)
                .await
                .context("connect to MySQL")?;
            let rows: Vec<SourceRow> =
                sqlx::query_as(sqlx::AssertSqlSafe(select(Dialect::Mysql, from)))
                    .fetch_all(&mut conn)
                    .await?;
            conn.close().await.ok();
            Ok(rows)
        }
        _ => anyhow::bail!("unsupported database URL"),
    }
}

fn select(dialect: Dialect, from: &TableName) -> String {
    format!(
        "SELECT chat_id, dialogue FROM {} ORDER BY chat_id",
        from.quoted(dialect)
    )
}
