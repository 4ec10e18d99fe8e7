//! Conversation keys and how they become row ids.

use crate::error::{Error, Result};

/// The destiny of an ordinary dialogue (aiogram's `DEFAULT_DESTINY`).
pub const DEFAULT_DESTINY: &str = "default";

/// The longest row id, in characters, that every dialect stores (`id VARCHAR(255)`).
pub const MAX_KEY_BYTES: usize = 255;

/// A bot's id (the number before the colon of its token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BotId(pub i64);

/// A chat's id (negative for groups and channels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChatId(pub i64);

/// A user's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(pub i64);

/// Identifies one conversation: the same fields as aiogram's `StorageKey`.
///
/// Built with typed ids, so a chat id can not land in the user's place:
///
/// ```
/// use fsmstore_core::{BotId, ChatId, StorageKey, UserId};
/// let key = StorageKey::new(BotId(42), ChatId(-100), UserId(7)).with_thread(9);
/// assert_eq!((key.chat_id, key.user_id, key.thread_id), (-100, 7, Some(9)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StorageKey {
    /// The bot's id.
    pub bot_id: i64,
    /// The chat's id (negative for groups).
    pub chat_id: i64,
    /// The user's id.
    pub user_id: i64,
    /// The forum topic (message thread), if any. `Some(0)` counts as absent, as in aiogram.
    pub thread_id: Option<i64>,
    /// The business connection, if any.
    pub business_connection_id: Option<String>,
    /// Separates independent dialogues of one user in one chat; `"default"` normally.
    pub destiny: String,
}

impl StorageKey {
    /// A key for `user` in `chat` of `bot`, no thread, default destiny.
    pub fn new(bot: BotId, chat: ChatId, user: UserId) -> Self {
        StorageKey {
            bot_id: bot.0,
            chat_id: chat.0,
            user_id: user.0,
            thread_id: None,
            business_connection_id: None,
            destiny: DEFAULT_DESTINY.to_owned(),
        }
    }

    /// The same key in forum topic `thread_id`.
    pub fn with_thread(mut self, thread_id: i64) -> Self {
        self.thread_id = Some(thread_id);
        self
    }

    /// The same key through business connection `id`.
    pub fn with_business_connection(mut self, id: impl Into<String>) -> Self {
        self.business_connection_id = Some(id.into());
        self
    }

    /// The same key for another destiny: a separate dialogue of the same user in the same
    /// chat. (The key builder's `with_destiny(true)` is a different thing: whether the
    /// destiny is part of the row id, which a non-default destiny needs.)
    pub fn for_destiny(mut self, destiny: impl Into<String>) -> Self {
        self.destiny = destiny.into();
        self
    }
}

/// Turns a [`StorageKey`] into the id of its row.
///
/// Implement it to lay keys out your own way; every backend uses the builder in its
/// [`StorageOptions`](crate::StorageOptions).
pub trait KeyBuilder: Send + Sync + std::fmt::Debug {
    /// The row id of `key`.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] when the key can not be represented (for example a
    /// non-default destiny the builder does not include).
    fn build(&self, key: &StorageKey) -> Result<String>;
}

/// aiogram's `DefaultKeyBuilder`, reproduced exactly.
///
/// Parts joined by `separator`: `prefix`, `bot_id` if `with_bot_id`,
/// `business_connection_id` if `with_business_connection_id` and present, `chat_id`,
/// `thread_id` if present and not 0, `user_id`, `destiny` if `with_destiny`.
///
/// ```
/// use fsmstore_core::{BotId, ChatId, DefaultKeyBuilder, KeyBuilder, StorageKey, UserId};
/// let key = StorageKey::new(BotId(42), ChatId(-100), UserId(7));
/// assert_eq!(DefaultKeyBuilder::default().build(&key).unwrap(), "fsm:-100:7");
/// let all = DefaultKeyBuilder::default().with_bot_id(true).with_destiny(true);
/// assert_eq!(all.build(&key.with_thread(9)).unwrap(), "fsm:42:-100:9:7:default");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DefaultKeyBuilder {
    /// First part of every key (default `fsm`).
    pub prefix: String,
    /// Joins the parts (default `:`).
    pub separator: String,
    /// Include the bot id (for several bots on one table).
    pub with_bot_id: bool,
    /// Include the business connection id when the key has one.
    pub with_business_connection_id: bool,
    /// Include the destiny; without it a non-default destiny is an error.
    pub with_destiny: bool,
}

impl Default for DefaultKeyBuilder {
    fn default() -> Self {
        DefaultKeyBuilder {
            prefix: "fsm".to_owned(),
            separator: ":".to_owned(),
            with_bot_id: false,
            with_business_connection_id: false,
            with_destiny: false,
        }
    }
}

impl DefaultKeyBuilder {
    /// Sets the prefix.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the separator.
    pub fn with_separator(mut self, separator: impl Into<String>) -> Self {
        self.separator = separator.into();
        self
    }

    /// Includes the bot id or not.
    pub fn with_bot_id(mut self, on: bool) -> Self {
        self.with_bot_id = on;
        self
    }

    /// Includes the business connection id or not.
    pub fn with_business_connection_id(mut self, on: bool) -> Self {
        self.with_business_connection_id = on;
        self
    }

    /// Includes the destiny or not.
    pub fn with_destiny(mut self, on: bool) -> Self {
        self.with_destiny = on;
        self
    }
}

impl KeyBuilder for DefaultKeyBuilder {
    fn build(&self, key: &StorageKey) -> Result<String> {
        if !self.with_destiny && key.destiny != DEFAULT_DESTINY {
            return Err(Error::InvalidKey(format!(
                "destiny {:?} needs a key builder with with_destiny(true); \
                 without it every destiny would share one row",
                key.destiny
            )));
        }
        // One string written in place (every call builds one): no part is allocated alone.
        let mut id = String::with_capacity(self.prefix.len() + 4 * self.separator.len() + 48);
        id.push_str(&self.prefix);
        let mut digits = itoa::Buffer::new();
        let mut part = |text: &str| {
            id.push_str(&self.separator);
            id.push_str(text);
        };
        if self.with_bot_id {
            part(digits.format(key.bot_id));
        }
        if self.with_business_connection_id {
            if let Some(business) = key
                .business_connection_id
                .as_deref()
                .filter(|business| !business.is_empty())
            {
                part(business);
            }
        }
        // Numbers through `itoa`, not `fmt`: a third of the instructions of building a key.
        part(digits.format(key.chat_id));
        if let Some(thread) = key.thread_id.filter(|&thread| thread != 0) {
            part(digits.format(thread));
        }
        part(digits.format(key.user_id));
        if self.with_destiny {
            part(&key.destiny);
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(builder: &DefaultKeyBuilder, key: &StorageKey) -> String {
        builder.build(key).unwrap()
    }

    #[test]
    fn every_flag_combination_matches_aiogram() {
        let key = StorageKey::new(BotId(42), ChatId(-100), UserId(7))
            .with_thread(9)
            .with_business_connection("bc1");
        // (with_bot_id, with_business_connection_id, with_destiny) -> expected key
        let vectors = [
            ((false, false, false), "fsm:-100:9:7"),
            ((true, false, false), "fsm:42:-100:9:7"),
            ((false, true, false), "fsm:bc1:-100:9:7"),
            ((false, false, true), "fsm:-100:9:7:default"),
            ((true, true, false), "fsm:42:bc1:-100:9:7"),
            ((true, false, true), "fsm:42:-100:9:7:default"),
            ((false, true, true), "fsm:bc1:-100:9:7:default"),
            ((true, true, true), "fsm:42:bc1:-100:9:7:default"),
        ];
        for ((bot, business, destiny), expected) in vectors {
            let builder = DefaultKeyBuilder::default()
                .with_bot_id(bot)
                .with_business_connection_id(business)
                .with_destiny(destiny);
            assert_eq!(
                build(&builder, &key),
                expected,
                "flags {bot} {business} {destiny}"
            );
        }
    }

    /// Any `i64`, the edges often.
    fn number() -> impl proptest::strategy::Strategy<Value = i64> {
        use proptest::prelude::*;
        prop_oneof![
            Just(0),
            Just(-1),
            Just(i64::MIN),
            Just(i64::MAX),
            any::<i64>()
        ]
    }

    proptest::proptest! {
        /// Any ids, thread and flag: the key is aiogram's parts joined by the separator,
        /// each number in decimal with a leading minus, as Python's `str(int)` writes it
        /// (the text of Rust's `to_string` too, the reference here).
        #[test]
        fn numbers_are_written_as_python_writes_them(
            bot in number(),
            chat in number(),
            user in number(),
            thread in proptest::option::of(number()),
            with_bot: bool,
        ) {
            let mut key = StorageKey::new(BotId(bot), ChatId(chat), UserId(user));
            key.thread_id = thread;
            let builder = DefaultKeyBuilder::default().with_bot_id(with_bot);
            let mut parts = vec!["fsm".to_owned()];
            if with_bot {
                parts.push(bot.to_string());
            }
            parts.push(chat.to_string());
            if let Some(thread) = thread.filter(|&thread| thread != 0) {
                parts.push(thread.to_string());
            }
            parts.push(user.to_string());
            proptest::prop_assert_eq!(build(&builder, &key), parts.join(":"));
        }
    }

    #[test]
    fn plain_key_is_prefix_chat_user() {
        let builder = DefaultKeyBuilder::default();
        assert_eq!(
            build(
                &builder,
                &StorageKey::new(BotId(42), ChatId(-100), UserId(7))
            ),
            "fsm:-100:7"
        );
        assert_eq!(
            build(&builder, &StorageKey::new(BotId(1), ChatId(5), UserId(5))),
            "fsm:5:5"
        );
        assert_eq!(
            build(
                &builder,
                &StorageKey::new(BotId(1), ChatId(i64::MIN), UserId(i64::MAX))
            ),
            "fsm:-9223372036854775808:9223372036854775807"
        );
    }

    #[test]
    fn thread_zero_or_absent_is_left_out() {
        let builder = DefaultKeyBuilder::default();
        let key = StorageKey::new(BotId(42), ChatId(-100), UserId(7));
        assert_eq!(build(&builder, &key.clone().with_thread(0)), "fsm:-100:7");
        assert_eq!(
            build(&builder, &key.clone().with_thread(-3)),
            "fsm:-100:-3:7"
        );
    }

    #[test]
    fn empty_or_absent_business_connection_is_left_out() {
        let builder = DefaultKeyBuilder::default().with_business_connection_id(true);
        let key = StorageKey::new(BotId(42), ChatId(-100), UserId(7));
        assert_eq!(build(&builder, &key), "fsm:-100:7");
        assert_eq!(
            build(&builder, &key.with_business_connection("")),
            "fsm:-100:7"
        );
    }

    #[test]
    fn custom_prefix_and_separator() {
        let builder = DefaultKeyBuilder::default()
            .with_prefix("bot_fsm")
            .with_separator("/")
            .with_bot_id(true);
        assert_eq!(
            build(
                &builder,
                &StorageKey::new(BotId(42), ChatId(-100), UserId(7))
            ),
            "bot_fsm/42/-100/7"
        );
    }

    #[test]
    fn destiny_is_included_when_asked() {
        let builder = DefaultKeyBuilder::default().with_destiny(true);
        let key = StorageKey::new(BotId(42), ChatId(-100), UserId(7)).for_destiny("album");
        assert_eq!(build(&builder, &key), "fsm:-100:7:album");
    }

    #[test]
    fn non_default_destiny_without_flag_is_an_error() {
        let key = StorageKey::new(BotId(42), ChatId(-100), UserId(7)).for_destiny("album");
        let err = DefaultKeyBuilder::default().build(&key).unwrap_err();
        assert!(
            matches!(err, Error::InvalidKey(ref m) if m.contains("album")),
            "{err}"
        );
    }
}
