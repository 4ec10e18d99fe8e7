DROP INDEX {updated_at_idx} ON {table};
ALTER TABLE {table} DROP COLUMN updated_at;
