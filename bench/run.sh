#!/usr/bin/env bash
# The comparison suite: sockit against its peers on 127.0.0.1, in one run, one table.
# Run on demand (it takes minutes and wants an otherwise idle machine); CI never runs it.
#
#   bash bench/run.sh                 # everything, the table on stdout
#   bash bench/run.sh --only echo     # one section: echo, files, tree, sessions, idle;
#                                     # metrics, flood and mixed run only when named
#   bash bench/run.sh --only tree --tree-fs ext4   # folders on a fresh journaled ext4 (loop, root)
#   bash bench/run.sh --help          # sizes, durations, repetitions
#
# It installs the peers by package name when missing (apt-get: socat netcat-openbsd
# openssh-server openssh-client vsftpd curl rsync; pip: pyftpdlib), builds sockit and the minimal
# tokio echo in release mode, then hands over to bench/compare.py, which starts every
# contender on a free loopback port, drives them with the same load, and stops them by PID.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v socat >/dev/null || need_apt+=(socat)
command -v nc >/dev/null || need_apt+=(netcat-openbsd)
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v scp >/dev/null || need_apt+=(openssh-client)
[ -x /usr/sbin/vsftpd ] || need_apt+=(vsftpd)
command -v curl >/dev/null || need_apt+=(curl)
command -v rsync >/dev/null || need_apt+=(rsync)
command -v python3 >/dev/null || need_apt+=(python3 python3-pip)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >&2
fi
python3 -c 'import pyftpdlib' 2>/dev/null || python3 -m pip install -q pyftpdlib >&2

# The doors (HTTPS, FTPS) against nginx, vsftpd and pyftpdlib: a script of its own, since its
# servers are configured by files (bench/doors.sh; SIZE_MB, ROUNDS, OUT_DIR as it says).
if [ "${1:-}" = --only ] && [ "${2:-}" = doors ]; then
  if ! command -v nginx >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light >&2
  fi
  python3 -c 'import OpenSSL' 2>/dev/null || python3 -m pip install -q pyopenssl >&2
  exec bash bench/doors.sh
fi

cargo build --release --bin sockit --example tokio_echo >&2
target="${CARGO_TARGET_DIR:-target}"
exec python3 bench/compare.py --sockit "$target/release/sockit" \
  --tokio-echo "$target/release/examples/tokio_echo" "$@"
