//! What the whole-keyspace operations need of a layout beyond [`Storage`]: where its
//! dialogues are, and one dialogue read by its row id.

use async_trait::async_trait;
use fsmstore_core::{Data, Result, Storage, StoredRow};

use crate::keyspace::Shape;

/// A layout's dialogues, by row id.
#[async_trait]
pub(crate) trait Rows: Storage {
    /// How the layout stores a dialogue.
    fn shape(&self) -> Shape;

    /// The prefix of its keys.
    fn prefix(&self) -> &str;

    /// The dialogue of row id `id` as stored (`None`: it holds nothing); data that does
    /// not read is reported in the row, never as an error.
    async fn row(&self, id: &str) -> Result<Option<StoredRow>>;

    /// Writes the whole dialogue of row `id` (checked by the caller), expiring after
    /// `ttl_ms` (`None`: the storage's `ttl=`); unless `replace`, only where the dialogue
    /// has no key. Whether it wrote.
    async fn put(
        &self,
        id: &str,
        state: Option<&str>,
        data: &Data,
        ttl_ms: Option<u64>,
        replace: bool,
    ) -> Result<bool>;

    /// Rewrites the dialogue of `old.id` to `new` (checked by the caller; `None` deletes
    /// it) if it still holds `old`'s state and data, its expiry kept: the stored values
    /// read, compared with `old` here, and compared again byte for byte inside the script
    /// that writes. Whether it wrote.
    async fn rewrite(&self, old: &StoredRow, new: Option<(Option<&str>, &Data)>) -> Result<bool>;
}
