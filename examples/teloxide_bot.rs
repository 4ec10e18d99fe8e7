//! teloxide's dialogue example bot (`examples/dialogue.rs` of teloxide 0.17) with its
//! dialogues in fsmstore instead of `InMemStorage`: they survive restarts, and
//! `fsmstore inspect stats` counts them by state.
//!
//! ```text
//! TELOXIDE_TOKEN=123456:ABC… cargo run --example teloxide_bot --features teloxide-rustls
//! DATABASE_URL=postgres://user:pass@host/db TELOXIDE_TOKEN=… cargo run --example teloxide_bot --features teloxide-rustls,postgres
//! ```
//!
//! SQLite (`teloxide_bot.db`) by default; `DATABASE_URL` picks another database (the table
//! is created or upgraded on start, `schema=upgrade`). The real Bot API needs TLS: build with
//! `teloxide-rustls`. With only `teloxide` it builds, and reaches a local plain-HTTP Bot API
//! server named by `TELOXIDE_API_URL`.

use std::sync::Arc;

use fsmstore::teloxide::{lock_chat, TeloxideStorage};
use teloxide::dptree;
use teloxide::prelude::Dispatcher;
use teloxide::Bot;

mod dialogue_bot;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let token = std::env::var("TELOXIDE_TOKEN").map_err(|_| "set TELOXIDE_TOKEN")?;
    // A local Bot API server (plain HTTP) instead of api.telegram.org, if set.
    let api_url = std::env::var("TELOXIDE_API_URL").ok();
    if api_url.is_none() && !cfg!(feature = "teloxide-rustls") {
        return Err("api.telegram.org needs TLS: build with --features teloxide-rustls (or set TELOXIDE_API_URL to a local plain-HTTP Bot API server)".into());
    }
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "sqlite://teloxide_bot.db?schema=upgrade".to_owned());
    let db = fsmstore::open(&url).await?;
    // Keys like aiogram's FSMStrategy.CHAT with this bot's id: a Python aiogram bot on the
    // same table (with_bot_id=True) sees the same rows. From the database, so `lock_chat`
    // (in the schema) takes the database's per-chat locks: run as many instances as you like.
    let storage = Arc::new(TeloxideStorage::from(&db).bot_id_from_token(&token)?);

    let mut bot = Bot::new(token);
    if let Some(url) = api_url {
        bot = bot.set_api_url(url.parse()?);
    }
    Dispatcher::builder(bot, dialogue_bot::schema())
        .dependencies(dptree::deps![storage])
        .build()
        .dispatch()
        .await;
    db.close().await?;
    Ok(())
}
