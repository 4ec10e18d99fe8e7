//! `fsmstore::open`: one handle per database, and URL parameters never silently dropped.

use fsmstore::migrate::MigrationTarget;
use fsmstore::{BotId, ChatId, Error, SchemaPolicy, StorageKey, StorageOptions, UserId};

fn temp_db(name: &str) -> String {
    let path = std::env::temp_dir().join(format!("fsmstore-open-{}-{name}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    format!("sqlite://{}", path.display())
}

#[tokio::test]
async fn one_handle_hands_out_storage_inspect_and_migrator_over_one_database() {
    let db = fsmstore::open(&format!("{}?schema=upgrade", temp_db("views")))
        .await
        .unwrap();
    let key = StorageKey::new(BotId(1), ChatId(-100), UserId(7));
    db.storage()
        .set_state(&key, Some("Form:name"))
        .await
        .unwrap();
    let stats = db.inspect().stats().await.unwrap();
    assert_eq!(stats.rows, 1);
    let migrator = db.migrator().unwrap();
    let head = migrator.migrations().head();
    assert_eq!(migrator.current().await.unwrap(), head);
    db.close().await.unwrap();
    assert!(matches!(
        db.storage().get_state(&key).await,
        Err(Error::Closed)
    ));
}

#[tokio::test]
async fn url_parameters_reach_the_storage() {
    let url = format!("{}?table=from_url&schema=upgrade", temp_db("url"));
    let db = fsmstore::open_with(&url, StorageOptions::default())
        .await
        .unwrap();
    assert_eq!(db.options().table.as_str(), "from_url");
    assert_eq!(db.options().schema, SchemaPolicy::Upgrade);
    db.close().await.unwrap();
}

#[tokio::test]
async fn a_setting_given_differently_in_url_and_code_is_an_error() {
    let url = format!("{}?table=from_url", temp_db("conflict"));
    let options = StorageOptions::default().table("from_code").unwrap();
    let err = fsmstore::open_with(&url, options).await.unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert!(err.to_string().contains("table"), "{err}");
}

#[tokio::test]
async fn code_options_fill_what_the_url_left_at_default() {
    let url = format!("{}?table=from_url", temp_db("fill"));
    let options = StorageOptions::default()
        .schema(SchemaPolicy::Upgrade)
        .version_table("from_code_ver")
        .unwrap();
    let db = fsmstore::open_with(&url, options).await.unwrap();
    assert_eq!(db.options().table.as_str(), "from_url");
    assert_eq!(db.options().version_table.as_str(), "from_code_ver");
    // The migrator works on the URL's table with the code's version table.
    let migrator = db.migrator().unwrap();
    migrator.migrate(MigrationTarget::Base).await.unwrap();
    assert_eq!(migrator.current().await.unwrap(), 0);
    db.close().await.unwrap();
}

#[tokio::test]
async fn unknown_url_parameters_name_themselves() {
    let err = fsmstore::open(&format!("{}?bogus=1", temp_db("bogus")))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert!(err.to_string().contains("\"bogus\""), "{err}");
}

/// `fsmstore::teloxide::open`: teloxide dialogues on the database a URL names.
#[cfg(feature = "teloxide")]
#[tokio::test]
async fn teloxide_open_serves_dialogues_from_a_url() {
    use teloxide::dispatching::dialogue::Storage as _;
    let url = format!("{}?schema=upgrade", temp_db("teloxide"));
    let storage = fsmstore::teloxide::open(&url).await.unwrap();
    let chat = teloxide::types::ChatId(5);
    std::sync::Arc::clone(&storage)
        .update_dialogue(chat, "Waiting".to_owned())
        .await
        .unwrap();
    let got: Option<String> = std::sync::Arc::clone(&storage)
        .get_dialogue(chat)
        .await
        .unwrap();
    assert_eq!(got.as_deref(), Some("Waiting"));
    // The row is the chat's, in aiogram's layout.
    let record = storage
        .storage()
        .get_record(&storage.key(chat))
        .await
        .unwrap();
    assert_eq!(record.state.as_deref(), Some("Waiting"));
}

/// `ttl` in the URL reaches the storage (every backend expires rows: the conformance
/// group `expiry`).
#[tokio::test]
async fn a_ttl_in_the_url_reaches_the_storage() {
    let db = fsmstore::open(&format!("{}?ttl=30m&schema=upgrade", temp_db("ttl")))
        .await
        .unwrap();
    assert_eq!(db.options().ttl, Some(std::time::Duration::from_secs(1800)));
    let err = fsmstore::open(&format!("{}?ttl=soon", temp_db("ttl2")))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Config(text) if text.contains("soon")),
        "{err:?}"
    );
}
