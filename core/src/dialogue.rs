//! [`Dialogue`]: one conversation on a storage, in the spirit of aiogram's `FSMContext`,
//! and [`DialogueState`], typed state names.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::data::{Data, Record};
use crate::error::{Error, Result};
use crate::key::StorageKey;
use crate::storage::{object_from, Storage, StorageExt};

/// A state a dialogue can be in, with its stored name (`"Group:state"`, aiogram's
/// `StatesGroup` layout). Declare one with [`states!`](crate::states), so `"Form:nmae"`
/// can not compile.
pub trait DialogueState: Sized + Send + Sync {
    /// The stored name.
    fn name(&self) -> &'static str;

    /// The state a stored name stands for — its name, or a name it had before (see
    /// [`states!`](crate::states)); `None` for a name this type does not know.
    fn from_name(name: &str) -> Option<Self>;

    /// Every name this type reads: each state's name, then its former names.
    fn known_names() -> Vec<&'static str> {
        Vec::new()
    }

    /// `(former name, name)` of each state renamed in the code: the
    /// [`DialogueStep::rename_state`](crate::DialogueStep::rename_state) steps that bring
    /// stored dialogues to the new names.
    fn renames() -> Vec<(&'static str, &'static str)> {
        Vec::new()
    }
}

/// Declares an enum of dialogue states and its [`DialogueState`] names,
/// `"<group>:<state>"`.
///
/// A state renamed in a release keeps its former names after `|`: the new code reads
/// dialogues stored under any of them (an old instance still running in a rolling deploy
/// writes them, and a dialogue migration may not have reached them yet) and writes the
/// new name. [`DialogueState::renames`] lists the steps that rename the stored ones.
///
/// ```
/// fsmstore_core::states! {
///     /// The questions of the sign-up form.
///     pub enum Form in "Form" {
///         Name => "name" | "nmae",
///         Age => "age",
///     }
/// }
/// use fsmstore_core::DialogueState;
/// assert_eq!(Form::Age.name(), "Form:age");
/// assert_eq!(Form::from_name("Form:name"), Some(Form::Name));
/// assert_eq!(Form::from_name("Form:nmae"), Some(Form::Name));
/// assert_eq!(Form::Name.name(), "Form:name");
/// assert_eq!(Form::from_name("Form:city"), None);
/// assert_eq!(Form::renames(), [("Form:nmae", "Form:name")]);
/// assert_eq!(Form::known_names(), ["Form:name", "Form:age", "Form:nmae"]);
/// ```
#[macro_export]
macro_rules! states {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident in $group:literal {
            $($(#[$variant_meta:meta])* $variant:ident => $state:literal $(| $former:literal)*),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $($(#[$variant_meta])* $variant),+
        }

        impl $crate::DialogueState for $name {
            fn name(&self) -> &'static str {
                match self {
                    $($name::$variant => concat!($group, ":", $state)),+
                }
            }

            fn from_name(name: &str) -> ::std::option::Option<Self> {
                match name {
                    $(concat!($group, ":", $state) $(| concat!($group, ":", $former))* => ::std::option::Option::Some($name::$variant),)+
                    _ => ::std::option::Option::None,
                }
            }

            fn known_names() -> ::std::vec::Vec<&'static str> {
                let mut names = ::std::vec![$(concat!($group, ":", $state)),+];
                $($(names.push(concat!($group, ":", $former));)*)+
                names
            }

            fn renames() -> ::std::vec::Vec<(&'static str, &'static str)> {
                let per_state: &[&[(&'static str, &'static str)]] =
                    &[$(&[$((concat!($group, ":", $former), concat!($group, ":", $state))),*]),+];
                per_state.iter().flat_map(|renames| renames.iter().copied()).collect()
            }
        }
    };
}

/// What [`Dialogue::set_state`] and [`Dialogue::transition`] accept as the next state: a
/// typed [`DialogueState`], a name (`&str`, `String`), or `Option<&str>` (`None` leaves no
/// state).
pub trait IntoState {
    /// The stored name, or `None` for no state.
    fn state_name(&self) -> Option<&str>;
}

impl<S: DialogueState> IntoState for S {
    fn state_name(&self) -> Option<&str> {
        Some(self.name())
    }
}

impl IntoState for &str {
    fn state_name(&self) -> Option<&str> {
        Some(self)
    }
}

impl IntoState for String {
    fn state_name(&self) -> Option<&str> {
        Some(self)
    }
}

impl IntoState for Option<&str> {
    fn state_name(&self) -> Option<&str> {
        *self
    }
}

/// One conversation: a key on a storage, with the calls a handler makes.
///
/// Typed patches ([`Dialogue::update`], [`Dialogue::transition`]) leave out fields that
/// serialize to `null`, so a form struct with `Option` fields updates only what it holds:
/// `Form { age: Some(30), ..Default::default() }` never writes `name: null` over a stored
/// name. To store a `null`, use [`Storage::update_data`].
///
/// ```
/// use std::sync::Arc;
/// use fsmstore_core::{Dialogue, MemoryStorage, BotId, ChatId, StorageKey, UserId};
///
/// fsmstore_core::states! {
///     pub enum Form in "Form" { Name => "name", Age => "age" }
/// }
/// #[derive(serde::Serialize, serde::Deserialize, Default, Debug, PartialEq)]
/// struct Answers { name: Option<String>, age: Option<u32> }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let dialogue = Dialogue::new(Arc::new(MemoryStorage::new()), StorageKey::new(BotId(42), ChatId(-100), UserId(7)));
/// dialogue.set_state(Form::Name).await?;
/// // The answer and the next question in one atomic write.
/// let answers = Answers { name: Some("Ann".into()), ..Default::default() };
/// dialogue.transition(Form::Age, &answers).await?;
/// let answers = Answers { age: Some(30), ..Default::default() };
/// dialogue.update(&answers).await?; // `name: None` is left out, not written as null
/// assert_eq!(dialogue.state_as::<Form>().await?, Some(Form::Age));
/// assert_eq!(
///     dialogue.data_as::<Answers>().await?,
///     Answers { name: Some("Ann".into()), age: Some(30) },
/// );
/// dialogue.finish().await?;
/// # Ok::<(), fsmstore_core::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Dialogue {
    storage: Arc<dyn Storage>,
    key: StorageKey,
    unknown: UnknownStates,
}

/// What [`Dialogue::state_as`] does with a stored state the code does not know — one a
/// release renamed or dropped without a migration or a former name, or one a newer
/// instance wrote during a rolling deploy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnknownStates {
    /// [`Error::UnknownState`] (the default): the bot decides.
    #[default]
    Error,
    /// The dialogue is ended (state and data deleted) and reads as no state: the user
    /// starts over.
    Reset,
    /// The dialogue moves to this state (its data kept) and reads as it: e.g. the first
    /// step of the form, or a "something changed, let's start again" state.
    Fallback(String),
}

impl std::fmt::Debug for Dialogue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialogue").field("key", &self.key).finish()
    }
}

impl Dialogue {
    /// The dialogue of `key` on `storage`.
    pub fn new(storage: Arc<dyn Storage>, key: StorageKey) -> Self {
        Dialogue {
            storage,
            key,
            unknown: UnknownStates::Error,
        }
    }

    /// What [`Dialogue::state_as`] does with a stored state the type does not know.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fsmstore_core::{Dialogue, MemoryStorage, StorageKey, BotId, ChatId, UserId, UnknownStates};
    /// fsmstore_core::states! { pub enum Form in "Form" { Name => "name", Age => "age" } }
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let key = StorageKey::new(BotId(1), ChatId(2), UserId(3));
    /// let storage = Arc::new(MemoryStorage::new());
    /// let dialogue = Dialogue::new(storage, key)
    ///     .on_unknown_state(UnknownStates::Fallback("Form:name".into()));
    /// dialogue.set_state("Form:city").await?; // written by a newer release
    /// assert_eq!(dialogue.state_as::<Form>().await?, Some(Form::Name));
    /// assert_eq!(dialogue.state().await?.as_deref(), Some("Form:name"));
    /// # Ok::<(), fsmstore_core::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn on_unknown_state(mut self, policy: UnknownStates) -> Self {
        self.unknown = policy;
        self
    }

    /// Its key.
    pub fn key(&self) -> &StorageKey {
        &self.key
    }

    /// Its storage.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// The state, as stored; `None` when there is none.
    ///
    /// # Errors
    /// As [`Storage::get_state`].
    pub async fn state(&self) -> Result<Option<String>> {
        self.storage.get_state(&self.key).await
    }

    /// The state as a typed `S`; `None` when there is none. A stored name `S` does not
    /// know is handled as [`Dialogue::on_unknown_state`] says.
    ///
    /// # Errors
    /// [`Error::UnknownState`] for a stored name `S` does not know under
    /// [`UnknownStates::Error`]; [`Error::InvalidInput`] for a fallback `S` does not know
    /// either; as [`Dialogue::state`] and, when the policy writes, [`Dialogue::finish`] and
    /// [`Dialogue::set_state`].
    pub async fn state_as<S: DialogueState>(&self) -> Result<Option<S>> {
        let Some(name) = self.state().await? else {
            return Ok(None);
        };
        if let Some(state) = S::from_name(&name) {
            return Ok(Some(state));
        }
        let type_name = std::any::type_name::<S>();
        match &self.unknown {
            UnknownStates::Error => Err(Error::UnknownState {
                state: name,
                type_name,
            }),
            UnknownStates::Reset => {
                tracing::warn!(key = ?self.key, state = %name, type_name, "unknown state: the dialogue is reset");
                self.finish().await?;
                Ok(None)
            }
            UnknownStates::Fallback(fallback) => {
                let state = S::from_name(fallback).ok_or_else(|| {
                    Error::InvalidInput(format!(
                        "the fallback state {fallback:?} is not a state of {type_name} either"
                    ))
                })?;
                tracing::warn!(key = ?self.key, state = %name, fallback = %fallback, type_name, "unknown state: the dialogue moves to the fallback state");
                self.set_state(state.name()).await?;
                Ok(Some(state))
            }
        }
    }

    /// Sets the state (`None` clears it); the data is untouched.
    ///
    /// # Errors
    /// As [`Storage::set_state`].
    pub async fn set_state(&self, state: impl IntoState + Send) -> Result<()> {
        self.storage.set_state(&self.key, state.state_name()).await
    }

    /// The data, an owned copy; `{}` when never set.
    ///
    /// # Errors
    /// As [`Storage::get_data`].
    pub async fn data(&self) -> Result<Data> {
        self.storage.get_data(&self.key).await
    }

    /// The data deserialized into `T`.
    ///
    /// # Errors
    /// [`Error::DataMismatch`] when the data does not fit `T`; as [`Dialogue::data`].
    pub async fn data_as<T: DeserializeOwned>(&self) -> Result<T> {
        self.storage.get_data_as(&self.key).await
    }

    /// State and data in one round trip.
    ///
    /// # Errors
    /// As [`Storage::get_record`].
    pub async fn record(&self) -> Result<Record> {
        self.storage.get_record(&self.key).await
    }

    /// Merges the fields of `patch` that are not `null` into the data (see the type's
    /// docs) and returns the merged data.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when `patch` is not an object; as [`Storage::update_data`].
    pub async fn update<T: Serialize + Sync + ?Sized>(&self, patch: &T) -> Result<Data> {
        let patch = patch_from(patch)?;
        self.storage.update_data(&self.key, &patch).await
    }

    /// Moves to `state` and merges the fields of `patch` that are not `null`, in one atomic
    /// write ([`Storage::transition`]); returns the merged data.
    ///
    /// # Errors
    /// As [`Dialogue::update`] and [`Storage::transition`].
    pub async fn transition<T: Serialize + Sync + ?Sized>(
        &self,
        state: impl IntoState + Send,
        patch: &T,
    ) -> Result<Data> {
        let patch = patch_from(patch)?;
        self.storage
            .transition(&self.key, state.state_name(), &patch)
            .await
    }

    /// Ends the dialogue: no state, no data, no row.
    ///
    /// # Errors
    /// As [`Storage::clear`].
    pub async fn finish(&self) -> Result<()> {
        self.storage.clear(&self.key).await.map(drop)
    }
}

/// `value` serialized, without its top-level `null` fields.
///
/// # Errors
/// As [`object_from`].
pub fn patch_from<T: Serialize + ?Sized>(value: &T) -> Result<Data> {
    let mut patch = object_from(value)?;
    patch.retain(|_, field| !field.is_null());
    Ok(patch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn typed_patches_leave_out_null_fields_only() {
        #[derive(Serialize)]
        struct Form {
            name: Option<String>,
            age: Option<u32>,
            tags: Vec<String>,
        }
        let patch = patch_from(&Form {
            name: None,
            age: Some(30),
            tags: vec![],
        })
        .unwrap();
        assert_eq!(Value::Object(patch), json!({"age": 30, "tags": []}));
        assert!(patch_from(&json!([1])).is_err());
        // Once: NaN serialized as null and the null was left out, so nothing was written
        // and nothing was said.
        #[derive(Serialize)]
        struct Scores {
            score: f64,
        }
        let err = patch_from(&Scores { score: f64::NAN }).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidInput(text) if text.contains("score")),
            "{err}"
        );
    }

    crate::states! {
        enum Form in "Form" {
            Name => "name" | "nmae" | "full_name",
            Age => "age",
        }
    }

    /// Former names read as the state; the new name is what is written; each policy
    /// answers an unknown state as it says, and only `Error` leaves it stored.
    #[tokio::test]
    async fn former_names_read_and_unknown_states_follow_the_policy() {
        use crate::{BotId, ChatId, MemoryStorage, UserId};
        let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let key = StorageKey::new(BotId(1), ChatId(2), UserId(3));
        let dialogue = Dialogue::new(Arc::clone(&storage), key.clone());
        for former in ["Form:nmae", "Form:full_name", "Form:name"] {
            dialogue.set_state(former).await.unwrap();
            assert_eq!(dialogue.state_as::<Form>().await.unwrap(), Some(Form::Name));
        }
        dialogue.set_state(Form::Name).await.unwrap();
        assert_eq!(
            dialogue.state().await.unwrap().as_deref(),
            Some("Form:name")
        );
        assert_eq!(
            Form::renames(),
            [("Form:nmae", "Form:name"), ("Form:full_name", "Form:name")]
        );

        dialogue.set_state("Form:city").await.unwrap();
        dialogue.update(&json!({"kept": true})).await.unwrap();
        let err = dialogue.state_as::<Form>().await.unwrap_err();
        assert!(matches!(err, Error::UnknownState { .. }), "{err}");
        assert_eq!(
            dialogue.state().await.unwrap().as_deref(),
            Some("Form:city")
        );

        let fallback = dialogue
            .clone()
            .on_unknown_state(UnknownStates::Fallback("Form:age".into()));
        assert_eq!(fallback.state_as::<Form>().await.unwrap(), Some(Form::Age));
        assert_eq!(dialogue.state().await.unwrap().as_deref(), Some("Form:age"));
        assert_eq!(
            Value::Object(dialogue.data().await.unwrap()),
            json!({"kept": true})
        );

        dialogue.set_state("Form:city").await.unwrap();
        let wrong = dialogue
            .clone()
            .on_unknown_state(UnknownStates::Fallback("Form:nowhere".into()));
        assert!(matches!(
            wrong.state_as::<Form>().await.unwrap_err(),
            Error::InvalidInput(_)
        ));
        assert_eq!(
            dialogue.state().await.unwrap().as_deref(),
            Some("Form:city")
        );

        let reset = dialogue.clone().on_unknown_state(UnknownStates::Reset);
        assert_eq!(reset.state_as::<Form>().await.unwrap(), None);
        assert_eq!(
            storage.key_count().await.unwrap(),
            0,
            "the dialogue is gone"
        );
    }

    /// The untyped calls: states as `&str`, `String` and `Option<&str>`; `data`, `record`,
    /// `finish`, each seen through the storage underneath.
    #[tokio::test]
    async fn untyped_states_data_and_record_reach_the_storage() {
        use crate::{BotId, ChatId, MemoryStorage, UserId};
        let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let key = StorageKey::new(BotId(1), ChatId(2), UserId(3));
        let dialogue = Dialogue::new(Arc::clone(&storage), key.clone());

        dialogue.set_state("Form:name").await.unwrap();
        assert_eq!(
            storage.get_state(&key).await.unwrap().as_deref(),
            Some("Form:name")
        );
        dialogue.set_state(String::from("Form:age")).await.unwrap();
        assert_eq!(dialogue.state().await.unwrap().as_deref(), Some("Form:age"));
        dialogue.set_state(Some("Form:city")).await.unwrap();
        assert_eq!(
            storage.get_state(&key).await.unwrap().as_deref(),
            Some("Form:city")
        );

        dialogue.update(&json!({"name": "Ann"})).await.unwrap();
        assert_eq!(
            Value::Object(dialogue.data().await.unwrap()),
            json!({"name": "Ann"})
        );
        let record = dialogue.record().await.unwrap();
        assert_eq!(record.state.as_deref(), Some("Form:city"));
        assert_eq!(Value::Object(record.data), json!({"name": "Ann"}));

        dialogue.set_state(None::<&str>).await.unwrap();
        assert_eq!(storage.get_state(&key).await.unwrap(), None);
        assert_eq!(
            storage.key_count().await.unwrap(),
            1,
            "the data keeps the row"
        );
        dialogue.finish().await.unwrap();
        assert_eq!(storage.key_count().await.unwrap(), 0);
        assert!(format!("{dialogue:?}").contains("Dialogue"));
    }
}
