//! `fsmstore demo`: a simulated form bot for many users on a real database.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use fsmstore::inspect::Inspect;
use fsmstore::serde_json::{json, Value};
use fsmstore::{BotId, ChatId, SchemaPolicy, StorageKey, UserId};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::Semaphore;

use crate::args::{DemoArgs, Global};
use crate::output;

/// The form: the state that asks, and the field its answer fills.
const FORM: [(&str, &str); 3] = [
    ("Form:name", "name"),
    ("Form:age", "age"),
    ("Form:city", "city"),
];
const CITIES: [&str; 6] = ["Lisbon", "Київ", "東京", "São Paulo", "Zürich", "Nairobi"];

/// How many of the form's answers user `user` has sent so far (0 ..= 3): users stop at
/// different points, so the summary shows every state.
fn answers_sent(user: i64) -> usize {
    (user.unsigned_abs() % 4) as usize
}

fn answer(user: i64, field: &str) -> Value {
    match field {
        "name" => json!(format!("user{user}")),
        "age" => json!(18 + user % 60),
        _ => json!(CITIES[(user.unsigned_abs() % CITIES.len() as u64) as usize]),
    }
}

/// One user's conversation: `/start`, then as many answers as they send. Each message is
/// what a bot handler does: read the state, store the answer, move on.
async fn converse(storage: &dyn Inspect, user: i64) -> fsmstore::Result<u64> {
    let key = StorageKey::new(BotId(42), ChatId(user), UserId(user));
    storage.set_state(&key, Some(FORM[0].0)).await?;
    let mut calls = 1;
    for _ in 0..answers_sent(user) {
        let state = storage.get_state(&key).await?;
        let Some(step) = FORM.iter().position(|(s, _)| Some(*s) == state.as_deref()) else {
            break;
        };
        let field = FORM[step].1;
        let patch = json!({ field: answer(user, field) });
        storage
            .update_data(&key, patch.as_object().unwrap_or(&Default::default()))
            .await?;
        let next = FORM.get(step + 1).map(|(state, _)| *state);
        storage.set_state(&key, next).await?;
        calls += 3;
    }
    Ok(calls)
}

pub(crate) async fn run(global: &Global, args: DemoArgs) -> anyhow::Result<ExitCode> {
    // Strategy 3 of the migration guide: create or upgrade the table at start-up.
    let db = fsmstore::open_with(&global.url, global.options(SchemaPolicy::Upgrade)?).await?;
    let storage = db.inspect();
    let bar = ProgressBar::new(args.users.max(0) as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} users [{bar:40}] {pos}/{len} ({per_sec}, {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let permits = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for user in 1..=args.users {
        let (storage, permits, bar) = (Arc::clone(&storage), Arc::clone(&permits), bar.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire().await;
            let calls = converse(&*storage, user).await;
            bar.inc(1);
            calls
        }));
    }
    let mut calls = 0;
    for task in tasks {
        calls += task.await??;
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let stats = storage.stats().await?;
    let sample = storage.list_rows(None, None, 3).await?;
    db.close().await?;
    let ops = calls as f64 / elapsed.as_secs_f64();
    if global.json {
        output::json(&json!({
            "users": args.users,
            "calls": calls,
            "seconds": elapsed.as_secs_f64(),
            "calls_per_second": ops,
            "rows": stats.rows,
            "per_state": stats.per_state.iter().map(|(s, n)| json!({"state": s, "rows": n})).collect::<Vec<_>>(),
        }));
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "served {} users with {calls} storage calls in {:.2} s ({ops:.0} calls/s, {} at once)",
        args.users,
        elapsed.as_secs_f64(),
        args.concurrency
    );
    // The backend, not the URL: a URL may carry a password.
    println!(
        "database: {}  table: {}  rows: {}",
        db.backend(),
        global.table,
        stats.rows
    );
    let cells: Vec<Vec<String>> = stats
        .per_state
        .iter()
        .map(|(state, n)| {
            vec![
                state.clone().unwrap_or_else(|| "(form finished)".into()),
                n.to_string(),
            ]
        })
        .collect();
    output::table(&["state", "users"], &cells);
    println!("\nsample rows:");
    for row in sample {
        println!(
            "  {:<16} {:<10} {}",
            row.id,
            row.state.as_deref().unwrap_or("-"),
            Value::Object(row.data)
        );
    }
    println!("\nlook further: fsmstore inspect stats | fsmstore inspect list --state Form:age");
    Ok(ExitCode::SUCCESS)
}
