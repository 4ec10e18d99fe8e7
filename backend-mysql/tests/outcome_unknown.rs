//! A write whose reply is lost is reported as `OutcomeUnknown` and never replayed, so it
//! can not overwrite a newer write made meanwhile by another handler.
//!
//! A TCP proxy between the storage and the server forwards everything until it is armed;
//! armed, it forwards the next statement execution (`COM_STMT_EXECUTE`), drops the server's
//! reply, waits while another connection writes a newer value, and closes the client's
//! socket: the write was applied, its reply never arrived.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fsmstore_conformance::{block_on, block_on_threads, Needs, Suite};
use fsmstore_core::{BotId, ChatId, Error, SchemaPolicy, Storage, StorageKey, UserId};
use fsmstore_mysql::sqlx::{self, AssertSqlSafe};
use fsmstore_mysql::MysqlStorage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// The tests are listed as ignored, with the reason, when MariaDB is not there (a failure
/// under `CI`), never as passed. One at a time: each holds a reply back for a while.
fn main() -> std::process::ExitCode {
    let needs = Needs::probe("MariaDB is unreachable", || {
        block_on(common::server()).map(drop)
    });
    let mut suite = Suite::new().one_at_a_time();
    suite.test(
        "a_lost_reply_is_an_unknown_outcome_and_never_overwrites_a_newer_write",
        &needs,
        || {
            block_on_threads(
                2,
                a_lost_reply_is_an_unknown_outcome_and_never_overwrites_a_newer_write(),
            )
        },
    );
    suite.test(
        "a_read_whose_reply_is_lost_runs_again_on_another_connection",
        &needs,
        || {
            block_on_threads(
                2,
                a_read_whose_reply_is_lost_runs_again_on_another_connection(),
            )
        },
    );
    suite.test(
        "a_lost_batch_commit_is_an_unknown_outcome_for_each_of_its_calls",
        &needs,
        || {
            block_on_threads(
                2,
                a_lost_batch_commit_is_an_unknown_outcome_for_each_of_its_calls(),
            )
        },
    );
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
    suite.run()
}

/// Coalesced writes: 48 writers at once, one of them writing a state a `CHECK` constraint
/// refuses. Its batch does not commit; each of its writes runs again alone, so only the
/// refused call fails, with the server's error, and every other one is written.
async fn a_batch_the_server_refuses_falls_back_to_each_write_alone() {
    let server = common::server().await.expect("probed: MariaDB is there");
    let options = common::unique_options("fm_refused")
        .schema(SchemaPolicy::Upgrade)
        .write_batches(1);
    let table = options.table.to_string();
    let storage = Arc::new(
        MysqlStorage::open(server.clone().options(options.clone()).unwrap())
            .await
            .unwrap(),
    );
    let mut admin = common::connection(&server).await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!(
        "ALTER TABLE `{table}` ADD CONSTRAINT no_refused CHECK (state IS NULL OR state <> 'Form:refused')"
    )))
    .execute(&mut admin)
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
    common::drop_tables(&server, &options).await.unwrap();
}

/// `COM_STMT_EXECUTE`: the command byte of a prepared statement's execution.
const COM_STMT_EXECUTE: u8 = 0x17;

/// `COM_QUERY`: the command byte of text statements (`BEGIN`, a batch's script).
const COM_QUERY: u8 = 0x03;

struct Proxy {
    armed: AtomicBool,
    /// Armed on the next text query ending in `COMMIT` (a coalesced batch's last script)
    /// instead of a statement execution.
    on_commit: AtomicBool,
    /// Signalled when the armed statement went through.
    forwarded: Notify,
    /// Signalled by the test when the client's socket may be closed.
    close: Notify,
}

async fn start_proxy(server: (String, u16)) -> (u16, Arc<Proxy>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let proxy = Arc::new(Proxy {
        armed: AtomicBool::new(false),
        on_commit: AtomicBool::new(false),
        forwarded: Notify::new(),
        close: Notify::new(),
    });
    let shared = Arc::clone(&proxy);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = TcpStream::connect((server.0.as_str(), server.1))
                .await
                .unwrap();
            tokio::spawn(pump(client, upstream, Arc::clone(&shared)));
        }
    });
    (port, proxy)
}

async fn pump(client: TcpStream, server: TcpStream, proxy: Arc<Proxy>) {
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    // Set once this connection's armed statement went through: its replies are dropped.
    let cut = Arc::new(AtomicBool::new(false));
    let (down_proxy, down_cut) = (Arc::clone(&proxy), Arc::clone(&cut));
    let down = tokio::spawn(async move {
        let mut buf = vec![0_u8; 64 * 1024];
        loop {
            let n = match server_rx.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if down_cut.load(Ordering::SeqCst) {
                // The reply to the armed statement (and anything after it) is lost.
                down_proxy.close.notified().await;
                break;
            }
            if client_tx.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        // Dropping `client_tx` with the read half gone closes the client's socket.
    });
    let mut buf = vec![0_u8; 64 * 1024];
    loop {
        let n = match client_rx.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let executes = if proxy.on_commit.load(Ordering::SeqCst) {
            // A batch's last script ends with its `COMMIT`.
            n > 4
                && buf[4] == COM_QUERY
                && buf[5..n].len() >= 6
                && buf[n - 6..n].eq_ignore_ascii_case(b"COMMIT")
        } else {
            n > 4 && buf[4] == COM_STMT_EXECUTE
        };
        let armed = executes && proxy.armed.swap(false, Ordering::SeqCst);
        if armed {
            cut.store(true, Ordering::SeqCst);
        }
        if server_tx.write_all(&buf[..n]).await.is_err() {
            break;
        }
        if armed {
            proxy.forwarded.notify_one();
            break;
        }
    }
    let _ = down.await;
}

/// A scratch table, a storage on it opened directly, and one opened through the proxy
/// with one connection (one write at a time: a write runs alone, the writes that arrive
/// meanwhile wait and go in one batch).
struct Proxied {
    server: fsmstore_mysql::MysqlConfig,
    options: fsmstore_core::StorageOptions,
    direct: MysqlStorage,
    proxied: MysqlStorage,
    proxy: Arc<Proxy>,
}

async fn proxied(prefix: &str) -> Proxied {
    let server = common::server().await.expect("probed: MariaDB is there");
    let options = common::unique_options(prefix).schema(SchemaPolicy::Upgrade);
    let direct = MysqlStorage::open(server.clone().options(options.clone()).unwrap())
        .await
        .unwrap();
    let host = server.connect.get_host().to_owned();
    let (port, proxy) = start_proxy((host, server.connect.get_port())).await;
    let mut through = server
        .clone()
        .connect_options(server.connect.clone().port(port));
    through.options.pool_max = 1;
    let proxied = MysqlStorage::open(through.options(options.clone()).unwrap())
        .await
        .unwrap();
    Proxied {
        server,
        options,
        direct,
        proxied,
        proxy,
    }
}

async fn a_lost_reply_is_an_unknown_outcome_and_never_overwrites_a_newer_write() {
    let Proxied {
        server,
        options,
        direct,
        proxied,
        proxy,
    } = proxied("fm_unknown").await;
    let key = StorageKey::new(BotId(1), ChatId(-100), UserId(7));
    // Warm the connection and its prepared statement.
    proxied.set_state(&key, Some("Form:first")).await.unwrap();

    proxy.armed.store(true, Ordering::SeqCst);
    let write = tokio::spawn({
        let proxied = proxied.clone();
        let key = key.clone();
        async move { proxied.set_state(&key, Some("Form:stale")).await }
    });
    proxy.forwarded.notified().await;
    // The stale write reached the server; give it time to commit, then write a newer
    // state on another connection before the stale write's client learns anything.
    tokio::time::sleep(Duration::from_millis(200)).await;
    direct.set_state(&key, Some("Form:newer")).await.unwrap();
    proxy.close.notify_one();

    let err = write.await.unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            Error::OutcomeUnknown {
                operation: "set_state",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_transient(), "an unknown outcome is not transient");
    // Not replayed: the newer write stands.
    assert_eq!(
        direct.get_state(&key).await.unwrap().as_deref(),
        Some("Form:newer")
    );
    // The storage goes on working through the proxy on a fresh connection.
    proxied.set_state(&key, Some("Form:after")).await.unwrap();
    assert_eq!(
        direct.get_state(&key).await.unwrap().as_deref(),
        Some("Form:after")
    );
    proxied.close().await.unwrap();
    direct.close().await.unwrap();
    common::drop_tables(&server, &options).await.unwrap();
}

/// Coalesced writes: the reply to a batch's `COMMIT` is lost (the proxy forwards the
/// `COMMIT`, drops its reply, lets another connection write newer states, then closes the
/// socket). Every call of the batch is answered `OutcomeUnknown` under its own operation,
/// none is run again (per call or as a batch): the newer states stand.
async fn a_lost_batch_commit_is_an_unknown_outcome_for_each_of_its_calls() {
    let Proxied {
        server,
        options,
        direct,
        proxied,
        proxy,
    } = proxied("fm_unknown_batch").await;
    let key = |n: i64| StorageKey::new(BotId(1), ChatId(-100), UserId(n));
    proxied
        .set_state(&key(0), Some("Form:first"))
        .await
        .unwrap();

    proxy.on_commit.store(true, Ordering::SeqCst);
    proxy.armed.store(true, Ordering::SeqCst);
    let writes: Vec<_> = (1..=10)
        .map(|n| {
            let proxied = proxied.clone();
            tokio::spawn(async move { proxied.set_state(&key(n), Some("Form:stale")).await })
        })
        .collect();
    tokio::time::timeout(Duration::from_secs(20), proxy.forwarded.notified())
        .await
        .expect("no batch COMMIT went through the proxy within 20 s");
    tokio::time::sleep(Duration::from_millis(200)).await;
    for n in 1..=10 {
        direct.set_state(&key(n), Some("Form:newer")).await.unwrap();
    }
    proxy.close.notify_one();

    let mut unknown = 0;
    for write in writes {
        match write.await.unwrap() {
            // The one that ran alone, before the batch.
            Ok(()) => {}
            Err(err) => {
                assert!(
                    matches!(
                        err,
                        Error::OutcomeUnknown {
                            operation: "set_state",
                            ..
                        }
                    ),
                    "{err:?}"
                );
                unknown += 1;
            }
        }
    }
    assert!(
        unknown >= 2,
        "no batch of two or more lost its commit: {unknown}"
    );
    let stats = proxied.write_stats().unwrap();
    assert_eq!(stats.fallbacks, 0, "a lost batch was run again: {stats:?}");
    // Nothing ran again: every newer state stands.
    for n in 1..=10 {
        assert_eq!(
            direct.get_state(&key(n)).await.unwrap().as_deref(),
            Some("Form:newer"),
            "key {n}"
        );
    }
    proxied
        .set_state(&key(1), Some("Form:after"))
        .await
        .unwrap();
    proxied.close().await.unwrap();
    direct.close().await.unwrap();
    common::drop_tables(&server, &options).await.unwrap();
}

async fn a_read_whose_reply_is_lost_runs_again_on_another_connection() {
    let server = common::server().await.expect("probed: MariaDB is there");
    let options = common::unique_options("fm_unknown_read").schema(SchemaPolicy::Upgrade);
    let host = server.connect.get_host().to_owned();
    let (port, proxy) = start_proxy((host, server.connect.get_port())).await;
    let mut through = server
        .clone()
        .connect_options(server.connect.clone().port(port));
    through.options.pool_max = 2;
    let proxied = MysqlStorage::open(through.options(options.clone()).unwrap())
        .await
        .unwrap();
    let key = StorageKey::new(BotId(1), ChatId(-100), UserId(8));
    proxied.set_state(&key, Some("Form:name")).await.unwrap();
    proxied.get_state(&key).await.unwrap();

    proxy.armed.store(true, Ordering::SeqCst);
    let read = tokio::spawn({
        let proxied = proxied.clone();
        let key = key.clone();
        async move { proxied.get_state(&key).await }
    });
    proxy.forwarded.notified().await;
    proxy.close.notify_one();
    assert_eq!(
        read.await.unwrap().unwrap().as_deref(),
        Some("Form:name"),
        "a read is safe to run again"
    );
    proxied.close().await.unwrap();
    common::drop_tables(&server, &options).await.unwrap();
}
