#!/usr/bin/env bash
# bench/run.sh: the whole benchmark, what `make bench` runs.
#
# Installs missing dependencies, builds the ssock tool (Release) and the benchmark programs,
# then runs every row against every server, interleaved (A B C, A B C, ... with the order
# rotated each round), server pinned to one CPU and load generator to another, and prints
# per-row tables of medians, paired ratios to the raw epoll echo (the median over rounds of
# server / reference in the same round), spreads, and the server's CPU per message.
# Exit status: 0 when every cell ran and verified, 1 when any failed (the tables still
# print, with the failures shown), 2 when nothing could be built.
#
# Knobs (environment): BENCH_QUICK=1 (smoke run, under a minute), BENCH_ROUNDS,
# BENCH_SECONDS (per cell), BENCH_SWEEP_SECONDS, BENCH_WARMUP, BENCH_IDLE_CONNS,
# BENCH_IDLE_HOLD, BENCH_ROWS, BENCH_SERVERS, BENCH_SWEEP_SIZES, BENCH_BUILD_DIR,
# BENCH_SERVER_CPU, BENCH_LOADGEN_CPU, BENCH_RAW_FRAMING (u32|raw), BENCH_NO_INSTALL=1,
# BENCH_PY_ROUNDS, BENCH_PY_SECONDS, BENCH_PY_ROWS, BENCH_PY_SERVERS (the Python servers;
# BENCH_PY_ROWS="" skips them).
# See bench/README.md.
set -u -o pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/bench
BUILD=${BENCH_BUILD_DIR:-$ROOT/build-bench}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac

# Cells on a 2-core VM move +-20% from one to the next, so the defaults spend the time on
# rounds (each a paired comparison with the reference) rather than on long cells: 7 rounds
# of 1 s cells take about 8 minutes.
if [ "${BENCH_QUICK:-0}" = 1 ]; then
    d_rounds=1 d_secs=0.3 d_sweep=0.15 d_warm=0.05 d_hold=0.2 d_py_rounds=1 d_py_secs=0.3
else
    d_rounds=7 d_secs=1 d_sweep=0.3 d_warm=0.15 d_hold=0.5 d_py_rounds=3 d_py_secs=0.6
fi
ROUNDS=${BENCH_ROUNDS:-$d_rounds}
SECS=${BENCH_SECONDS:-$d_secs}
SWEEP_SECS=${BENCH_SWEEP_SECONDS:-$d_sweep}
WARMUP=${BENCH_WARMUP:-$d_warm}
IDLE_CONNS=${BENCH_IDLE_CONNS:-10000}
IDLE_HOLD=${BENCH_IDLE_HOLD:-$d_hold}
ROWS=${BENCH_ROWS:-"pp1 pp100 pipe bulk churn idle udp sweep"}
SERVERS=${BENCH_SERVERS:-"epoll-raw epoll-u32 libuv libevent ssock"}
UDP_SERVERS="udp-plain udp-epoll ssock"
SWEEP_SIZES=${BENCH_SWEEP_SIZES:-"16 64 256 1024 4096 16384 65536 262144 1048576"}
# The Python servers (issue 11) run after the C rows, on fewer rows and rounds, so the
# whole run stays under 10 minutes.
PY_ROUNDS=${BENCH_PY_ROUNDS:-$d_py_rounds}
PY_SECS=${BENCH_PY_SECONDS:-$d_py_secs}
PY_ROWS=${BENCH_PY_ROWS-"pp1 pp100 pipe bulk"}
PY_SERVERS=${BENCH_PY_SERVERS:-"py-ssock-cb py-ssock-inbox py-asyncio-streams py-asyncio-proto"}
# Bulk also runs the zero-copy form, the callback server with glibc's malloc keeping what
# is freed and mapping nothing under 32 MiB (MALLOC_KEEP: shows what glibc's placement of
# 1 MiB buffers costs; see bench/README.md), and the C echo (the target's reference).
PY_BULK_EXTRA="py-ssock-cb-zc py-ssock-cb-mt ssock"
MALLOC_KEEP="glibc.malloc.trim_threshold=1073741824:glibc.malloc.mmap_threshold=33554432"
SERVER_CPU=${BENCH_SERVER_CPU:-1}
LOADGEN_CPU=${BENCH_LOADGEN_CPU:-0}
RAW_FRAMING=${BENCH_RAW_FRAMING:-u32}

LOGS=$BUILD/logs
RESULTS=$BUILD/bench-results.txt
REPORT=$BUILD/bench-report.txt
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ssock-bench.XXXXXX")
SPID=""
FAILED=0

say() { printf '%s\n' "$*"; }
warn() { printf 'bench: %s\n' "$*" >&2; }

cleanup() {
    [ -n "$SPID" ] && kill -KILL "$SPID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- dependencies ----

# Installs Debian packages when missing: as root directly, else through passwordless sudo.
install_pkgs() {
    local sudo=""
    [ "${BENCH_NO_INSTALL:-0}" = 1 ] && { warn "missing $*; BENCH_NO_INSTALL=1, not installing"; return 1; }
    command -v apt-get >/dev/null || { warn "missing $* and no apt-get: install them by hand"; return 1; }
    if [ "$(id -u)" != 0 ]; then
        sudo -n true 2>/dev/null || { warn "missing $*: not root and no passwordless sudo"; return 1; }
        sudo="sudo -n"
    fi
    say "installing $* ..."
    $sudo apt-get update -qq >"$LOGS/apt.log" 2>&1 &&
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >>"$LOGS/apt.log" 2>&1 ||
        { warn "apt-get failed (see $LOGS/apt.log)"; return 1; }
}

ensure_deps() {
    local need=()
    command -v cmake >/dev/null || need+=(cmake)
    command -v cc >/dev/null || need+=(gcc)
    command -v pkg-config >/dev/null || need+=(pkg-config)
    command -v taskset >/dev/null || need+=(util-linux)
    if command -v pkg-config >/dev/null; then
        pkg-config --exists libuv || need+=(libuv1-dev)
        pkg-config --exists libevent || need+=(libevent-dev)
    else
        need+=(libuv1-dev libevent-dev)
    fi
    [ ${#need[@]} -eq 0 ] || install_pkgs "${need[@]}" ||
        warn "continuing without ${need[*]}: those servers show as n/a"
}

# ---- build ----

SSOCK="" SSOCK_WHY="" BIN="" PYPKG=""

# Configures the top-level project with the benchmark on and builds the ssock tool.
build_top() {
    [ -f "$ROOT/CMakeLists.txt" ] || { SSOCK_WHY="no top-level CMakeLists.txt yet"; return 1; }
    say "building ssock (Release) in $BUILD ..."
    if ! cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DSSOCK_BENCH=ON \
        -DSSOCK_TESTS=OFF -DSSOCK_EXAMPLES=OFF -DSSOCK_FUZZ=OFF >"$LOGS/configure.log" 2>&1; then
        SSOCK_WHY="top-level configure failed (see $LOGS/configure.log)"
        return 1
    fi
    # The Python package (issue 11's servers) is built beside the tool when it can be.
    PYPKG=""
    if cmake --build "$BUILD" -j "$(nproc)" --target ssock_python >"$LOGS/build-python.log" 2>&1 &&
        [ -f "$BUILD/python/ssock/__init__.py" ]; then
        PYPKG=$BUILD/python
    fi
    if cmake --build "$BUILD" -j "$(nproc)" --target ssock_tool >"$LOGS/build-ssock.log" 2>&1 ||
        cmake --build "$BUILD" -j "$(nproc)" --target ssock >>"$LOGS/build-ssock.log" 2>&1; then
        [ -x "$BUILD/ssock" ] && SSOCK=$BUILD/ssock ||
            SSOCK_WHY="build succeeded but $BUILD/ssock is missing"
    else
        SSOCK_WHY="ssock build failed (see $LOGS/build-ssock.log)"
    fi
    return 0
}

# Builds the load generator and reference servers: inside the top-level build when it
# includes bench/, else standalone (so the references run even before ssock builds).
build_bench() {
    local targets="bench_loadgen bench_epoll_raw bench_epoll_u32 bench_udp"
    local t dir
    if [ -f "$BUILD/bench/Makefile" ] || [ -f "$BUILD/bench/build.ninja" ] ||
        [ -d "$BUILD/bench/CMakeFiles" ]; then
        dir=$BUILD/bench
        cmake --build "$BUILD" -j "$(nproc)" --target $targets >"$LOGS/build-bench.log" 2>&1 || dir=""
        for t in bench_libuv bench_libevent; do
            cmake --build "$BUILD" -j "$(nproc)" --target $t >>"$LOGS/build-bench.log" 2>&1 || true
        done
        [ -n "$dir" ] && { BIN=$dir; return 0; }
    fi
    dir=$BUILD/bench-only
    say "building the benchmark programs standalone in $dir ..."
    if cmake -S "$BENCH" -B "$dir" -DCMAKE_BUILD_TYPE=Release >"$LOGS/configure-bench.log" 2>&1 &&
        cmake --build "$dir" -j "$(nproc)" >"$LOGS/build-bench.log" 2>&1; then
        BIN=$dir
        return 0
    fi
    warn "building the benchmark failed:"
    tail -20 "$LOGS/build-bench.log" "$LOGS/configure-bench.log" 2>/dev/null >&2
    return 1
}

# ---- servers ----

# Sets CMD to the command line of server $1 for protocol $2 (tcp|udp); fails if unbuilt.
server_cmd() {
    local addr=127.0.0.1:0
    case $1 in
    epoll-raw) CMD=("$BIN/bench_epoll_raw" --listen "$addr") ;;
    epoll-u32) CMD=("$BIN/bench_epoll_u32" --listen "$addr") ;;
    libuv) CMD=("$BIN/bench_libuv" --listen "$addr") ;;
    libevent) CMD=("$BIN/bench_libevent" --listen "$addr") ;;
    libevent-bev) CMD=("$BIN/bench_libevent" --bufferevent --listen "$addr") ;;
    udp-plain) CMD=("$BIN/bench_udp" --listen "$addr") ;;
    udp-epoll) CMD=("$BIN/bench_udp" --epoll --listen "$addr") ;;
    py-ssock-cb-mt) # glibc's malloc told to keep freed memory and map no 1 MiB block
        [ -n "$PYPKG" ] || return 1
        CMD=(env "PYTHONPATH=$PYPKG" "GLIBC_TUNABLES=$MALLOC_KEEP" python3 "$BENCH/py_echo.py"
            ssock-cb --listen "$addr")
        return 0
        ;;
    py-*)
        [ -n "$PYPKG" ] || return 1
        CMD=(env "PYTHONPATH=$PYPKG" python3 "$BENCH/py_echo.py" "${1#py-}" --listen "$addr")
        return 0
        ;;
    ssock)
        [ -n "$SSOCK" ] || return 1
        CMD=("$SSOCK" echo --listen "$addr")
        [ "$2" = udp ] && CMD+=(--udp)
        ;;
    ssock-base)
        # Another build of ssock (BENCH_SSOCK_BASE=path/to/ssock), e.g. the
        # commit before a change, measured in the same rounds.
        [ -n "${BENCH_SSOCK_BASE:-}" ] || return 1
        CMD=("$BENCH_SSOCK_BASE" echo --listen "$addr")
        [ "$2" = udp ] && CMD+=(--udp)
        ;;
    *) return 1 ;;
    esac
    [ -x "${CMD[0]}" ]
}

# Starts server $1 ($2 = tcp|udp) pinned to SERVER_CPU; sets SPID and SADDR.
start_server() {
    local i line
    server_cmd "$1" "$2" || return 1
    # Fresh files: the background shell may not have truncated old ones when we first look,
    # and a stale "listening on" line would point the load generator at a dead server.
    rm -f "$TMP/server.out" "$TMP/server.err"
    $PIN_SERVER "${CMD[@]}" >"$TMP/server.out" 2>"$TMP/server.err" &
    SPID=$!
    for ((i = 0; i < 250; i++)); do # up to 5 s
        line=$(grep -m1 '^listening on ' "$TMP/server.out" 2>/dev/null) && break
        kill -0 "$SPID" 2>/dev/null || break
        sleep 0.02
    done
    SADDR=${line#listening on }
    [ -n "${line:-}" ] && return 0
    REASON="server did not print 'listening on' within 5 s: $(head -c 300 "$TMP/server.err" | tr '\n' ' ')"
    stop_server
    return 1
}

stop_server() {
    local i
    [ -n "$SPID" ] || return 0
    kill -TERM "$SPID" 2>/dev/null
    for ((i = 0; i < 100; i++)); do # up to 2 s, then forcibly
        kill -0 "$SPID" 2>/dev/null || break
        sleep 0.02
    done
    kill -KILL "$SPID" 2>/dev/null
    wait "$SPID" 2>/dev/null
    SPID=""
}

# ---- rows ----

# Sets ARGS (loadgen arguments) and PROTO for row $1 and server $2.
row_args() {
    local t=(--seconds "$SECS" --warmup "$WARMUP") size depth
    [ "${1#py-}" != "$1" ] && t=(--seconds "$PY_SECS" --warmup "$WARMUP")
    PROTO=tcp
    case ${1#py-} in
    pp1) ARGS=(pingpong --conns 1 --size 64 "${t[@]}") ;;
    pp100) ARGS=(pingpong --conns 100 --size 64 "${t[@]}") ;;
    pipe) ARGS=(pipeline --conns 10 --depth 64 --size 64 "${t[@]}") ;;
    bulk) ARGS=(bulk --conns 1 --depth 4 --size 1048576 "${t[@]}") ;;
    churn) ARGS=(churn --conns 10 --size 64 "${t[@]}") ;;
    idle) ARGS=(idle --conns "$IDLE_CONNS" --size 64 --seconds "$IDLE_HOLD" --timeout 20) ;;
    udp) ARGS=(udp --conns 1 --size 64 "${t[@]}") PROTO=udp ;;
    sweep-*)
        size=${1#sweep-}
        # 64 messages outstanding while small; above 4 KiB, 256 KiB (at least 2 messages),
        # so the largest sizes do not queue hundreds of MiB.
        depth=64
        if [ "$size" -gt 4096 ]; then
            depth=$((262144 / size))
            [ "$depth" -lt 2 ] && depth=2
        fi
        ARGS=(pipeline --conns 10 --depth "$depth" --size "$size" --seconds "$SWEEP_SECS"
            --warmup "$WARMUP")
        ;;
    *) return 1 ;;
    esac
    [ "$2" = epoll-raw ] && [ "$RAW_FRAMING" = raw ] && ARGS+=(--raw)
    return 0
}

# Runs one cell: row $2 against server $3 in round $1; appends one line to RESULTS.
run_cell() {
    local round=$1 row=$2 server=$3 out rc limit res
    row_args "$row" "$server"
    REASON=""
    if ! start_server "$server" "$PROTO"; then
        say "round=$round row=$row server=$server status=fail" >>"$RESULTS"
        FAILED=1
        CELL="FAIL"
        printf '\n  FAIL %s %s round %s: %s\n' "$row" "$server" "$round" "$REASON"
        return
    fi
    ARGS+=(--pid "$SPID") # idle reads its VmRSS, the other rows its CPU time
    limit=$(awk -v s="$SECS" -v w="$SWEEP_SECS" 'BEGIN { print int(s + w + 60) }')
    out=$(timeout "$limit" $PIN_LOADGEN "$BIN/bench_loadgen" "${ARGS[@]}" --addr "$SADDR" \
        --tag "$server" 2>"$TMP/loadgen.err")
    rc=$?
    kill -0 "$SPID" 2>/dev/null || { rc=99; REASON="server died: $(head -c 300 "$TMP/server.err")"; }
    stop_server
    res=$(printf '%s\n' "$out" | grep -m1 '^RESULT ')
    if [ "$rc" = 0 ] && [ -n "$res" ]; then
        say "round=$round row=$row server=$server ${res#RESULT }" >>"$RESULTS"
        CELL=$(printf '%s\n' "$res" | grep -oE '(conns_per_s|bytes_per_conn|mb_per_s|msgs_per_s)=[^ ]+' |
            case $row in
            bulk | sweep-*) grep mb_per_s ;; churn) grep conns_per_s ;; idle) grep bytes_per_conn ;;
            *) grep msgs_per_s ;; esac | sed 's/.*=//')
        return
    fi
    [ "$rc" = 124 ] && REASON="loadgen killed after ${limit}s"
    say "round=$round row=$row server=$server status=fail rc=$rc" >>"$RESULTS"
    FAILED=1
    CELL="FAIL"
    printf '\n  FAIL %s %s round %s (exit %s): %s %s\n' "$row" "$server" "$round" "$rc" \
        "$(head -c 400 "$TMP/loadgen.err" | tr '\n' ' ')" "$REASON"
}

# The servers of row $1, rotated by round $2 so no server always runs first.
row_servers() {
    local list=$SERVERS i n k rotated=()
    [ "$1" = udp ] && list=$UDP_SERVERS
    read -r -a arr <<<"$list"
    n=${#arr[@]}
    for ((i = 0; i < n; i++)); do
        k=$(((i + $2 - 1) % n))
        rotated+=("${arr[$k]}")
    done
    printf '%s\n' "${rotated[@]}"
}

# One unrecorded cell first, so the first recorded one does not pay for a cold start
# (binaries and libraries paged in, CPU clocks ramping up).
warm_up() {
    local saved=$RESULTS
    RESULTS=/dev/null
    available epoll-raw && run_cell 0 pp1 epoll-raw >/dev/null
    RESULTS=$saved
    FAILED=0
}

run_all() {
    local round row server rows_expanded=() size
    for row in $ROWS; do
        if [ "$row" = sweep ]; then
            for size in $SWEEP_SIZES; do rows_expanded+=("sweep-$size"); done
        else
            rows_expanded+=("$row")
        fi
    done
    for ((round = 1; round <= ROUNDS; round++)); do
        for row in "${rows_expanded[@]}"; do
            printf '[round %d/%d] %-13s' "$round" "$ROUNDS" "$row"
            for server in $(row_servers "$row" "$round"); do
                available "$server" || continue
                run_cell "$round" "$row" "$server"
                printf ' %s=%s' "$server" "$CELL"
            done
            printf '\n'
        done
    done
}

# The Python rows (issue 11): rows "py-ROW", same load as ROW, against the Python echo
# servers (bench/py_echo.py), interleaved and rotated like the C rows.
run_python() {
    local round row server list arr n i k
    [ -n "$PY_ROWS" ] || return 0
    for ((round = 1; round <= PY_ROUNDS; round++)); do
        for row in $PY_ROWS; do
            list=$PY_SERVERS
            [ "$row" = bulk ] && list="$list $PY_BULK_EXTRA"
            read -r -a arr <<<"$list"
            n=${#arr[@]}
            printf '[python %d/%d] %-10s' "$round" "$PY_ROUNDS" "$row"
            for ((i = 0; i < n; i++)); do
                k=$(((i + round - 1) % n))
                server=${arr[$k]}
                available "$server" || continue
                run_cell "$round" "py-$row" "$server"
                printf ' %s=%s' "$server" "$CELL"
            done
            printf '\n'
        done
    done
}

# Whether server $1 was built; records unbuilt ones once as n/a for the report.
available() {
    local probe=tcp
    [ "$1" = udp-plain ] || [ "$1" = udp-epoll ] && probe=udp
    server_cmd "$1" "$probe" && return 0
    grep -q "^server=$1 status=na" "$RESULTS" || say "server=$1 status=na" >>"$RESULTS"
    return 1
}

# ---- main ----

describe_machine() {
    local cpu load
    cpu=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
    # Taken before the build (LOAD_BEFORE), which loads the CPUs itself.
    load=$LOAD_BEFORE
    say "ssock bench $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
    say "machine: $(nproc) CPUs ($cpu), $(uname -sr), load average $load before the build"
    say "config: rounds=$ROUNDS seconds=$SECS sweep_seconds=$SWEEP_SECS warmup=$WARMUP"
    say "        idle_conns=$IDLE_CONNS idle_hold=$IDLE_HOLD raw_framing=$RAW_FRAMING"
    if [ -n "$PIN_SERVER" ]; then
        say "pinning: server on CPU $SERVER_CPU, load generator on CPU $LOADGEN_CPU"
    else
        say "pinning: none"
    fi
    awk -v l="$load" 'BEGIN { exit !(l > 0.5) }' &&
        say "WARNING: the machine is busy (load $load) before the run: numbers will be noisy"
    [ -n "$SSOCK" ] || say "ssock: not available ($SSOCK_WHY); its cells show n/a"
    [ -n "$PYPKG" ] || [ -z "$PY_ROWS" ] ||
        say "python: the ssock package did not build (see $LOGS/build-python.log); py-ssock cells show n/a"
}

setup_pinning() {
    PIN_SERVER="" PIN_LOADGEN=""
    if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
        PIN_SERVER="taskset -c $SERVER_CPU"
        PIN_LOADGEN="taskset -c $LOADGEN_CPU"
    else
        warn "fewer than 2 CPUs or no taskset: server and load generator are not pinned"
    fi
}

raise_fd_limit() {
    local hard
    hard=$(ulimit -Hn)
    [ "$hard" = unlimited ] && hard=1048576
    ulimit -n "$hard" 2>/dev/null || warn "could not raise ulimit -n to $hard"
    [ "$(ulimit -n)" -ge $((IDLE_CONNS + 64)) ] ||
        warn "fd limit $(ulimit -n) is below $IDLE_CONNS connections: the idle row will fail"
}

main() {
    LOAD_BEFORE=$(cut -d' ' -f1 /proc/loadavg)
    mkdir -p "$LOGS" || exit 2
    ensure_deps
    build_top || true
    build_bench || exit 2
    setup_pinning
    raise_fd_limit
    : >"$RESULTS"
    describe_machine | tee "$REPORT"
    warm_up
    run_all
    run_python
    awk -v servers="$SERVERS" -v udp_servers="$UDP_SERVERS" -v rows="$ROWS" \
        -v sweep="$SWEEP_SIZES" -v rounds="$ROUNDS" -f "$BENCH/report.awk" "$RESULTS" |
        tee -a "$REPORT"
    if [ -n "$PY_ROWS" ]; then
        python3 "$BENCH/py_report.py" --rows "$PY_ROWS" --servers "$PY_SERVERS $PY_BULK_EXTRA" \
            "$RESULTS" | tee -a "$REPORT"
    fi
    say ""
    say "wall time: $((SECONDS / 60)) min $((SECONDS % 60)) s (build included)" | tee -a "$REPORT"
    say "raw results: $RESULTS; this report: $REPORT"
    [ "$FAILED" = 0 ] || { say "bench: some cells FAILED (see FAIL lines above)"; exit 1; }
}

main "$@"
