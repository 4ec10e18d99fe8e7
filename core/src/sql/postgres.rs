//! PostgreSQL statements (12+). `data` is `JSONB`; `||` is the shallow merge.

use super::{
    common_version_queries, PostgresBatchQueries, PostgresQueries, RowQueries, VersionQueries,
};

pub(super) fn queries(t: &str, ttl: Option<std::time::Duration>) -> PostgresQueries {
    // `fresh(x)`: row `x` was written within the TTL, by the server's clock (always true
    // without one). Upserts name the existing row `t`.
    let fresh = |x: &str| match ttl {
        // Written as an expression of `updated_at`, so the planner keeps to the primary
        // key instead of mixing in the `updated_at` index (measured: 3x slower reads).
        // `n * interval '1 millisecond'`: before PostgreSQL 15 an interval literal of more
        // than 2^31 milliseconds (about 25 days) is out of range.
        Some(ttl) => format!(
            "{x}updated_at + {} * interval '1 millisecond' >= now()",
            ttl.as_millis()
        ),
        None => "true".to_owned(),
    };
    let and_fresh = if ttl.is_some() {
        format!(" AND {}", fresh(""))
    } else {
        String::new()
    };
    let where_fresh = if ttl.is_some() {
        format!(" WHERE {}", fresh(""))
    } else {
        String::new()
    };
    let (f, ft) = (fresh(""), fresh("t."));
    let td = readable("t.data");
    // One statement: delete the row when it has no data left (or expired), else clear the
    // state and return `returning` of the data it keeps.
    let clear_state = |returning: &str| {
        format!(
            "WITH gone AS (DELETE FROM {t} WHERE id = $1 AND (data = '{{}}'::jsonb OR NOT ({f})) RETURNING id) \
             UPDATE {t} SET state = NULL, updated_at = now() \
             WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM gone) RETURNING {returning}"
        )
    };
    // The upserts' conflict clauses, shared by the one-row statements and the batches.
    let on_state = format!(
        "ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, \
         data = CASE WHEN {ft} THEN t.data ELSE '{{}}'::jsonb END, updated_at = now()"
    );
    let on_data = format!(
        "ON CONFLICT (id) DO UPDATE SET data = EXCLUDED.data, \
         state = CASE WHEN {ft} THEN t.state ELSE NULL END, updated_at = now()"
    );
    let on_record = "ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, data = EXCLUDED.data, \
                     updated_at = now()"
        .to_owned();
    let on_merge = format!(
        "ON CONFLICT (id) DO UPDATE SET \
         data = CASE WHEN {ft} THEN {td} || EXCLUDED.data ELSE EXCLUDED.data END, \
         state = CASE WHEN {ft} THEN t.state ELSE NULL END, updated_at = now()"
    );
    let on_transition = format!(
        "ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, \
         data = CASE WHEN {ft} THEN {td} || EXCLUDED.data ELSE EXCLUDED.data END, \
         updated_at = now()"
    );
    let batch = PostgresBatchQueries {
        upsert_state: format!(
            "INSERT INTO {t} AS t (id, state) {} {on_state}",
            many(ID_STATE)
        ),
        upsert_data: format!(
            "INSERT INTO {t} AS t (id, data) {} {on_data}",
            many(ID_DATA)
        ),
        upsert_record: format!(
            "INSERT INTO {t} AS t (id, state, data) {} {on_record}",
            many(ID_STATE_DATA)
        ),
        merge_data: format!(
            "INSERT INTO {t} AS t (id, data) {} {on_merge} RETURNING id, data",
            many(ID_DATA)
        ),
        transition: format!(
            "INSERT INTO {t} AS t (id, state, data) {} {on_transition} RETURNING id, data",
            many(ID_STATE_DATA)
        ),
        take: format!("DELETE FROM {t} WHERE id = ANY($1::text[]) RETURNING id, {f}"),
    };
    PostgresQueries {
        row: RowQueries {
            get_record: format!("SELECT state, data FROM {t} WHERE id = $1{and_fresh}"),
            get_state: format!("SELECT state FROM {t} WHERE id = $1{and_fresh}"),
            get_data: format!("SELECT data FROM {t} WHERE id = $1{and_fresh}"),
            upsert_state: format!("INSERT INTO {t} AS t (id, state) VALUES ($1, $2) {on_state}"),
            // One statement: delete the row when it has no data left (or expired), else
            // clear the state and return the data it keeps (a `transition` to no state
            // with no patch).
            clear_state: clear_state("data = '{}'::jsonb"),
            upsert_data: format!("INSERT INTO {t} AS t (id, data) VALUES ($1, $2) {on_data}"),
            clear_data: format!(
                "WITH gone AS (DELETE FROM {t} WHERE id = $1 AND (state IS NULL OR NOT ({f})) RETURNING id) \
                 UPDATE {t} SET data = '{{}}'::jsonb, updated_at = now() \
                 WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM gone) RETURNING state IS NULL"
            ),
            upsert_record: format!(
                "INSERT INTO {t} (id, state, data) VALUES ($1, $2, $3) {on_record}"
            ),
            delete: format!("DELETE FROM {t} WHERE id = $1"),
            count: format!("SELECT COUNT(*) FROM {t}{where_fresh}"),
        },
        get_value: format!("SELECT data -> $2::text FROM {t} WHERE id = $1{and_fresh}"),
        merge_data: format!(
            "INSERT INTO {t} AS t (id, data) VALUES ($1, $2) {on_merge} RETURNING data"
        ),
        // The row holds a state or a non-empty patch here (the backend runs `clear_state`
        // for "no state, empty patch"), so it is never left empty.
        transition: format!(
            "INSERT INTO {t} AS t (id, state, data) VALUES ($1, $2, $3) {on_transition} RETURNING data"
        ),
        take: format!("DELETE FROM {t} WHERE id = $1 RETURNING {f}"),
        clear_state_data: clear_state(&readable("data")),
        delete_if_empty: format!(
            "DELETE FROM {t} WHERE id = $1 AND state IS NULL AND data = '{{}}'::jsonb"
        ),
        batch,
    }
}

/// A batch's columns: name, the parameter's array element type, and how the column's value
/// is written from the element (`{}` stands for it).
type Columns = &'static [(&'static str, &'static str, &'static str)];
const ID_STATE: Columns = &[("id", "text", "{}"), ("state", "text", "{}")];
const ID_DATA: Columns = &[("id", "text", "{}"), ("data", "jsonb", "{}")];
const ID_STATE_DATA: Columns = &[
    ("id", "text", "{}"),
    ("state", "text", "{}"),
    ("data", "jsonb", "{}"),
];
const ID_TEXT_DATA: Columns = &[("id", "text", "{}"), ("data", "jsonb", "{}::text")];
const ID_STATE_TEXT_DATA: Columns = &[
    ("id", "text", "{}"),
    ("state", "text", "{}"),
    ("data", "jsonb", "{}::text"),
];

/// The rows of a batch: one array parameter per column, element `i` of each one row
/// (`SELECT u.id, u.state FROM unnest($1::text[], $2::text[]) AS u(id, state)`).
fn many(columns: Columns) -> String {
    let select: Vec<String> = columns
        .iter()
        .map(|(name, _, value)| value.replace("{}", &format!("u.{name}")))
        .collect();
    let arrays: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, (_, element, _))| format!("${}::{element}[]", i + 1))
        .collect();
    let names: Vec<&str> = columns.iter().map(|(name, _, _)| *name).collect();
    format!(
        "SELECT {} FROM unnest({}) AS u({})",
        select.join(", "),
        arrays.join(", "),
        names.join(", ")
    )
}

/// The smallest magnitude that reads as infinity as an `f64` (2^1024 - 2^970: halfway
/// between `f64::MAX` and the next power of two rounds up). A stored number this large is
/// valid `JSONB` (`numeric`), but no client reads it back as a JSON number.
const F64_OVERFLOW: &str = "179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977587207096330286416692887910946555547851940402630657488671505820681908902000708383676273854845817711531764475730270069855571366959622842914819860834936475292719074168444365510704342711559699508093042880177904174497792";

/// `data`, a `JSONB` expression, as a merge may start from it: when it holds a number past
/// `f64` (written by another client), the expression fails the statement with SQLSTATE
/// 22P02, as text that is not JSON does, so the merge writes nothing and the backend
/// reports corrupt data — as SQLite and MySQL do, which can not read such a row either.
/// Without it the merge was committed and then its `RETURNING` failed to decode: an error
/// for a write that happened.
fn readable(data: &str) -> String {
    format!(
        "CASE WHEN jsonb_path_exists({data}, '$.** ? (@.type() == \"number\" && (@ >= {F64_OVERFLOW} || @ <= -{F64_OVERFLOW}))') \
         THEN ('stored data holds a number past f64' || left({data}::text, 0))::jsonb ELSE {data} END"
    )
}

/// `data` of a table in the aiogram layout as `JSONB` (`''` and `NULL` read as `{}`); text
/// that is not JSON fails the statement with SQLSTATE 22P02, which the backend reports as
/// corrupt data.
/// JSON `null` is empty data too, as every backend reads it.
const AIOGRAM_DATA: &str = "COALESCE(NULLIF(NULLIF(data, ''), 'null')::jsonb, '{}'::jsonb)";

/// The statements on a table in the layout of `aiogram-sqlalchemy-storage` (schema
/// version 1): data is JSON text (`VARCHAR`), `NULL` or `''` when empty, no `updated_at`.
/// Data is bound and returned as `JSONB`, cast to and from the text column inside each
/// statement, so `update_data` is still one statement (`jsonb ||`) and the backend runs the
/// same calls as in fsmstore's layout. Casting `JSONB` to text writes `{"a": 1}`, which
/// Python's `json.loads` reads.
pub(super) fn aiogram_queries(t: &str) -> PostgresQueries {
    let d = AIOGRAM_DATA;
    // The stored object a merge starts from. `jsonb ||` would append to an array, so a
    // value that is not an object fails the statement as text that is not JSON would
    // (22P02, reported as corrupt data) and the row stays as it was.
    let td = d.replace("(data", "(t.data");
    let td = readable(&format!(
        "CASE WHEN jsonb_typeof({td}) = 'object' THEN {td} \
         ELSE ('stored data is not a JSON object: ' || t.data)::jsonb END"
    ));
    let empty = super::EMPTY_TEXT_DATA;
    let live = super::LIVE_TEXT_ROW;
    let on_state = "ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state";
    let on_data = "ON CONFLICT (id) DO UPDATE SET data = EXCLUDED.data";
    let on_record = "ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, data = EXCLUDED.data";
    let on_merge =
        format!("ON CONFLICT (id) DO UPDATE SET data = ({td} || EXCLUDED.data::jsonb)::text");
    let on_transition = format!(
        "ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, \
         data = ({td} || EXCLUDED.data::jsonb)::text"
    );
    let batch = PostgresBatchQueries {
        upsert_state: format!("INSERT INTO {t} AS t (id, state) {} {on_state}", many(ID_STATE)),
        upsert_data: format!(
            "INSERT INTO {t} AS t (id, data) {} {on_data}",
            many(ID_TEXT_DATA)
        ),
        upsert_record: format!(
            "INSERT INTO {t} AS t (id, state, data) {} {on_record}",
            many(ID_STATE_TEXT_DATA)
        ),
        merge_data: format!(
            "INSERT INTO {t} AS t (id, data) {} {on_merge} RETURNING id, data::jsonb",
            many(ID_TEXT_DATA)
        ),
        transition: format!(
            "INSERT INTO {t} AS t (id, state, data) {} {on_transition} RETURNING id, data::jsonb",
            many(ID_STATE_TEXT_DATA)
        ),
        take: format!(
            "UPDATE {t} SET state = NULL, data = NULL WHERE id = ANY($1::text[]) AND {live} RETURNING id, true"
        ),
    };
    PostgresQueries {
        row: RowQueries {
            get_record: format!("SELECT state, {d} FROM {t} WHERE id = $1"),
            get_state: format!("SELECT state FROM {t} WHERE id = $1"),
            get_data: format!("SELECT {d} FROM {t} WHERE id = $1"),
            upsert_state: format!("INSERT INTO {t} AS t (id, state) VALUES ($1, $2) {on_state}"),
            // Rows are emptied, never deleted (see `LIVE_TEXT_ROW`); `delete_if_empty`
            // only tidies an emptied row's data to `NULL`.
            clear_state: format!("UPDATE {t} SET state = NULL WHERE id = $1 RETURNING {empty}"),
            upsert_data: format!(
                "INSERT INTO {t} AS t (id, data) VALUES ($1, $2::jsonb::text) {on_data}"
            ),
            clear_data: format!("UPDATE {t} SET data = NULL WHERE id = $1 RETURNING state IS NULL"),
            upsert_record: format!(
                "INSERT INTO {t} (id, state, data) VALUES ($1, $2, $3::jsonb::text) {on_record}"
            ),
            delete: format!("UPDATE {t} SET state = NULL, data = NULL WHERE id = $1"),
            count: format!("SELECT COUNT(*) FROM {t} WHERE {live}"),
        },
        get_value: format!("SELECT {d} -> $2::text FROM {t} WHERE id = $1"),
        merge_data: format!(
            "INSERT INTO {t} AS t (id, data) VALUES ($1, $2::jsonb::text) {on_merge} \
             RETURNING data::jsonb"
        ),
        transition: format!(
            "INSERT INTO {t} AS t (id, state, data) VALUES ($1, $2, $3::jsonb::text) {on_transition} \
             RETURNING data::jsonb"
        ),
        take: format!(
            "UPDATE {t} SET state = NULL, data = NULL WHERE id = $1 AND {live} RETURNING true"
        ),
        clear_state_data: format!(
            "UPDATE {t} SET state = NULL WHERE id = $1 RETURNING {}",
            readable(&format!(
                "CASE WHEN jsonb_typeof({d}) = 'object' THEN {d} \
                 ELSE ('stored data is not a JSON object: ' || data)::jsonb END"
            ))
        ),
        delete_if_empty: format!(
            "UPDATE {t} SET data = NULL WHERE id = $1 AND state IS NULL AND {empty}"
        ),
        batch,
    }
}

pub(super) fn version_queries(v: &str) -> VersionQueries {
    let (insert, mark_success, set_success, delete) =
        common_version_queries(v, ["$1", "$2", "$3", "$4", "$5", "$6"]);
    VersionQueries {
        create: format!(
            "CREATE TABLE IF NOT EXISTS {v} (\
             table_name VARCHAR(63) NOT NULL, \
             version BIGINT NOT NULL, \
             description VARCHAR(255) NOT NULL, \
             installed_on TIMESTAMPTZ NOT NULL DEFAULT now(), \
             success BOOLEAN NOT NULL, \
             checksum VARCHAR(64) NOT NULL, \
             execution_time_ms BIGINT NOT NULL, \
             PRIMARY KEY (table_name, version))"
        ),
        select_applied: format!(
            "SELECT version, description, \
             (extract(epoch FROM installed_on) * 1000)::BIGINT, success, checksum, execution_time_ms \
             FROM {v} WHERE table_name = $1 ORDER BY version"
        ),
        insert,
        mark_success,
        set_success,
        delete,
        table_exists: "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1".to_owned(),
    }
}

/// Renames a state in a batch of rows (no column but `state` changes: `updated_at` kept).
fn rename_states(t: &str) -> String {
    format!("UPDATE {t} SET state = $1 WHERE state = $2 AND id > $3 AND id <= $4")
}

/// Moves the states of one group to another in a batch of rows.
fn regroup_states(t: &str) -> String {
    format!(
        "UPDATE {t} SET state = $1 || substr(state, $2::BIGINT::INT) \
         WHERE substr(state, 1, $3::BIGINT::INT) = $4 AND id > $5 AND id <= $6"
    )
}

pub(super) fn inspect_queries(t: &str, layout: crate::Layout) -> super::InspectQueries {
    let live = format!("{} AND ", super::LIVE_TEXT_ROW);
    let writes = match layout {
        crate::Layout::AiogramSqlalchemy => {
            let upsert = aiogram_queries(t).row.upsert_record;
            // An emptied row (see `LIVE_TEXT_ROW`) is no row.
            let insert_row = format!(
                "{} WHERE {t}.state IS NULL AND ({t}.data IS NULL OR {t}.data IN ('', '{{}}', 'null'))",
                upsert
            );
            // The old data compared as JSONB: the same object, however Python spaced it.
            let same = format!(
                "id = $3 AND state IS NOT DISTINCT FROM $4 AND {live}{AIOGRAM_DATA} = $5::jsonb"
            );
            super::RowWrites {
                put_row: insert_row.clone(),
                insert_row,
                replace_row: upsert,
                rewrite_row: format!(
                    "UPDATE {t} SET state = $1, data = $2::jsonb::text WHERE {same}"
                ),
                delete_row_if: format!(
                    "UPDATE {t} SET state = NULL, data = NULL WHERE {}",
                    same.replace("$3", "$1")
                        .replace("$4", "$2")
                        .replace("$5", "$3")
                ),
                rename_states: rename_states(t),
                regroup_states: regroup_states(t),
            }
        }
        _ => {
            // Milliseconds added to the epoch as an interval: exact, where
            // `to_timestamp(ms / 1000.0)` goes through a float.
            let insert = format!(
                "INSERT INTO {t} AS t (id, state, data, updated_at) VALUES ($1, $2, $3, \
                 COALESCE(to_timestamp(0) + $4::BIGINT * interval '1 millisecond', now())) \
                 ON CONFLICT (id) "
            );
            let replace_row = format!(
                "{insert}DO UPDATE SET state = EXCLUDED.state, data = EXCLUDED.data, \
                 updated_at = EXCLUDED.updated_at"
            );
            let ms = "floor(extract(epoch FROM updated_at) * 1000)::BIGINT";
            super::RowWrites {
                rename_states: rename_states(t),
                regroup_states: regroup_states(t),
                rewrite_row: format!(
                    "UPDATE {t} SET state = $1, data = $2 WHERE id = $3 \
                     AND state IS NOT DISTINCT FROM $4 AND data = $5 AND {ms} = $6"
                ),
                delete_row_if: format!(
                    "DELETE FROM {t} WHERE id = $1 \
                     AND state IS NOT DISTINCT FROM $2 AND data = $3 AND {ms} = $4"
                ),
                insert_row: format!("{insert}DO NOTHING"),
                // To the millisecond: a row stored at .123456 s was not written after one
                // carried as .123 (its listing says .123 too).
                put_row: format!(
                    "{replace_row} WHERE t.updated_at < EXCLUDED.updated_at + interval '1 millisecond'"
                ),
                replace_row,
            }
        }
    };
    let rows = match layout {
        crate::Layout::AiogramSqlalchemy => super::RowShape {
            live: &live,
            // The text as stored, read by core's rules in the backend: text that is not
            // JSON fails that row alone, not the statement.
            data: "data",
            updated_ms: "NULL::BIGINT",
            before: "false",
        },
        _ => super::RowShape {
            live: "",
            data: "data::text",
            // floor, not the cast's rounding: a row's reported millisecond is never after
            // it was written, so "older than its own time" is false (and one ms later, true).
            updated_ms: "floor(extract(epoch FROM updated_at) * 1000)::BIGINT",
            before: "updated_at < to_timestamp({cutoff}::BIGINT / 1000.0)",
        },
    };
    super::inspect_queries(
        t,
        "floor(extract(epoch FROM now()) * 1000)::BIGINT",
        rows,
        |n| format!("${n}"),
        false,
        writes,
    )
}
