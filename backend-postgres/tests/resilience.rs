//! Lost connections and unreachable servers.
//!
//! The tests that need the PostgreSQL server of `FSMSTORE_TEST_POSTGRES_URL` (default: the
//! local one) are listed as ignored, with the reason, when it is not there (a failure under
//! `CI`), never as passed (`harness = false`: [`fsmstore_conformance::Suite`]).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fsmstore_conformance::{block_on, block_on_current_thread, block_on_threads, Needs, Suite};
use fsmstore_core::sql::drop_table_if_exists;
use fsmstore_core::{
    BotId, ChatId, Dialect, Error, ErrorKind, SchemaPolicy, Storage, StorageKey, StorageOptions,
    UserId,
};
use fsmstore_postgres::{PgConfig, PgStorage};
use serde_json::json;

/// One at a time: one test kills sessions while it writes, another measures how long a
/// migrator waits.
fn main() -> std::process::ExitCode {
    let needs = Needs::probe("PostgreSQL is unreachable", || {
        block_on(common::admin()).map(drop)
    });
    let mut suite = Suite::new().one_at_a_time();
    suite.test(
        "terminated_connections_recover_without_reopening",
        &needs,
        || block_on_threads(4, terminated_connections_recover_without_reopening()),
    );
    suite.test(
        "unreachable_server_is_a_transient_error_without_the_password",
        &Needs::Met,
        || block_on_current_thread(unreachable_server_is_a_transient_error_without_the_password()),
    );
    suite.test(
        "a_url_without_a_host_is_a_config_error",
        &Needs::Met,
        a_url_without_a_host_is_a_config_error,
    );
    suite.test("call_futures_stay_small", &needs, || {
        block_on_current_thread(call_futures_stay_small())
    });
    suite.test("server_errors_say_what_the_server_said", &needs, || {
        block_on_current_thread(server_errors_say_what_the_server_said())
    });
    suite.test(
        "a_batch_the_server_refuses_falls_back_to_each_write_alone",
        &needs,
        || {
            block_on_threads(
                2,
                a_batch_the_server_refuses_falls_back_to_each_write_alone(),
            )
        },
    );
    suite.test("several_hosts_in_the_url_skip_a_dead_one", &needs, || {
        block_on_current_thread(several_hosts_in_the_url_skip_a_dead_one())
    });
    suite.test(
        "a_held_migration_lock_is_waited_for_at_most_the_lock_timeout",
        &needs,
        || block_on(a_held_migration_lock_is_waited_for_at_most_the_lock_timeout()),
    );
    suite.run()
}

fn data(value: serde_json::Value) -> fsmstore_core::Data {
    value.as_object().cloned().expect("object")
}

/// Kills the storage's server sessions with `pg_terminate_backend` while it writes: calls
/// fail with transient errors at worst, then succeed without reopening, and every row is
/// whole (`check` always equals `gen`: written by one statement).
async fn terminated_connections_recover_without_reopening() {
    let admin = common::admin().await.expect("probed: PostgreSQL is there");
    let app = format!("fsmstore-kill-{}", std::process::id());
    let options = StorageOptions::default()
        .table(&format!("kill_{}", std::process::id()))
        .unwrap()
        .version_table(&format!("kill_{}_ver", std::process::id()))
        .unwrap()
        .schema(SchemaPolicy::Upgrade)
        .pool_max(4);
    let mut config = PgConfig::from_url(&common::url())
        .unwrap()
        .options(options.clone())
        .unwrap();
    config.pg.application_name(&app);
    let storage = Arc::new(PgStorage::open(config).await.expect("open"));

    let transient = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (storage, transient) = (Arc::clone(&storage), Arc::clone(&transient));
        tokio::spawn(async move {
            for generation in 0..400_i64 {
                let key = StorageKey::new(BotId(1), ChatId(generation % 16), UserId(1));
                let blob = "x".repeat(2048);
                let calls = [
                    storage
                        .set_data(
                            &key,
                            &data(json!({"gen": generation, "check": generation, "blob": blob})),
                        )
                        .await,
                    storage
                        .update_data(&key, &data(json!({"touched": generation})))
                        .await
                        .map(drop),
                    storage.set_state(&key, Some("Form:name")).await,
                ];
                for result in calls {
                    match result {
                        Ok(()) => {}
                        // Every call here writes: one in flight when its session is
                        // terminated may have lost its reply.
                        Err(err)
                            if err.is_transient() || err.kind() == ErrorKind::OutcomeUnknown =>
                        {
                            transient.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(err) => panic!("unexpected error after a lost connection: {err:?}"),
                    }
                }
            }
        })
    };
    let mut terminated = 0_i64;
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(60)).await;
        let row = admin
            .query_one(
                "SELECT COUNT(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
                &[&app],
            )
            .await
            .unwrap();
        terminated += row.get::<_, i64>(0);
    }
    writer.await.expect("writer panicked");
    assert!(
        terminated > 0,
        "no session was terminated: the test proved nothing"
    );

    // One more kill, then the same storage must work again within a few calls.
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .await
        .unwrap();
    let key = StorageKey::new(BotId(1), ChatId(99), UserId(1));
    let mut recovered = false;
    for _ in 0..10 {
        match storage.set_state(&key, Some("after")).await {
            Ok(()) => {
                recovered = true;
                break;
            }
            Err(err) => assert!(
                err.is_transient() || err.kind() == ErrorKind::OutcomeUnknown,
                "{err:?}"
            ),
        }
    }
    assert!(recovered, "the pool did not recover");
    assert_eq!(
        storage.get_state(&key).await.unwrap().as_deref(),
        Some("after")
    );

    for chat in 0..16 {
        let row = storage
            .get_data(&StorageKey::new(BotId(1), ChatId(chat), UserId(1)))
            .await
            .unwrap();
        assert_eq!(
            row.get("gen"),
            row.get("check"),
            "half-written row for chat {chat}: {row:?}"
        );
        assert_eq!(
            row.get("blob").and_then(|b| b.as_str()).map(str::len),
            Some(2048)
        );
    }
    eprintln!(
        "terminated {terminated} sessions; {} calls failed transiently",
        transient.load(Ordering::Relaxed)
    );
    storage.close().await.unwrap();
    for table in [&options.table, &options.version_table] {
        admin
            .batch_execute(&drop_table_if_exists(Dialect::Postgres, table))
            .await
            .unwrap();
    }
}

/// An unreachable server is a transient connection error that never shows the password.
async fn unreachable_server_is_a_transient_error_without_the_password() {
    let config = PgConfig::from_url(
        "postgres://bot:hunter2@127.0.0.1:1/bots?connect_timeout_ms=500&schema=verify",
    )
    .unwrap();
    let err = PgStorage::open(config).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(matches!(err, Error::Connection { .. }), "{err:?}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
}

/// A URL without a host is a configuration error, not a transient connection error.
fn a_url_without_a_host_is_a_config_error() {
    let err = PgConfig::from_url("postgres://").unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert!(!err.is_transient());
}

/// A storage on `<prefix>_<pid>`, which is never created: the schema is trusted, not checked.
async fn on_a_table_never_created(prefix: &str) -> PgStorage {
    let options = StorageOptions::default()
        .table(&format!("{prefix}_{}", std::process::id()))
        .unwrap()
        .schema(SchemaPolicy::Trust);
    let config = PgConfig::from_url(&common::url())
        .unwrap()
        .options(options)
        .unwrap();
    PgStorage::open(config).await.unwrap()
}

/// A server error keeps the server's words in the message (not just "db error") and is
/// permanent.
async fn server_errors_say_what_the_server_said() {
    let storage = on_a_table_never_created("never_created").await;
    let err = storage
        .get_state(&StorageKey::new(BotId(1), ChatId(2), UserId(3)))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("42P01") && text.contains("does not exist"),
        "{text}"
    );
    assert!(!err.is_transient(), "{err:?}");
    storage.close().await.unwrap();
}

/// Coalesced writes: 48 writers at once, one of them writing a state a `CHECK` constraint
/// refuses. Its batch does not commit; each of its writes runs again alone, so only the
/// refused call fails, with the server's error, and every other one is written.
async fn a_batch_the_server_refuses_falls_back_to_each_write_alone() {
    let table = format!("refused_batch_{}", std::process::id());
    let options = StorageOptions::default()
        .table(&table)
        .unwrap()
        .version_table(&format!("{table}_ver"))
        .unwrap()
        .schema(SchemaPolicy::Upgrade)
        .write_batches(1);
    let config = PgConfig::from_url(&common::url())
        .unwrap()
        .options(options)
        .unwrap();
    let storage = Arc::new(PgStorage::open(config).await.unwrap());
    let admin = common::admin().await.expect("server");
    admin
        .batch_execute(&format!(
            "ALTER TABLE {table} ADD CONSTRAINT no_refused CHECK (state IS DISTINCT FROM 'Form:refused')"
        ))
        .await
        .unwrap();
    let stats = fsmstore_conformance::cases::coalesce::writers_beside_a_refused_state(
        Arc::clone(&storage) as Arc<dyn Storage>,
        "no_refused",
    )
    .await;
    assert!(
        stats.fallbacks >= 1,
        "the refused row was never in a batch: {stats:?}"
    );
    storage.close().await.unwrap();
    for name in [table.clone(), format!("{table}_ver")] {
        let name = fsmstore_core::TableName::new(&name).unwrap();
        admin
            .batch_execute(&drop_table_if_exists(Dialect::Postgres, &name))
            .await
            .unwrap();
    }
}

/// Several hosts in the URL (tokio-postgres tries them in order for every new connection):
/// with the first one dead, the storage opens, migrates and works through the next.
async fn several_hosts_in_the_url_skip_a_dead_one() {
    // A port nothing listens on: connecting to it is refused at once.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    // The test server's URL (user, password, database, parameters kept) with the dead host
    // put before its own.
    let live = common::url();
    let at = live
        .find('@')
        .map_or(live.find("://").unwrap() + 3, |at| at + 1);
    let table = format!("multi_host_{}", std::process::id());
    let separator = if live.contains('?') { '&' } else { '?' };
    let url = format!(
        "{}127.0.0.1:{dead_port},{}{separator}table={table}&version_table={table}_ver&schema=upgrade&connect_timeout_ms=2000",
        &live[..at],
        &live[at..]
    );
    let storage = PgStorage::connect(&url)
        .await
        .expect("the second host serves");
    let key = StorageKey::new(BotId(1), ChatId(-5), UserId(5));
    storage.set_state(&key, Some("Form:name")).await.unwrap();
    assert_eq!(
        storage.get_state(&key).await.unwrap().as_deref(),
        Some("Form:name")
    );
    storage
        .database()
        .unwrap()
        .migrator()
        .unwrap()
        .drop_tables()
        .await
        .unwrap();
    storage.close().await.unwrap();
}

/// A migrator waits for a held migration lock at most its lock timeout, then answers
/// `MigrationLockTimeout` naming the session that holds it (it once waited forever: through
/// a transaction pooler without `pooler=transaction`, `fsmstore conformance` hung over nine
/// minutes). Once the holder lets go, the same migrator goes through.
async fn a_held_migration_lock_is_waited_for_at_most_the_lock_timeout() {
    use fsmstore_core::{MigrationTarget, Migrator};
    use fsmstore_postgres::PgMigrator;
    let holder = common::admin().await.expect("probed: PostgreSQL is there");
    let table = format!("mlock_{}", std::process::id());
    let options = StorageOptions::default()
        .table(&table)
        .unwrap()
        .version_table(&format!("{table}_ver"))
        .unwrap();
    let lock = fsmstore_core::sql::MigrationLock::postgres(&options.version_table);
    holder
        .batch_execute(&format!(
            "SET application_name = 'the-lock-holder'; {}",
            lock.acquire
        ))
        .await
        .unwrap();
    let config = PgConfig::from_url(&common::url())
        .unwrap()
        .options(options)
        .unwrap()
        .lock_timeout(Duration::from_secs(1));
    let migrator = PgMigrator::new(config).unwrap();
    let started = std::time::Instant::now();
    let err = migrator.migrate(MigrationTarget::Head).await.unwrap_err();
    let waited = started.elapsed();
    assert!(
        matches!(&err, Error::MigrationLockTimeout { holder: Some(h), .. } if h.contains("the-lock-holder")),
        "{err:?}"
    );
    assert_eq!(err.kind(), fsmstore_core::ErrorKind::LockTimeout);
    assert!(err.is_transient());
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    holder.batch_execute(&lock.release).await.unwrap();
    migrator.migrate(MigrationTarget::Head).await.unwrap();
    migrator.drop_tables().await.unwrap();
    migrator.close().await.unwrap();
}

/// Each call's future is boxed and copied whole: a write's per-call path is made only when
/// it runs (not passed to the coalescer as a future, where it sat twice).
async fn call_futures_stay_small() {
    // The futures are made, never polled.
    let storage = on_a_table_never_created("footprint").await;
    // 928 (reads) to 1 368 bytes (writes); 2 544 to 2 984 with deadpool's checkout inline
    // (before the connection stash), 3 672 to 4 112 with a first prepare inline, 3 856 to
    // 4 296 before the call runner awaited a call's first attempt alone, 11 976 for writes
    // before the coalescer took a closure.
    fsmstore_conformance::footprint::assert_call_futures_at_most(&storage, 1536);
    storage.close().await.unwrap();
}
