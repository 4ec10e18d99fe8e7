//! The whole conformance suite against the PostgreSQL server of
//! `FSMSTORE_TEST_POSTGRES_URL` (default: the local one), each case on its own tables; in
//! the layout of Python's aiogram-sqlalchemy-storage (`aiogram_layout::`); and through
//! PgBouncer in transaction mode (`pgbouncer::`, `FSMSTORE_TEST_PGBOUNCER_URL`, default
//! `postgres://postgres@127.0.0.1:6432/postgres`, `scripts/pgbouncer.sh start`).
//!
//! A server that is not there leaves its cases listed as ignored, with the reason, in the
//! summary (`harness = false`: [`fsmstore_conformance::Suite`]); under `CI` they fail.

mod common;

fn main() -> std::process::ExitCode {
    let mut suite = fsmstore_conformance::Suite::new();
    suite.backend("", common::backend);
    suite.backend("pgbouncer::", common::pgbouncer_backend);
    suite.run()
}
