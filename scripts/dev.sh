#!/usr/bin/env bash
# Set up everything mailbot needs on a fresh Debian machine, then run it or test it.
#   scripts/dev.sh demo    run the bot on its embedded default
#   scripts/dev.sh test    ruff and mypy, then the whole test suite (extra arguments go to pytest)
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the local sandbox (and so the tests) use: Dovecot as the IMAP server.
sandbox_packages=(dovecot-imapd)
# And for the tests only: Debian's Chromium with its driver, for the staff page's real-browser
# test (tests/browser.py: never a browser download).
test_packages=(chromium chromium-driver)

install_system_packages() {
  # Best effort: without Dovecot the sandbox falls back to pymap, and Dovecot tests are skipped;
  # without Chromium the browser test is skipped (it fails instead under CI=true).
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo"; else
      echo "note: ${missing[*]} not installed and no root: the sandbox uses pymap; tests that need them are skipped" >&2
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

# pytest once per tier (tests/conftest.py says which test is in which), arguments after `test`
# going to each (a -n of theirs overrides these):
#   fast: no server, CPU-bound: one pytest-xdist worker per core; then, side by side,
#   integration: servers and processes, mostly waiting on them: more workers than cores, the
#     longest first, each worker taking the next test as it is free (worksteal);
#   properties: the long property runs, CPU-bound, in one process of their own (a core at most,
#     printed once done).
# A failure in any tier fails the command; a tier the arguments leave empty (pytest's exit 5)
# does not, unless all are.
run_tests() {
  # Seven pytest processes and every daemon a test starts compile the same modules: let Python
  # keep what it compiled (__pycache__, ignored by git) whatever the caller's environment says.
  unset PYTHONDONTWRITEBYTECODE
  local codes=() properties_log
  properties_log=$(mktemp)
  tier_done() { codes+=("$1"); }
  echo "--- fast tier" >&2
  .venv/bin/python -m pytest --tier fast -n auto "$@" && tier_done 0 || tier_done $?
  echo "--- integration tier, and the long property runs beside it" >&2
  .venv/bin/python -m pytest --tier properties -n 0 "$@" >"$properties_log" 2>&1 &
  local properties=$!
  .venv/bin/python -m pytest --tier integration -n 4 --dist worksteal "$@" && tier_done 0 || tier_done $?
  wait "$properties" && tier_done 0 || tier_done $?
  echo "--- long property runs" >&2
  cat "$properties_log"
  rm -f "$properties_log"
  local status=0 empty=0 code
  for code in "${codes[@]}"; do
    case "$code" in
      0) ;;
      5) empty=$((empty + 1)) ;;
      *) status=$code ;;
    esac
  done
  [ "$empty" -eq "${#codes[@]}" ] && status=5  # nothing at all was selected
  return "$status"
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
    install_system_packages "${sandbox_packages[@]}"
    setup_venv sandbox
    exec .venv/bin/mailbot demo "$@"
    ;;
  test)
    install_system_packages "${sandbox_packages[@]}" "${test_packages[@]}"
    setup_venv test
    lint_gate || exit 1
    run_tests "$@"
    ;;
  *)
    echo "usage: scripts/dev.sh demo | test [pytest args]" >&2
    exit 2
    ;;
esac
