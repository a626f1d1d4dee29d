#!/usr/bin/env bash
# Side-by-side figures for the load-test kit, each pair measured in one run on this
# machine over loopback:
#   1. pipelining client (volley-load blast) -> volley-load sink vs -> Postfix smtp-sink
#   2. non-pipelining client (smtp-source -d) -> volley-load sink vs -> smtp-sink,
#      with the sink process's CPU time per message
#   3. volley-load blast -> smtp-sink vs smtp-source -d -> smtp-sink
#   4. the wire limit: volley-load blast -> volley-load sink for 4 KB x 1,
#      4 KB x 50 rcpts and 100 KB x 1
# Usage: loadtest/compare.sh            (MESSAGES=N SOURCE_MESSAGES=N to change counts)
set -euo pipefail
cd "$(dirname "$0")/.."

MESSAGES=${MESSAGES:-200000}
SOURCE_MESSAGES=${SOURCE_MESSAGES:-50000}
CONNS=20
SMTP_SINK=/usr/sbin/smtp-sink
SMTP_SOURCE=/usr/sbin/smtp-source
for t in "$SMTP_SINK" "$SMTP_SOURCE"; do
    [[ -x $t ]] || { echo "missing $t: install Debian's postfix package" >&2; exit 2; }
done
command -v jq >/dev/null || { echo "missing jq (apt-get install jq)" >&2; exit 2; }

echo "building volley-load (release)..." >&2
cargo build --release -q -p volley-loadtest
VL=${CARGO_TARGET_DIR:-target}/release/volley-load

PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# A port nothing listens on (smtp-sink binds a taken port without complaint).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() {
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done
    echo "nothing listening on port $1" >&2; exit 1
}
# CPU seconds (user+sys) used so far by a process.
cpu_s() {
    awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"
}
start_volley_sink() {
    local port; port=$(free_port)
    "$VL" sink --quiet --listen "127.0.0.1:$port" >/dev/null 2>&1 &
    SINK_PID=$!; PIDS+=("$SINK_PID"); SINK_PORT=$port; wait_port "$port"
}
start_smtp_sink() {
    local port; port=$(free_port)
    "$SMTP_SINK" -u nobody "127.0.0.1:$port" 1000 >/dev/null 2>&1 &
    SINK_PID=$!; PIDS+=("$SINK_PID"); SINK_PORT=$port; wait_port "$port"
}
stop_sink() { kill "$SINK_PID" 2>/dev/null || true; wait "$SINK_PID" 2>/dev/null || true; }

# blast ARGS... -> prints "msgs_per_s rcpts_per_s p99_ms"
blast() {
    "$VL" blast --target "127.0.0.1:$SINK_PORT" --json --quiet --connections $CONNS "$@" |
        jq -r '"\(.msgs_per_s) \(.rcpts_per_s) \(.latency_ms.p99)"'
}
# source -> prints "msgs_per_s"
source_run() {
    local t0 t1
    t0=$(date +%s.%N)
    "$SMTP_SOURCE" -d -s $CONNS -m "$SOURCE_MESSAGES" -l 4096 "127.0.0.1:$SINK_PORT" >/dev/null
    t1=$(date +%s.%N)
    awk -v m="$SOURCE_MESSAGES" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", m / (b - a) }'
}
row() { printf '%-58s %12s %12s %10s\n' "$@"; }

row "pair (4 KB, 1 rcpt, $CONNS connections unless said)" "msgs/s" "rcpts/s" "extra"
row "----" "------" "-------" "-----"

# 1. Pipelining client -> our sink vs smtp-sink.
start_volley_sink; read -r v1 _ p1 < <(blast --messages "$MESSAGES" --size 4096); stop_sink
start_smtp_sink;   read -r s1 _ q1 < <(blast --messages "$MESSAGES" --size 4096); stop_sink
row "blast (PIPELINING) -> volley-load sink" "${v1%.*}" "" "p99 ${p1}ms"
row "blast (PIPELINING) -> smtp-sink" "${s1%.*}" "" "p99 ${q1}ms"
r1=$(awk -v a="$v1" -v b="$s1" 'BEGIN { printf "%.2f", a / b }')
row "  ratio volley-load sink / smtp-sink (target >= 2)" "$r1" "" ""

# 2. Non-pipelining client -> our sink vs smtp-sink, with sink CPU per message.
start_volley_sink; v2=$(source_run); c_v=$(cpu_s "$SINK_PID"); stop_sink
start_smtp_sink;   s2=$(source_run); c_s=$(cpu_s "$SINK_PID"); stop_sink
us_v=$(awk -v c="$c_v" -v m="$SOURCE_MESSAGES" 'BEGIN { printf "%.1f", c * 1e6 / m }')
us_s=$(awk -v c="$c_s" -v m="$SOURCE_MESSAGES" 'BEGIN { printf "%.1f", c * 1e6 / m }')
row "smtp-source -d -> volley-load sink" "$v2" "" "${us_v}us cpu/msg"
row "smtp-source -d -> smtp-sink" "$s2" "" "${us_s}us cpu/msg"
row "  ratio msgs/s (target >= 1)" "$(awk -v a="$v2" -v b="$s2" 'BEGIN { printf "%.2f", a / b }')" "" ""
row "  ratio sink cpu/msg (target <= 0.75)" "$(awk -v a="$us_v" -v b="$us_s" 'BEGIN { printf "%.2f", a / b }')" "" ""

# 3. Our blaster vs smtp-source, both -> smtp-sink.
start_smtp_sink; read -r b3 _ _ < <(blast --messages "$SOURCE_MESSAGES" --size 4096); stop_sink
start_smtp_sink; s3=$(source_run); stop_sink
row "blast -> smtp-sink" "${b3%.*}" "" ""
row "smtp-source -d -> smtp-sink" "$s3" "" ""
row "  ratio blast / smtp-source (target >= 1)" "$(awk -v a="$b3" -v b="$s3" 'BEGIN { printf "%.2f", a / b }')" "" ""

# 4. Wire limit: blast -> our sink.
start_volley_sink
read -r w1 x1 p1 < <(blast --messages "$MESSAGES" --size 4096 --chunking)
read -r w2 x2 p2 < <(blast --messages $((MESSAGES / 10)) --size 4096 --rcpts-per-msg 50 --domains 1000 --chunking)
read -r w3 x3 p3 < <(blast --messages $((MESSAGES / 10)) --size 102400 --chunking)
stop_sink
row "wire limit: 4 KB x 1 rcpt (BDAT)" "${w1%.*}" "${x1%.*}" "p99 ${p1}ms"
row "wire limit: 4 KB x 50 rcpts (BDAT)" "${w2%.*}" "${x2%.*}" "p99 ${p2}ms"
row "wire limit: 100 KB x 1 rcpt (BDAT)" "${w3%.*}" "${x3%.*}" \
    "$(awk -v m="$w3" 'BEGIN { printf "%.0f MB/s", m * 102400 / 1e6 }')"
