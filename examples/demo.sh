#!/usr/bin/env bash
# examples/demo.sh -- runs the first seed program (examples/reload.lua) for real:
# waits until it handles SIGHUP, sends SIGHUP, waits for "Reloading configuration",
# sends SIGTERM and checks that it exits with status 0.  `make demo` builds first.
#
# Environment: LUA (default lua5.4), BUILDDIR (default build), DEMO_TIMEOUT (seconds
# for each wait, default 10).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

LUA=${LUA:-lua5.4}
BUILDDIR=${BUILDDIR:-build}
DEMO_TIMEOUT=${DEMO_TIMEOUT:-10}
export LUA_PATH_5_4="./lua/?.lua;./lua/?/init.lua;;"
export LUA_CPATH_5_4="./$BUILDDIR/?.so;;"

SIGHUP=1
SIGTERM=15
POLL=0.05
polls=$(awk -v t="$DEMO_TIMEOUT" -v p="$POLL" 'BEGIN { printf "%d", t / p }')

say() { printf 'demo: %s\n' "$*"; }

out=$(mktemp "${TMPDIR:-/tmp}/tether-demo.XXXXXX")
pid=

cleanup() {
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -f "$out"
}
trap cleanup EXIT

show_output() {
  echo "---- output of examples/reload.lua ----"
  cat "$out"
  echo "---------------------------------------"
}

fail() {
  say "FAILED: $*"
  show_output
  exit 1
}

# True when the process has a handler installed (caught) for signal $1.
catches() {
  local mask
  mask=$(awk '$1 == "SigCgt:" { print $2 }' "/proc/$pid/status" 2>/dev/null) || return 1
  [[ -n $mask ]] || return 1
  (( (16#$mask >> ($1 - 1)) & 1 ))
}

alive() { kill -0 "$pid" 2>/dev/null; }

# stdbuf -oL: the program's stdout is a file here, so make print() line-buffered.
stdbuf -oL -eL "$LUA" examples/reload.lua >"$out" 2>&1 &
pid=$!
say "started: $LUA examples/reload.lua (pid $pid)"

i=0
until catches $SIGHUP && catches $SIGTERM; do
  alive || fail "the program exited before it installed its signal handlers"
  (( ++i <= polls )) || fail "no SIGHUP and SIGTERM handlers after $DEMO_TIMEOUT s"
  sleep "$POLL"
done
say "SIGHUP and SIGTERM handlers are installed (SigCgt in /proc/$pid/status)"

kill -HUP "$pid"
say "sent SIGHUP"

i=0
until grep -q "Reloading configuration" "$out"; do
  alive || fail "the program exited after SIGHUP without printing 'Reloading configuration'"
  (( ++i <= polls )) || fail "no 'Reloading configuration' within $DEMO_TIMEOUT s of SIGHUP"
  sleep "$POLL"
done
say "the program printed: Reloading configuration"

kill -TERM "$pid"
say "sent SIGTERM"

i=0
while alive; do
  # A zombie still answers kill -0; it has exited once its state is Z.
  if [[ $(awk '$1 == "State:" { print $2 }' "/proc/$pid/status" 2>/dev/null) == Z ]]; then
    break
  fi
  (( ++i <= polls )) || fail "still running $DEMO_TIMEOUT s after SIGTERM"
  sleep "$POLL"
done
status=0
wait "$pid" || status=$?
pid=
if (( status != 0 )); then
  if (( status > 128 )); then
    fail "exit status $status (killed by signal $((status - 128)))"
  fi
  fail "exit status $status, expected 0"
fi
say "the program exited with status 0"
show_output
say "OK"
