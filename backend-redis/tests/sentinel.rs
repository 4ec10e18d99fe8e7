//! The conformance suite through Redis Sentinel (`FSMSTORE_TEST_REDIS_SENTINEL_URL`,
//! default the three sentinels `scripts/redis-sentinel.sh start` runs on 17311–17313,
//! watching a primary and its replica as `fsmstore`), in fsmstore's layout and in
//! aiogram's: the storage asks the sentinels where the primary is and talks to it.
//!
//! Sentinels that are not there leave the cases listed as ignored, with the reason
//! (`harness = false`); under `CI` they fail.

use std::sync::Arc;

use fsmstore_conformance::{Backend, Suite};
use fsmstore_redis::redis;

mod common;

const URL_VARIABLE: &str = "FSMSTORE_TEST_REDIS_SENTINEL_URL";

fn url() -> String {
    std::env::var(URL_VARIABLE).unwrap_or_else(|_| {
        "redis+sentinel://127.0.0.1:17311,127.0.0.1:17312,127.0.0.1:17313/fsmstore".into()
    })
}

/// Asks the first sentinel of the URL who the primary is: the sentinels are there and
/// know one.
async fn backend() -> Option<Arc<dyn Backend>> {
    let url = url();
    let first = url
        .trim_start_matches("redis+sentinel://")
        .split([',', '/'])
        .next()
        .unwrap_or_default()
        .to_owned();
    let ask = async {
        let client = redis::Client::open(format!("redis://{first}"))?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg("fsmstore")
            .query_async::<Option<(String, u16)>>(&mut conn)
            .await
    };
    match tokio::time::timeout(std::time::Duration::from_secs(5), ask).await {
        Ok(Ok(Some(_))) => Some(Arc::new(common::UrlBackend {
            name: "redis-sentinel",
            url,
            aiogram_layout: true,
        })),
        Ok(Ok(None)) => {
            fsmstore_conformance::unreachable("Redis Sentinel", URL_VARIABLE, &"no primary known")
        }
        Ok(Err(err)) => fsmstore_conformance::unreachable("Redis Sentinel", URL_VARIABLE, &err),
        Err(err) => fsmstore_conformance::unreachable("Redis Sentinel", URL_VARIABLE, &err),
    }
}

fn main() -> std::process::ExitCode {
    let mut suite = Suite::new();
    suite.backend("sentinel::", backend);
    suite.run()
}
