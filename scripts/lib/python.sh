# shellcheck shell=bash
# Python virtual environments for tools the scripts run (the interoperability test).
# Source scripts/lib/common.sh first. Defines functions only.

# Succeeds when python3 can make a virtual environment with pip in it. Debian ships
# venv's ensurepip in python3-venv, apart from python3 itself.
python_venv_available() {
  command -v python3 >/dev/null 2>&1 && python3 -c 'import ensurepip, venv' >/dev/null 2>&1
}

# Installs python3-venv and python3-pip from Debian packages when python3 cannot make a
# virtual environment.
python_ensure_venv_support() {
  python_venv_available && return 0
  log "python3 cannot make virtual environments"
  apt_install python3 python3-venv python3-pip
  python_venv_available || die "python3-venv was installed but python3 still cannot make a virtual environment"
}

# Makes the virtual environment DIR with the pinned REQUIREMENTS (a pip requirements
# file) installed from PyPI, or reuses it when it was made from the same requirements
# and the same python3.
python_venv_with() {
  local dir="$1" requirements="$2" stamp want
  if [ -z "$dir" ] || [ "$dir" = / ]; then
    die "python_venv_with: no directory given"
  fi
  [ -f "$requirements" ] || die "python_venv_with: $requirements not found"
  python_ensure_venv_support
  want="$({
    cat "$requirements"
    python3 --version
  } | sha256sum | cut -d' ' -f1)"
  stamp="$dir/.requirements-sha256"
  if [ -x "$dir/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    log "reusing the Python environment in $dir"
    return 0
  fi
  log "creating the Python environment in $dir from $requirements"
  rm -rf "$dir"
  mkdir -p "$(dirname "$dir")"
  python3 -m venv "$dir"
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --requirement "$requirements" >&2
  echo "$want" >"$stamp"
}
