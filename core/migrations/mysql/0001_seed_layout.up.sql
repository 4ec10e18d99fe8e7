-- The seed layout; MySQL needs lengths (aiogram-sqlalchemy-storage's bare VARCHAR fails here).
CREATE TABLE {table} (
    id VARCHAR(255) NOT NULL PRIMARY KEY,
    state VARCHAR(255) NULL,
    data LONGTEXT NULL
) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
