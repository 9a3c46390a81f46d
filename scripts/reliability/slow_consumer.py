#!/usr/bin/env python3
# Usage: python3 scripts/reliability/slow_consumer.py target/release/chatd
# (docs/RELIABILITY.md, "Backends and process").
"""A slow consumer is cut off: what is left of its socket on the server, and what the client sees."""
import os, re, select, socket, subprocess, sys, tempfile, threading, time
CHATD = sys.argv[1]
cfg = tempfile.mktemp(suffix=".toml"); open(cfg, "w").write("[rate_limit]\nenabled = false\n")
for backend in ["poll", "iocp"]:
    p = subprocess.Popen([CHATD, "serve", "--bind", "127.0.0.1:0", "--irc-bind", "none", "--threads", "2", "--no-persist",
                          "--config", cfg, "--backend", backend],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while True:
        m = re.search(r"listening on ([\d.]+):(\d+)", p.stderr.readline())
        if m: addr = (m.group(1), int(m.group(2))); break
    threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
    slow = socket.socket(); slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(addr); slow.recv(100)
    talker = socket.create_connection(addr, source_address=("127.0.0.2", 0)); talker.recv(200)
    stop = False
    def flood():
        # Bounded: a server that reads without backpressure would otherwise
        # queue gigabytes before its core gets to the slow client.
        line = ("x" * 3000 + "\n").encode()
        for _ in range(10_000):
            if stop:
                return
            talker.sendall(line)
    threading.Thread(target=flood, daemon=True).start()
    buf = b""
    while b"quit" not in buf:
        buf += talker.recv(4096)
    cut = time.monotonic(); stop = True
    poller = select.poll(); poller.register(slow, 0)
    ev = poller.poll(5000)
    seen = (time.monotonic() - cut) * 1000
    time.sleep(0.5)
    ss = subprocess.run(["ss", "-tn", "state", "established", f"( sport = :{addr[1]} and dport = :{slow.getsockname()[1]} )"],
                        capture_output=True, text=True).stdout.strip().splitlines()
    print(f"{backend}: client saw {'reset/hang-up' if ev else 'NOTHING'} {seen:.1f} ms after the quit notice; "
          f"server sockets to it still ESTABLISHED 0.5 s later: {len(ss) - 1}")
    p.terminate(); p.wait()
