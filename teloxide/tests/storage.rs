//! teloxide's own storage tests (the scenario its SQLite, PostgreSQL, Redis and in-memory
//! storages run), and the rows the adapter writes, on every backend: each a test of its own
//! per backend (`<test>::<backend>`), listed as ignored with the reason when that backend's
//! server is not there (a failure under `CI`), never as passed.

mod common;

use std::process::ExitCode;
use std::sync::Arc;

use common::Target;
use fsmstore::{BotId, Error, ErrorKind};
use fsmstore_conformance::{block_on, Suite};
use fsmstore_teloxide::{lock_chat, TeloxideStorage};
use serde_json::json;
use teloxide::dispatching::dialogue::Storage;
use teloxide::types::ChatId;

type Dialogue = String;

fn main() -> ExitCode {
    let servers = common::Servers::probe();
    let mut suite = Suite::new();
    common::each_target(
        &mut suite,
        &servers,
        "teloxides_storage_scenario_passes_on_every_backend",
        "scenario",
        |target| block_on(teloxides_storage_scenario_passes_on_every_backend(target)),
    );
    common::each_target(
        &mut suite,
        &servers,
        "the_erased_storage_works",
        "erased",
        |target| block_on(the_erased_storage_works(target)),
    );
    common::each_target(
        &mut suite,
        &servers,
        "rows_are_readable_and_keyed_like_aiogram",
        "rows",
        |target| block_on(rows_are_readable_and_keyed_like_aiogram(target)),
    );
    common::each_target(
        &mut suite,
        &servers,
        "a_teloxide_storage_moves_in_dialogue_by_dialogue",
        "import",
        |target| block_on(a_teloxide_storage_moves_in_dialogue_by_dialogue(target)),
    );
    common::each_target(
        &mut suite,
        &servers,
        "a_renamed_variant_reads_by_its_alias_and_the_migration_renames_the_rows",
        "renamed",
        |target| {
            block_on(
                a_renamed_variant_reads_by_its_alias_and_the_migration_renames_the_rows(target),
            )
        },
    );
    suite.run()
}

async fn check(storage: &Arc<TeloxideStorage>, expected: [Option<&str>; 3]) {
    for (chat, want) in [1, 11, 256].into_iter().zip(expected) {
        let got: Option<Dialogue> = Arc::clone(storage)
            .get_dialogue(ChatId(chat))
            .await
            .unwrap();
        assert_eq!(got.as_deref(), want, "chat {chat}");
    }
}

/// `tests/sqlite.rs`, `tests/postgres.rs` and `tests/redis.rs` of teloxide 0.17, call for
/// call: absent → three updates → read back → three removes → absent → removing an absent
/// dialogue is an error (`DialogueNotFound` there, [`Error::NotFound`] here).
async fn teloxides_storage_scenario_passes_on_every_backend(target: Target) {
    let db = common::open(&target, target.options("scenario")).await;
    let storage = Arc::new(TeloxideStorage::from(&db));
    check(&storage, [None, None, None]).await;
    for (chat, text) in [(1, "ABC"), (11, "DEF"), (256, "GHI")] {
        Arc::clone(&storage)
            .update_dialogue(ChatId(chat), text.to_owned())
            .await
            .unwrap();
    }
    check(&storage, [Some("ABC"), Some("DEF"), Some("GHI")]).await;
    for chat in [1, 11, 256] {
        <TeloxideStorage as Storage<Dialogue>>::remove_dialogue(Arc::clone(&storage), ChatId(chat))
            .await
            .unwrap();
    }
    check(&storage, [None, None, None]).await;
    let err =
        <TeloxideStorage as Storage<Dialogue>>::remove_dialogue(Arc::clone(&storage), ChatId(1))
            .await
            .unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { key } if key == "fsm:1:1"),
        "{}: {err:?}",
        target.name
    );
    assert_eq!(err.kind(), ErrorKind::NotFound);
    common::drop_tables(db).await;
}

/// teloxide's `test_erased`: the erased storage (`Arc<ErasedStorage<D>>`) works the same.
async fn the_erased_storage_works(target: Target) {
    let db = common::open(&target, target.options("erased")).await;
    let erased = Arc::new(TeloxideStorage::from(&db)).erase();
    let chat = ChatId(123);
    Arc::clone(&erased).update_dialogue(chat, 1).await.unwrap();
    assert_eq!(
        Arc::clone(&erased).get_dialogue(chat).await.unwrap(),
        Some(1)
    );
    Arc::clone(&erased).remove_dialogue(chat).await.unwrap();
    assert_eq!(Arc::clone(&erased).get_dialogue(chat).await.unwrap(), None);
    let err = Arc::clone(&erased).remove_dialogue(chat).await.unwrap_err();
    let err = err
        .downcast_ref::<Error>()
        .expect("an fsmstore error inside");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    common::drop_tables(db).await;
}

/// The states of the example bot (teloxide's dialogue example).
#[allow(dead_code)]
#[path = "../../examples/dialogue_bot/mod.rs"]
mod dialogue_bot;

use dialogue_bot::State;

/// Rows are readable: an enum's variant is the state, its fields the data; keys follow
/// aiogram's `FSMStrategy.CHAT` (`fsm:{chat}:{chat}`); `inspect stats` counts dialogues by
/// state. A row that does not decode as `D` is [`Error::DataMismatch`], naming the row.
async fn rows_are_readable_and_keyed_like_aiogram(target: Target) {
    let db = common::open(&target, target.options("rows")).await;
    let storage = Arc::new(TeloxideStorage::from(&db).bot_id(BotId(42)));
    let dialogues = [
        (10, State::Start),
        (-20, State::ReceiveFullName),
        (
            30,
            State::ReceiveAge {
                full_name: "Ann Lee".into(),
            },
        ),
        (
            40,
            State::ReceiveAge {
                full_name: "Bo".into(),
            },
        ),
        (
            50,
            State::ReceiveLocation {
                full_name: "Cy".into(),
                age: 33,
            },
        ),
    ];
    for (chat, state) in &dialogues {
        Arc::clone(&storage)
            .update_dialogue(ChatId(*chat), state.clone())
            .await
            .unwrap();
    }
    for (chat, state) in &dialogues {
        let got: Option<State> = Arc::clone(&storage)
            .get_dialogue(ChatId(*chat))
            .await
            .unwrap();
        assert_eq!(got.as_ref(), Some(state), "{}: chat {chat}", target.name);
    }

    let inspect = db.inspect();
    let row = inspect
        .get_row("fsm:30:30")
        .await
        .unwrap()
        .expect("the row of chat 30");
    assert_eq!(row.state.as_deref(), Some("ReceiveAge"));
    assert_eq!(
        serde_json::Value::Object(row.data),
        json!({"full_name": "Ann Lee"})
    );
    let row = inspect
        .get_row("fsm:-20:-20")
        .await
        .unwrap()
        .expect("chat -20");
    assert_eq!(row.state.as_deref(), Some("ReceiveFullName"));
    assert!(row.data.is_empty());
    let stats = inspect.stats().await.unwrap();
    assert_eq!(stats.rows, 5);
    assert_eq!(stats.per_state[0], (Some("ReceiveAge".to_owned()), 2));

    // Another bot's dialogue in a table shared with aiogram: state it cannot read.
    db.storage()
        .set_state(&storage.key(ChatId(60)), Some("Form:name"))
        .await
        .unwrap();
    let err = <TeloxideStorage as Storage<State>>::get_dialogue(Arc::clone(&storage), ChatId(60))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::DataMismatch { key, .. } if key == "fsm:60:60"),
        "{err:?}"
    );
    common::drop_tables(db).await;
}

/// `import_from` moves teloxide's own storage into fsmstore in the process, dialogue by
/// dialogue: chats without one are counted absent; run again it keeps what the bot wrote
/// since (unless `replace`); a dialogue fsmstore refuses stops it with a typed error,
/// after the chats before it.
async fn a_teloxide_storage_moves_in_dialogue_by_dialogue(target: Target) {
    use fsmstore_teloxide::ImportError;
    use teloxide::dispatching::dialogue::InMemStorage;
    let db = common::open(&target, target.options("import")).await;
    let storage = Arc::new(TeloxideStorage::from(&db));
    let source = InMemStorage::<Dialogue>::new();
    for (chat, text) in [(1, "ABC"), (11, "DEF"), (256, "GHI")] {
        Arc::clone(&source)
            .update_dialogue(ChatId(chat), text.to_owned())
            .await
            .unwrap();
    }
    let chats = [1, 11, 256, 999].map(ChatId);
    let report = storage
        .import_from(Arc::clone(&source), chats, false)
        .await
        .unwrap();
    assert_eq!(
        (report.new, report.kept, report.absent),
        (3, 0, 1),
        "{}",
        target.name
    );
    check(&storage, [Some("ABC"), Some("DEF"), Some("GHI")]).await;

    // The bot moved chat 11 on: an import again keeps it, --replace does not.
    Arc::clone(&storage)
        .update_dialogue(ChatId(11), "LIVE".to_owned())
        .await
        .unwrap();
    let again = storage
        .import_from(Arc::clone(&source), chats, false)
        .await
        .unwrap();
    assert_eq!((again.new, again.kept, again.replaced), (0, 3, 0));
    check(&storage, [Some("ABC"), Some("LIVE"), Some("GHI")]).await;
    let replaced = storage
        .import_from(Arc::clone(&source), chats, true)
        .await
        .unwrap();
    assert_eq!((replaced.replaced, replaced.kept), (3, 0));
    check(&storage, [Some("ABC"), Some("DEF"), Some("GHI")]).await;

    // A NUL fsmstore refuses: a typed error, the chat before it moved.
    Arc::clone(&source)
        .update_dialogue(ChatId(5), "nul\u{0}inside".to_owned())
        .await
        .unwrap();
    Arc::clone(&source)
        .update_dialogue(ChatId(4), "four".to_owned())
        .await
        .unwrap();
    let err = storage
        .import_from(Arc::clone(&source), [4, 5].map(ChatId), false)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ImportError::Destination(e) if e.kind() == ErrorKind::InvalidInput),
        "{err}"
    );
    let four: Option<Dialogue> = Arc::clone(&storage).get_dialogue(ChatId(4)).await.unwrap();
    assert_eq!(four.as_deref(), Some("four"));
    common::drop_tables(db).await;
}

/// The next release of `dialogue_bot::State`: `ReceiveFullName` renamed `ReceiveName`,
/// keeping its old name as a serde alias for the dialogues stored by the last release.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
enum NextState {
    Start,
    #[serde(alias = "ReceiveFullName")]
    ReceiveName,
    ReceiveAge {
        full_name: String,
    },
}

/// A teloxide bot renames a variant: the new code reads the dialogues stored under the old
/// name through serde's `alias` while they are there, the dialogue migration renames the
/// stored rows (their data and the other states untouched), and the new code reads them
/// all the same afterwards.
async fn a_renamed_variant_reads_by_its_alias_and_the_migration_renames_the_rows(target: Target) {
    use fsmstore::dialogues::{DialogueMigrations, DialogueStep, StepOptions};
    let db = common::open(&target, target.options("renamed")).await;
    let old = Arc::new(TeloxideStorage::from(&db));
    for chat in 1..=5 {
        let state = if chat % 2 == 0 {
            State::ReceiveFullName
        } else {
            State::ReceiveAge {
                full_name: format!("user{chat}"),
            }
        };
        Arc::clone(&old)
            .update_dialogue(ChatId(chat), state)
            .await
            .unwrap();
    }
    let new = Arc::new(TeloxideStorage::from(&db));
    let read_all = || async {
        let mut all = Vec::new();
        for chat in 1..=5 {
            let got: Option<NextState> = Arc::clone(&new).get_dialogue(ChatId(chat)).await.unwrap();
            all.push(got.expect("a dialogue"));
        }
        all
    };
    let before = read_all().await;
    assert_eq!(before[1], NextState::ReceiveName, "{}", target.name);
    let migrations = DialogueMigrations::new().step(
        1,
        DialogueStep::rename_state("ReceiveFullName", "ReceiveName").unwrap(),
    );
    let report = db
        .migrate_dialogues(&migrations, &StepOptions::default(), &mut |_, _| {})
        .await
        .unwrap();
    assert_eq!(
        report.ran[0].report.changed, 2,
        "{}: {report:?}",
        target.name
    );
    let stats = db.inspect().stats().await.unwrap();
    assert_eq!(stats.fresh_in(Some("ReceiveName")), 2);
    assert_eq!(stats.fresh_in(Some("ReceiveFullName")), 0);
    assert_eq!(read_all().await, before, "{}", target.name);
    common::drop_tables(db).await;
}
