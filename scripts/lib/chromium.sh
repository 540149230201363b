# shellcheck shell=bash
# Headless Chromium for the tests that render the patient report to a PNG.
# Source scripts/lib/common.sh first. Defines functions only.
#
# Globals (set by chromium_ensure, may be preset by the caller):
#   CHROMIUM   path of the chromium executable

CHROMIUM="${CHROMIUM:-}"

# Prints the first chromium executable found: /usr/bin/chromium, then PATH.
chromium_find() {
  local candidate
  for candidate in /usr/bin/chromium chromium chromium-browser; do
    if candidate="$(command -v "$candidate" 2>/dev/null)" && [ -x "$candidate" ]; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

# Sets and exports CHROMIUM, installing the Debian package "chromium" when none is
# found (noninteractive, only if missing).
chromium_ensure() {
  if [ -n "$CHROMIUM" ]; then
    [ -x "$CHROMIUM" ] || die "CHROMIUM=$CHROMIUM is not an executable"
  elif ! CHROMIUM="$(chromium_find)"; then
    log "chromium not found"
    apt_install chromium
    CHROMIUM="$(chromium_find)" || die "chromium was installed but no executable was found"
  fi
  export CHROMIUM
}
