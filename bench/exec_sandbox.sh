#!/usr/bin/env bash
# What the exec sandbox costs: start-to-exit time of `sockit exec true` and `sockit exec 'ls -l'`
# (the whole client run: connect, key login, the command, its exit), median of N runs, against
# three servers on loopback, each with its own data folder:
#   sandbox      the default: namespaces (network too), Landlock, limits, control groups
#   network-on   the same with --exec-network on (no network namespace to make)
#   none         no sandbox: SOCKIT_EXEC_PRETEND_MISSING=helper --exec-unconfined, a plain sh -c
# Run on demand, on an otherwise idle machine; CI never runs it.
#
#   bash bench/exec_sandbox.sh        # 50 runs each
#   RUNS=200 bash bench/exec_sandbox.sh
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${RUNS:-50}"

cargo build --release --bin sockit >&2
sockit="$PWD/${CARGO_TARGET_DIR:-target}/release/sockit"
work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$sockit" key gen "$work/id" >/dev/null

# start NAME [ENV=VALUE] -- FLAGS...: a server; sets $addr to its native address.
start() {
  local name="$1"
  shift
  local env=()
  while [ "$1" != "--" ]; do env+=("$1"); shift; done
  shift
  local data="$work/$name"
  "$sockit" user add bench --data "$data" --password-stdin <<<"unused-password" >/dev/null
  "$sockit" user key add bench "$work/id.pub" --data "$data" >/dev/null
  mkfifo "$work/$name.out"
  env "${env[@]}" "$sockit" serve --listen 127.0.0.1:0 --data "$data" --allow-exec "$@" \
    >"$work/$name.out" 2>"$work/$name.log" &
  pids+=($!)
  local line
  read -r line <"$work/$name.out"
  addr="$(sed -E 's/^sockit: native protocol on ([^ ]+).*/\1/' <<<"$line")"
  # Keep reading its stdout, so that it never blocks on a full pipe.
  cat "$work/$name.out" >/dev/null &
}

# median MS of `sockit exec COMMAND` against $addr, over $runs runs.
median() {
  local times=()
  for _ in $(seq "$runs"); do
    local t0 t1
    t0=$(date +%s%N)
    "$sockit" exec --plaintext -s "$addr" -u bench -i "$work/id" "$1" >/dev/null
    t1=$(date +%s%N)
    times+=($(( (t1 - t0) / 1000 )))
  done
  printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; printf "%.2f", m / 1000}'
}

printf '%-12s %14s %14s\n' "server" "true (ms)" "ls -l (ms)"
for setup in "sandbox|--" "network-on|-- --exec-network on" \
  "none|SOCKIT_EXEC_PRETEND_MISSING=helper -- --exec-unconfined"; do
  name="${setup%%|*}"
  # shellcheck disable=SC2086
  start "$name" ${setup#*|}
  # One run first: the page cache, the server's first command.
  "$sockit" exec --plaintext -s "$addr" -u bench -i "$work/id" true
  printf '%-12s %14s %14s\n' "$name" "$(median true)" "$(median 'ls -l')"
done
