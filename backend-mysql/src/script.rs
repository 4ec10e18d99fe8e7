//! [`Script`]: several statements sent as one text query (`COM_QUERY` holding statements
//! separated by `;`), one round trip for all of them; a coalesced batch is one or two.
//!
//! Values are written into the text, never spliced: each is a hexadecimal literal of its
//! UTF-8 bytes with the `_utf8mb4` introducer (`_utf8mb4 X'46…'`), the same string in
//! every `sql_mode` (no quote or backslash can end it), a character string (MySQL 8's
//! `JSON` column takes it), compared under the column's collation. The statements are
//! core's, whose only `?` are their placeholders (identifiers are ASCII letters, digits
//! and `_`; their literals are `'{}'`); a statement whose placeholders do not match its
//! values is refused before anything is sent.

use std::fmt::Write as _;

use futures_util::TryStreamExt;
use sqlx::mysql::{MySqlConnection, MySqlRow};
use sqlx::{AssertSqlSafe, Either};

/// A value of a statement in a script.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value<'a> {
    Text(&'a str),
    Null,
}

impl Value<'_> {
    /// The bytes the value adds to a statement's text.
    pub(crate) fn text_len(&self) -> usize {
        match self {
            Value::Text(text) => text.len() * 2 + 12,
            Value::Null => 4,
        }
    }
}

/// What a statement of a script answers: nothing the batch needs, rows, or how many rows
/// it affected (write `i`'s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tag {
    Plain,
    Rows,
    Affected(usize),
}

/// What one statement answered.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) tag: Tag,
    pub(crate) affected: u64,
    pub(crate) rows: Vec<MySqlRow>,
}

/// Statements to send in one round trip.
#[derive(Debug, Default)]
pub(crate) struct Script {
    text: String,
    tags: Vec<Tag>,
}

impl Script {
    /// The bytes of text so far.
    pub(crate) fn len(&self) -> usize {
        self.text.len()
    }

    /// Whether no statement was added.
    pub(crate) fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }

    /// Adds `statement` with `values` in place of its placeholders, in order.
    ///
    /// # Errors
    /// A protocol error (nothing added) when the placeholders are not one per value.
    pub(crate) fn add(
        &mut self,
        statement: &str,
        values: &[Value<'_>],
        tag: Tag,
    ) -> sqlx::Result<()> {
        let parts = statement.split('?').count();
        if parts != values.len() + 1 {
            return Err(sqlx::Error::Protocol(format!(
                "a batch statement has {} placeholders for {} values",
                parts - 1,
                values.len()
            )));
        }
        if !self.tags.is_empty() {
            self.text.push_str(";\n");
        }
        let mut values = values.iter();
        for (n, part) in statement.split('?').enumerate() {
            if n > 0 {
                match values.next() {
                    Some(Value::Text(text)) => literal(&mut self.text, text),
                    Some(Value::Null) | None => self.text.push_str("NULL"),
                }
            }
            self.text.push_str(part);
        }
        self.tags.push(tag);
        Ok(())
    }

    /// Sends the statements as one query; each one's answer, in order. The server stops at
    /// the first statement it refuses (that error comes back; the later ones did not run).
    ///
    /// # Errors
    /// The driver's error, or a protocol error when the answers do not match the statements.
    pub(crate) async fn send(self, conn: &mut MySqlConnection) -> sqlx::Result<Vec<Answer>> {
        let Script { text, tags } = self;
        let mut answers = Vec::with_capacity(tags.len());
        let mut rows = Vec::new();
        let mut stream = sqlx::raw_sql(AssertSqlSafe(text)).fetch_many(&mut *conn);
        while let Some(step) = stream.try_next().await? {
            match step {
                Either::Right(row) => rows.push(row),
                Either::Left(done) => {
                    let Some(&tag) = tags.get(answers.len()) else {
                        return Err(unexpected(answers.len() + 1, tags.len()));
                    };
                    answers.push(Answer {
                        tag,
                        affected: done.rows_affected(),
                        rows: std::mem::take(&mut rows),
                    });
                }
            }
        }
        if answers.len() != tags.len() {
            return Err(unexpected(answers.len(), tags.len()));
        }
        Ok(answers)
    }
}

fn unexpected(answers: usize, statements: usize) -> sqlx::Error {
    sqlx::Error::Protocol(format!(
        "{answers} answers to a script of {statements} statements"
    ))
}

/// `text` as `_utf8mb4 X'…'`.
fn literal(out: &mut String, text: &str) {
    out.reserve(text.len() * 2 + 12);
    out.push_str("_utf8mb4 X'");
    for byte in text.bytes() {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02X}");
    }
    out.push('\'');
}

#[cfg(test)]
mod tests {
    use super::{Script, Tag, Value};

    #[test]
    fn values_take_the_placeholders_in_order_as_hex_literals() {
        let mut script = Script::default();
        script
            .add(
                "INSERT INTO `t` (id, state, data) VALUES (?, ?, '{}')",
                &[Value::Text("a'\\;"), Value::Null],
                Tag::Plain,
            )
            .unwrap();
        script.add("COMMIT", &[], Tag::Plain).unwrap();
        assert_eq!(
            script.text,
            "INSERT INTO `t` (id, state, data) VALUES (_utf8mb4 X'61275C3B', NULL, '{}');\nCOMMIT"
        );
        assert_eq!(script.len(), script.text.len());
        assert_eq!(script.tags, vec![Tag::Plain, Tag::Plain]);
    }

    #[test]
    fn a_statement_whose_placeholders_do_not_match_is_refused_whole() {
        let mut script = Script::default();
        let err = script
            .add("DELETE FROM `t` WHERE id = ?", &[], Tag::Affected(0))
            .unwrap_err();
        assert!(
            err.to_string().contains("1 placeholders for 0 values"),
            "{err}"
        );
        assert!(script.is_empty() && script.text.is_empty());
        assert!(Value::Text("ab").text_len() >= "_utf8mb4 X'6162'".len());
    }
}
