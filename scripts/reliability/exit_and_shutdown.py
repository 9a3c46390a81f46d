#!/usr/bin/env python3
# Usage: python3 scripts/reliability/exit_and_shutdown.py target/release/chatd
# (docs/RELIABILITY.md, "Backends and process").
"""Times chatd's exit after an injected panic, and SIGTERM shutdown with idle clients."""
import os, re, signal, socket, subprocess, sys, tempfile, time, threading

CHATD = sys.argv[1]

def start(backend, extra, stdin=subprocess.DEVNULL):
    d = tempfile.mkdtemp()
    env = dict(os.environ); env.pop("RUST_BACKTRACE", None)
    p = subprocess.Popen([CHATD, "serve", "--bind", "127.0.0.1:0", "--irc-bind", "none", "--threads", "2",
                          "--data-dir", d, "--backend", backend] + extra,
                         stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
    addr = None
    while addr is None:
        line = p.stderr.readline()
        m = re.search(r"listening on ([\d.]+):(\d+)", line)
        if m: addr = (m.group(1), int(m.group(2)))
    threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
    return p, addr

def client(addr):
    s = socket.create_connection(addr)
    s.recv(200)
    return s

for backend in ["poll", "iocp"]:
    for site in ["hub", "io 0", "io 1"]:
        times = []
        for _ in range(5):
            p, addr = start(backend, ["--manual-clock", "1795000000000"], subprocess.PIPE)
            c = client(addr)
            t = time.monotonic()
            p.stdin.write(f"panic {site}\n"); p.stdin.flush()
            code = p.wait(10)
            times.append((time.monotonic() - t) * 1000)
            try:
                socket.create_connection(addr, timeout=1); refused = False
            except ConnectionRefusedError:
                refused = True
            assert code == 70 and refused, (code, refused)
        print(f"panic {backend:4} {site:5}: exit 70, port refused; ms to exit: min {min(times):.1f} median {sorted(times)[2]:.1f} max {max(times):.1f}")
    times = []
    for _ in range(5):
        p, addr = start(backend, ["--no-persist"])
        cs = [client(addr) for _ in range(10)]
        t = time.monotonic()
        p.send_signal(signal.SIGTERM)
        code = p.wait(10)
        times.append((time.monotonic() - t) * 1000)
        assert code == 0
    print(f"SIGTERM {backend:4}, 10 idle clients that keep their end open: exit 0; ms to exit: min {min(times):.1f} median {sorted(times)[2]:.1f} max {max(times):.1f}")
