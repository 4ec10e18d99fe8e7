-- SQLite can not change a column's type: rebuild the table. Empty data becomes '{}',
-- rows that hold neither state nor data are dropped, invalid JSON aborts the migration.
CREATE TABLE {table_new} (
    id VARCHAR(255) NOT NULL PRIMARY KEY,
    state VARCHAR NULL,
    data TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(data) AND json_type(data) = 'object')
);
INSERT INTO {table_new} (id, state, data)
    SELECT id, state, CASE WHEN data IS NULL OR trim(data) = '' THEN '{}' ELSE json(data) END
    FROM {table}
    WHERE state IS NOT NULL OR NOT (data IS NULL OR trim(data) IN ('', '{}'));
DROP TABLE {table};
ALTER TABLE {table_new} RENAME TO {table};
