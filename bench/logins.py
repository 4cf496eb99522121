#!/usr/bin/env python3
"""A flood of logins against one `sockit serve`: the server's memory, threads and wall time.

    python3 bench/logins.py --sockit target/release/sockit               # 500 good logins
    python3 bench/logins.py --sockit target/release/sockit --wrong       # half of them wrong
    python3 bench/logins.py --sockit target/release/sockit --connections 40

It makes a temporary data folder, adds the user `bench` with `sockit user add --password-stdin`
(the standard argon2id cost: 19 MiB a check), starts `sockit serve --listen 127.0.0.1:0` on it,
opens N TCP connections at once, then sends a login frame on every one of them at once and
reads every reply. Meanwhile it samples the server's /proc/PID/status every few milliseconds.

The connections come from source addresses spread over 127.0.0.2..127.0.0.254 (--addresses,
round robin): the server holds at most --max-connections-per-ip (default 128) connections of
one address. With --wrong every second connection guesses a wrong password; the server throttles
failures per address (5 failures, then a 30 s cool-down), so no address makes more than 4 wrong
guesses (the bench refuses a plan that would).

One line per figure on stdout. Exits non-zero when a good login fails, a wrong one succeeds or
is answered with anything but `auth_failed`, or the server had to be killed for going over
--kill-above-mib of RSS. Python 3 standard library only; the server is stopped by its PID.
"""
import argparse
import asyncio
import atexit
import json
import os
import secrets
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

MiB = 1 << 20
WRONG_PER_ADDRESS = 4  # the throttle refuses an address after its 5th failure
MAX_ADDRESSES = 253  # 127.0.0.2 ..= 127.0.0.254
SERVER = None  # the one process we start, stopped by PID at exit


def stop_server():
    p = SERVER
    if p is None or p.poll() is not None:
        return
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=15)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


atexit.register(stop_server)
for sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, lambda *_: sys.exit(130))


def status(pid):
    """VmRSS and VmHWM in bytes and the thread count, from /proc/PID/status (None once gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
        elif key == "Threads":
            fields[key] = int(value)
    if len(fields) < 3:  # a zombie has no Vm lines
        return None
    return fields


class Sampler(threading.Thread):
    """Samples the server every `period` s: peak VmRSS, last VmHWM, peak threads; kills the
    server by its PID when its RSS goes over `kill_above` bytes."""

    def __init__(self, pid, period, kill_above):
        super().__init__(daemon=True)
        self.pid, self.period, self.kill_above = pid, period, kill_above
        self.peak_rss = self.hwm = self.peak_threads = self.samples = 0
        self.killed_at = None  # the RSS it had when we killed it
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            s = status(self.pid)
            if s is None:
                return
            self.samples += 1
            self.peak_rss = max(self.peak_rss, s["VmRSS"])
            self.hwm = max(self.hwm, s["VmHWM"])
            self.peak_threads = max(self.peak_threads, s["Threads"])
            if s["VmRSS"] > self.kill_above and self.killed_at is None:
                self.killed_at = s["VmRSS"]
                os.kill(self.pid, signal.SIGKILL)
                return
            time.sleep(self.period)


def frame(header):
    h = json.dumps(header).encode()
    return struct.pack("<i", len(h)) + h


async def read_frame(reader):
    (n,) = struct.unpack("<i", await reader.readexactly(4))
    header = json.loads(await reader.readexactly(n))
    size = header.get("total_size", 0)
    if size:
        await reader.readexactly(size)
    return header


def outcome(header):
    """'ok', or the error code (or a short description of an odd reply)."""
    if header.get("ok") is True:
        return "ok"
    error = header.get("error")
    if isinstance(error, dict):
        return error.get("code", "no code")
    return f"odd reply {header!r}"[:200]


async def flood(addr, plan, timeout):
    """plan: one (source address, password, good?) a connection. Connects them all at
    once, then logs them all in at once; returns (connect seconds, login seconds, per-connection
    (outcome, latency), the open writers)."""
    host, port = addr.rsplit(":", 1)
    port = int(port)

    async def connect(source):
        return await asyncio.open_connection(host, port, local_addr=(source, 0))

    t0 = time.monotonic()
    pairs = await asyncio.gather(*(connect(src) for src, _, _ in plan), return_exceptions=True)
    connect_s = time.monotonic() - t0

    async def login(pair, password):
        if isinstance(pair, BaseException):
            return f"connect failed: {pair!r}", None
        reader, writer = pair
        start = time.monotonic()
        try:
            writer.write(frame({"op": "login", "user": "bench", "password": password}))
            await writer.drain()
            reply = await read_frame(reader)
        except (OSError, asyncio.IncompleteReadError, ValueError) as e:
            return f"connection failed: {e!r}"[:200], None
        return outcome(reply), time.monotonic() - start

    t1 = time.monotonic()
    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(login(pair, pw) for pair, (_, pw, _) in zip(pairs, plan))),
            timeout,
        )
    except asyncio.TimeoutError:
        results = None
    login_s = time.monotonic() - t1
    writers = [p[1] for p in pairs if not isinstance(p, BaseException)]
    return connect_s, login_s, results, writers


def make_plan(n, wrong, password, addresses):
    """One (source address, password, good?) a connection: sources round robin over
    127.0.0.2.., every second one wrong with --wrong."""
    plan = []
    wrong_from = {}
    for i in range(n):
        source = f"127.0.0.{2 + i % addresses}"
        if wrong and i % 2 == 1:
            plan.append((source, "not-" + password, False))
            wrong_from[source] = wrong_from.get(source, 0) + 1
        else:
            plan.append((source, password, True))
    if wrong_from and max(wrong_from.values()) > WRONG_PER_ADDRESS:
        sys.exit(f"--wrong: {max(wrong_from.values())} wrong guesses from one address would "
                 f"be throttled; use more --addresses or fewer --connections")
    return plan


def start_server(sockit, data, log):
    global SERVER
    SERVER = subprocess.Popen(
        [sockit, "serve", "--listen", "127.0.0.1:0", "--data", data],
        stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True,
    )
    addr = None
    for line in SERVER.stdout:
        if line.startswith("sockit: native protocol on "):
            addr = line.split(" on ", 1)[1].strip().split(" (TLS ", 1)[0]
            break
    if addr is None:
        sys.exit(f"sockit serve exited ({SERVER.wait()}) before it listened; see {log.name}")
    # Keep its stdout drained: a full pipe would stall the server.
    threading.Thread(target=lambda: [None for _ in SERVER.stdout], daemon=True).start()
    return addr


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sockit", required=True, help="a built sockit binary")
    ap.add_argument("--connections", type=int, default=500, help="logins at once [500]")
    ap.add_argument("--wrong", action="store_true",
                    help="every second login guesses a wrong password (<= 4 an address)")
    ap.add_argument("--addresses", type=int, default=MAX_ADDRESSES,
                    help=f"source addresses, from 127.0.0.2 on [{MAX_ADDRESSES}]")
    ap.add_argument("--settle", type=float, default=3.0,
                    help="seconds to wait before each settled sample [3]")
    ap.add_argument("--timeout", type=float, default=900.0,
                    help="seconds to wait for all replies [900]")
    ap.add_argument("--kill-above-mib", type=int, default=12 * 1024,
                    help="kill the server (by PID) when its RSS goes over this [12288]")
    ap.add_argument("--period", type=float, default=0.005, help="sampling period, s [0.005]")
    args = ap.parse_args()
    if args.connections < 1:
        ap.error("--connections must be at least 1")
    if not 1 <= args.addresses <= MAX_ADDRESSES:
        ap.error(f"--addresses must be 1..{MAX_ADDRESSES}")
    sockit = os.path.abspath(args.sockit)
    password = "bench-" + secrets.token_hex(8)
    plan = make_plan(args.connections, args.wrong, password, args.addresses)

    with tempfile.TemporaryDirectory(prefix="sockit-logins-") as tmp:
        data = os.path.join(tmp, "data")
        subprocess.run([sockit, "user", "add", "bench", "--password-stdin", "--data", data],
                       input=password + "\n", text=True, check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(tmp, "server.log"), "w") as log:
            addr = start_server(sockit, data, log)
            pid = SERVER.pid
            time.sleep(0.2)
            before = status(pid)
            sampler = Sampler(pid, args.period, args.kill_above_mib * MiB)
            sampler.start()
            connect_s, login_s, results, writers = asyncio.run(
                flood_and_settle(addr, plan, args, pid))
            sampler.halt.set()
            sampler.join()
            report(args, plan, before, sampler, connect_s, login_s, results, writers)
            stop_server()
    return exit_code(plan, sampler, results)


SETTLED = {}  # "open" / "closed": the status sampled after --settle seconds


async def flood_and_settle(addr, plan, args, pid):
    connect_s, login_s, results, writers = await flood(addr, plan, args.timeout)
    await asyncio.sleep(args.settle)
    SETTLED["open"] = status(pid)
    for w in writers:
        w.close()
    await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)
    await asyncio.sleep(args.settle)
    SETTLED["closed"] = status(pid)
    return connect_s, login_s, results, len(writers)


def mib(n):
    return "gone" if n is None else f"{n / MiB:.1f} MiB"


def report(args, plan, before, sampler, connect_s, login_s, results, connected):
    good = sum(1 for _, _, g in plan if g)
    wrong = len(plan) - good
    per_source = {}
    for source, _, _ in plan:
        per_source[source] = per_source.get(source, 0) + 1
    print(f"sockit: {args.sockit}")
    print(f"connections: {len(plan)} (good {good}, wrong {wrong}; {len(per_source)} source "
          f"addresses, at most {max(per_source.values())} connections each)")
    print(f"connected: {connected}/{len(plan)} in {connect_s:.2f} s")
    if results is None:
        print(f"logins: no answer to all within {args.timeout:.0f} s")
    else:
        good_ok = sum(1 for (o, _), (_, _, g) in zip(results, plan) if g and o == "ok")
        wrong_refused = sum(1 for (o, _), (_, _, g) in zip(results, plan)
                            if not g and o == "auth_failed")
        print(f"good logins ok: {good_ok}/{good}")
        if wrong:
            print(f"wrong logins refused (auth_failed): {wrong_refused}/{wrong}")
        odd = {}
        for (o, _), (_, _, g) in zip(results, plan):
            if (g and o != "ok") or (not g and o != "auth_failed"):
                odd[o] = odd.get(o, 0) + 1
        for o, count in sorted(odd.items(), key=lambda kv: -kv[1]):
            print(f"unexpected outcome: {count} x {o}")
        lat = sorted(t for _, t in results if t is not None)
        if lat:
            print(f"login wall time: {login_s:.2f} s")
            print(f"reply latency median: {statistics.median(lat):.2f} s")
            print(f"reply latency max: {lat[-1]:.2f} s")
    print(f"rss before: {mib(before['VmRSS'])}")
    print(f"rss peak (sampled VmRSS, {sampler.samples} samples): {mib(sampler.peak_rss)}")
    print(f"rss peak (VmHWM): {mib(sampler.hwm)}")
    if sampler.killed_at is not None:
        print(f"server killed: RSS {mib(sampler.killed_at)} over {args.kill_above_mib} MiB")
    opened, closed = SETTLED.get("open"), SETTLED.get("closed")
    print(f"rss settled, {args.settle:g} s after the replies, connections open: "
          f"{mib(opened and opened['VmRSS'])}")
    print(f"rss settled, {args.settle:g} s after closing them: {mib(closed and closed['VmRSS'])}")
    print(f"threads before: {before['Threads']}")
    print(f"threads peak: {sampler.peak_threads}")
    print(f"threads settled (connections closed): {closed['Threads'] if closed else 'gone'}")


def exit_code(plan, sampler, results):
    if sampler.killed_at is not None or results is None:
        return 1
    for (o, _), (_, _, g) in zip(results, plan):
        if (g and o != "ok") or (not g and o != "auth_failed"):
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
