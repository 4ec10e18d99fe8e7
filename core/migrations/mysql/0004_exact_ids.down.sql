-- Fails (changing nothing) while two ids differ only in trailing spaces.
ALTER TABLE {table} MODIFY id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL;
