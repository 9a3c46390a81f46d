#!/usr/bin/env python3
"""Server memory per idle connection, plain or over TLS.

Starts `chatd serve` (a release build) with a self-signed certificate,
opens N connections to the native listener (plain) or the native TLS
listener (--tls), waits for each one's welcome line, and reports how much
the server's RSS grew per connection. The connections stay open and idle
while RSS is read.

    cargo build --release -p chatd-cli --bin chatd
    scripts/tls-idle-memory.py --backend poll --connections 5000 --tls
"""
import argparse
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import time


def rss(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--chatd", default="target/release/chatd")
    parser.add_argument("--backend", default="poll")
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--tls", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, "chatd.toml")
        with open(config, "w") as f:
            f.write("max_connections = 30000\nmax_connections_per_ip = 30000\n")
        server = subprocess.Popen(
            [args.chatd, "serve", "--config", config, "--backend", args.backend,
             "--bind", "127.0.0.1:0", "--irc-bind", "none",
             "--tls-bind", "127.0.0.1:0", "--tls-self-signed",
             "--no-persist", "--threads", "2", "--log-level", "warn,chatd=info"],
            stderr=subprocess.PIPE, text=True)
        listening = None
        for line in server.stderr:
            if "chatd listening on " in line:
                listening = line
                break
        native = re.search(r"(\S+):(\d+) \(native\)", listening)
        tls = re.search(r"(\S+):(\d+) \(native/tls\)", listening)
        port = int((tls if args.tls else native).group(2))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE

        def connect():
            sock = socket.create_connection(("127.0.0.1", port))
            if args.tls:
                sock = context.wrap_socket(sock, server_hostname="localhost")
            data = b""
            while b"\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    raise RuntimeError("closed before the welcome")
                data += chunk
            return sock

        warm = [connect() for _ in range(50)]
        time.sleep(0.5)
        before = rss(server.pid)
        started = time.time()
        conns = [connect() for _ in range(args.connections)]
        elapsed = time.time() - started
        time.sleep(1.0)
        after = rss(server.pid)
        per = (after - before) / args.connections
        kind = "TLS" if args.tls else "plain"
        print(f"backend {args.backend}, {kind}: {args.connections} idle connections "
              f"(opened in {elapsed:.1f} s); server RSS {before / 2**20:.1f} MiB -> "
              f"{after / 2**20:.1f} MiB = {per:.0f} bytes per connection")
        for sock in conns + warm:
            sock.close()
        server.terminate()
        server.wait()


if __name__ == "__main__":
    sys.exit(main())
