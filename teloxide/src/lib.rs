//! teloxide dialogues on fsmstore.
//!
//! [`TeloxideStorage`] implements teloxide's
//! [`Storage<D>`](teloxide::dispatching::dialogue::Storage) for every serde `D`, over any
//! fsmstore [`Database`] or `Arc<dyn Storage>`: SQLite, PostgreSQL or MySQL/MariaDB, with
//! the schema owned by fsmstore's migrations. Its error type is [`fsmstore_core::Error`].
//!
//! Rows are readable, not blobs: a dialogue enum maps to the row's state and data
//! (`State::ReceiveAge { full_name }` is state `"ReceiveAge"`, data `{"full_name": …}`;
//! [`codec`] has the whole mapping), so `fsmstore inspect stats` counts dialogues by state
//! and `fsmstore purge` cleans them up.
//!
//! A row holding data but no state (aiogram's `set_data` on the same key) is no dialogue:
//! `get_dialogue` answers `None`, `update_dialogue` replaces it, `remove_dialogue` deletes
//! it. Dialogues obey fsmstore's input contract: no NUL character in any string, at most
//! 31 levels of nesting (30 for a payload kept under `"$value"`), data up to
//! `max_data_bytes`; anything else is refused with a typed error before anything is written.
//!
//! Keys follow aiogram's `FSMStrategy.CHAT`: the dialogue of chat `c` is the key
//! `(bot, chat c, user c)`, so a Python aiogram bot with that strategy and the same table
//! sees the same rows. The bot id is configurable ([`TeloxideStorage::bot_id`]), and
//! [`TeloxideStorage::key_with`] maps a chat to any key.
//!
//! ```no_run
//! # async fn run() -> Result<(), fsmstore_core::Error> {
//! # let db: fsmstore_core::Database = unimplemented!();
//! use fsmstore_teloxide::TeloxideStorage;
//! use std::sync::Arc;
//!
//! // `db` from `fsmstore::open("sqlite://bot.db?schema=upgrade").await?`
//! let storage: Arc<TeloxideStorage> = TeloxideStorage::new(db.storage())
//!     .bot_id_from_token("123456:ABC-DEF")?
//!     .into();
//! # Ok(()) }
//! ```

/// The mapping between a dialogue value and a row's state and data.
pub use fsmstore_core::dialogue_value as codec;

use std::fmt;
use std::sync::Arc;

use fsmstore_core::{
    BotId, ChatId, Database, Error, Isolation, LockGuard, Result, Storage, StorageKey, UserId,
};
use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::Serialize;
use teloxide::dispatching::dialogue::{self, GetChatId};
use teloxide::dispatching::DpHandlerDescription;
use teloxide::dptree::{self, Handler};
use teloxide::types::ChatId as TgChatId;

/// Maps a teloxide chat to the fsmstore key of its dialogue.
type KeyFn = dyn Fn(TgChatId) -> StorageKey + Send + Sync;

/// teloxide's dialogue storage on an fsmstore [`Storage`].
///
/// Build it with [`TeloxideStorage::new`] (or `From<&Database>`), configure the key, and
/// hand it to teloxide as an `Arc`.
#[derive(Clone)]
pub struct TeloxideStorage {
    storage: Arc<dyn Storage>,
    key: Arc<KeyFn>,
    /// Per-chat locks ([`lock_chat`]); `None` until given.
    isolation: Option<Arc<dyn Isolation>>,
}

impl fmt::Debug for TeloxideStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TeloxideStorage")
            .field("table", &self.storage.options().table.as_str())
            .field("example_key", &(self.key)(TgChatId(1)))
            .finish()
    }
}

impl TeloxideStorage {
    /// Dialogues on `storage`, keyed by chat with bot id 0 and the default destiny.
    ///
    /// No per-chat locks: [`TeloxideStorage::isolation`] gives them (`From<&Database>`
    /// takes the database's).
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        TeloxideStorage {
            storage,
            key: Arc::new(|chat| chat_key(BotId(0), chat)),
            isolation: None,
        }
    }

    /// The per-chat locks [`lock_chat`] and [`TeloxideStorage::lock`] take: the
    /// database's ([`Database::isolation`]), so every bot instance on the database
    /// excludes the others.
    #[must_use]
    pub fn isolation(mut self, isolation: Arc<dyn Isolation>) -> Self {
        self.isolation = Some(isolation);
        self
    }

    /// Waits for the lock of `chat`'s dialogue (at most the storage's
    /// `isolation_timeout`); the lock is held until the guard is dropped. What
    /// [`lock_chat`] takes for a handler.
    ///
    /// # Errors
    /// [`Error::LockTimeout`] when it did not come in time; [`Error::Config`] when the
    /// storage has no locks (built with [`TeloxideStorage::new`] without
    /// [`TeloxideStorage::isolation`]); connection errors.
    pub async fn lock(&self, chat: TgChatId) -> Result<LockGuard> {
        let Some(isolation) = &self.isolation else {
            return Err(Error::Config(
                "this TeloxideStorage has no locks: build it with TeloxideStorage::from(&db), or add .isolation(db.isolation())".into(),
            ));
        };
        isolation.lock(&self.key(chat)).await
    }

    /// Keys with bot id `bot` (aiogram puts the bot id into the key when its key builder
    /// has `with_bot_id=True`; the numeric part of the token before `:`).
    #[must_use]
    pub fn bot_id(self, bot: BotId) -> Self {
        self.key_with(move |chat| chat_key(bot, chat))
    }

    /// Keys with the bot id of `token` (`"123456:ABC…"` → `123456`), as aiogram's `Bot.id`.
    ///
    /// # Errors
    /// [`Error::Config`] for a token without a numeric id before `:`.
    pub fn bot_id_from_token(self, token: &str) -> Result<Self> {
        let id = token
            .split_once(':')
            .and_then(|(id, _)| id.parse::<i64>().ok())
            .ok_or_else(|| {
                Error::Config(
                    "a Telegram bot token starts with the bot's numeric id and ':'".into(),
                )
            })?;
        Ok(self.bot_id(BotId(id)))
    }

    /// Keys of your own: `key(chat)` is the fsmstore key of the dialogue of `chat`
    /// (another destiny, a thread, aiogram's other strategies where the chat id is all
    /// there is to go by).
    #[must_use]
    pub fn key_with(
        mut self,
        key: impl Fn(TgChatId) -> StorageKey + Send + Sync + 'static,
    ) -> Self {
        self.key = Arc::new(key);
        self
    }

    /// The fsmstore key of the dialogue of `chat`.
    pub fn key(&self, chat: TgChatId) -> StorageKey {
        (self.key)(chat)
    }

    /// The storage underneath, for calls teloxide does not make (`transition`, data of
    /// other destinies, …).
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// Moves the dialogues of `chats` from another teloxide storage — teloxide's own
    /// `SqliteStorage`, `PostgresStorage`, `RedisStorage`, `InMemStorage`, or any
    /// `Storage<D>` — into this one, dialogue by dialogue, in the process: what a bot
    /// switching storages runs once at start-up. The source is only read. teloxide's
    /// storages can not list their chats: pass the ones to move (`SELECT chat_id FROM
    /// teloxide_dialogues`, say, or your users' table); a chat without a dialogue there is
    /// counted `absent`. (`fsmstore teloxide-import` reads teloxide's table or keys
    /// directly, all chats at once.)
    ///
    /// A chat that already has a dialogue here is kept unless `replace`: run again after
    /// the bot went live, it puts no user back on an old step. With locks
    /// ([`TeloxideStorage::from`]) each chat's check and write hold the chat's lock, so a
    /// handler behind [`lock_chat`] sees the dialogue before or after, never between.
    ///
    /// # Errors
    /// [`ImportError::Source`] when the source fails to read a chat (a dialogue that does
    /// not deserialize as `D`, a lost connection): the chats before it are moved;
    /// [`ImportError::Destination`] for this storage's errors (a dialogue it refuses, a
    /// lock that did not come).
    pub async fn import_from<D, S>(
        &self,
        source: Arc<S>,
        chats: impl IntoIterator<Item = TgChatId>,
        replace: bool,
    ) -> std::result::Result<ImportReport, ImportError<S::Error>>
    where
        S: dialogue::Storage<D> + ?Sized,
        D: Serialize + Send + 'static,
    {
        let mut report = ImportReport::default();
        for chat in chats {
            let dialogue = Arc::clone(&source)
                .get_dialogue(chat)
                .await
                .map_err(|error| ImportError::Source { chat, error })?;
            let Some(dialogue) = dialogue else {
                report.absent += 1;
                continue;
            };
            let lock = match &self.isolation {
                Some(isolation) => Some(isolation.lock(&self.key(chat)).await?),
                None => None,
            };
            let written = self.import_one(chat, dialogue, replace).await;
            // Released before the next chat (on Redis a dropped lock is released by a
            // task of its own).
            if let Some(lock) = lock {
                lock.release().await;
            }
            match written? {
                Imported::New => report.new += 1,
                Imported::Replaced => report.replaced += 1,
                Imported::Kept => report.kept += 1,
            }
        }
        Ok(report)
    }

    async fn import_one<D: Serialize>(
        &self,
        chat: TgChatId,
        dialogue: D,
        replace: bool,
    ) -> Result<Imported> {
        let there = self
            .storage
            .get_record(&self.key(chat))
            .await?
            .state
            .is_some();
        if there && !replace {
            return Ok(Imported::Kept);
        }
        self.update(chat, dialogue).await?;
        Ok(if there {
            Imported::Replaced
        } else {
            Imported::New
        })
    }

    async fn get<D: DeserializeOwned>(&self, chat: TgChatId) -> Result<Option<D>> {
        let key = self.key(chat);
        let record = self.storage.get_record(&key).await?;
        let Some(state) = record.state else {
            return Ok(None);
        };
        let value = codec::decode(state, record.data);
        fsmstore_core::deserialize_value(&value)
            .map(Some)
            .map_err(|source| Error::DataMismatch {
                key: self
                    .storage
                    .options()
                    .row_id(&key)
                    .unwrap_or_else(|_| format!("{key:?}")),
                type_name: std::any::type_name::<D>(),
                source,
            })
    }

    async fn update<D: Serialize>(&self, chat: TgChatId, dialogue: D) -> Result<()> {
        // NaN and infinities are refused, not stored as `null`.
        let value = fsmstore_core::to_json_value(&dialogue)?;
        let (state, data) = codec::encode(value);
        self.storage
            .set_record(&self.key(chat), Some(&state), &data)
            .await
    }

    async fn remove(&self, chat: TgChatId) -> Result<()> {
        let key = self.key(chat);
        if self.storage.clear(&key).await? {
            Ok(())
        } else {
            Err(Error::NotFound {
                key: self.storage.options().row_id(&key)?,
            })
        }
    }
}

/// What happened to one chat's dialogue in [`TeloxideStorage::import_from`].
enum Imported {
    New,
    Replaced,
    Kept,
}

/// What [`TeloxideStorage::import_from`] did, per chat given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportReport {
    /// Dialogues written where this storage had none.
    pub new: u64,
    /// Dialogues written over one this storage held (`replace`).
    pub replaced: u64,
    /// Dialogues this storage held, left as they were (no `replace`).
    pub kept: u64,
    /// Chats without a dialogue in the source.
    pub absent: u64,
}

/// Why [`TeloxideStorage::import_from`] stopped: the chats before it are moved.
#[derive(Debug)]
pub enum ImportError<E> {
    /// The source failed to read the dialogue of `chat`.
    Source {
        /// The chat.
        chat: TgChatId,
        /// The source storage's error.
        error: E,
    },
    /// This storage failed.
    Destination(Error),
}

impl<E> From<Error> for ImportError<E> {
    fn from(error: Error) -> Self {
        ImportError::Destination(error)
    }
}

impl<E: fmt::Display> fmt::Display for ImportError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::Source { chat, error } => {
                write!(
                    f,
                    "reading the dialogue of chat {chat} from the source: {error}"
                )
            }
            ImportError::Destination(error) => write!(f, "writing into fsmstore: {error}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for ImportError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ImportError::Source { error, .. } => Some(error),
            ImportError::Destination(error) => Some(error),
        }
    }
}

/// aiogram's `FSMStrategy.CHAT`: the chat's dialogue is the key `(bot, chat, user = chat)`.
fn chat_key(bot: BotId, chat: TgChatId) -> StorageKey {
    StorageKey::new(bot, ChatId(chat.0), UserId(chat.0))
}

/// The database's storage and its per-key locks ([`Database::isolation`]).
impl From<&Database> for TeloxideStorage {
    fn from(db: &Database) -> Self {
        TeloxideStorage::new(db.storage()).isolation(db.isolation())
    }
}

/// The lock of a chat held while its update is handled: what [`lock_chat`] puts into the
/// handler's dependencies. Dropping it (when teloxide is done with the update) releases
/// the lock.
#[derive(Debug)]
pub struct ChatLock(
    /// The held lock.
    pub LockGuard,
);

/// A handler piece that takes the chat's lock before the dialogue is read and holds it
/// until the handler returns: place it before `enter_dialogue`, with an
/// `Arc<TeloxideStorage>` built from the database ([`TeloxideStorage::from`]) among the
/// dependencies.
///
/// ```no_run
/// use fsmstore_teloxide::{lock_chat, TeloxideStorage};
/// use teloxide::dispatching::{HandlerExt, UpdateFilterExt, UpdateHandler};
/// use teloxide::types::{Message, Update};
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize)] enum State { #[default] Start }
/// # type E = Box<dyn std::error::Error + Send + Sync>;
/// fn schema() -> UpdateHandler<E> {
///     Update::filter_message()
///         .chain(lock_chat::<Message, _>())
///         .enter_dialogue::<Message, TeloxideStorage, State>()
///         // .branch(…) as before
/// #       .endpoint(|| async { Ok(()) })
/// }
/// ```
///
/// Why: teloxide's dispatcher handles one chat's updates one at a time *within one
/// process*. Two bot instances (webhooks behind a load balancer, a rolling deploy) each
/// read the dialogue, handle the update and write their step: one of the two steps is lost.
/// With the lock, the second instance waits for the first and reads its step. A lock
/// serializes; it does not order: two updates of one chat arriving at two instances at once
/// are handled one after the other in either order.
///
/// What it costs: on PostgreSQL and MySQL each held lock holds a connection of the lock
/// pool (`lock_pool_max`), so an instance handles at most that many locked chats at
/// once; the rest wait (at most `isolation_timeout`). On Redis a lock is a key; on SQLite
/// an in-process lock (one process has the file). An update whose chat's lock does not
/// come within `isolation_timeout` is not handled: it is logged (`warn`) and left to the
/// dispatcher's default handler, as `enter_dialogue` does with a dialogue it can not read.
pub fn lock_chat<Upd, Output>() -> Handler<'static, Output, DpHandlerDescription>
where
    Upd: GetChatId + Clone + Send + Sync + 'static,
    Output: Send + Sync + 'static,
{
    dptree::filter_map_async(|storage: Arc<TeloxideStorage>, upd: Upd| async move {
        let chat = upd.chat_id()?;
        match storage.lock(chat).await {
            Ok(guard) => Some(ChatLock(guard)),
            Err(err) => {
                log::warn!("fsmstore: the lock of chat {chat} did not come: {err}");
                None
            }
        }
    })
}

impl From<Arc<dyn Storage>> for TeloxideStorage {
    fn from(storage: Arc<dyn Storage>) -> Self {
        TeloxideStorage::new(storage)
    }
}

impl<D> dialogue::Storage<D> for TeloxideStorage
where
    D: Serialize + DeserializeOwned + Send + 'static,
{
    type Error = Error;

    /// Deletes the chat's row; [`Error::NotFound`] when there was none, as teloxide's own
    /// storages answer `DialogueNotFound`.
    fn remove_dialogue(self: Arc<Self>, chat_id: TgChatId) -> BoxFuture<'static, Result<()>>
    where
        D: Send + 'static,
    {
        Box::pin(async move { self.remove(chat_id).await })
    }

    /// Writes state and data together in one statement (no read first, nothing merged).
    fn update_dialogue(
        self: Arc<Self>,
        chat_id: TgChatId,
        dialogue: D,
    ) -> BoxFuture<'static, Result<()>>
    where
        D: Send + 'static,
    {
        Box::pin(async move { self.update(chat_id, dialogue).await })
    }

    /// `None` when the chat's row holds no state; [`Error::DataMismatch`] when the row
    /// does not decode as `D`.
    fn get_dialogue(self: Arc<Self>, chat_id: TgChatId) -> BoxFuture<'static, Result<Option<D>>> {
        Box::pin(async move { self.get(chat_id).await })
    }
}
