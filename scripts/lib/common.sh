# shellcheck shell=bash
# Small helpers shared by scripts/run, scripts/test, .ci/run and bench/.
# Source it; it defines functions only and changes no shell options.

# Progress messages go to stderr so stdout stays usable for results.
log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# Installs Debian packages (as root, or through sudo when available).
apt_install() {
  local sudo=()
  command -v apt-get >/dev/null 2>&1 || die "apt-get is unavailable; install these packages yourself: $*"
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "run as root (or install sudo) to install: $*"
    sudo=(sudo)
  fi
  log "installing Debian packages: $*"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2
}

# N random bytes as lowercase hex: safe in URLs, SQL literals and shell words.
random_hex() {
  local bytes="${1:-24}"
  od -An -N"$bytes" -tx1 /dev/urandom | tr -d ' \n'
}

# Succeeds when nothing accepts TCP connections on 127.0.0.1:PORT.
port_is_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Prints a TCP port on 127.0.0.1 that is free right now. Asks the kernel via
# python3 when available, otherwise tries a fixed number of random ports.
free_port() {
  local port i
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
    return
  fi
  for ((i = 0; i < 50; i++)); do
    port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    if port_is_free "$port"; then
      echo "$port"
      return
    fi
  done
  die "no free TCP port found on 127.0.0.1 after 50 attempts"
}

# Directory cargo builds into: CARGO_TARGET_DIR when set, else ./target.
cargo_target_dir() {
  local root="$1"
  case "${CARGO_TARGET_DIR:-}" in
    "") echo "$root/target" ;;
    /*) echo "$CARGO_TARGET_DIR" ;;
    *) echo "$root/$CARGO_TARGET_DIR" ;;
  esac
}
