//! Dialogue migrations: steps applied to every stored dialogue
//! ([`run_step`](fsmstore_core::run_step)), each dialogue rewritten atomically, never over
//! a bot's write, write times kept.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fsmstore_core::{
    run_step, Database, Dialogue, DialogueMigrationReport, DialogueMigrations, DialogueState,
    DialogueStep, Inspect, StepOptions, StepReport, Storage, UnknownStates,
};
use serde_json::{json, Value};

use super::{key, obj};
use crate::Ctx;

/// Runs `step` on `s` with `options`, no progress.
async fn run(s: &dyn Inspect, step: &DialogueStep, options: StepOptions) -> StepReport {
    run_step(s, step, &options, &mut |_| {})
        .await
        .unwrap_or_else(|err| panic!("step \"{step}\" failed: {err}"))
}

async fn state(s: &dyn Inspect, n: i64) -> Option<String> {
    s.get_state(&key(n)).await.unwrap()
}

async fn data(s: &dyn Inspect, n: i64) -> Value {
    Value::Object(s.get_data(&key(n)).await.unwrap())
}

/// Each kind of step changes exactly the dialogues it names, as it says, and a second run
/// changes nothing.
pub async fn each_step_kind_changes_what_it_names(ctx: Ctx) {
    let s = ctx.inspect().await;
    let rows: [(i64, Option<&str>, Value); 7] = [
        (1, Some("Form:nmae"), json!({"nmae": "Ann", "tmp": 1})),
        (2, Some("Form:age"), json!({"nmae": "Bob", "age": "30"})),
        (3, Some("Old:confirm"), json!({"x": 1})),
        (4, Some("Old:pay"), json!({})),
        (5, Some("Other:x"), json!({"nmae": "Cy"})),
        (6, None, json!({"tmp": 2})),
        (7, Some("Gone:x"), json!({"keep": true})),
    ];
    for (n, st, d) in &rows {
        s.set_record(&key(*n), *st, &obj(d.clone())).await.unwrap();
    }
    let steps = [
        (
            DialogueStep::rename_state("Form:nmae", "Form:name").unwrap(),
            1,
        ),
        (DialogueStep::rename_group("Form", "Signup").unwrap(), 2),
        (
            DialogueStep::rename_field("Signup:*", "nmae", "name").unwrap(),
            2,
        ),
        (DialogueStep::drop_states("Old:*", false).unwrap(), 2),
        (DialogueStep::drop_states("Gone:*", true).unwrap(), 1),
        (DialogueStep::drop_field("*", "tmp").unwrap(), 2),
        (
            DialogueStep::default_field("Signup:*", "lang", json!("en")).unwrap(),
            2,
        ),
        (
            DialogueStep::map("Signup:*", "age as a number", |row| {
                if let Some(Value::String(age)) = row.data.get("age") {
                    if let Ok(age) = age.parse::<u64>() {
                        row.data.insert("age".into(), json!(age));
                    }
                }
            })
            .unwrap(),
            1,
        ),
    ];
    for (step, touched) in &steps {
        let report = run(&*s, step, StepOptions::default().batch(2)).await;
        assert_eq!(report.touched(), *touched, "{step}: {report:?}");
        assert!(report.skipped.is_empty(), "{report:?}");
        let again = run(&*s, step, StepOptions::default()).await;
        assert_eq!(again.touched(), 0, "{step} a second time: {again:?}");
    }
    assert_eq!(state(&*s, 1).await.as_deref(), Some("Signup:name"));
    assert_eq!(data(&*s, 1).await, json!({"name": "Ann", "lang": "en"}));
    assert_eq!(state(&*s, 2).await.as_deref(), Some("Signup:age"));
    assert_eq!(
        data(&*s, 2).await,
        json!({"name": "Bob", "age": 30, "lang": "en"})
    );
    for gone in [3, 4, 6] {
        assert_eq!(state(&*s, gone).await, None, "dialogue {gone}");
        assert_eq!(data(&*s, gone).await, json!({}), "dialogue {gone}");
    }
    // Another group's field keeps its name.
    assert_eq!(state(&*s, 5).await.as_deref(), Some("Other:x"));
    assert_eq!(data(&*s, 5).await, json!({"nmae": "Cy"}));
    // The state cleared, the data kept.
    assert_eq!(state(&*s, 7).await, None);
    assert_eq!(data(&*s, 7).await, json!({"keep": true}));
    assert_eq!(s.key_count().await.unwrap(), 4);
}

/// A dry run counts per step what it would change and writes nothing.
pub async fn a_dry_run_counts_and_writes_nothing(ctx: Ctx) {
    let s = ctx.inspect().await;
    for n in 1..=6 {
        s.set_record(&key(n), Some("Form:nmae"), &obj(json!({"n": n})))
            .await
            .unwrap();
    }
    s.set_state(&key(7), Some("Form:age")).await.unwrap();
    let step = DialogueStep::rename_state("Form:nmae", "Form:name").unwrap();
    let report = run(&*s, &step, StepOptions::default().dry_run(true)).await;
    assert!(report.dry_run);
    assert_eq!((report.examined, report.changed), (6, 6), "{report:?}");
    let drop = DialogueStep::drop_states("Form:*", false).unwrap();
    let report = run(&*s, &drop, StepOptions::default().dry_run(true)).await;
    assert_eq!((report.examined, report.deleted), (7, 7), "{report:?}");
    for n in 1..=6 {
        assert_eq!(state(&*s, n).await.as_deref(), Some("Form:nmae"));
    }
    assert_eq!(s.key_count().await.unwrap(), 7);
}

/// A run killed after its first page (the task panics there) is finished by running the
/// step again: every dialogue changed once, none twice, none missed.
pub async fn a_step_cut_short_is_finished_by_running_it_again(ctx: Ctx) {
    let s = ctx.inspect().await;
    for n in 1..=30 {
        s.set_record(&key(n), Some("Form:nmae"), &obj(json!({"n": n})))
            .await
            .unwrap();
    }
    let step = DialogueStep::rename_state("Form:nmae", "Form:name").unwrap();
    let (inner, first) = (Arc::clone(&s), step.clone());
    let killed = tokio::spawn(async move {
        let options = StepOptions::default().batch(5);
        let _ = run_step(&*inner, &first, &options, &mut |report| {
            panic!("killed after {} dialogues", report.changed)
        })
        .await;
    })
    .await;
    assert!(
        killed.is_err(),
        "the first run was to die after its first page"
    );
    let done = (1..=30).filter(|n| *n <= 5).count() as u64;
    let report = run(&*s, &step, StepOptions::default()).await;
    assert_eq!(
        report.changed,
        30 - done,
        "the second run did the rest, no more: {report:?}"
    );
    for n in 1..=30 {
        assert_eq!(state(&*s, n).await.as_deref(), Some("Form:name"));
        assert_eq!(data(&*s, n).await, json!({ "n": n }));
    }
}

/// Two runners of one step at once change each dialogue once between them.
pub async fn two_runners_at_once_change_each_dialogue_once(ctx: Ctx) {
    let s = ctx.inspect().await;
    let other = ctx.inspect().await;
    for n in 1..=60 {
        s.set_record(&key(n), Some("Form:nmae"), &obj(json!({"n": n})))
            .await
            .unwrap();
    }
    let step = DialogueStep::rename_field("*", "n", "number").unwrap();
    let options = StepOptions::default().batch(7);
    let (a, b) = tokio::join!(
        run(&*s, &step, options.clone()),
        run(&*other, &step, options.clone())
    );
    assert_eq!(a.changed + b.changed, 60, "{a:?} {b:?}");
    for n in 1..=60 {
        assert_eq!(data(&*s, n).await, json!({ "number": n }));
    }
}

/// A bot writing the dialogues while a step rewrites them loses nothing: every bot write
/// is there at the end, and the step reached every dialogue.
pub async fn a_bot_writing_during_a_step_loses_nothing(ctx: Ctx) {
    let s = ctx.inspect().await;
    const KEYS: i64 = 24;
    for n in 1..=KEYS {
        s.set_record(
            &key(n),
            Some("Form:a"),
            &obj(json!({"old": n, "w": 0, "list": [1, 2]})),
        )
        .await
        .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicI64::new(0));
    // Writes the step asks for, between its read and its write of a dialogue: `n` asked,
    // `()` answered once the bot's write is done.
    let (ask, asked) = std::sync::mpsc::channel::<i64>();
    let (answer, answered) = std::sync::mpsc::channel::<()>();
    // The bot on a thread and runtime of its own, so it writes while the step's closure
    // holds this one: every dialogue each round, and the writes the step asks for.
    let writer = {
        let (ctx, stop, rounds) = (ctx.clone(), Arc::clone(&stop), Arc::clone(&rounds));
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let bot: Arc<dyn Storage> = ctx.storage().await;
                let serve = || async {
                    while let Ok(n) = asked.try_recv() {
                        // A value no round writes, and the list reordered: the dialogue
                        // surely changed, and only the order of an array tells.
                        bot.update_data(&key(n), &obj(json!({ "w": -n, "list": [2, 1] })))
                            .await
                            .unwrap();
                        answer.send(()).unwrap();
                    }
                };
                let mut round = 0_i64;
                while !stop.load(Ordering::Relaxed) || round < 3 {
                    round += 1;
                    for n in 1..=KEYS {
                        serve().await;
                        bot.update_data(&key(n), &obj(json!({ "w": round })))
                            .await
                            .unwrap();
                    }
                    rounds.store(round, Ordering::Relaxed);
                    // A busy bot, not a loop: each dialogue written every few milliseconds.
                    for _ in 0..5 {
                        serve().await;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
                bot.close().await.unwrap();
                round
            })
        })
    };
    let started = std::time::Instant::now();
    while rounds.load(Ordering::Relaxed) == 0 {
        assert!(
            !writer.is_finished() && started.elapsed() < Duration::from_secs(30),
            "the bot's writer did not start"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // For its first three dialogues the step has the bot write the dialogue after reading
    // it and before writing it (on every backend, however slow its writes), and it is
    // slow on purpose for the others, which the bot's rounds write at any time.
    let asked_for = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let asked_for_after = Arc::clone(&asked_for);
    let (ask, answered) = (ask, std::sync::Mutex::new(answered));
    let step = DialogueStep::map("*", "old to new", move |row| {
        if let Some(n) = row.data.get("old").and_then(Value::as_i64) {
            let mut asked_for = asked_for.lock().unwrap();
            if asked_for.len() < 3 && asked_for.insert(n) {
                ask.send(n).unwrap();
                answered
                    .lock()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(30))
                    .expect("the bot wrote the dialogue when asked");
            }
        }
        std::thread::sleep(Duration::from_millis(1));
        if let Some(value) = row.data.remove("old") {
            row.data.insert("new".into(), value);
        }
        if row.state.as_deref() == Some("Form:a") {
            row.state = Some("Form:b".into());
        }
    })
    .unwrap();
    let options = StepOptions::default().batch(3).in_flight(4);
    let mut reports = Vec::new();
    for _ in 0..5 {
        reports.push(run(&*s, &step, options.clone()).await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let rounds = writer.join().unwrap();
    let changed: u64 = reports.iter().map(|r| r.changed).sum();
    assert_eq!(
        changed, KEYS as u64,
        "each dialogue changed once: {reports:?}"
    );
    let raced: u64 = reports.iter().map(|r| r.raced).sum();
    assert!(
        raced >= 3,
        "the bot's writes between a read and a write were not seen: {reports:?}"
    );
    let asked_for = asked_for_after.lock().unwrap().clone();
    for n in 1..=KEYS {
        assert_eq!(state(&*s, n).await.as_deref(), Some("Form:b"));
        let list = if asked_for.contains(&n) {
            json!([2, 1])
        } else {
            json!([1, 2])
        };
        assert_eq!(
            data(&*s, n).await,
            json!({"new": n, "w": rounds, "list": list}),
            "dialogue {n}: the bot's last write and the step's change are both there"
        );
    }
}

fsmstore_core::states! {
    enum Form in "Form" {
        Name => "name" | "nmae",
        Age => "age",
    }
}

/// A rolling deploy: the old code still writes `Form:nmae` while the new code, which
/// knows it as a former name, reads both, and the rename runs meanwhile. Nobody's call
/// fails, and once the old code is gone a last run leaves only the new name.
pub async fn old_and_new_code_share_the_table_during_a_rename(ctx: Ctx) {
    let s = ctx.inspect().await;
    let storage: Arc<dyn Storage> = ctx.storage().await;
    for n in 1..=20 {
        s.set_state(&key(n), Some("Form:nmae")).await.unwrap();
    }
    let step = DialogueStep::rename_state("Form:nmae", "Form:name").unwrap();
    let old_code = {
        let storage = Arc::clone(&storage);
        tokio::spawn(async move {
            for round in 0..3 {
                for n in 1..=20 {
                    // The old release's handler: moves on and back under the old name.
                    let state = if (n + round) % 2 == 0 {
                        "Form:nmae"
                    } else {
                        "Form:age"
                    };
                    storage.set_state(&key(n), Some(state)).await.unwrap();
                }
            }
        })
    };
    let new_code = {
        let storage = Arc::clone(&storage);
        tokio::spawn(async move {
            for _ in 0..3 {
                for n in 1..=20 {
                    let dialogue = Dialogue::new(Arc::clone(&storage), key(n));
                    let state = dialogue.state_as::<Form>().await.unwrap();
                    assert!(matches!(state, Some(Form::Name | Form::Age)), "{state:?}");
                }
            }
        })
    };
    run(&*s, &step, StepOptions::default().batch(4)).await;
    old_code.await.unwrap();
    new_code.await.unwrap();
    run(&*s, &step, StepOptions::default()).await;
    for n in 1..=20 {
        let name = state(&*s, n).await;
        assert!(
            matches!(name.as_deref(), Some("Form:name" | "Form:age")),
            "dialogue {n}: {name:?}"
        );
        assert!(Form::from_name(name.as_deref().unwrap()).is_some());
    }
}

/// A state the code does not know is answered by the policy the bot chose, on the stored
/// row: the fallback state is written, a reset deletes the dialogue.
pub async fn unknown_states_follow_the_policy(ctx: Ctx) {
    let storage = ctx.storage().await;
    for n in 1..=3 {
        storage
            .set_record(&key(n), Some("Form:city"), &obj(json!({"a": n})))
            .await
            .unwrap();
    }
    let dialogue = |n| Dialogue::new(Arc::clone(&storage), key(n));
    assert!(dialogue(1).state_as::<Form>().await.is_err());
    let fallback = dialogue(2).on_unknown_state(UnknownStates::Fallback("Form:name".into()));
    assert_eq!(fallback.state_as::<Form>().await.unwrap(), Some(Form::Name));
    assert_eq!(
        storage.get_state(&key(2)).await.unwrap().as_deref(),
        Some("Form:name")
    );
    assert_eq!(
        Value::Object(storage.get_data(&key(2)).await.unwrap()),
        json!({"a": 2})
    );
    let reset = dialogue(3).on_unknown_state(UnknownStates::Reset);
    assert_eq!(reset.state_as::<Form>().await.unwrap(), None);
    assert_eq!(
        storage.get_record(&key(3)).await.unwrap(),
        Default::default()
    );
    assert_eq!(
        storage.get_state(&key(1)).await.unwrap().as_deref(),
        Some("Form:city"),
        "the default policy leaves the row as it is"
    );
}

/// The migrations of the next cases: a rename, then a default for the renamed state.
fn release_2() -> DialogueMigrations {
    DialogueMigrations::new()
        .step(
            1,
            DialogueStep::rename_state("Form:nmae", "Form:name").unwrap(),
        )
        .step(
            2,
            DialogueStep::default_field("Form:name", "lang", json!("en")).unwrap(),
        )
}

/// `n` dialogues at `Form:nmae`.
async fn stored_before_release_2(db: &Database, n: i64) {
    let s = db.storage();
    for i in 1..=n {
        s.set_record(&key(i), Some("Form:nmae"), &obj(json!({ "i": i })))
            .await
            .unwrap();
    }
}

async fn migrate(db: &Database, migrations: &DialogueMigrations) -> DialogueMigrationReport {
    db.migrate_dialogues(migrations, &StepOptions::default().batch(5), &mut |_, _| {})
        .await
        .unwrap_or_else(|err| panic!("migrate_dialogues failed: {err}"))
}

/// Declared steps run in version order, once: recorded with their checksums in a
/// history of their own, which the schema's never shows.
pub async fn declared_steps_run_once_and_are_recorded(ctx: Ctx) {
    let db = ctx.database(ctx.options()).await;
    stored_before_release_2(&db, 12).await;
    let head = db.migrator().unwrap().current().await.unwrap();
    let report = migrate(&db, &release_2()).await;
    let ran: Vec<_> = report
        .ran
        .iter()
        .map(|run| (run.version, run.report.changed, run.resumed))
        .collect();
    assert_eq!(ran, [(1, 12, false), (2, 12, false)], "{report:?}");
    for i in 1..=12 {
        assert_eq!(
            db.storage().get_state(&key(i)).await.unwrap().as_deref(),
            Some("Form:name")
        );
        assert_eq!(
            Value::Object(db.storage().get_data(&key(i)).await.unwrap()),
            json!({ "i": i, "lang": "en" })
        );
    }
    let again = migrate(&db, &release_2()).await;
    assert!(again.ran.is_empty(), "{again:?}");
    assert_eq!(again.already_done, [1, 2]);

    let history = db.dialogue_history(&release_2()).await.unwrap();
    assert_eq!(history.len(), 2);
    for (entry, (_, step)) in history.iter().zip(release_2().iter()) {
        let row = entry.recorded.as_ref().expect("recorded");
        assert!(
            row.success && entry.checksum_ok && entry.declared,
            "{entry:?}"
        );
        assert_eq!(row.checksum, step.checksum());
        assert_eq!(entry.description, step.description());
    }
    let migrator = db.migrator().unwrap();
    assert_eq!(migrator.current().await.unwrap(), head);
    assert!(
        migrator
            .history()
            .await
            .unwrap()
            .iter()
            .all(|entry| entry.known),
        "the schema's history shows only schema migrations"
    );
}

/// A recorded step the code now declares differently is refused as drift, naming the
/// version, and nothing runs.
pub async fn an_edited_step_is_drift(ctx: Ctx) {
    let db = ctx.database(ctx.options()).await;
    stored_before_release_2(&db, 3).await;
    migrate(&db, &release_2()).await;
    let edited = DialogueMigrations::new()
        .step(
            1,
            DialogueStep::rename_state("Form:nmae", "Form:full_name").unwrap(),
        )
        .step(3, DialogueStep::drop_states("Form:*", false).unwrap());
    let err = db
        .migrate_dialogues(&edited, &StepOptions::default(), &mut |_, _| {})
        .await
        .unwrap_err();
    assert!(
        matches!(err, fsmstore_core::Error::MigrationDrift { version: 1, .. }),
        "{err}"
    );
    assert_eq!(
        db.storage().key_count().await.unwrap(),
        3,
        "step 3 did not run"
    );
    let history = db.dialogue_history(&edited).await.unwrap();
    assert!(!history[0].checksum_ok, "{history:?}");
}

/// Instances starting at once run each step once between them, and both end with every
/// step done.
pub async fn instances_starting_at_once_run_each_step_once(ctx: Ctx) {
    let (a, b) = (
        ctx.database(ctx.options()).await,
        ctx.database(ctx.options()).await,
    );
    stored_before_release_2(&a, 30).await;
    let migrations = release_2();
    let (ra, rb) = tokio::join!(migrate(&a, &migrations), migrate(&b, &migrations));
    let runs: Vec<_> = ra
        .ran
        .iter()
        .chain(&rb.ran)
        .map(|run| run.version)
        .collect();
    let mut sorted = runs.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [1, 2], "each step ran once: {ra:?} {rb:?}");
    let changed: u64 = ra.ran.iter().chain(&rb.ran).map(|r| r.report.changed).sum();
    assert_eq!(changed, 60, "{ra:?} {rb:?}");
    let history = b.dialogue_history(&release_2()).await.unwrap();
    assert!(history
        .iter()
        .all(|e| e.recorded.as_ref().is_some_and(|r| r.success)));
}

/// A run killed in its first step (after one page) leaves the step recorded as started;
/// the next run resumes it and changes only what was left, and a run killed in the second
/// step leaves the first done: the run after it does only the rest of the second.
pub async fn a_killed_migration_is_resumed(ctx: Ctx) {
    let db = ctx.database(ctx.options()).await;
    stored_before_release_2(&db, 20).await;
    // Runs the migrations, killed (the task panics) after the first page of step `kill_in`.
    let killed_in = |kill_in: i64| {
        let db = db.clone();
        async move {
            tokio::spawn(async move {
                let _ = db
                    .migrate_dialogues(
                        &release_2(),
                        &StepOptions::default().batch(5),
                        &mut |version, report| {
                            if version == kill_in {
                                panic!(
                                    "killed in step {version} after {} dialogues",
                                    report.changed
                                )
                            }
                        },
                    )
                    .await;
            })
            .await
        }
    };
    assert!(killed_in(1).await.is_err(), "the first run was to die");
    let history = db.dialogue_history(&release_2()).await.unwrap();
    let started = history[0]
        .recorded
        .as_ref()
        .expect("step 1 recorded as started");
    assert!(!started.success, "{started:?}");
    assert!(history[1].recorded.is_none());

    // Step 1 resumed and finished (15 left), step 2 killed after 5 of 20.
    assert!(killed_in(2).await.is_err(), "the second run was to die");
    let history = db.dialogue_history(&release_2()).await.unwrap();
    assert!(
        history[0].recorded.as_ref().is_some_and(|r| r.success),
        "{history:?}"
    );
    assert!(
        history[1].recorded.as_ref().is_some_and(|r| !r.success),
        "{history:?}"
    );
    for i in 1..=20 {
        assert_eq!(
            db.storage().get_state(&key(i)).await.unwrap().as_deref(),
            Some("Form:name")
        );
    }

    // The lock of the killed runs is gone with them (their session, or their lease).
    let report = migrate(&db, &release_2()).await;
    assert_eq!(report.already_done, [1], "{report:?}");
    assert_eq!(report.ran.len(), 1, "step 1 is not run again: {report:?}");
    assert!(report.ran[0].resumed, "{report:?}");
    assert_eq!(report.ran[0].report.changed, 15, "{report:?}");
    let history = db.dialogue_history(&release_2()).await.unwrap();
    assert!(history
        .iter()
        .all(|e| e.recorded.as_ref().is_some_and(|r| r.success)));
}

/// Code that declares fewer steps than ran (an old instance restarting during a rolling
/// deploy) leaves the newer ones as they are and starts.
pub async fn older_code_leaves_newer_steps_alone(ctx: Ctx) {
    let db = ctx.database(ctx.options()).await;
    stored_before_release_2(&db, 2).await;
    migrate(&db, &release_2()).await;
    let release_1 = DialogueMigrations::new().step(
        1,
        DialogueStep::rename_state("Form:nmae", "Form:name").unwrap(),
    );
    let report = migrate(&db, &release_1).await;
    assert!(report.ran.is_empty());
    assert_eq!((report.already_done, report.unknown), (vec![1], vec![2]));
}
