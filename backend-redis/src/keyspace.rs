//! Walking the keyspace of a storage: `SCAN` with a cursor (never `KEYS`), `COUNT` keys per
//! round trip, so a large keyspace is read in bounded batches while Redis keeps serving.

use std::collections::BTreeSet;

use fsmstore_core::Result;

use crate::connections::Connections;

/// Keys asked for per `SCAN` round trip.
pub(crate) const SCAN_BATCH: u64 = 1000;

/// How a layout stores a dialogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// fsmstore's: one hash per dialogue, `<prefix><id>`.
    Hashes,
    /// aiogram's: `<prefix><id>:state` and `<prefix><id>:data` strings.
    Aiogram,
}

/// `text` with the glob characters of `SCAN MATCH` escaped.
pub(crate) fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The `SCAN` pages of a keyspace, node after node: on a cluster each primary in turn (a
/// `SCAN` covers one node), on one server that server.
pub(crate) struct Pages {
    /// The nodes left to scan (`None`: the server), the current one last.
    nodes: Vec<Option<(String, u16)>>,
    cursor: u64,
    pattern: String,
    /// `SCAN … TYPE`: keys of this type only (`None`: every key).
    kind: Option<&'static str>,
}

impl Pages {
    pub(crate) async fn new(
        conns: &Connections,
        pattern: String,
        kind: Option<&'static str>,
    ) -> Result<Self> {
        let mut nodes: Vec<Option<(String, u16)>> = match conns.primaries().await? {
            Some(primaries) => primaries.into_iter().map(Some).collect(),
            None => vec![None],
        };
        nodes.reverse();
        Ok(Pages {
            nodes,
            cursor: 0,
            pattern,
            kind,
        })
    }

    /// The next page: its node and its keys; `None` once every node was scanned.
    pub(crate) async fn next(
        &mut self,
        conns: &Connections,
    ) -> Result<Option<(Option<(String, u16)>, Vec<String>)>> {
        let Some(node) = self.nodes.last().cloned() else {
            return Ok(None);
        };
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(self.cursor)
            .arg("MATCH")
            .arg(&self.pattern)
            .arg("COUNT")
            .arg(SCAN_BATCH);
        if let Some(kind) = self.kind {
            cmd.arg("TYPE").arg(kind);
        }
        let (next, keys): (u64, Vec<String>) = conns.on_node("scan", node.as_ref(), &cmd).await?;
        self.cursor = next;
        if next == 0 {
            self.nodes.pop();
        }
        Ok(Some((node, keys)))
    }
}

/// The row ids of every dialogue of a layout, a `SCAN` page at a time (in aiogram's
/// layout an id may come twice: once for its state, once for its data).
pub(crate) struct IdPages {
    prefix: String,
    /// The `SCAN` pattern before its `*`: the prefix and what every id starts with,
    /// escaped.
    pattern_start: String,
    /// The key suffixes left to scan (aiogram's layout: `:state`, then `:data`), the
    /// current one last, each with its pages.
    parts: Vec<&'static str>,
    pages: Pages,
}

impl IdPages {
    /// The ids of the keys under `prefix` whose ids start with `id_start`.
    pub(crate) async fn new(
        conns: &Connections,
        prefix: &str,
        id_start: &str,
        shape: Shape,
    ) -> Result<Self> {
        let (parts, kind) = match shape {
            Shape::Hashes => (vec![""], "hash"),
            Shape::Aiogram => (vec![":data", ":state"], "string"),
        };
        let pattern_start = format!("{}{}", glob_escape(prefix), glob_escape(id_start));
        let part = parts.last().copied().unwrap_or_default();
        let pages = Pages::new(conns, format!("{pattern_start}*{part}"), Some(kind)).await?;
        Ok(IdPages {
            prefix: prefix.to_owned(),
            pattern_start,
            parts,
            pages,
        })
    }

    /// The next page of ids; `None` once every key was scanned.
    pub(crate) async fn next(&mut self, conns: &Connections) -> Result<Option<Vec<String>>> {
        loop {
            let Some(part) = self.parts.last().copied() else {
                return Ok(None);
            };
            if let Some((_, keys)) = self.pages.next(conns).await? {
                return Ok(Some(strip(keys, &self.prefix, part)));
            }
            self.parts.pop();
            if let Some(next) = self.parts.last().copied() {
                let pattern = format!("{}*{next}", self.pattern_start);
                self.pages = Pages::new(conns, pattern, self.pages.kind).await?;
            }
        }
    }
}

/// Calls `each` with the row ids of every dialogue of the layout, a batch at a time (an
/// id may come twice in the aiogram layout: once for its state, once for its data).
pub(crate) async fn ids(
    conns: &Connections,
    prefix: &str,
    shape: Shape,
    mut each: impl FnMut(Vec<String>) -> Result<()>,
) -> Result<()> {
    let mut pages = IdPages::new(conns, prefix, "", shape).await?;
    while let Some(ids) = pages.next(conns).await? {
        each(ids)?;
    }
    Ok(())
}

/// The ids of `keys`: `prefix` and `suffix` removed.
fn strip(keys: Vec<String>, prefix: &str, suffix: &str) -> Vec<String> {
    keys.into_iter()
        .filter_map(|key| {
            key.strip_prefix(prefix)
                .and_then(|rest| rest.strip_suffix(suffix))
                .map(str::to_owned)
        })
        .collect()
}

/// Deletes every key under `prefix` (of any type), a `SCAN` batch at a time; returns how
/// many it deleted. `DEL` is replay-safe: deleting again deletes nothing more.
pub(crate) async fn delete_all(conns: &Connections, prefix: &str) -> Result<u64> {
    let pattern = format!("{}*", glob_escape(prefix));
    let mut pages = Pages::new(conns, pattern, None).await?;
    let mut deleted = 0u64;
    while let Some((node, keys)) = pages.next(conns).await? {
        // One key per DEL: on a cluster the keys of a page are in many slots.
        for key in &keys {
            let mut del = redis::cmd("DEL");
            del.arg(key);
            let n: u64 = conns.on_node("delete", node.as_ref(), &del).await?;
            deleted += n;
        }
    }
    Ok(deleted)
}

/// How many dialogues the layout holds.
pub(crate) async fn count(conns: &Connections, prefix: &str, shape: Shape) -> Result<u64> {
    match shape {
        Shape::Hashes => {
            let mut n = 0u64;
            ids(conns, prefix, shape, |batch| {
                n += batch.len() as u64;
                Ok(())
            })
            .await?;
            Ok(n)
        }
        Shape::Aiogram => {
            // A dialogue may have a state key, a data key, or both.
            let mut seen = BTreeSet::new();
            ids(conns, prefix, shape, |batch| {
                seen.extend(batch);
                Ok(())
            })
            .await?;
            Ok(seen.len() as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
        assert_eq!(glob_escape("fsm:"), "fsm:");
    }

    #[test]
    fn ids_are_the_keys_without_prefix_and_part() {
        let keys = vec!["t:fsm:1:2:state".to_owned(), "other".to_owned()];
        assert_eq!(strip(keys, "t:", ":state"), vec!["fsm:1:2".to_owned()]);
    }
}
