#!/usr/bin/env bash
# Set up everything mailbot needs on a fresh Debian machine, then run it or test it.
#   scripts/dev.sh demo    run the bot on its embedded default
#   scripts/dev.sh test    ruff and mypy, then the whole test suite (extra arguments go to pytest)
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the tests and the local sandbox use (Dovecot as the IMAP server).
system_packages=(dovecot-imapd)

install_system_packages() {
  # Best effort: without Dovecot the sandbox falls back to pymap, and Dovecot tests are skipped.
  local missing=()
  for pkg in "${system_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo"; else
      echo "note: ${missing[*]} not installed and no root: the sandbox uses pymap; Dovecot tests are skipped" >&2
      return 0
    fi
  fi
  if command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing[*]} (Debian packages)" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "note: cannot install ${missing[*]}: no apt-get; tests that need them are skipped" >&2
  fi
}

setup_venv() {
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
  fi
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[$1]"
}

lint_gate() {
  # Before the tests: ruff (configured in pyproject.toml) on the whole project, mypy on mailbot/.
  if ! .venv/bin/ruff check --quiet; then
    echo "scripts/dev.sh test: the ruff gate failed (.venv/bin/ruff check)" >&2
    return 1
  fi
  if ! .venv/bin/mypy; then
    echo "scripts/dev.sh test: the mypy gate failed (.venv/bin/mypy)" >&2
    return 1
  fi
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  demo)
    install_system_packages
    setup_venv sandbox
    exec .venv/bin/mailbot demo "$@"
    ;;
  test)
    install_system_packages
    setup_venv test
    lint_gate || exit 1
    exec .venv/bin/python -m pytest "$@"
    ;;
  *)
    echo "usage: scripts/dev.sh demo | test [pytest args]" >&2
    exit 2
    ;;
esac
