#!/usr/bin/env python3
# Usage: python3 scripts/reliability/flood_memory.py target/debug/chatd
# One client floods 3 KB lines for 3 s into a room with one reader; prints
# the server's peak RSS (docs/RELIABILITY.md, "Backends and process").
import re, socket, subprocess, sys, tempfile, threading, time
CHATD = sys.argv[1]
cfg = tempfile.mktemp(suffix=".toml"); open(cfg, "w").write("[rate_limit]\nenabled = false\n")
def hwm(pid):
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmHWM"): return int(l.split()[1]) // 1024
for backend in ["poll", "iocp"]:
    p = subprocess.Popen([CHATD, "serve", "--bind", "127.0.0.1:0", "--irc-bind", "none", "--threads", "2", "--no-persist", "--config", cfg, "--backend", backend], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while True:
        m = re.search(r"listening on ([\d.]+):(\d+)", p.stderr.readline())
        if m: addr = (m.group(1), int(m.group(2))); break
    threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
    listener = socket.create_connection(addr); listener.recv(200)
    talker = socket.create_connection(addr, source_address=("127.0.0.2", 0)); talker.recv(200)
    got = [0]
    def drain():
        while True:
            try:
                d = listener.recv(1 << 16)
            except ConnectionResetError:
                return  # cut off as a slow consumer, or the server was killed
            if not d: return
            got[0] += len(d)
    threading.Thread(target=drain, daemon=True).start()
    line = ("x" * 3000 + "\n").encode()
    sent = 0; end = time.monotonic() + 3
    while time.monotonic() < end:
        talker.sendall(line * 10); sent += 10
    print(f"{backend}: sent {sent*3001/1e6:.0f} MB in 3 s, listener got {got[0]/1e6:.0f} MB by then, server peak RSS {hwm(p.pid)} MiB")
    p.kill(); p.wait()
