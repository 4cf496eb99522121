#!/usr/bin/env bash
# The doors, measured: one large file downloaded through each of sockit's doors and through
# the servers people would run instead, in the same run, rounds interleaved, medians:
#
#   sockit get          the native protocol over TLS (verified by BLAKE3, written durably)
#   sockit https        the HTTP door, WebDAV GET over HTTPS (curl)
#   nginx https         nginx (Debian nginx-light) serving the same file over HTTPS (curl)
#   sockit ftps         the FTP door, explicit FTPS, passive (curl --ssl-reqd)
#   vsftpd ftps         vsftpd (Debian) with explicit FTPS, anonymous, passive (curl)
#   pyftpdlib ftps      pyftpdlib (PyPI) with TLS_FTPHandler, anonymous, passive (curl)
#
# Every server uses the same certificate (sockit's own) and runs on loopback; every client
# writes the file to disk. A server that is not installed is skipped and said so. Release
# build. Run on demand, on an otherwise idle machine; CI never runs it.
#
# Before each timed download the machine's dirty pages are written out (`sync`, not timed), so
# no contender pays for the one before. The clients write to OUT_DIR (default: the temp
# folder, on disk). On a VM whose page-cache writes are slow, curl's writes bound the curl
# rows (sockit get writes with O_DIRECT); OUT_DIR=/dev/shm measures memory to memory instead.
#
#   bash bench/doors.sh                 # 1 GiB, 3 rounds
#   SIZE_MB=256 ROUNDS=5 bash bench/doors.sh
#   OUT_DIR=/dev/shm bash bench/doors.sh
set -euo pipefail
cd "$(dirname "$0")/.."
size_mb="${SIZE_MB:-1024}"
rounds="${ROUNDS:-3}"

cargo build --release --bin sockit >&2
sockit="$PWD/${CARGO_TARGET_DIR:-target}/release/sockit"
work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work" "${out_dir:-}"
}
trap cleanup EXIT

port() { python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"; }
mkdir -p "$work/files"
head -c "$((size_mb * 1024 * 1024))" /dev/urandom >"$work/files/big.bin"
export SOCKIT_PASSWORD=bench-password SOCKIT_KNOWN_HOSTS="$work/known_hosts" SOCKIT_TRUST=accept-new

# sockit with both doors.
data="$work/data"
"$sockit" user add bench --data "$data" --password-stdin <<<"$SOCKIT_PASSWORD" >/dev/null
mkfifo "$work/sockit.out"
"$sockit" serve --listen 127.0.0.1:0 --http 127.0.0.1:0 --ftp 127.0.0.1:0 --data "$data" \
  --ftp-passive-ports 43000-43099 >"$work/sockit.out" 2>"$work/sockit.log" &
pids+=($!)
exec 3<"$work/sockit.out"
read -r native <&3
read -r http <&3
read -r ftp <&3
native="$(sed -E 's/^sockit: native protocol on ([^ ]+).*/\1/' <<<"$native")"
http="${http##* }"
ftp="${ftp##* }"
cat <&3 >/dev/null &
"$sockit" put "$work/files/big.bin" big.bin -s "$native" -u bench >/dev/null
cert="$data/tls/cert.pem" key="$data/tls/key.pem"

# nginx, HTTPS, the same file.
nginx_port=""
if command -v nginx >/dev/null; then
  nginx_port="$(port)"
  mkdir -p "$work/nginx"
  cat >"$work/nginx/nginx.conf" <<EOF
user root;
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 64; }
http {
  access_log off;
  sendfile on;
  server {
    listen 127.0.0.1:$nginx_port ssl;
    ssl_certificate $cert;
    ssl_certificate_key $key;
    root $work/files;
  }
}
EOF
  nginx -c "$work/nginx/nginx.conf" -g 'daemon off;' &
  pids+=($!)
else
  echo "nginx is not installed (apt nginx-light): skipped" >&2
fi

# vsftpd, explicit FTPS, anonymous, the same file.
vsftpd_port=""
if command -v vsftpd >/dev/null; then
  vsftpd_port="$(port)"
  mkdir -p /var/run/vsftpd/empty
  cat >"$work/vsftpd.conf" <<EOF
listen=YES
listen_address=127.0.0.1
listen_port=$vsftpd_port
anonymous_enable=YES
anon_root=$work/files
no_anon_password=YES
local_enable=NO
write_enable=NO
pasv_enable=YES
pasv_min_port=43100
pasv_max_port=43199
ssl_enable=YES
allow_anon_ssl=YES
force_anon_logins_ssl=YES
force_anon_data_ssl=YES
require_ssl_reuse=NO
ssl_ciphers=HIGH
rsa_cert_file=$cert
rsa_private_key_file=$key
seccomp_sandbox=NO
EOF
  vsftpd "$work/vsftpd.conf" &
  pids+=($!)
else
  echo "vsftpd is not installed (apt vsftpd): skipped" >&2
fi

# pyftpdlib, TLS, anonymous, the same file.
pyftpdlib_port=""
if python3 -c "import pyftpdlib, OpenSSL" 2>/dev/null; then
  pyftpdlib_port="$(port)"
  python3 - "$pyftpdlib_port" "$work/files" "$cert" "$key" <<'EOF' &
import sys
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import TLS_FTPHandler
from pyftpdlib.servers import FTPServer
port, root, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
auth = DummyAuthorizer()
auth.add_anonymous(root)
TLS_FTPHandler.certfile, TLS_FTPHandler.keyfile = cert, key
TLS_FTPHandler.authorizer = auth
TLS_FTPHandler.tls_control_required = TLS_FTPHandler.tls_data_required = True
TLS_FTPHandler.passive_ports = range(43200, 43300)
FTPServer(("127.0.0.1", port), TLS_FTPHandler).serve_forever()
EOF
  pids+=($!)
else
  echo "pyftpdlib is not installed (pip pyftpdlib pyopenssl): skipped" >&2
fi
# Each listens once its port takes a connection.
wait_port() {
  until python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])))" \
    "$1" 2>/dev/null; do sleep 0.1; done
}
for p in $nginx_port $vsftpd_port $pyftpdlib_port; do wait_port "$p"; done

seconds() {
  local t0 t1
  sync
  t0=$(date +%s.%N)
  "$@" >/dev/null
  t1=$(date +%s.%N)
  python3 -c "print($t1 - $t0)"
}
out_dir="$(mktemp -d "${OUT_DIR:-$work}/sockit-doors.XXXXXX")"
out="$out_dir/out.bin"
curl_get=(curl -sSf -k -o "$out")
declare -A times
for round in $(seq "$rounds"); do
  rm -f "$out"
  times[sockit-get]+="$(seconds "$sockit" get big.bin "$out" -s "$native" -u bench) "
  cmp "$work/files/big.bin" "$out" && rm -f "$out"
  times[sockit-https]+="$(seconds "${curl_get[@]}" -u "bench:$SOCKIT_PASSWORD" "https://$http/dav/big.bin") "
  cmp "$work/files/big.bin" "$out"
  if [ -n "$nginx_port" ]; then
    rm -f "$out"
    times[nginx-https]+="$(seconds "${curl_get[@]}" "https://127.0.0.1:$nginx_port/big.bin") "
    cmp "$work/files/big.bin" "$out"
  fi
  rm -f "$out"
  times[sockit-ftps]+="$(seconds "${curl_get[@]}" --ssl-reqd -u "bench:$SOCKIT_PASSWORD" "ftp://$ftp/big.bin") "
  cmp "$work/files/big.bin" "$out"
  if [ -n "$vsftpd_port" ]; then
    rm -f "$out"
    times[vsftpd-ftps]+="$(seconds "${curl_get[@]}" --ssl-reqd -u anonymous: "ftp://127.0.0.1:$vsftpd_port/big.bin") "
    cmp "$work/files/big.bin" "$out"
  fi
  if [ -n "$pyftpdlib_port" ]; then
    rm -f "$out"
    times[pyftpdlib-ftps]+="$(seconds "${curl_get[@]}" --ssl-reqd -u anonymous: "ftp://127.0.0.1:$pyftpdlib_port/big.bin") "
    cmp "$work/files/big.bin" "$out"
  fi
  rm -f "$out"
  echo "round $round done" >&2
done

echo "# ${size_mb} MiB download into ${OUT_DIR:-a temp folder on disk}, $rounds rounds, median MB/s (and seconds)"
for key in sockit-get sockit-https nginx-https sockit-ftps vsftpd-ftps pyftpdlib-ftps; do
  [ -n "${times[$key]:-}" ] || continue
  python3 - "$key" "$size_mb" ${times[$key]} <<'EOF'
import statistics, sys
key, size = sys.argv[1], int(sys.argv[2]) * 1024 * 1024
median = statistics.median(float(t) for t in sys.argv[3:])
print(f"{key:15} {size / median / 1e6:8.0f} MB/s  ({median:.2f} s)")
EOF
done
