//! Parameter typing: every value fsmstore binds goes with its PostgreSQL type, so an
//! unnamed statement (behind a transaction pooler) is parsed, bound and run in one round
//! trip without asking the server for the types.

use tokio_postgres::types::{Json, ToSql, Type};

/// A statement parameter with its PostgreSQL type: unnamed statements declare the types
/// of their parameters (nothing was prepared to infer them from).
pub(crate) type Param<'a> = (&'a (dyn ToSql + Sync), Type);

/// The PostgreSQL type fsmstore binds a Rust value as.
pub(crate) trait PgType {
    /// The type.
    const TYPE: Type;
}

impl PgType for String {
    const TYPE: Type = Type::TEXT;
}
impl PgType for &str {
    const TYPE: Type = Type::TEXT;
}
impl PgType for Option<&str> {
    const TYPE: Type = Type::TEXT;
}
impl PgType for Option<String> {
    const TYPE: Type = Type::TEXT;
}
impl PgType for Option<i64> {
    const TYPE: Type = Type::INT8;
}
impl<T> PgType for Json<T> {
    const TYPE: Type = Type::JSONB;
}
impl PgType for i64 {
    const TYPE: Type = Type::INT8;
}
impl PgType for bool {
    const TYPE: Type = Type::BOOL;
}
impl PgType for Vec<&str> {
    const TYPE: Type = Type::TEXT_ARRAY;
}
impl PgType for Vec<Option<&str>> {
    const TYPE: Type = Type::TEXT_ARRAY;
}
impl<T> PgType for Vec<&Json<T>> {
    const TYPE: Type = Type::JSONB_ARRAY;
}

/// `value` as a typed parameter.
pub(crate) fn p<T: ToSql + Sync + PgType>(value: &T) -> Param<'_> {
    (value, T::TYPE)
}

/// The values of `params`, for a prepared statement.
pub(crate) fn untyped<'a>(params: &'a [Param<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    params.iter().map(|(value, _)| *value).collect()
}
