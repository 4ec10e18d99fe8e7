//! Printing: text for people, JSON for scripts.

use serde_json::Value;

/// Prints `value` as pretty JSON.
pub(crate) fn json(value: &Value) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(err) => eprintln!("error: could not print JSON: {err}"),
    }
}

/// An error and its causes on one line, with a hint for connection failures.
pub(crate) fn one_line(err: &anyhow::Error, url: &str) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    let mut line = with_url(&line.replace('\n', " "), url);
    match err.downcast_ref::<fsmstore::Error>() {
        Some(e) if e.kind() == fsmstore::ErrorKind::Connection => {
            format!("{line} (is the server running? check --url or DATABASE_URL)")
        }
        // The library names what fixes it; this is the command that does.
        Some(fsmstore::Error::MigrationDirty { fix, undo, .. }) => {
            line.push_str(&format!(
                " (completed: `{}`; undone: `{}`)",
                command(fix, url),
                command(undo, url)
            ));
            line
        }
        // Two causes, two commands, each under its condition: never one command to run
        // blindly (a stamp on a table another version table has at head would re-run
        // migrations on it).
        Some(fsmstore::Error::SchemaUnrecorded { fix, .. }) => {
            line.push_str(&format!(
                " (made by aiogram-sqlalchemy-storage: `{}`, then `migrate up`; migrated by fsmstore with another version table: pass that one with --version-table)",
                command(fix, url)
            ));
            line
        }
        Some(e) => {
            if let Some(fix) = e.remedies().first() {
                line.push_str(&format!(" (run `{}`)", command(fix, url)));
            }
            line
        }
        None => line,
    }
}

/// `remedy` as the `fsmstore migrate …` command that applies it, against the database of
/// `url` (its password redacted), with `--table` and, when it is not the default,
/// `--version-table`.
pub(crate) fn command(remedy: &fsmstore::core::Remedy, url: &str) -> String {
    use fsmstore::core::Remedy;
    let action = match remedy {
        Remedy::Upgrade { to: None, .. } => "up".to_owned(),
        Remedy::Upgrade { to: Some(to), .. } => format!("up --to {to}"),
        Remedy::Stamp { version, .. } => format!("stamp {version}"),
        other => return other.to_string(),
    };
    let mut command = format!(
        "fsmstore --url '{}' migrate {action} --table {}",
        redact(url),
        remedy.table()
    );
    if remedy.version_table() != fsmstore::core::DEFAULT_VERSION_TABLE {
        command.push_str(&format!(" --version-table {}", remedy.version_table()));
    }
    command
}

/// The error as one JSON object: `kind`, `message` and `fix` (a command, or null).
pub(crate) fn error_json(err: &anyhow::Error, line: &str, url: &str) -> Value {
    let fsm = err.downcast_ref::<fsmstore::Error>();
    let fix = fsm.and_then(|e| e.remedies().first().map(|fix| command(fix, url)));
    serde_json::json!({
        "kind": fsm.map_or_else(|| "Usage".to_owned(), |e| format!("{:?}", e.kind())),
        "message": line,
        "fix": fix,
    })
}

/// Commands in `text` (`fsmstore migrate …`) with the database's `--url`, password
/// redacted, so a fix runs against the database it is about (without it, `fsmstore` would
/// use `DATABASE_URL` or `./fsmstore.db`).
fn with_url(text: &str, url: &str) -> String {
    text.replace(
        "fsmstore migrate ",
        &format!("fsmstore --url '{}' migrate ", redact(url)),
    )
}

/// `url` with the password replaced by `***`: in the user info (`user:pw@`) and in a
/// `password=` query parameter (PostgreSQL takes it there too), split as the library
/// parses URLs (an `@` in a query value is not the end of a user info).
pub(crate) fn redact(url: &str) -> String {
    fsmstore::core::DatabaseUrl::redacted(url)
}

/// Left-aligned columns.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// `text` cut to `max` characters with an ellipsis.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_redacted_wherever_a_url_carries_them() {
        for (url, shown) in [
            ("postgres://bot:pw@h/db", "postgres://bot:***@h/db"),
            (
                "postgres://bot:p?w@h/db?table=t",
                "postgres://bot:***@h/db?table=t",
            ),
            (
                "postgres://bot@h/db?password=pw&sslmode=require",
                "postgres://bot@h/db?password=***&sslmode=require",
            ),
            (
                "mysql://root:p@ss@h:3306/test",
                "mysql://root:***@h:3306/test",
            ),
            ("sqlite://x.db?table=t", "sqlite://x.db?table=t"),
        ] {
            assert_eq!(redact(url), shown, "{url}");
        }
    }
}

/// `n` and the noun for it: `1 row`, `2 rows`, `0 rows`.
pub(crate) fn count(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod count_tests {
    #[test]
    fn one_is_singular_every_other_count_plural() {
        assert_eq!(super::count(1u64, "row", "rows"), "1 row");
        assert_eq!(super::count(0u64, "row", "rows"), "0 rows");
        assert_eq!(super::count(2u64, "dialogue", "dialogues"), "2 dialogues");
    }
}
