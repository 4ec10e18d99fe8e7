-- Unix milliseconds; SQLite can not add a column with a non-constant default.
ALTER TABLE {table} ADD COLUMN updated_at INTEGER NOT NULL DEFAULT 0;
UPDATE {table} SET updated_at = CAST(unixepoch('subsec') * 1000 AS INTEGER);
CREATE INDEX {updated_at_idx} ON {table} (updated_at);
