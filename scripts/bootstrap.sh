#!/usr/bin/env bash
# Sets up everything the demo, the tests and the benchmarks need on a fresh Debian 12 machine with
# Python 3.11: the Debian packages (Dovecot for real IMAP/POP, Chromium for the browser test) and
# the virtual environments with the pinned packages. Safe to run again: it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(dovecot-imapd dovecot-pop3d chromium libnss3-tools)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}

make_venv() {  # make_venv DIR REQUIREMENTS: (re)install only when the requirements changed
  local dir=$1 req=$2 stamp
  stamp="$dir/.requirements.sha256"
  local want
  want=$(cat "$req" requirements.txt | sha256sum | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return; fi
  echo "bootstrap: installing $req into $dir"
  [ -x "$dir/bin/python" ] || "$PYTHON" -m venv "$dir"
  "$dir/bin/python" -m pip install -q --disable-pip-version-check -r "$req" 2>&1 | grep -v '^WARNING: Location' || true
  "$dir/bin/python" -m pip check >/dev/null
  echo "$want" > "$stamp"
}
make_venv .venv requirements-dev.txt
# The operator CLI's console command `mailonboard` (docs/cli.md): the project itself, editable, with
# no dependencies of its own (the pinned requirements above are them).
if [ ! -x .venv/bin/mailonboard ]; then
  echo "bootstrap: installing the mailonboard command into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e . 2>&1 | grep -v '^WARNING: Location' || true
  [ -x .venv/bin/mailonboard ] || { echo "bootstrap: mailonboard was not installed" >&2; exit 1; }
fi
make_venv .venv-infra requirements-infra.txt
