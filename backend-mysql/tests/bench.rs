//! Median time per call of fsmstore's MySQL storage next to bare sqlx on one connection
//! running the same statements. Ignored by default; run it with
//! `cargo test -p fsmstore-mysql --release --test bench -- --ignored --nocapture`.

mod common;

use std::time::{Duration, Instant};

use fsmstore_core::serde_json::json;
use fsmstore_core::sql::Queries;
use fsmstore_core::{Data, Dialect, SchemaPolicy, Storage, StorageKey};
use fsmstore_mysql::sqlx::{self, AssertSqlSafe, Connection};
use fsmstore_mysql::MysqlStorage;

const CALLS: usize = 2_000;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

async fn time<F: std::future::Future<Output = ()>>(mut call: impl FnMut(usize) -> F) -> Duration {
    let mut samples = Vec::with_capacity(CALLS);
    for i in 0..CALLS {
        let started = Instant::now();
        call(i).await;
        samples.push(started.elapsed());
    }
    median(samples)
}

fn patch(i: usize) -> Data {
    json!({ format!("f{}", i % 16): i })
        .as_object()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn median_time_per_call() {
    let Some(server) = common::server().await else {
        return;
    };
    let options = common::unique_options("fm_bench");
    let storage = MysqlStorage::open(
        server
            .clone()
            .options(options.clone().schema(SchemaPolicy::Upgrade)),
    )
    .await
    .unwrap();
    let key = StorageKey::new(1, -100, 7);
    let id = storage.options().row_id(&key).unwrap();
    storage.set_state(&key, Some("warm")).await.unwrap();

    let q = Queries::for_table(Dialect::Mysql, &options.table);
    let sql = |text: &str| AssertSqlSafe(text.to_owned());
    let mut conn = common::connection(&server).await.unwrap();

    let fsm_get = time(|_| async { drop(storage.get_state(&key).await.unwrap()) }).await;
    let fsm_set = time(|i| {
        let (storage, key) = (&storage, &key);
        async move {
            storage
                .set_state(key, Some(&format!("S{i}")))
                .await
                .unwrap()
        }
    })
    .await;
    let fsm_update = time(|i| {
        let (storage, key) = (&storage, &key);
        async move { drop(storage.update_data(key, &patch(i)).await.unwrap()) }
    })
    .await;

    let mut samples = [Vec::new(), Vec::new(), Vec::new()];
    for i in 0..CALLS {
        let started = Instant::now();
        let _: Option<Option<String>> = sqlx::query_scalar(sql(&q.get_state))
            .bind(&id)
            .fetch_optional(&mut conn)
            .await
            .unwrap();
        samples[0].push(started.elapsed());
        let started = Instant::now();
        sqlx::query(sql(&q.upsert_state))
            .bind(&id)
            .bind(format!("S{i}"))
            .execute(&mut conn)
            .await
            .unwrap();
        samples[1].push(started.elapsed());
        // The same locked read-merge-write transaction, without fsmstore around it.
        let started = Instant::now();
        let mut tx = conn.begin().await.unwrap();
        sqlx::query(sql(q.lock_row.as_deref().unwrap()))
            .bind(&id)
            .execute(&mut *tx)
            .await
            .unwrap();
        let row = sqlx::query(sql(&q.get_data))
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await
            .unwrap();
        let text: String = row
            .map(|row| sqlx::Row::try_get_unchecked(&row, 0).unwrap())
            .unwrap_or_default();
        let mut data: Data = serde_json::from_str(&text).unwrap_or_default();
        fsmstore_core::merge_shallow(&mut data, &patch(i));
        sqlx::query(sql(&q.upsert_data))
            .bind(&id)
            .bind(serde_json::to_string(&data).unwrap())
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        samples[2].push(started.elapsed());
    }
    let [bare_get, bare_set, bare_update] = samples.map(median);
    eprintln!("median per call over {CALLS} calls (fsmstore pool vs bare sqlx, one connection):");
    for (op, fsm, bare) in [
        ("get_state", fsm_get, bare_get),
        ("set_state", fsm_set, bare_set),
        ("update_data", fsm_update, bare_update),
    ] {
        eprintln!("  {op:<12} fsmstore {fsm:>10.1?}   bare sqlx {bare:>10.1?}");
    }
    conn.close().await.ok();
    storage.close().await.unwrap();
    common::drop_tables(&server, &options).await.unwrap();
}
