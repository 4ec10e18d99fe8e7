//! teloxide's own `RedisStorage` keyspace, read for `fsmstore teloxide-import`: teloxide
//! keeps each dialogue as one string key, the chat id in decimal (`SET <chat_id> <bytes>`,
//! the bytes from its serializer), in the database of its URL. Only keys that are exactly
//! an `i64` as teloxide writes it are read; every other key of the database is left alone.

use fsmstore_core::{Replay, Result};

use crate::connections::{Conn, Connections};
use crate::keyspace::Pages;

/// The chat id a teloxide key names: the canonical decimal text of an `i64` (what
/// `redis-rs` writes for one), nothing else (`007`, `+7`, ` 7` are someone else's keys).
pub(crate) fn chat_id(key: &str) -> Option<i64> {
    let id: i64 = key.parse().ok()?;
    (id.to_string() == key).then_some(id)
}

/// Calls `each` with the dialogues of teloxide's keyspace, a `SCAN` page at a time: each
/// chat id with its stored bytes. A key deleted between its page and its read is left
/// out.
pub(crate) async fn dialogues(
    conns: &Connections,
    mut each: impl FnMut(Vec<(i64, Vec<u8>)>) -> Result<()>,
) -> Result<()> {
    // Every id starts with a digit or '-'; `TYPE string` leaves other keys on the server.
    let mut pages = Pages::new(conns, "[-0-9]*".to_owned(), Some("string")).await?;
    while let Some((node, keys)) = pages.next(conns).await? {
        let chats: Vec<(i64, String)> = keys
            .into_iter()
            .filter_map(|key| chat_id(&key).map(|chat| (chat, key)))
            .collect();
        if chats.is_empty() {
            continue;
        }
        let values: Vec<Option<Vec<u8>>> = match node {
            // A cluster's keys of one page are in many slots: one GET each, on the page's
            // node (teloxide itself never ran on a cluster, but its keys may be moved to one).
            Some(node) => {
                let mut values = Vec::with_capacity(chats.len());
                for (_, key) in &chats {
                    let mut get = redis::cmd("GET");
                    get.arg(key);
                    values.push(conns.on_node("teloxide import", Some(&node), &get).await?);
                }
                values
            }
            None => {
                let mut mget = redis::cmd("MGET");
                for (_, key) in &chats {
                    mget.arg(key);
                }
                conns
                    .call("teloxide import", Replay::Safe, |mut conn: Conn| {
                        let mget = &mget;
                        async move { mget.query_async(&mut conn).await }
                    })
                    .await?
            }
        };
        let page = chats
            .into_iter()
            .zip(values)
            .filter_map(|((chat, _), value)| value.map(|bytes| (chat, bytes)))
            .collect();
        each(page)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::chat_id;

    #[test]
    fn only_canonical_i64_text_is_a_chat_id() {
        assert_eq!(chat_id("42"), Some(42));
        assert_eq!(chat_id("-1001234567890"), Some(-1_001_234_567_890));
        assert_eq!(chat_id("-9223372036854775808"), Some(i64::MIN));
        for other in [
            "007",
            "+7",
            " 7",
            "-0",
            "9223372036854775808",
            "",
            "-",
            "fsm:1:1",
            "1:state",
        ] {
            assert_eq!(chat_id(other), None, "{other:?}");
        }
    }
}
