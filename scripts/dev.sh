#!/usr/bin/env bash
# Set up everything mailbot needs on a fresh Debian machine, then run it or test it.
#   scripts/dev.sh demo    run the bot on its embedded default
#   scripts/dev.sh test    run the whole test suite (extra arguments go to pytest)
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the tests and the local sandbox use (Dovecot as the IMAP server).
system_packages=(dovecot-imapd)

install_system_packages() {
  local missing=()
  for pkg in "${system_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
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
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  demo)
    setup_venv
    exec .venv/bin/mailbot demo "$@"
    ;;
  test)
    install_system_packages
    setup_venv
    exec .venv/bin/python -m pytest "$@"
    ;;
  *)
    echo "usage: scripts/dev.sh demo | test [pytest args]" >&2
    exit 2
    ;;
esac
