-- One statement per step: MySQL commits DDL implicitly, so a failure here leaves the
-- migration dirty, and each step is safe to run again.
DELETE FROM {table} WHERE state IS NULL AND (data IS NULL OR TRIM(data) IN ('', '{}'));
UPDATE {table} SET data = '{}' WHERE data IS NULL OR TRIM(data) = '';
ALTER TABLE {table} MODIFY data JSON NOT NULL DEFAULT ('{}');
ALTER TABLE {table} ADD CONSTRAINT {data_check} CHECK (JSON_TYPE(data) = 'OBJECT');
