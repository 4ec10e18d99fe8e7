//! The conformance suite on a Redis Cluster (`FSMSTORE_TEST_REDIS_CLUSTER_URL`, default the
//! six nodes `scripts/redis-cluster.sh start` runs on 17001–17006), in fsmstore's layout:
//! every call touches one key, so one slot. aiogram's layout keeps a dialogue in two keys,
//! in two slots unless the key builder's prefix holds a hash tag: its multi-key calls are
//! refused with a typed error and write nothing.
//!
//! A cluster that is not there leaves the cases listed as ignored, with the reason
//! (`harness = false`); under `CI` they fail.

use std::sync::Arc;

use fsmstore_conformance::{block_on, Backend, Needs, Suite};
use fsmstore_core::{
    BotId, ChatId, DefaultKeyBuilder, ErrorKind, Layout, Storage, StorageKey, StorageOptions,
    UserId,
};
use fsmstore_redis::redis;
use fsmstore_redis::redis::cluster::ClusterClientBuilder;
use fsmstore_redis::redis::cluster_async::ClusterConnection;
use fsmstore_redis::{RedisConfig, RedisStorage};

mod common;

const URL_VARIABLE: &str = "FSMSTORE_TEST_REDIS_CLUSTER_URL";

fn url() -> String {
    std::env::var(URL_VARIABLE).unwrap_or_else(|_| {
        "redis+cluster://127.0.0.1:17001,127.0.0.1:17002,127.0.0.1:17003".into()
    })
}

/// The seed nodes of the URL, as the driver takes them.
fn nodes() -> Vec<String> {
    let url = url();
    let hosts = url
        .trim_start_matches("redis+cluster://")
        .split(['/', '?'])
        .next()
        .unwrap_or_default()
        .to_owned();
    hosts
        .split(',')
        .map(|host| format!("redis://{host}"))
        .collect()
}

async fn admin() -> Option<ClusterConnection> {
    let connect = async {
        ClusterClientBuilder::new(nodes())
            .connection_timeout(std::time::Duration::from_secs(2))
            .retries(2)
            .build()?
            .get_async_connection()
            .await
    };
    match tokio::time::timeout(std::time::Duration::from_secs(10), connect).await {
        Ok(Ok(conn)) => Some(conn),
        Ok(Err(err)) => fsmstore_conformance::unreachable("Redis Cluster", URL_VARIABLE, &err),
        Err(err) => fsmstore_conformance::unreachable("Redis Cluster", URL_VARIABLE, &err),
    }
}

async fn backend() -> Option<Arc<dyn Backend>> {
    admin().await?;
    Some(Arc::new(common::UrlBackend {
        name: "redis-cluster",
        url: url(),
        aiogram_layout: false,
    }))
}

/// aiogram's layout on a cluster: a dialogue's state and data keys fall in two slots, so a
/// call that writes both is refused before anything is written, naming the fix; with a
/// hash tag in the key builder's prefix (`{fsm}`) both keys share a slot and it works.
async fn aiogram_layout_multi_key_calls_are_refused_or_hash_tagged() {
    let mut conn = admin()
        .await
        .expect("the cluster was there when the suite started");
    let key = StorageKey::new(BotId(1), ChatId(-5), UserId(5));
    let open = |prefix: &'static str| async move {
        let options = StorageOptions::default()
            .layout(Layout::AiogramSqlalchemy)
            .key_builder(DefaultKeyBuilder::default().with_prefix(prefix));
        let config = RedisConfig::from_url(&format!("{}?layout=aiogram", url()))
            .unwrap()
            .options(options)
            .unwrap();
        RedisStorage::open(config).await.unwrap()
    };
    let plain = open("fsmt_cluster_plain").await;
    let err = plain
        .set_record(
            &key,
            Some("S"),
            &serde_json::Map::from_iter([("a".into(), 1.into())]),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("hash slot"), "{err}");
    let state: Option<String> = redis::cmd("GET")
        .arg("fsmt_cluster_plain:-5:5:state")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(state, None, "nothing was written");

    let tagged = open("{fsmt_cluster_tag}").await;
    let merged = tagged
        .transition(
            &key,
            Some("S"),
            &serde_json::Map::from_iter([("a".into(), 1.into())]),
        )
        .await
        .unwrap();
    assert_eq!(merged.get("a"), Some(&serde_json::json!(1)));
    assert_eq!(tagged.get_state(&key).await.unwrap().as_deref(), Some("S"));
    assert!(tagged.clear(&key).await.unwrap());
}

fn main() -> std::process::ExitCode {
    let mut suite = Suite::new();
    suite.backend("cluster::", backend);
    let cluster = Needs::probe("Redis Cluster unreachable", || block_on(admin()).map(drop));
    suite.test(
        "aiogram_layout_multi_key_calls_are_refused_or_hash_tagged",
        &cluster,
        || block_on(aiogram_layout_multi_key_calls_are_refused_or_hash_tagged()),
    );
    suite.run()
}
