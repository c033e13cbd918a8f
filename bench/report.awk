# bench/report.awk: turns the runner's result lines into the benchmark tables.
#
# Input lines (from bench/run.sh): "round=R row=ROW server=S status=ok KEY=VALUE...",
# "... status=fail", or "server=S status=na" for a server that could not be built.
# Variables: servers, udp_servers, rows, sweep (space-separated lists), rounds.
# Plain POSIX awk (Debian's default awk is mawk): no gawk extensions.

function hi_better(m) { return m != "p99_us" && m != "bytes_per_conn" }

function metric_name(m) {
    if (m == "msgs_per_s") return "msgs/s"
    if (m == "p99_us") return "p99 us"
    if (m == "mb_per_s") return "MB/s"
    if (m == "conns_per_s") return "conns/s"
    if (m == "bytes_per_conn") return "B/conn"
    return m
}

function fmt(m, v) {
    if (m == "p99_us") return sprintf("%.1f", v)
    if (m == "bytes_per_conn") return sprintf("%.0f", v)
    if (m == "mb_per_s") return v >= 100 ? sprintf("%.0f", v) : sprintf("%.1f", v)
    if (v >= 1e6) return sprintf("%.2fM", v / 1e6)
    if (v >= 1e3) return sprintf("%.1fk", v / 1e3)
    return sprintf("%.0f", v)
}

# Sets N, MED, MIN, MAX for the space-separated numbers in str.
function stats(str,    a, i, j, t) {
    N = split(str, a, " ")
    for (i = 2; i <= N; i++) {
        t = a[i] + 0
        for (j = i - 1; j >= 1 && a[j] + 0 > t; j--)
            a[j + 1] = a[j]
        a[j + 1] = t
    }
    if (N == 0) return
    MIN = a[1] + 0
    MAX = a[N] + 0
    MED = N % 2 ? a[(N + 1) / 2] + 0 : (a[N / 2] + a[N / 2 + 1]) / 2
}

function median(r, s, m) {
    stats(vals[r, s, m])
    return N ? MED : ""
}

function ref_of(r) { return r == "udp" ? "udp-plain" : "epoll-raw" }

# The per-round pairs of server s against server b in row r for metric m, as a
# space-separated list: s / b measured in the same round (s - b for bytes per connection).
# Only rounds where both cells ran count.
function pairs(r, s, m, b,    i, R, x, y, str) {
    str = ""
    for (i = 1; i <= nround; i++) {
        R = roundlist[i]
        if (!((r, s, m, R) in val) || !((r, b, m, R) in val)) continue
        x = val[r, s, m, R] + 0
        y = val[r, b, m, R] + 0
        if (m == "bytes_per_conn") str = str " " (x - y)
        else if (y != 0) str = str " " (x / y)
    }
    return str
}

# The paired ratio: the median over rounds of s / b from the same round ("" if no pair).
function paired(r, s, m, b) {
    stats(pairs(r, s, m, b))
    return N ? MED : ""
}

# The paired ratio of server s to the row's reference, as text ("+N B" for memory).
function ratio_text(r, s, m,    x) {
    x = paired(r, s, m, ref_of(r))
    if (x == "") return "-"
    if (m == "bytes_per_conn") return sprintf("%+.0f B", x)
    return sprintf("%.2f", x)
}

# "median  x-ref  spread" for one metric of one server in one row, fixed width.
# The spread and value are taken before ratio_text(), which reuses the stats() globals.
function cell(r, s, m,    v, spread) {
    if (s in na) return sprintf("%9s %7s %6s", "n/a", "", "")
    stats(vals[r, s, m])
    if (N == 0) return sprintf("%9s %7s %6s", ((r, s) in fails) ? "FAIL" : "-", "", "")
    spread = N > 1 && MED != 0 ? sprintf("%.1f%%", (MAX - MIN) / 2 / (MED < 0 ? -MED : MED) * 100) : "-"
    if (m == "bytes_per_conn" && N > 1) spread = sprintf("%.0f B", (MAX - MIN) / 2)
    v = fmt(m, MED)
    return sprintf("%9s %7s %6s", v, ratio_text(r, s, m), spread)
}

# A narrower cell for the wide sweep tables: "median x-ref spread".
function small_cell(r, s, m,    v, spread) {
    if (s in na) return sprintf("%6s %4s %4s", "n/a", "", "")
    stats(vals[r, s, m])
    if (N == 0) return sprintf("%6s %4s %4s", ((r, s) in fails) ? "FAIL" : "-", "", "")
    # Taken before ratio_text(), which reuses the globals stats() sets.
    v = m == "server_ns_per_msg" ? fmt_ns(MED) : fmt(m, MED)
    spread = N > 1 && MED ? sprintf("%.0f%%", (MAX - MIN) / 2 / MED * 100) : "-"
    return sprintf("%6s %4s %4s", v, ratio_text(r, s, m), spread)
}

# Nanoseconds, compact: 950, 12.3k, 1.23M.
function fmt_ns(v) {
    if (v >= 1e6) return sprintf("%.2fM", v / 1e6)
    if (v >= 1e4) return sprintf("%.1fk", v / 1e3)
    return sprintf("%.0f", v)
}

# The server's CPU in the measured window: its use (median; near 100% means the server was
# the bottleneck, well below means the load generator or the machine was), its CPU time per
# message (per connection for churn; median) and the paired ratio of that to the reference.
function cpu_cell(r, s,    pct, ns) {
    if (s in na) return sprintf("%5s %7s %5s", "", "", "")
    stats(vals[r, s, "server_cpu_pct"])
    pct = N ? sprintf("%4.0f%%", MED) : "-"
    stats(vals[r, s, "server_ns_per_msg"])
    ns = N ? fmt_ns(MED) : "-"
    return sprintf("%5s %7s %5s", pct, ns, ratio_text(r, s, "server_ns_per_msg"))
}

# One table of the size sweep for metric m, headed by unit.
function sweep_table(m, unit,    ns, srv, i, j, r, line, label) {
    ns = split(servers, srv, " ")
    line = sprintf("  %-7s", unit)
    for (j = 1; j <= ns; j++) line = line sprintf("  %-16s", srv[j])
    sub(/ +$/, "", line)
    print line
    for (i = 1; i <= nsz; i++) {
        r = "sweep-" sz[i]
        label = sz[i] >= 1048576 ? (sz[i] / 1048576) " MiB" : sz[i] >= 1024 ? (sz[i] / 1024) " KiB" : sz[i] " B"
        line = sprintf("  %-7s", label)
        for (j = 1; j <= ns; j++) line = line "  " small_cell(r, srv[j], m)
        print line
    }
}

function fail_note(r, s) {
    if (!(((r, s) in fails))) return ""
    return sprintf("  FAILED in %d of %d rounds", fails[r, s], fails[r, s] + ok[r, s])
}

function print_block(r, title, metrics, target, list,    ms, nm, srv, ns, i, j, line) {
    nm = split(metrics, ms, " ")
    ns = split(list, srv, " ")
    printf "\n%s\n", title
    if (target != "") printf "  ssock target: %s\n", target
    line = sprintf("  %-10s", "server")
    for (j = 1; j <= nm; j++)
        line = line sprintf("%s%9s %7s %6s", j > 1 ? " | " : " ", metric_name(ms[j]), "x ref", "spread")
    if (r != "idle")
        line = line sprintf(" | %5s %7s %5s", "cpu", r == "churn" ? "ns/conn" : "ns/msg", "x ref")
    print line
    for (i = 1; i <= ns; i++) {
        line = sprintf("  %-10s", srv[i])
        for (j = 1; j <= nm; j++)
            line = line (j > 1 ? " | " : " ") cell(r, srv[i], ms[j])
        if (r != "idle")
            line = line " | " cpu_cell(r, srv[i])
        line = line fail_note(r, srv[i])
        sub(/ +$/, "", line)
        print line
    }
}

# Whether x meets goal under cmp (">=", "<=" or ">").
function meets(x, goal, cmp) { return cmp == ">=" ? x >= goal : cmp == "<=" ? x <= goal : x > goal }

# One line of the targets summary: ssock's paired ratio to server against in row r, metric
# m (difference for bytes per connection), checked against goal with cmp; then in how many
# rounds the pair alone met it, and ssock's paired CPU per message against the same server.
function target_line(label, r, m, goal, cmp, against,    str, a, n, i, x, met, hit, shown, goal_text, cpu) {
    goal_text = cmp " " goal (m == "bytes_per_conn" ? " B" : "x")
    if ("ssock" in na) { printf "  %-30s %8s  %-9s %s\n", label, "-", goal_text, "n/a (ssock not built)"; return }
    str = pairs(r, "ssock", m, against)
    n = split(str, a, " ")
    if (n == 0) {
        printf "  %-30s %8s  %-9s %s\n", label, "-", goal_text,
            ((r, "ssock") in fails) || ((r, against) in fails) ? "FAILED (see log)" : "not run"
        return
    }
    hit = 0
    for (i = 1; i <= n; i++) if (meets(a[i] + 0, goal, cmp)) hit++
    stats(str)
    x = MED
    met = meets(x, goal, cmp)
    shown = m == "bytes_per_conn" ? sprintf("%+.0f B", x) : sprintf("%.3fx", x)
    cpu = "-"
    if (m != "bytes_per_conn" && m != "p99_us" && (x = paired(r, "ssock", "server_ns_per_msg", against)) != "")
        cpu = sprintf("%.2fx", x)
    targets_total++
    if (met) targets_met++
    printf "  %-30s %8s  %-9s %-6s  %2d of %-2d  %8s\n", label, shown, goal_text,
        met ? "met" : "MISSED", hit, n, cpu
}

# Whether ssock beats library lib in the primary metric of every row both ran, by the
# paired ratio (difference for bytes per connection). The rows it is behind in are listed
# below the line, wrapped.
function ahead_line(lib,    i, r, m, x, behind, rowsn, rs, n, item, line) {
    if ("ssock" in na || lib in na) { printf "  %-30s %8s  %-9s %s\n", "ahead of " lib, "-", "all rows", "n/a"; return }
    n = split(rows, rs, " ")
    behind = ""
    rowsn = 0
    for (i = 1; i <= n; i++) {
        r = rs[i]
        if (r == "udp" || !(r in primary)) continue
        m = primary[r]
        x = paired(r, "ssock", m, lib)
        if (x == "") continue
        rowsn++
        if (hi_better(m) ? x <= 1 : x >= 0)
            behind = behind " " r (m == "bytes_per_conn" ? sprintf(" (%+.0f B)", x) : sprintf(" (%.2fx)", x)) ","
    }
    targets_total++
    if (behind == "" && rowsn > 0) targets_met++
    printf "  %-30s %8s  %-9s %s\n", "ahead of " lib, rowsn " rows", "all rows",
        rowsn == 0 ? "not run" : behind == "" ? "met" : "MISSED"
    if (behind == "") return
    sub(/,$/, "", behind)
    n = split(behind, rs, ",")
    line = "      behind in:"
    for (i = 1; i <= n; i++) {
        item = rs[i] (i < n ? "," : "")
        if (length(line) + length(item) > 92) { print line; line = "               " }
        line = line item
    }
    print line
}

{
    delete kv
    for (i = 1; i <= NF; i++) {
        p = index($i, "=")
        if (p) kv[substr($i, 1, p - 1)] = substr($i, p + 1)
    }
    s = kv["server"]
    r = kv["row"]
    if (kv["status"] == "na") { na[s] = 1; next }
    if (kv["status"] != "ok") { fails[r, s]++; next }
    ok[r, s]++
    R = kv["round"]
    if (!(R in seen_round)) { seen_round[R] = 1; roundlist[++nround] = R }
    for (k in kv)
        if (k ~ /_per_s$|_us$|_per_conn$|_pct$|_per_msg$/) {
            vals[r, s, k] = vals[r, s, k] " " kv[k]
            val[r, s, k, R] = kv[k]
        }
}

END {
    title["pp1"] = "pingpong, 1 connection, 64 B messages"
    title["pp100"] = "pingpong, 100 connections, 64 B messages"
    title["pipe"] = "pipeline, 10 connections, depth 64, 64 B messages"
    title["bulk"] = "bulk, 1 MiB messages (1 connection, depth 4), payload MB/s"
    title["churn"] = "churn: connect, one 64 B message, close (10 at a time); p99 is connect-to-echo"
    title["idle"] = "idle connections: server VmRSS growth per connection"
    title["udp"] = "udp ping-pong, 1 socket, 64 B datagrams (reference: blocking recvfrom/sendto)"
    metrics["pp1"] = "msgs_per_s p99_us"; primary["pp1"] = "msgs_per_s"
    metrics["pp100"] = "msgs_per_s p99_us"; primary["pp100"] = "msgs_per_s"
    metrics["pipe"] = "msgs_per_s p99_us"; primary["pipe"] = "msgs_per_s"
    metrics["bulk"] = "mb_per_s"; primary["bulk"] = "mb_per_s"
    metrics["churn"] = "conns_per_s p99_us"; primary["churn"] = "conns_per_s"
    metrics["idle"] = "bytes_per_conn"; primary["idle"] = "bytes_per_conn"
    metrics["udp"] = "msgs_per_s p99_us"; primary["udp"] = "msgs_per_s"
    target["pp1"] = "msgs/s >= 0.95x epoll-raw, p99 <= 1.10x"
    target["pp100"] = "msgs/s >= 0.95x epoll-raw"
    target["pipe"] = "msgs/s >= 0.95x epoll-raw and above epoll-u32"
    target["bulk"] = "MB/s >= 0.95x epoll-raw"
    target["churn"] = "conns/s >= 0.95x epoll-raw"
    target["idle"] = "at most 256 B per connection above epoll-raw"
    target["udp"] = "msgs/s >= 0.95x udp-plain"

    printf "Each cell: median over %d round(s). x ref = paired ratio: the median over rounds of\n", rounds
    printf "server / reference measured in the same round (epoll-raw; udp-plain for udp); for B/conn\n"
    printf "the median per-round difference. spread = (max - min) / 2 of the server's own values\n"
    printf "across rounds, as %% of the median (bytes for B/conn). cpu = server CPU use while\n"
    printf "measured (near 100%% = server-bound); ns/msg = server CPU time per message (per\n"
    printf "connection for churn), median, and its paired ratio (lower is cheaper). n/a = not\n"
    printf "built; FAIL = the run failed.\n"

    n = split(rows, rs, " ")
    for (i = 1; i <= n; i++) {
        r = rs[i]
        if (r == "sweep" || !(r in title)) continue
        print_block(r, title[r], metrics[r], target[r], r == "udp" ? udp_servers : servers)
    }

    nsz = split(sweep, sz, " ")
    if (nsz > 0 && rows ~ /(^| )sweep( |$)/) {
        printf "\npipeline message-size sweep: 10 connections, depth 64 (above 4 KiB: 256 KiB\n"
        printf "outstanding per connection, at least 2 messages). Each cell: median, paired ratio to\n"
        printf "epoll-raw, spread; first payload MB/s, then server CPU ns per message.\n"
        sweep_table("mb_per_s", "MB/s")
        sweep_table("server_ns_per_msg", "ns/msg")
    }

    printf "\nssock against the issue-4 targets (paired ratios over %d round(s); rounds = in how many\n", rounds
    printf "rounds the pair alone met the target; ns/msg = ssock's paired server CPU per message):\n"
    printf "  %-30s %8s  %-9s %-6s  %-8s  %8s\n", "target", "ssock", "goal", "status", "rounds", "ns/msg"
    if (rows ~ /pp1( |$)/) {
        target_line("pingpong 1 conn: msgs/s", "pp1", "msgs_per_s", 0.95, ">=", "epoll-raw")
        target_line("pingpong 1 conn: p99", "pp1", "p99_us", 1.10, "<=", "epoll-raw")
    }
    if (rows ~ /pp100/) target_line("pingpong 100 conns: msgs/s", "pp100", "msgs_per_s", 0.95, ">=", "epoll-raw")
    if (rows ~ /pipe/) {
        target_line("pipeline: msgs/s", "pipe", "msgs_per_s", 0.95, ">=", "epoll-raw")
        target_line("pipeline: vs epoll-u32", "pipe", "msgs_per_s", 1.00, ">", "epoll-u32")
    }
    if (rows ~ /bulk/) target_line("bulk: MB/s", "bulk", "mb_per_s", 0.95, ">=", "epoll-raw")
    if (rows ~ /churn/) target_line("churn: conns/s", "churn", "conns_per_s", 0.95, ">=", "epoll-raw")
    if (rows ~ /idle/) target_line("idle: memory per connection", "idle", "bytes_per_conn", 256, "<=", "epoll-raw")
    if (rows ~ /udp/) target_line("udp: msgs/s", "udp", "msgs_per_s", 0.95, ">=", "udp-plain")
    ahead_line("libuv")
    ahead_line("libevent")
    if (targets_total > 0) printf "  %d of %d targets met\n", targets_met, targets_total
}
