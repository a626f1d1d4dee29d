#!/usr/bin/env bash
# Volley vs Postfix, side by side in one run on this machine (loopback only).
#
#   loadtest/vs-postfix.sh [a|b|c]        (default a)
#
#   a: 4 KB messages, 1 recipient each                 (default 50,000 messages)
#   b: one 4 KB body to 1,000 recipients per
#      transaction, one in each of 1,000 domains      (default 300 messages = 300,000 rcpts)
#   c: 100 KB messages, 1 recipient each               (default 20,000 messages)
#
# Both MTAs relay the same workload to the same sinks: 1,000 test domains
# d0..d999.vsp.volley.test, domain i's MX being `volley-load sink` i % 10 on
# 127.0.50.2..11 (one port). Both are fed by SMTP with `volley-load blast` (same
# count, connections and message; BDAT, which both offer). Volley (relay listener
# on 127.0.50.1, durable RocksDB spool) finds the MX hosts in a DNS zone served on
# loopback; Postfix cannot use a DNS server on another port, so it gets the same
# routes as a static transport table (no DNS lookups: if anything, an advantage).
# Each side is timed from its first injection to the last recipient arriving at
# the sinks; Volley runs first, then is stopped, then Postfix. The last line of
# output is `ratio=<volley/postfix>` (delivered recipients per second).
#
# The private Postfix instance lives in a temporary directory (config, queue, data,
# log), runs as root-started master with mail_owner postfix, and is stopped and
# removed on exit. Every setting that differs from Postfix's defaults is in
# main.cf below with the reason; loadtest/README.md ("Volley vs Postfix") lists
# them with the figures measured.
#
# Environment:
#   MESSAGES=N      transactions per side (default per workload, above)
#   CONNECTIONS=N   blaster connections per side (default 20)
#   TIMEOUT=SECS    bound for each side (default 900); the whole run is bounded too
#   VOLLEY_LOAD=BIN use this volley-load (no build); VOLLEY=BIN the volley binary
#                   (default: built; with VOLLEY_LOAD set and VOLLEY unset, Volley
#                   runs as `volley-load vs-postfix volley`, the same serve code)
#   KEEP=1          keep the temporary directory (logs, configs)
#   DATA=1          inject with DATA instead of BDAT
set -euo pipefail
cd "$(dirname "$0")/.."

WORKLOAD=${1:-a}
case $WORKLOAD in
    a | b | c) ;;
    *) echo "usage: $0 [a|b|c]" >&2; exit 2 ;;
esac
CONNECTIONS=${CONNECTIONS:-20}
TIMEOUT=${TIMEOUT:-900}
MTA_IP=127.0.50.1
SINK_BASE=127.0.50.2
SINKS=10

if [[ $(id -u) -ne 0 ]]; then
    echo "$0: run as root (Postfix's master starts as root, then runs as mail_owner)" >&2
    exit 2
fi

# Debian's postfix, installed without its debconf question; the system instance
# stays off (only the private one below runs).
if [[ ! -x /usr/sbin/postfix ]]; then
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postfix
fi
command -v python3 >/dev/null || { echo "$0: needs python3 (free ports)" >&2; exit 2; }

if [[ -z ${VOLLEY_LOAD:-} ]]; then
    echo "building volley and volley-load (release)..." >&2
    cargo build --release -q -p volley -p volley-loadtest
    TARGET=${CARGO_TARGET_DIR:-target}
    VOLLEY_LOAD=$TARGET/release/volley-load
    VOLLEY=${VOLLEY:-$TARGET/release/volley}
fi

# Volley and the sinks hold hundreds of sockets.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

TMP=$(mktemp -d "${TMPDIR:-/tmp}/vs-postfix.XXXXXX")
chmod 755 "$TMP" # Postfix's daemons (user postfix) must reach their queue
if [[ $(stat -f -c %T "$TMP") == tmpfs ]]; then
    echo "$0: warning: $TMP is on tmpfs: fsync costs nothing there (set TMPDIR to a disk)" >&2
fi
PF="/usr/sbin/postfix -c $TMP/conf"
PF_STARTED=0
RUN_PID=
cleanup() {
    local rc=$?
    # The measuring run and everything it started (its own process group).
    if [[ -n $RUN_PID ]]; then
        kill -TERM -- "-$RUN_PID" 2>/dev/null || kill "$RUN_PID" 2>/dev/null || true
        wait "$RUN_PID" 2>/dev/null || true
    fi
    # Volley, if vs-postfix run did not get to stop it (killed by the time bound).
    if [[ -f $TMP/volley/volley.pid ]]; then
        kill "$(cat "$TMP/volley/volley.pid")" 2>/dev/null || true
    fi
    if ((PF_STARTED)); then
        $PF stop >/dev/null 2>&1 || true
        for _ in $(seq 200); do $PF status >/dev/null 2>&1 || break; sleep 0.05; done
        $PF status >/dev/null 2>&1 && { $PF abort >/dev/null 2>&1 || true; }
    fi
    if [[ ${KEEP:-0} == 1 ]]; then
        echo "kept $TMP" >&2
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A port free on every address given (the sinks share one port number).
free_port() {
    python3 - "$@" <<'EOF'
import socket, sys
for _ in range(50):
    s = socket.socket(); s.bind((sys.argv[1], 0)); port = s.getsockname()[1]; s.close()
    try:
        for ip in sys.argv[1:]:
            t = socket.socket(); t.bind((ip, port)); t.close()
    except OSError:
        continue
    print(port); sys.exit(0)
sys.exit("no common free port")
EOF
}
SINK_IPS=()
for i in $(seq 0 $((SINKS - 1))); do SINK_IPS+=("127.0.50.$((2 + i))"); done
SINK_PORT=$(free_port "${SINK_IPS[@]}")
PF_PORT=$(free_port $MTA_IP)

mkdir -p "$TMP/conf" "$TMP/queue" "$TMP/data" "$TMP/volley"
chown postfix "$TMP/data"

# The routes: the same MX host per domain as Volley's DNS zone.
"$VOLLEY_LOAD" vs-postfix routes --sink-port "$SINK_PORT" --sink-base $SINK_BASE \
    --sinks $SINKS --domains 1000 >"$TMP/conf/transport"
CACHED=$(printf "[%s]:$SINK_PORT, " "${SINK_IPS[@]}")
CACHED=${CACHED%, }

cat >"$TMP/conf/main.cf" <<EOF
# ---- A private relay instance: plumbing, not tuning ----
# Today's defaults, without the backwards-compatibility warnings.
compatibility_level = 3.6
# Everything of this instance under one temporary directory.
config_directory = $TMP/conf
queue_directory = $TMP/queue
data_directory = $TMP/data
# No /dev/log on this machine: log to a file (via postlogd), as Postfix does by
# default through syslog; the log is Postfix's per-delivery record, as Volley's
# delivery log is (enabled on Volley's side too).
maillog_file = $TMP/maillog
maillog_file_prefixes = $TMP
syslog_name = vs-postfix
# Listen on loopback only (smtpd's address and port are in master.cf).
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = postfix.vsp.volley.test
mydomain = vsp.volley.test
# Nothing is delivered locally: a pure relay.
mydestination =
local_recipient_maps =
# Relay for loopback clients only (the blaster), like Volley's [smtp.relay]
# allowed_cidrs; everyone else is refused: not an open relay.
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
# Static routes: each test domain to its sink, [ip]:port = no MX or A lookup.
transport_maps = texthash:$TMP/conf/transport
# Routes are IP literals: never ask the system resolver.
smtp_dns_support_level = disabled

# ---- Tuning for a bulk relay (each differs from the default) ----
# Default 1s: smtpd pauses up to 1 s per message when the queue manager lags, to
# match intake to delivery. Volley accepts as fast as its spool syncs, so do the same.
in_flow_delay = 0
# Default 100: room for 20 smtpd + 10 destinations x 32 smtp clients + the rest.
default_process_limit = 400
# Default 20: the same 32 connections per destination as Volley's default
# shaping.default.max_connections per site (each sink is one site).
smtp_destination_concurrency_limit = 32
# Default 5: no slow start towards destinations known to be healthy (the sinks).
initial_destination_concurrency = 32
# Default 50: the same 100 RCPTs per delivery transaction as Volley's default
# shaping.default.max_recipients_per_transaction (matters for workload b).
smtp_destination_recipient_limit = 100
# Default: cache connections only while a destination has a backlog. Keep them
# to every sink, as Volley's session pool does.
smtp_connection_cache_destinations = $CACHED
# Default yes: a reverse lookup of each client; Volley does none.
smtpd_peername_lookup = no
# Unchanged on purpose: the queue file is fsynced before smtpd's 250 (Volley's
# spool syncs its WAL before its 250 too), PIPELINING and CHUNKING are offered
# by smtpd by default, smtpd_recipient_limit is 1000 (as Volley's).
EOF

# Every service unchrooted (Debian's chroot needs /etc copies in the queue dir).
cat >"$TMP/conf/master.cf" <<EOF
$MTA_IP:$PF_PORT inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF

# Postfix prints its fatal errors only to a terminal or the log: show both.
postfix_ok() {
    if ! $PF "$1" >/dev/null 2>&1; then
        echo "postfix $1 failed:" >&2
        script -qec "$PF $1" /dev/null >&2 || true
        cat "$TMP/maillog" >&2 2>/dev/null || true
        exit 1
    fi
}
postfix_ok check
postfix_ok start
PF_STARTED=1
for _ in $(seq 400); do
    (exec 3<>"/dev/tcp/$MTA_IP/$PF_PORT") 2>/dev/null && break
    sleep 0.05
done

ARGS=(vs-postfix run "$WORKLOAD" --postfix "$MTA_IP:$PF_PORT"
    --postfix-pid-file "$TMP/queue/pid/master.pid"
    --sink-port "$SINK_PORT" --sink-base $SINK_BASE --sinks $SINKS --domains 1000
    --dir "$TMP/volley" --connections "$CONNECTIONS" --timeout "$TIMEOUT")
[[ -n ${MESSAGES:-} ]] && ARGS+=(--messages "$MESSAGES")
[[ -n ${VOLLEY:-} ]] && ARGS+=(--volley-bin "$VOLLEY")
[[ ${DATA:-0} == 1 ]] && ARGS+=(--no-chunking)
# Hang guard over both sides (each is bounded by TIMEOUT itself).
# In the background, so a signal to this script runs the clean-up at once (bash
# defers traps while a foreground child runs), and in a process group of its own
# (setsid; no job control here, so it does not fork and the group id is $!), so
# the clean-up stops it with its children (Volley, the injector) in one signal.
setsid timeout $((2 * TIMEOUT + 120)) "$VOLLEY_LOAD" "${ARGS[@]}" >"$TMP/report" &
RUN_PID=$!
rc=0
wait "$RUN_PID" || rc=$?
RUN_PID=
left=$(/usr/sbin/postqueue -c "$TMP/conf" -p 2>/dev/null | tail -n 1 || true)
echo "postfix queue after the run: $left" >&2
cat "$TMP/report"
exit "$rc"
