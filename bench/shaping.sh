#!/usr/bin/env bash
# Bandwidth shaping, measured: how long a 100 MB upload and download take through a server
# shaped at 20 MB/s (expected: 5 s ± 10%; a tenth of a second's burst makes it ~4.9 s),
# each way by each kind of limit, next to the same transfers unshaped. Release build, TLS on
# loopback, the whole client run timed (connect, login, transfer, verify). Run on demand, on
# an otherwise idle machine; CI never runs it.
#
#   bash bench/shaping.sh              # 100 MB at 20 MB/s
#   SIZE_MB=200 RATE=50MB bash bench/shaping.sh
set -euo pipefail
cd "$(dirname "$0")/.."
size_mb="${SIZE_MB:-100}"
rate="${RATE:-20MB}"

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

head -c "$((size_mb * 1000 * 1000))" /dev/urandom >"$work/file.bin"
export SOCKIT_PASSWORD=bench-password SOCKIT_KNOWN_HOSTS="$work/known_hosts"

# start NAME -- FLAGS...: a server with user `bench`; sets $addr and $SOCKIT_FINGERPRINT.
start() {
  local name="$1"
  shift 2
  local data="$work/$name"
  "$sockit" user add bench --data "$data" --password-stdin <<<"$SOCKIT_PASSWORD" >/dev/null
  if [ "$name" = per-user ]; then
    "$sockit" user limit bench --up "$rate" --down "$rate" --data "$data" >/dev/null
  fi
  mkfifo "$work/$name.out"
  "$sockit" serve --listen 127.0.0.1:0 --data "$data" "$@" \
    >"$work/$name.out" 2>"$work/$name.log" &
  pids+=($!)
  local line
  read -r line <"$work/$name.out"
  addr="$(sed -E 's/^sockit: native protocol on ([^ ]+).*/\1/' <<<"$line")"
  export SOCKIT_FINGERPRINT="$(sed -E 's/.*\(TLS (SHA256:[^)]+)\).*/\1/' <<<"$line")"
  cat "$work/$name.out" >/dev/null &
}

# timed LABEL COMMAND...: runs it, prints seconds.
timed() {
  local label="$1"
  shift
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >/dev/null
  t1=$(date +%s.%N)
  printf '%-40s %6.2f s\n' "$label" "$(python3 -c "print($t1 - $t0)")"
}

expected="$(python3 -c "print(round($size_mb * 1e6 / $(numfmt --from=si "${rate%B}"), 2))")"
echo "# ${size_mb} MB each way; shaped at $rate/s (expected $expected s)"
for setup in unshaped server-wide per-connection per-user; do
  case "$setup" in
    unshaped) start "$setup" -- ;;
    server-wide) start "$setup" -- --max-rate-up "$rate" --max-rate-down "$rate" ;;
    per-connection) start "$setup" -- --max-rate-up-per-connection "$rate" \
      --max-rate-down-per-connection "$rate" ;;
    per-user) start "$setup" -- ;;
  esac
  timed "$setup: put (up)" "$sockit" put "$work/file.bin" big.bin -s "$addr" -u bench
  timed "$setup: get (down)" "$sockit" get big.bin "$work/back.bin" -s "$addr" -u bench
  cmp "$work/file.bin" "$work/back.bin"
  rm -f "$work/back.bin"
done
