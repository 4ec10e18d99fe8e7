-- Row ids compare byte for byte: utf8mb4_bin is a PAD SPACE collation on MariaDB and MySQL
-- ("album " = "album"), a binary string is not. 255 characters of utf8mb4 are 1020 bytes.
ALTER TABLE {table} MODIFY id VARBINARY(1020) NOT NULL;
