#!/usr/bin/env bash
# Makes (once) the virtualenv the Python co-existence tests drive: the real
# aiogram-sqlalchemy-storage with its drivers and aiogram's RedisStorage (redis-py), pinned in
# tests/python/requirements.txt.
# Prints the interpreter's path. Idempotent: the venv is named after the requirements'
# hash and reused while they do not change. FSMSTORE_VENV_DIR overrides where venvs live.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
requirements="$here/tests/python/requirements.txt"
hash="$(sha256sum "$requirements" | cut -c1-12)"
base="${FSMSTORE_VENV_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/fsmstore}"
venv="$base/venv-$hash"
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
    rm -rf "$venv"
    mkdir -p "$base"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" >&2
    "$venv/bin/python" -c "import sqlalchemy_storage, aiosqlite, asyncpg, aiomysql, redis, aiogram.fsm.storage.redis" >&2
    touch "$venv/.complete"
fi
echo "$venv/bin/python"
