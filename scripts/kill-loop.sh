#!/usr/bin/env bash
# kill-loop.sh: SIGKILL `chatd serve` again and again during an acknowledged
# stream, and check after every restart that no acknowledged message was
# lost and no stored record is corrupt.
#
#   scripts/kill-loop.sh [--kills N] [--policies "always 10ms"] [--backend poll|iocp]
#                        [--chatd PATH]
#
# For each fsync policy: one data directory, N rounds. A round starts the
# server on 127.0.0.1 (loopback only), scans the logs the restarted server
# recovered (acknowledged ids missing = lost; lines failing their checksum
# or JSON = corrupt), then streams `#ack on` messages and kills the server
# with SIGKILL after a random number of ACKs (50 to 400). A last restart
# checks the last round. Every wait is bounded (the server has 10 s to
# listen, a stream 30 s to be killed), the loop ends by itself, and the
# exit status is non-zero if anything was lost or corrupt, or ids did not
# keep increasing across restarts.
#
# A SIGKILL leaves the page cache intact, so this checks the ACK rule and
# recovery of the process, not power cuts (see the simulated-disk crash
# test, docs/RELIABILITY.md).
set -euo pipefail
cd "$(dirname "$0")/.."

kills=50
policies="always 10ms"
backend=poll
chatd=target/release/chatd
while [ $# -gt 0 ]; do
    case "$1" in
    --kills) kills=$2; shift 2 ;;
    --policies) policies=$2; shift 2 ;;
    --backend) backend=$2; shift 2 ;;
    --chatd) chatd=$2; shift 2 ;;
    *) echo "usage: $0 [--kills N] [--policies \"always 10ms\"] [--backend poll|iocp] [--chatd PATH]" >&2; exit 2 ;;
    esac
done
if [ ! -x "$chatd" ]; then
    echo "no chatd binary at $chatd (cargo build --release, or --chatd PATH)" >&2
    exit 2
fi
command -v python3 >/dev/null || { echo "python3 is needed for the client" >&2; exit 2; }

work=$(mktemp -d)
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then kill -9 "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/helper.py" <<'EOF'
import json, os, random, signal, socket, sys, threading, time, zlib

def scan(data_dir):
    """Ids of good records, corrupt lines, and whether a line lacks its LF."""
    ids, corrupt, torn = set(), 0, 0
    for name in sorted(os.listdir(data_dir)):
        if not name.endswith(".log"):
            continue
        with open(os.path.join(data_dir, name), "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    torn += 1
                    continue
                line = line[:-1]
                try:
                    crc, body = line[:8], line[9:]
                    if line[8:9] != b" " or int(crc, 16) != zlib.crc32(body):
                        raise ValueError("checksum")
                    record = json.loads(body)
                    if record.get("kind") != "reserve":
                        ids.add(record["id"])
                except Exception:
                    corrupt += 1
    return ids, corrupt, torn

def check(data_dir, acked_file):
    ids, corrupt, torn = scan(data_dir)
    acked = set()
    if os.path.exists(acked_file):
        with open(acked_file) as f:
            acked = {int(x) for x in f.read().split()}
    lost = sorted(acked - ids)
    print(f"{len(acked)} {len(lost)} {corrupt} {torn}")

def stream(port, pid, acked_file, seed):
    random.seed(seed)
    kill_after = random.randint(50, 400)
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    reader = sock.makefile("rb")
    sock.sendall(b"#ack on\n")
    while reader.readline().rstrip(b"\n") != b"* acknowledgements on":
        pass
    def send():
        i = 0
        try:
            while i < 1_000_000:
                sock.sendall(f"kill-loop message {i}\n".encode())
                i += 1
        except OSError:
            pass
    threading.Thread(target=send, daemon=True).start()
    acked, killed, deadline = [], False, time.time() + 30
    try:
        for line in reader:
            # Only whole lines: the kill can cut the last one short
            # ("+ ack 198" of "+ ack 198731").
            if line.startswith(b"+ ack ") and line.endswith(b"\n"):
                acked.append(int(line[6:]))
                if len(acked) == kill_after and not killed:
                    os.kill(pid, signal.SIGKILL)
                    killed = True
            if time.time() > deadline:
                break
    except OSError:
        pass
    if not killed:
        os.kill(pid, signal.SIGKILL)
    with open(acked_file, "a") as f:
        f.write(" ".join(map(str, acked)) + "\n")
    print(f"{len(acked)} {min(acked, default=0)} {max(acked, default=0)}")

if sys.argv[1] == "check":
    check(sys.argv[2], sys.argv[3])
elif sys.argv[1] == "stream":
    stream(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5]))
elif sys.argv[1] == "port":
    s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
EOF

printf '[rate_limit]\nenabled = false\n' >"$work/chatd.toml"

# Starts the server on $port with $data and $policy; sets server_pid.
start_server() {
    "$chatd" serve --bind "127.0.0.1:$port" --irc-bind none --data-dir "$data" --fsync "$policy" \
        --backend "$backend" --threads 2 --config "$work/chatd.toml" --log-level warn \
        2>>"$work/server.log" &
    server_pid=$!
    for _ in $(seq 100); do
        if python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), timeout=1).close()" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "the server did not listen on 127.0.0.1:$port within 10 s" >&2
    exit 1
}

failures=0
for policy in $policies; do
    data="$work/data-$policy"
    acked_file="$work/acked-$policy"
    port=$(python3 "$work/helper.py" port)
    total_lost=0 total_corrupt=0 total_acked=0 previous_max=0 kills_done=0
    echo "== fsync $policy, backend $backend, $kills kills"
    printf '%5s %8s %12s %14s %10s %8s %6s\n' round acked "ids" "acked so far" lost corrupt torn
    for round in $(seq "$kills"); do
        start_server
        read -r acked_so_far lost corrupt torn < <(python3 "$work/helper.py" check "$data" "$acked_file")
        read -r acked first last < <(python3 "$work/helper.py" stream "$port" "$server_pid" "$acked_file" "$round")
        wait "$server_pid" 2>/dev/null || true
        server_pid=
        kills_done=$((kills_done + 1))
        if [ "$round" -gt 1 ]; then
            printf '%5s %8s %12s %14s %10s %8s %6s\n' "$((round - 1))" "$prev_acked" "$prev_ids" "$acked_so_far" "$lost" "$corrupt" "$torn"
        fi
        if [ "$acked" -gt 0 ] && [ "$first" -le "$previous_max" ]; then
            echo "round $round: id $first was not above the last acknowledged id $previous_max" >&2
            failures=$((failures + 1))
        fi
        [ "$acked" -gt 0 ] && previous_max=$last
        prev_acked=$acked prev_ids="$first-$last"
        total_lost=$lost
        [ "$corrupt" -gt "$total_corrupt" ] && total_corrupt=$corrupt
    done
    # One more restart checks the last round.
    start_server
    read -r acked_so_far lost corrupt torn < <(python3 "$work/helper.py" check "$data" "$acked_file")
    printf '%5s %8s %12s %14s %10s %8s %6s\n' "$kills" "$prev_acked" "$prev_ids" "$acked_so_far" "$lost" "$corrupt" "$torn"
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
    total_lost=$lost
    [ "$corrupt" -gt "$total_corrupt" ] && total_corrupt=$corrupt
    echo "fsync $policy: $kills_done SIGKILLs, $acked_so_far acknowledged, $total_lost lost, at most $total_corrupt corrupt lines after a restart"
    if [ "$total_lost" -ne 0 ] || [ "$total_corrupt" -ne 0 ]; then
        failures=$((failures + 1))
    fi
done
if [ "$failures" -ne 0 ]; then
    echo "FAILED: $failures problem(s); server log: $work/server.log" >&2
    trap - EXIT
    exit 1
fi
echo "OK"
