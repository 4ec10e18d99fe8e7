//! The whole conformance suite against the Redis server of `FSMSTORE_TEST_REDIS_URL`
//! (default: the local one, database 7), each case under its own key prefix (its table
//! name), in fsmstore's layout and in aiogram's (`aiogram_layout::`). Only the keys a case
//! wrote are deleted; the server is never flushed.
//!
//! A server that is not there leaves the cases listed as ignored, with the reason, in the
//! summary (`harness = false`: [`fsmstore_conformance::Suite`]); under `CI` they fail.

use std::sync::Arc;

use fsmstore_conformance::Backend;
use fsmstore_redis::redis;

mod common;

const URL_VARIABLE: &str = "FSMSTORE_TEST_REDIS_URL";

fn url() -> String {
    std::env::var(URL_VARIABLE).unwrap_or_else(|_| "redis://127.0.0.1:6379/7".into())
}

async fn backend() -> Option<Arc<dyn Backend>> {
    let url = url();
    let client = redis::Client::open(url.as_str()).expect("FSMSTORE_TEST_REDIS_URL is a Redis URL");
    let admin = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    )
    .await;
    match admin {
        Ok(Ok(_)) => Some(Arc::new(common::UrlBackend {
            name: "redis",
            url,
            aiogram_layout: true,
        })),
        Ok(Err(err)) => fsmstore_conformance::unreachable("Redis", URL_VARIABLE, &err),
        Err(elapsed) => fsmstore_conformance::unreachable("Redis", URL_VARIABLE, &elapsed),
    }
}

fn main() -> std::process::ExitCode {
    let mut suite = fsmstore_conformance::Suite::new();
    suite.backend("", backend);
    suite.run()
}
