#!/usr/bin/env bash
# Rebuilds packaging/example/example.db (shipped in the .deb) from packaging/example/example.sql.
# Needs the sqlite3 command. tests/packaging.rs checks that the committed file matches the SQL.
set -euo pipefail
cd "$(dirname "$0")/example"
rm -f example.db
{ echo "PRAGMA page_size = 1024;"; cat example.sql; echo "VACUUM;"; } | sqlite3 example.db
echo "built $(pwd)/example.db ($(stat -c %s example.db) bytes)"
