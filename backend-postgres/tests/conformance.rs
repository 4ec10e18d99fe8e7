//! The whole conformance suite against the PostgreSQL server of
//! `FSMSTORE_TEST_POSTGRES_URL` (default: the local one), each case on its own tables.

mod common;

fsmstore_conformance::conformance_suite!(all: common::backend);
fsmstore_conformance::conformance_suite!(stored_rows: common::backend);

/// The storage group again, in the layout of Python's aiogram-sqlalchemy-storage.
mod aiogram_layout {
    use super::common;
    fsmstore_conformance::conformance_suite!(aiogram_layout: common::backend);
}

/// The whole suite through PgBouncer in transaction mode (`pooler=transaction`):
/// `FSMSTORE_TEST_PGBOUNCER_URL`, default `postgres://postgres@127.0.0.1:6432/postgres`
/// (`scripts/pgbouncer.sh start`).
mod pgbouncer {
    use super::common;
    fsmstore_conformance::conformance_suite!(all: common::pgbouncer_backend);
}
