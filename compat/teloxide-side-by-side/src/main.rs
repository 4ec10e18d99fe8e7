//! A bot still on teloxide's `SqliteStorage` adds fsmstore and moves its dialogues in the
//! process (`TeloxideStorage::import_from`): both SQLite libraries in one binary, every
//! dialogue read back through fsmstore, and a second run keeping what is there. Exits
//! non-zero (a panic) on any difference.

use std::sync::Arc;

use fsmstore::teloxide::TeloxideStorage;
use serde::{Deserialize, Serialize};
use teloxide::dispatching::dialogue::serializer::Json;
use teloxide::dispatching::dialogue::{SqliteStorage, Storage};
use teloxide::types::ChatId;

/// teloxide's dialogue example's states.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum State {
    Start,
    ReceiveFullName,
    ReceiveAge { full_name: String },
    ReceiveLocation { full_name: String, age: u8 },
}

#[tokio::main]
async fn main() {
    let dir = std::env::temp_dir().join(format!("fsmstore-side-by-side-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dialogues = [
        (1, State::Start),
        (-1001, State::ReceiveFullName),
        (
            42,
            State::ReceiveAge {
                full_name: "Ann Lee".into(),
            },
        ),
        (
            7,
            State::ReceiveLocation {
                full_name: "Bo \u{1F600}".into(),
                age: 41,
            },
        ),
    ];

    // The bot as it ran until today: teloxide's own SQLite storage (sqlx).
    let teloxide_db = dir.join("teloxide.sqlite");
    let source = SqliteStorage::open(teloxide_db.to_str().unwrap(), Json)
        .await
        .unwrap();
    for (chat, state) in &dialogues {
        Arc::clone(&source)
            .update_dialogue(ChatId(*chat), state.clone())
            .await
            .unwrap();
    }

    // fsmstore's SQLite backend (rusqlite) beside it, in the same process.
    let url = format!("sqlite://{}?schema=upgrade", dir.join("fsm.db").display());
    let db = fsmstore::open(&url).await.unwrap();
    let storage = Arc::new(TeloxideStorage::from(&db));
    let chats = dialogues.iter().map(|(chat, _)| ChatId(*chat));
    let report = storage
        .import_from::<State, _>(Arc::clone(&source), chats.clone(), false)
        .await
        .unwrap();
    assert_eq!(
        (report.new, report.kept, report.absent),
        (4, 0, 0),
        "{report:?}"
    );
    for (chat, state) in &dialogues {
        let got: Option<State> = Arc::clone(&storage)
            .get_dialogue(ChatId(*chat))
            .await
            .unwrap();
        assert_eq!(got.as_ref(), Some(state), "chat {chat}");
        // teloxide's storage still answers: the source is only read.
        let there: Option<State> = Arc::clone(&source)
            .get_dialogue(ChatId(*chat))
            .await
            .unwrap();
        assert_eq!(there.as_ref(), Some(state), "teloxide's chat {chat}");
    }
    let again = storage
        .import_from::<State, _>(Arc::clone(&source), chats, false)
        .await
        .unwrap();
    assert_eq!((again.new, again.kept), (0, 4), "{again:?}");
    db.close().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    println!(
        "side by side: teloxide's SqliteStorage (sqlx) and fsmstore's SQLite backend (rusqlite) in one process on one SQLite {}; {} dialogues moved in, {} kept on a second run",
        fsmstore::sqlite::rusqlite::version(),
        report.new,
        again.kept
    );
}
