# shellcheck shell=bash
# Private PostgreSQL clusters for development, tests and benchmarks.
# Source scripts/lib/common.sh first. Defines functions only.
#
# Globals (set by pg_ensure_bins / pg_ensure_os_user, may be preset by the caller):
#   PG_BINDIR   directory holding initdb, pg_ctl, pg_isready, postgres
#   PG_OS_USER  OS user that owns and runs clusters (PostgreSQL refuses to run as root)
#
# Every cluster made here has a superuser named "postgres" who may log in without
# a password over the cluster's own unix socket (in a directory of PG_OS_USER,
# never /var/run); it listens on 127.0.0.1 only, where every role needs its
# password (scram-sha-256).

PG_BINDIR="${PG_BINDIR:-}"
PG_OS_USER="${PG_OS_USER:-}"
PG_READY_TIMEOUT="${PG_READY_TIMEOUT:-60}"

pg_bindir_ok() {
  local dir="$1" tool
  [ -n "$dir" ] || return 1
  for tool in initdb pg_ctl pg_isready postgres; do
    [ -x "$dir/$tool" ] || return 1
  done
}

# Prints the first usable server bin directory: the one for MAJOR when given
# (an existing cluster must be run by its own major version), then
# /usr/lib/postgresql/*/bin newest first, then wherever initdb is on PATH.
pg_find_bindir() {
  local major="${1:-}" dir found
  if [ -n "$major" ] && pg_bindir_ok "/usr/lib/postgresql/$major/bin"; then
    echo "/usr/lib/postgresql/$major/bin"
    return 0
  fi
  while IFS= read -r dir; do
    if pg_bindir_ok "$dir"; then
      echo "$dir"
      return 0
    fi
  done < <(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -type d -name bin 2>/dev/null | sort -V -r)
  if found="$(command -v initdb 2>/dev/null)"; then
    dir="$(dirname "$(readlink -f "$found")")"
    if pg_bindir_ok "$dir"; then
      echo "$dir"
      return 0
    fi
  fi
  return 1
}

# Installs the PostgreSQL server from Debian packages. If the package creates
# and starts its own "main" cluster, that cluster is left alone and unused.
pg_install() {
  log "PostgreSQL server binaries not found"
  apt_install postgresql
}

# Sets and exports PG_BINDIR, installing PostgreSQL when no server is found.
# MAJOR (optional) prefers that server version, e.g. an existing cluster's.
# shellcheck disable=SC2120 # MAJOR is optional
pg_ensure_bins() {
  local major="${1:-}"
  if [ -n "$PG_BINDIR" ]; then
    pg_bindir_ok "$PG_BINDIR" || die "PG_BINDIR=$PG_BINDIR lacks initdb/pg_ctl/pg_isready/postgres"
  elif ! PG_BINDIR="$(pg_find_bindir "$major")"; then
    pg_install
    PG_BINDIR="$(pg_find_bindir "$major")" || die "PostgreSQL was installed but its server binaries were not found"
  fi
  export PG_BINDIR
}

# Path of a PostgreSQL client tool: from PG_BINDIR, else from PATH.
pg_tool() {
  if [ -x "$PG_BINDIR/$1" ]; then
    echo "$PG_BINDIR/$1"
  elif command -v "$1" >/dev/null 2>&1; then
    command -v "$1"
  else
    die "PostgreSQL tool '$1' not found (PG_BINDIR=$PG_BINDIR)"
  fi
}

# Sets and exports PG_OS_USER: the current user, or when root the "postgres"
# system user (created by the Debian package) or else a "ketamine-pg" system user.
pg_ensure_os_user() {
  if [ -n "$PG_OS_USER" ]; then
    id -u "$PG_OS_USER" >/dev/null 2>&1 || die "PG_OS_USER=$PG_OS_USER does not exist"
  elif [ "$(id -u)" -ne 0 ]; then
    PG_OS_USER="$(id -un)"
  elif id -u postgres >/dev/null 2>&1; then
    PG_OS_USER=postgres
  else
    PG_OS_USER=ketamine-pg
    if ! id -u "$PG_OS_USER" >/dev/null 2>&1; then
      log "creating system user $PG_OS_USER to run PostgreSQL (initdb refuses to run as root)"
      useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$PG_OS_USER"
    fi
  fi
  export PG_OS_USER
}

# Runs a command as PG_OS_USER (through runuser when we are root).
pg_as_user() {
  if [ "$(id -u)" -eq 0 ] && [ "$PG_OS_USER" != root ]; then
    runuser -u "$PG_OS_USER" -- "$@"
  else
    "$@"
  fi
}

# Creates DIR if needed and hands it to PG_OS_USER with MODE (default 700).
pg_own_dir() {
  local dir="$1" mode="${2:-700}"
  mkdir -p "$dir"
  if [ "$(id -u)" -eq 0 ]; then
    chown "$PG_OS_USER:" "$dir"
  fi
  chmod "$mode" "$dir"
  pg_as_user test -w "$dir" -a -x "$dir" ||
    die "OS user $PG_OS_USER cannot reach $dir (is a parent directory not traversable?)"
}

# Appends lines (arguments) to FILE as PG_OS_USER, so the cluster owns it.
pg_append() {
  local file="$1"
  shift
  printf '%s\n' "$@" | pg_as_user tee -a "$file" >/dev/null
}

pg_cluster_exists() {
  [ -f "$1/PG_VERSION" ]
}

# Creates a cluster in DATADIR (absent or empty) whose unix socket lives in
# SOCKDIR (a directory of PG_OS_USER). Extra arguments are postgresql.conf
# lines ("name = value") appended after initdb's defaults.
pg_init_cluster() {
  local datadir="$1" sockdir="$2" out ctype=C
  shift 2
  pg_cluster_exists "$datadir" && die "$datadir already holds a cluster"
  if [ -d "$datadir" ] && [ -n "$(ls -A "$datadir")" ]; then
    die "$datadir is not empty but holds no cluster (an interrupted initdb?); remove it and retry"
  fi
  pg_own_dir "$datadir" 700
  # Byte-order collation (fast, deterministic), Unicode-aware lower()/upper().
  if locale -a 2>/dev/null | grep -qiE '^c\.utf-?8$'; then
    ctype=C.UTF-8
  fi
  log "initialising PostgreSQL cluster in $datadir ($("$PG_BINDIR/postgres" --version))"
  if ! out="$(pg_as_user "$PG_BINDIR/initdb" --pgdata="$datadir" --username=postgres \
    --encoding=UTF8 --lc-collate=C --lc-ctype="$ctype" --auth=trust 2>&1)"; then
    printf '%s\n' "$out" >&2
    die "initdb failed for $datadir"
  fi
  pg_append "$datadir/postgresql.conf" "" "# --- added by scripts/lib/postgres.sh ---" \
    "listen_addresses = '127.0.0.1'" "unix_socket_directories = '$sockdir'" \
    "password_encryption = 'scram-sha-256'" "$@"
  pg_as_user tee "$datadir/pg_hba.conf" >/dev/null <<'HBA'
# Written by scripts/lib/postgres.sh.
# TYPE  DATABASE  USER      ADDRESS        METHOD
local   all       postgres                 trust
host    all       all       127.0.0.1/32   scram-sha-256
host    all       all       ::1/128        scram-sha-256
HBA
}

pg_is_running() {
  pg_as_user "$PG_BINDIR/pg_ctl" status --pgdata="$1" >/dev/null 2>&1
}

# Port of the running postmaster of DATADIR (line 4 of postmaster.pid).
pg_running_port() {
  sed -n 4p "$1/postmaster.pid" 2>/dev/null
}

# Waits (bounded by PG_READY_TIMEOUT seconds) until the server on
# 127.0.0.1:PORT accepts connections.
pg_wait_ready() {
  local port="$1" i isready
  isready="$(pg_tool pg_isready)"
  for ((i = 0; i < PG_READY_TIMEOUT * 2; i++)); do
    if "$isready" -q -h 127.0.0.1 -p "$port" -t 1; then
      return 0
    fi
    sleep 0.5
  done
  die "PostgreSQL on 127.0.0.1:$port not ready after ${PG_READY_TIMEOUT}s"
}

# Starts the cluster in DATADIR on PORT with its log appended to LOGFILE (in a
# directory of PG_OS_USER), then waits until it accepts connections. pg_ctl puts the server
# in its own session, so Ctrl-C in the calling terminal does not stop it.
pg_start() {
  local datadir="$1" port="$2" logfile="$3"
  port_is_free "$port" || die "port $port on 127.0.0.1 is already in use (scripts/run: set KETAMINE_PG_PORT)"
  log "starting PostgreSQL on 127.0.0.1:$port (data $datadir, log $logfile)"
  if ! pg_as_user "$PG_BINDIR/pg_ctl" start --pgdata="$datadir" --log="$logfile" --wait \
    --timeout="$PG_READY_TIMEOUT" -o "-p $port" >/dev/null; then
    tail -n 20 "$logfile" >&2 || true
    die "PostgreSQL failed to start (log: $logfile)"
  fi
  pg_wait_ready "$port"
}

# Stops the cluster in DATADIR if it is running (fast shutdown, bounded wait).
pg_stop() {
  local datadir="$1"
  pg_is_running "$datadir" || return 0
  if ! pg_as_user "$PG_BINDIR/pg_ctl" stop --pgdata="$datadir" --mode=fast --wait \
    --timeout="$PG_READY_TIMEOUT" >/dev/null; then
    warn "fast shutdown of $datadir timed out; using immediate shutdown"
    pg_as_user "$PG_BINDIR/pg_ctl" stop --pgdata="$datadir" --mode=immediate --wait --timeout=30 >/dev/null
  fi
}

# psql as the superuser over the unix socket in SOCKDIR; extra args follow.
pg_admin_psql() {
  local sockdir="$1" port="$2"
  shift 2
  "$(pg_tool psql)" -X -q -v ON_ERROR_STOP=1 -h "$sockdir" -p "$port" -U postgres -d postgres "$@"
}

# Ensures a login ROLE with PASSWORD (re-set every time, so it always matches
# the caller's copy) and a database DB owned by it.
pg_ensure_role_db() {
  local sockdir="$1" port="$2" role="$3" password="$4" db="$5"
  pg_admin_psql "$sockdir" "$port" -v role="$role" -v pw="$password" -v db="$db" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', :'role', :'pw') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SQL
}

# Sets the superuser's password (for clusters reached as postgres over TCP).
pg_set_superuser_password() {
  local sockdir="$1" port="$2" password="$3"
  pg_admin_psql "$sockdir" "$port" -v pw="$password" <<'SQL'
SELECT format('ALTER ROLE postgres PASSWORD %L', :'pw') \gexec
SQL
}

# Creates, configures and starts a throw-away cluster under DIR (which must be
# a fresh directory) on PORT. The superuser "postgres" gets PASSWORD and can
# log in over TCP on 127.0.0.1 with it. Extra arguments are postgresql.conf
# lines. Stop it with pg_stop "$DIR/data" and then delete DIR.
pg_throwaway_cluster() {
  local dir="$1" port="$2" password="$3"
  shift 3
  pg_own_dir "$dir" 700
  pg_init_cluster "$dir/data" "$dir" "$@"
  pg_start "$dir/data" "$port" "$dir/postgres.log"
  pg_set_superuser_password "$dir" "$port" "$password"
}
