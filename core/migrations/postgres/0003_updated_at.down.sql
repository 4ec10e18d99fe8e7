DROP INDEX {updated_at_idx};
ALTER TABLE {table} DROP COLUMN updated_at;
