-- Rows that hold neither state nor data are dropped; empty data becomes '{}'.
DELETE FROM {table} WHERE state IS NULL AND (data IS NULL OR btrim(data) IN ('', '{}'));
UPDATE {table} SET data = '{}' WHERE data IS NULL OR btrim(data) = '';
ALTER TABLE {table}
    ALTER COLUMN data TYPE JSONB USING data::jsonb,
    ALTER COLUMN data SET DEFAULT '{}'::jsonb,
    ALTER COLUMN data SET NOT NULL;
ALTER TABLE {table} ADD CONSTRAINT {data_check} CHECK (jsonb_typeof(data) = 'object');
