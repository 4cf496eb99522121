"""The seeds' server design, speaking sockit's echo op, for `sockit bench echo` to drive.

Written the way the seeds write servers (socketserver.ThreadingTCPServer, a thread per
connection, recv(1024) and `data +=`, struct.pack('i') + json header framing, three send()
calls per reply: length, header, body; listen backlog 5). Only the op is sockit's:
{"op": "echo", "total_size": n} + n bytes is answered with {"ok": true, "total_size": n}
+ the same bytes. With --nodelay the accepted sockets get TCP_NODELAY (the one-line fix
for the seeds' 44 ms Nagle + delayed-ACK stall); otherwise Nagle stays on, as in the seeds.

Usage: python3 seed_echo_server.py PORT [--nodelay]   (binds 127.0.0.1; prints the port)
"""
import json
import socket
import socketserver
import struct
import sys

NODELAY = "--nodelay" in sys.argv


def recv_exact(conn, n):
    """The seeds' receive loop: recv(1024) until n bytes are there."""
    data = b""
    while len(data) < n:
        chunk = conn.recv(min(1024, n - len(data)))
        if not chunk:
            return None
        data += chunk
    return data


class EchoHandler(socketserver.BaseRequestHandler):
    def handle(self):
        conn = self.request
        if NODELAY:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:  # 通信循环
            try:
                prefix = recv_exact(conn, 4)
                if prefix is None:
                    break
                header_len = struct.unpack("i", prefix)[0]
                if header_len <= 0 or header_len > 65536:
                    break
                header = json.loads(recv_exact(conn, header_len).decode("utf-8"))
                total_size = header.get("total_size", 0)
                body = recv_exact(conn, total_size) if total_size else b""
                if body is None:
                    break
                if header.get("op") == "echo":
                    reply = {"ok": True, "total_size": len(body)}
                else:
                    reply = {"ok": False, "total_size": 0,
                             "error": {"code": "unknown_op", "message": "echo only"}}
                    body = b""
                reply_bytes = json.dumps(reply).encode("utf-8")
                conn.send(struct.pack("i", len(reply_bytes)))
                conn.send(reply_bytes)
                if body:
                    conn.sendall(body)
            except (ConnectionResetError, BrokenPipeError, ValueError, AttributeError):
                break


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 5  # the seeds' listen(5)


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 0
    with Server(("127.0.0.1", port), EchoHandler) as server:
        print(server.server_address[1], flush=True)
        server.serve_forever()
