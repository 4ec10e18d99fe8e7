CREATE TABLE {table_new} (
    id VARCHAR(255) NOT NULL PRIMARY KEY,
    state VARCHAR NULL,
    data VARCHAR NULL
);
INSERT INTO {table_new} (id, state, data) SELECT id, state, data FROM {table};
DROP TABLE {table};
ALTER TABLE {table_new} RENAME TO {table};
