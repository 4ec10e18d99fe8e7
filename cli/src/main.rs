//! `fsmstore`: migrations, conformance against a live database, inspection, purge and a
//! demo, for any database fsmstore supports.
#![forbid(unsafe_code)]

mod args;
mod bench;
mod conformance;
mod copy;
mod demo;
mod export;
mod inspect;
mod migrate;
mod output;
mod states;
mod teloxide_import;
mod time;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};

/// Exit codes, also listed in `--help`.
pub(crate) mod exit {
    /// A command failed (connection, database, bad input), or a conformance case failed.
    pub(crate) const FAILURE: u8 = 1;
    /// The schema needs attention: outdated, newer than this binary, drifted or dirty.
    pub(crate) const SCHEMA: u8 = 3;
}

fn main() -> ExitCode {
    quiet_on_broken_pipe();
    let cli = Cli::parse();
    // Off unless asked: `RUST_LOG=fsmstore=debug` prints a span per storage call and
    // migration step (never data values or passwords) on stderr.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            .with_writer(std::io::stderr)
            .init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: could not start the async runtime: {err}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let (url, json) = (cli.global.url.clone(), cli.global.json);
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            let line = output::one_line(&err, &url);
            if json {
                output::json(&output::error_json(&err, &line, &url));
            } else {
                eprintln!("error: {line}");
            }
            ExitCode::from(exit_code(&err))
        }
    }
}

/// `fsmstore inspect list | head -1`: once the reader has gone, stop quietly as other Unix
/// tools do (Rust ignores SIGPIPE, so `println!` panics on the closed pipe: exit 101 with a
/// panic message, before this hook). Every other panic is reported as before.
fn quiet_on_broken_pipe() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        report(info);
    }));
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut global = cli.global;
    global.resolve()?;
    match cli.command {
        Command::Migrate(command) => migrate::run(&global, command).await,
        Command::Conformance(args) => conformance::run(&global, args).await,
        Command::Inspect(command) => inspect::run(&global, command).await,
        Command::Purge(args) => inspect::purge(&global, args).await,
        Command::Demo(args) => demo::run(&global, args).await,
        Command::Bench(args) => bench::run(&global, args).await,
        Command::TeloxideImport(args) => teloxide_import::run(&global, args).await,
        Command::Copy(args) => copy::run(&global, args).await,
        Command::States(args) => states::run(&global, args).await,
    }
}

fn exit_code(err: &anyhow::Error) -> u8 {
    match err
        .downcast_ref::<fsmstore::Error>()
        .map(fsmstore::Error::kind)
    {
        Some(fsmstore::ErrorKind::Schema) => exit::SCHEMA,
        _ => exit::FAILURE,
    }
}
