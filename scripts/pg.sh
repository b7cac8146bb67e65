#!/usr/bin/env bash
# A throwaway PostgreSQL on 127.0.0.1 for the tests: `source scripts/pg.sh; pg_start; ...; pg_stop`.
# Data lives in a temp dir (fsync off: test data only) and is removed by pg_stop.
# Exports EMBER_TEST_DATABASE_URL (an admin URL; each test creates its own database).

PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}

pg_start() {
  [ -x "$PGBIN/initdb" ] || { echo "pg.sh: no PostgreSQL server binaries under /usr/lib/postgresql (apt-get install postgresql)" >&2; return 1; }
  PG_DIR=$(mktemp -d /tmp/ember-pg.XXXXXX)
  local as=()
  if [ "$(id -u)" = 0 ]; then chown postgres "$PG_DIR"; as=(runuser -u postgres --); fi
  PG_PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  "${as[@]}" "$PGBIN/initdb" -D "$PG_DIR/data" -U ember --auth=trust -E UTF8 >"$PG_DIR/initdb.log" 2>&1 \
    || { cat "$PG_DIR/initdb.log" >&2; return 1; }
  echo "$PG_PORT" >"$PG_DIR/port"
  pg_server_start || return 1
  export EMBER_TEST_DATABASE_URL="postgres://ember@127.0.0.1:$PG_PORT/postgres"
  export PG_DIR
  echo "pg.sh: PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT ($PG_DIR)"
}

# Starts the server of $PG_DIR on the port it was made with.
pg_server_start() {
  local as=()
  [ "$(id -u)" = 0 ] && as=(runuser -u postgres --)
  "${as[@]}" "$PGBIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w -t 30 start \
    -o "-h 127.0.0.1 -p $(cat "$PG_DIR/port") -k $PG_DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" >/dev/null \
    || { cat "$PG_DIR/log" >&2; return 1; }
}

# The start of a database outage: stops the server of $PG_DIR (fast: clients are cut off),
# keeping its data and port for pg_server_start.
pg_server_stop() {
  local as=()
  [ "$(id -u)" = 0 ] && as=(runuser -u postgres --)
  "${as[@]}" "$PGBIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null
}

# A database outage: stops the server of $PG_DIR, waits SECONDS, and starts it again on the
# same port with its data.
pg_restart() { # SECONDS
  pg_server_stop
  sleep "${1:-5}"
  pg_server_start
}

pg_stop() {
  [ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR" ] || return 0
  local as=()
  [ "$(id -u)" = 0 ] && as=(runuser -u postgres --)
  "${as[@]}" "$PGBIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$PG_DIR"
  unset PG_DIR EMBER_TEST_DATABASE_URL
}
