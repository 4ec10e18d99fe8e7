//! `fsmstore migrate export`: the migrations as files another tool runs.

use std::path::Path;

use fsmstore::migrate::MigrationSet;

use crate::args::ExportFormat;

/// A file name part from a description: lower-case ASCII words joined by `_`
/// (refinery accepts only `\w`, sqlx anything but it reads best this way).
fn slug(description: &str) -> String {
    let mut slug = String::new();
    for c in description.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('_') {
            slug.push('_');
        }
    }
    format!("fsmstore_{}", slug.trim_matches('_'))
}

/// Writes `set` into `dir` in `format`; returns the paths written.
pub(crate) fn write(
    set: &MigrationSet,
    format: ExportFormat,
    dir: &Path,
    version_offset: u64,
) -> std::io::Result<Vec<String>> {
    // The last file's number must fit the tool's version type (refinery: i32, sqlx and
    // plain: i64): an offset past it is refused before anything is written, never wrapped.
    let largest = match format {
        ExportFormat::Refinery => i64::from(i32::MAX),
        ExportFormat::Sqlx | ExportFormat::Plain => i64::MAX,
    };
    let offset = i64::try_from(version_offset)
        .ok()
        .filter(|offset| offset.checked_add(set.head()).is_some_and(|last| last <= largest))
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "--version-offset {version_offset}: the last version, {version_offset} + {}, is past the largest the {format:?} format numbers ({largest})",
                    set.head()
                ),
            )
        })?;
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let mut put = |name: String, sql: &str| -> std::io::Result<()> {
        let path = dir.join(name);
        std::fs::write(&path, sql)?;
        written.push(path.display().to_string());
        Ok(())
    };
    for migration in set.iter() {
        let version = migration.version + offset;
        let name = slug(&migration.description);
        let header = format!(
            "-- fsmstore migration {} for table {} ({}): {}\n",
            migration.version,
            set.table(),
            set.dialect().map_or("none", |dialect| dialect.name()),
            migration.description
        );
        match format {
            ExportFormat::Sqlx => {
                put(
                    format!("{version}_{name}.up.sql"),
                    &format!("{header}{}", migration.up_sql),
                )?;
                put(
                    format!("{version}_{name}.down.sql"),
                    &format!("{header}{}", migration.down_sql),
                )?;
            }
            ExportFormat::Refinery => {
                put(
                    format!("V{version}__{name}.sql"),
                    &format!("{header}{}", migration.up_sql),
                )?;
            }
            ExportFormat::Plain => {
                put(
                    format!("{version:04}_{name}.up.sql"),
                    &format!("{header}{}", migration.up_sql),
                )?;
                put(
                    format!("{version:04}_{name}.down.sql"),
                    &format!("{header}{}", migration.down_sql),
                )?;
            }
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_word_characters() {
        assert_eq!(
            slug("seed layout (aiogram-sqlalchemy-storage)"),
            "fsmstore_seed_layout_aiogram_sqlalchemy_storage"
        );
        assert_eq!(
            slug("data as a JSON object, not null"),
            "fsmstore_data_as_a_json_object_not_null"
        );
    }
}
