-- The layout aiogram-sqlalchemy-storage creates: text data, nullable.
CREATE TABLE {table} (
    id VARCHAR(255) NOT NULL PRIMARY KEY,
    state VARCHAR NULL,
    data VARCHAR NULL
);
