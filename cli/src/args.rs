//! The command line.

use clap::{Args, Parser, Subcommand, ValueEnum};
use fsmstore::migrate::{Dialect, MigrationTarget};
use fsmstore::{Database, SchemaPolicy, StorageOptions};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  failure: connection, database or input error, or a conformance case failed
  2  invalid command line
  3  the schema needs attention: outdated (run `fsmstore migrate up`), newer than this
     binary, drifted or dirty";

/// fsmstore: persistent FSM state for chat bots. Migrations, conformance, inspection.
#[derive(Debug, Parser)]
#[command(name = "fsmstore", version, after_help = EXIT_CODES)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every command takes.
#[derive(Debug, Clone, Args)]
pub(crate) struct Global {
    /// Database URL: sqlite://file.db, sqlite::memory:, postgres://…, mysql://…
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        default_value = "sqlite://fsmstore.db",
        hide_env_values = true
    )]
    pub(crate) url: String,
    /// The FSM table (default: the URL's `table=`, else aiogram_fsm_data).
    #[arg(long = "table", global = true, value_name = "TABLE")]
    pub(crate) table_flag: Option<String>,
    /// The version table (default: the URL's `version_table=`, else fsmstore_migrations).
    #[arg(long = "version-table", global = true, value_name = "TABLE")]
    pub(crate) version_table_flag: Option<String>,
    /// The FSM table in effect: `--table`, else the URL's, else the default
    /// ([`Global::resolve`]).
    #[arg(skip)]
    pub(crate) table: String,
    /// The version table in effect.
    #[arg(skip)]
    pub(crate) version_table: String,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

impl Global {
    /// Settles the tables in effect: `--table` or the URL's `table=` (both given must
    /// agree), else the default; the same for the version table.
    pub(crate) fn resolve(&mut self) -> fsmstore::Result<()> {
        use fsmstore::core::DatabaseUrl;
        let pick = |flag: &Option<String>, name: &str, default: &str| {
            let from_url = DatabaseUrl::parameter_of(&self.url, name)?;
            match (flag, from_url) {
                (Some(flag), Some(url)) if *flag != url => Err(fsmstore::Error::Config(format!(
                    "{name} is {url:?} in the URL and {flag:?} on the command line: give it once"
                ))),
                (Some(flag), _) => Ok(flag.clone()),
                (None, Some(url)) => Ok(url),
                (None, None) => Ok(default.to_owned()),
            }
        };
        self.table = pick(&self.table_flag, "table", fsmstore::core::DEFAULT_TABLE)?;
        self.version_table = pick(
            &self.version_table_flag,
            "version_table",
            fsmstore::core::DEFAULT_VERSION_TABLE,
        )?;
        Ok(())
    }

    /// Storage options for the tables of the command line (the URL's are the URL's) with
    /// `policy`.
    pub(crate) fn options(&self, policy: SchemaPolicy) -> fsmstore::Result<StorageOptions> {
        let mut options = StorageOptions::default().schema(policy);
        if let Some(table) = &self.table_flag {
            options = options.table(table)?;
        }
        if let Some(table) = &self.version_table_flag {
            options = options.version_table(table)?;
        }
        Ok(options)
    }

    /// Opens the database of `--url` for these tables with `policy`, runs `work` on it and
    /// closes it, whatever `work` returned. `access` says whether the command writes: a
    /// read-only command opens a SQLite file with `mode=ro` (unless the URL sets a mode), so
    /// it never creates a file and works where the file is not writable.
    pub(crate) async fn with_database<T>(
        &self,
        policy: SchemaPolicy,
        access: Access,
        work: impl AsyncFnOnce(&Database) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let url = with_access(&self.url, access)?;
        // The command decides what happens to the schema (migrate and inspect trust it,
        // so a dirty or outdated one can be looked at and repaired): a bot URL's
        // `schema=upgrade` is not a conflict here.
        let url = fsmstore::core::DatabaseUrl::with_parameter(&url, "schema", None)?;
        let db = fsmstore::open_with(&url, self.options(policy)?).await?;
        let result = work(&db).await;
        let closed = db.close().await;
        let value = result?;
        closed?;
        Ok(value)
    }
}

/// Whether a command writes to the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Reads only: a SQLite file is opened `mode=ro`, never created.
    ReadOnly,
    /// Writes to a database that must exist (purge, migrate down): a missing SQLite file
    /// is an error, not a new empty file.
    Existing,
    /// Writes, creating a missing SQLite file.
    ReadWrite,
}

/// `url` opened as `access` needs where the backend can say so: a SQLite file read-only
/// (`mode=ro`) or as an existing file (`mode=rw`), unless the URL sets a mode. The URL is
/// parsed, not searched: `mode=` inside another parameter's value is not a mode.
pub(crate) fn with_access(url: &str, access: Access) -> fsmstore::Result<String> {
    use fsmstore::core::DatabaseUrl;
    let mode = match access {
        Access::ReadOnly => "ro",
        Access::Existing => "rw",
        Access::ReadWrite => return Ok(url.to_owned()),
    };
    if DatabaseUrl::scheme_of(url)? != "sqlite" {
        return Ok(url.to_owned());
    }
    let memory = DatabaseUrl::parse_file(url)?.file_path()? == ":memory:";
    if memory || DatabaseUrl::parameter_of(url, "mode")?.is_some() {
        return Ok(url.to_owned());
    }
    DatabaseUrl::with_parameter(url, "mode", Some(mode))
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Apply, revert, record and print migrations of the FSM table.
    #[command(subcommand)]
    Migrate(MigrateCommand),
    /// Run the conformance suite against the database (in scratch tables it drops).
    Conformance(ConformanceArgs),
    /// Look at what the table holds.
    #[command(subcommand)]
    Inspect(InspectCommand),
    /// Delete conversations not written for a while.
    Purge(PurgeArgs),
    /// Create and migrate a database and run a simulated form bot for many users.
    Demo(DemoArgs),
    /// Measure fsmstore per call (and, with --floor, the bare driver beside it) in a
    /// scratch table it drops afterwards.
    Bench(BenchArgs),
    /// Move the dialogues of teloxide's own storages (`SqliteStorage`, `PostgresStorage`'s
    /// `teloxide_dialogues`, `RedisStorage`'s chat-id keys; Json serializer) into the FSM
    /// table, readable by fsmstore-teloxide. The source is only read; dialogues already
    /// in the FSM table are kept unless --replace.
    TeloxideImport(TeloxideImportArgs),
    /// Copy every dialogue from one database, table or layout to another, with its state,
    /// data and write time (so TTLs go on where they were), in batches. Running it again
    /// writes only what is missing or changed; a row written later at the destination is
    /// kept unless --replace. Tables come from each URL's `table=`.
    Copy(CopyArgs),
    /// List the stored states with their counts (with --known, mark the ones the code does
    /// not know), or change the stored dialogues one step at a time: rename a state or a
    /// group, drop states, rename, drop or default a data field. Each dialogue is
    /// rewritten on its own, never over a bot's write, its TTL kept; running a step again
    /// changes nothing it changed. These steps are not recorded: the versioned steps a
    /// bot declares run from its code (`Database::migrate_dialogues`), not from here.
    States(StatesArgs),
}

/// Arguments of `fsmstore states`.
#[derive(Debug, Args)]
pub(crate) struct StatesArgs {
    /// A step to run; without one, the stored states are listed.
    #[command(subcommand)]
    pub(crate) step: Option<StatesCommand>,
    /// The states the code knows, comma-separated, or `@FILE` with one per line (`#`
    /// starts a comment): states stored but not listed are marked unknown, and the command
    /// exits 1 when there are any.
    #[arg(long, value_name = "LIST|@FILE")]
    pub(crate) known: Option<String>,
}

/// One step of `fsmstore states`.
#[derive(Debug, Subcommand)]
pub(crate) enum StatesCommand {
    /// The dialogue steps a bot's code ran on this table (`Database::migrate_dialogues`),
    /// as recorded: version, description, when, how long, finished or not (a step not
    /// finished is resumed by the bot's next start).
    History,
    /// Dialogues in state OLD move to state NEW (`Form:nmae` → `Form:name`).
    Rename {
        /// The stored state.
        old: String,
        /// Its new name.
        new: String,
        #[command(flatten)]
        run: StepRunArgs,
    },
    /// Every state of group OLD moves to group NEW (`Form:*` → `Signup:*`).
    RenameGroup {
        /// The stored group (the part of a state before its `:`).
        old: String,
        /// Its new name.
        new: String,
        #[command(flatten)]
        run: StepRunArgs,
    },
    /// Dialogues in a state matching PATTERN (`*` any run of characters: `Old:*`) are
    /// deleted, or with --keep-data lose only their state.
    Drop {
        /// A state or pattern.
        pattern: String,
        /// Keep the data; clear only the state.
        #[arg(long)]
        keep_data: bool,
        #[command(flatten)]
        run: StepRunArgs,
    },
    /// Data field OLD becomes NEW in the dialogues whose state matches --in.
    RenameField {
        /// The stored field.
        old: String,
        /// Its new name.
        new: String,
        /// Only in these states (a state or pattern; `*`: every dialogue).
        #[arg(long = "in", value_name = "PATTERN", default_value = "*")]
        states: String,
        #[command(flatten)]
        run: StepRunArgs,
    },
    /// Data field FIELD is removed from the dialogues whose state matches --in.
    DropField {
        /// The field.
        field: String,
        /// Only in these states (a state or pattern; `*`: every dialogue).
        #[arg(long = "in", value_name = "PATTERN", default_value = "*")]
        states: String,
        #[command(flatten)]
        run: StepRunArgs,
    },
    /// Data field FIELD is set to VALUE (JSON: `"en"`, `0`, `[]`) where it is missing, in
    /// the dialogues whose state matches --in.
    DefaultField {
        /// The field.
        field: String,
        /// Its value, as JSON.
        value: String,
        /// Only in these states (a state or pattern; `*`: every dialogue).
        #[arg(long = "in", value_name = "PATTERN", default_value = "*")]
        states: String,
        #[command(flatten)]
        run: StepRunArgs,
    },
}

/// How a step of `fsmstore states` runs.
#[derive(Debug, Args)]
pub(crate) struct StepRunArgs {
    /// Count the dialogues the step would change; write nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Dialogues read per batch.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub(crate) batch: u64,
    /// Resume after this row id (a step that stopped prints it; running it again from the
    /// start is as right, only slower).
    #[arg(long, value_name = "ID")]
    pub(crate) after: Option<String>,
    /// Wait this long between batches (10ms, 1s): a gentler step beside a busy bot.
    #[arg(long, value_parser = crate::time::parse_age, value_name = "DURATION")]
    pub(crate) pause: Option<std::time::Duration>,
}

/// Arguments of `fsmstore copy`.
#[derive(Debug, Args)]
pub(crate) struct CopyArgs {
    /// The source (default: --url). Only read.
    #[arg(long, value_name = "URL")]
    pub(crate) from: Option<String>,
    /// The destination. Its table is created or upgraded to head unless the URL sets
    /// `schema=`.
    #[arg(long, value_name = "URL")]
    pub(crate) to: String,
    /// Rows read and written per batch.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub(crate) batch: u64,
    /// Overwrite rows of the destination even when written there later.
    #[arg(long)]
    pub(crate) replace: bool,
    /// Count what would be written; write nothing (with --verify: only compare).
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Afterwards compare both sides row by row (state, data, write time); exit 1 when
    /// they differ.
    #[arg(long)]
    pub(crate) verify: bool,
    /// Resume after this id (a copy that stopped prints the id to resume from).
    #[arg(long, value_name = "ID")]
    pub(crate) after: Option<String>,
}

/// Arguments of `fsmstore teloxide-import`.
#[derive(Debug, Args)]
pub(crate) struct TeloxideImportArgs {
    /// Where teloxide's storage is (default: --url): a SQLite, PostgreSQL or MySQL URL
    /// holding its table, or the Redis URL teloxide's `RedisStorage` was opened with.
    #[arg(long, value_name = "URL")]
    pub(crate) source: Option<String>,
    /// teloxide's table in an SQL source (default `teloxide_dialogues`). A Redis source has
    /// none: teloxide keeps each dialogue under its chat id.
    #[arg(long, value_name = "TABLE")]
    pub(crate) from: Option<String>,
    /// The bot id of the keys (as `TeloxideStorage::bot_id`; 0 by default).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub(crate) bot: i64,
    /// Overwrite dialogues the FSM table already holds (by default they are kept: a bot
    /// that went live since an earlier import keeps its users' current steps).
    #[arg(long)]
    pub(crate) replace: bool,
    /// Count what would be imported, kept and replaced; write nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum MigrateCommand {
    /// Upgrade: to head (default), to a version, or +K steps.
    Up {
        /// head, a version (3) or +K.
        #[arg(long, default_value = "head", value_parser = parse_target)]
        to: MigrationTarget,
    },
    /// Downgrade: one step (default), to a version, to base, or -K steps.
    Down {
        /// base, a version (1) or -K.
        #[arg(long, default_value = "-1", value_parser = parse_target, allow_hyphen_values = true)]
        to: MigrationTarget,
    },
    /// Print the applied version and whether it is head.
    Current,
    /// Print every migration: applied or pending, checksum state, when and how long.
    History,
    /// Print the SQL of a range of migrations without a database (Alembic's --sql).
    Sql {
        /// sqlite, postgres or mysql.
        #[arg(long, value_parser = parse_dialect)]
        dialect: Dialect,
        /// From this version (default 0).
        #[arg(long, default_value_t = 0)]
        from: i64,
        /// To this version (default head).
        #[arg(long)]
        to: Option<i64>,
    },
    /// Record a version as applied without running its SQL (adopt a table; repair a
    /// dirty migration).
    Stamp {
        /// head, base or a version (not a step: a stamp names the version the table is at).
        #[arg(value_parser = parse_stamp_target, allow_hyphen_values = true)]
        version: MigrationTarget,
    },
    /// Write the migrations as files for another migration tool (strategy 1: the FSM
    /// table in your application's own migrations).
    Export {
        /// sqlx, refinery or plain.
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// sqlite, postgres or mysql.
        #[arg(long, value_parser = parse_dialect)]
        dialect: Dialect,
        /// The folder to write to (created if missing).
        #[arg(long)]
        dir: std::path::PathBuf,
        /// Number the files from this version + 1, to follow your own migrations (the
        /// last number must fit the format's version type: refinery's i32, sqlx's i64).
        #[arg(long, default_value_t = 0)]
        version_offset: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ExportFormat {
    /// sqlx-cli reversible migrations: `<VERSION>_<name>.up.sql` / `.down.sql`.
    Sqlx,
    /// refinery: `V<VERSION>__<name>.sql` (up only: refinery does not revert).
    Refinery,
    /// Plain `NNNN_<name>.up.sql` / `.down.sql`.
    Plain,
}

/// A storage key given by its parts.
#[derive(Debug, Clone, Args)]
pub(crate) struct KeyParts {
    /// The chat id.
    #[arg(long, allow_negative_numbers = true, requires = "user")]
    pub(crate) chat: Option<i64>,
    /// The user id.
    #[arg(long, allow_negative_numbers = true, requires = "chat")]
    pub(crate) user: Option<i64>,
    /// The bot id (part of the id only with a key layout that includes it).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub(crate) bot: i64,
    /// The forum topic.
    #[arg(long)]
    pub(crate) thread: Option<i64>,
    /// The destiny (default `default`).
    #[arg(long)]
    pub(crate) destiny: Option<String>,
    /// The business connection id.
    #[arg(long)]
    pub(crate) business: Option<String>,
}

impl KeyParts {
    /// The key, when --chat and --user are given.
    pub(crate) fn key(&self) -> Option<fsmstore::StorageKey> {
        use fsmstore::{BotId, ChatId, StorageKey, UserId};
        let (chat, user) = (self.chat?, self.user?);
        let mut key = StorageKey::new(BotId(self.bot), ChatId(chat), UserId(user));
        if let Some(thread) = self.thread {
            key = key.with_thread(thread);
        }
        if let Some(business) = &self.business {
            key = key.with_business_connection(business.clone());
        }
        if let Some(destiny) = &self.destiny {
            key = key.for_destiny(destiny.clone());
        }
        Some(key)
    }
}

#[derive(Debug, Args)]
pub(crate) struct ConformanceArgs {
    /// Which cases: storage, migrations or all.
    #[arg(long, value_enum, default_value = "all")]
    pub(crate) group: Group,
    /// Only cases whose name contains this.
    #[arg(long)]
    pub(crate) filter: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Group {
    /// The storage cases.
    Storage,
    /// The schema cases.
    Migrations,
    /// Both.
    All,
}

#[derive(Debug, Subcommand)]
pub(crate) enum InspectCommand {
    /// List conversations by id.
    List {
        /// Only those in this state.
        #[arg(long)]
        state: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u64,
        /// Start after this id (paging).
        #[arg(long)]
        after: Option<String>,
    },
    /// Print one conversation: by its row id (e.g. fsm:-100:7), or by the key's parts
    /// (--chat and --user, optionally --bot, --thread, --destiny, --business), built with
    /// the table's key layout.
    Get {
        /// The row id.
        #[arg(required_unless_present = "chat", conflicts_with_all = ["chat", "user", "bot", "thread", "destiny", "business"])]
        key: Option<String>,
        #[command(flatten)]
        parts: KeyParts,
    },
    /// Rows, rows per state (fresh and past the TTL apart) as a funnel, oldest and
    /// newest update; with --age, how long the rows of each state have waited.
    Stats {
        /// Age buckets per state: rows not written for under 1h, 1h to 1d, 1d to 7d, and
        /// over 7d (`--age 1h,1d,7d`; ascending ages).
        #[arg(long, value_delimiter = ',', value_parser = crate::time::parse_age)]
        age: Vec<std::time::Duration>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct PurgeArgs {
    /// Delete rows not written for this long: 90s, 45m, 12h, 30d, 2w.
    #[arg(long, value_parser = crate::time::parse_age, required_unless_present = "expired", conflicts_with = "expired")]
    pub(crate) older_than: Option<std::time::Duration>,
    /// Delete the rows past the storage's TTL (`?ttl=30d` in the URL): they read as
    /// absent already.
    #[arg(long)]
    pub(crate) expired: bool,
    /// Only count what would be deleted.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Rows deleted per statement.
    #[arg(long, default_value_t = 1000)]
    pub(crate) batch: u64,
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Simulated users.
    #[arg(long, default_value_t = 1000)]
    pub(crate) users: i64,
    /// Users served at once.
    #[arg(long, default_value_t = 16)]
    pub(crate) concurrency: usize,
}

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Conversation keys per phase.
    #[arg(long, default_value_t = 2000)]
    pub(crate) keys: i64,
    /// Tasks updating one key at once in the concurrency phase.
    #[arg(long, default_value_t = 32)]
    pub(crate) concurrency: usize,
    /// Rows put in the table before the phases (to show the cost per call stays flat).
    #[arg(long, default_value_t = 0)]
    pub(crate) prefill: i64,
    /// Also run every phase with the bare driver, interleaved, and print the ratio.
    #[arg(long)]
    pub(crate) floor: bool,
    /// Rounds of all phases; the report shows medians.
    #[arg(long, default_value_t = 3)]
    pub(crate) rounds: usize,
    /// Also run teloxide's calls through the adapter (get/update/remove dialogue) beside
    /// the plain storage calls they make, and print the ratio.
    #[arg(long)]
    pub(crate) teloxide: bool,
    /// Also measure per-key locks (lock beside the driver's bare lock + unlock), and count
    /// the lost updates of concurrent read-modify-writes of one key from two handles,
    /// without and with the lock.
    #[arg(long)]
    pub(crate) isolation: bool,
    /// Also run every phase through a handle with `ttl=30d` on the same table, beside the
    /// handle without, and print the ratio (the cost of expiry checks).
    #[arg(long, conflicts_with = "layout")]
    pub(crate) ttl: bool,
    /// Also run every phase through a handle in the aiogram-sqlalchemy layout (Python's
    /// table, on a scratch table of its own) beside a handle in fsmstore's layout, and
    /// print the ratio (the cost of sharing a table with Python bots).
    #[arg(long)]
    pub(crate) layout: bool,
    /// Also run every phase through a handle opened with URL on the same scratch table,
    /// beside the plain handle (repeatable): `?pooler=transaction` on the same server
    /// compares unnamed statements with prepared ones, a pooler's address pooled with
    /// direct, another Galera node a local one.
    #[arg(long = "beside", value_name = "URL")]
    pub(crate) beside: Vec<String>,
    /// Throughput with this many tasks at once (`1,8,32,64`), each running dialogue steps
    /// (set_state, update_data, get_data) on keys of its own, through the plain handle and
    /// every other one.
    #[arg(long, value_delimiter = ',')]
    pub(crate) tasks: Vec<usize>,
    /// What each task of --tasks runs: `mixed` (set_state, update_data, get_data),
    /// `writes` (set_state, set_data, update_data: what coalesced writes speed up; compare
    /// with --beside 'URL?write_batches=0') or `reads` (get_state, get_data of keys
    /// written before the clock starts).
    #[arg(long, value_enum, default_value = "mixed")]
    pub(crate) workload: crate::bench::workload::Workload,
    /// A dialogue migration at scale instead: fill N dialogues in one state, then rename
    /// that state while a bot's workload (--tasks, its first count; 8 by default) runs on
    /// other keys; prints the rename's time and the workload's calls/s, p50 and p99 alone
    /// and during the rename.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub(crate) rename: Option<u64>,
}

fn parse_target(text: &str) -> Result<MigrationTarget, String> {
    text.parse().map_err(|err: fsmstore::Error| err.to_string())
}

fn parse_stamp_target(text: &str) -> Result<MigrationTarget, String> {
    match parse_target(text)? {
        MigrationTarget::Relative(_) => Err(format!(
            "{text:?} is a step; stamp takes head, base or a version (the one the table is at)"
        )),
        target => Ok(target),
    }
}

fn parse_dialect(text: &str) -> Result<Dialect, String> {
    text.parse().map_err(|err: fsmstore::Error| err.to_string())
}
