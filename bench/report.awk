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

# Ratio of server s to the row's reference, as text ("+N B" for memory per connection).
function ratio_text(r, s, m,    v, ref) {
    v = median(r, s, m)
    ref = median(r, ref_of(r), m)
    if (v == "" || ref == "") return "-"
    if (m == "bytes_per_conn") return sprintf("%+.0f B", v - ref)
    if (ref == 0) return "-"
    return sprintf("%.2f", v / ref)
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

# A narrower cell for the wide sweep table: "median x-ref spread".
function small_cell(r, s, m,    v, spread) {
    if (s in na) return sprintf("%6s %5s %5s", "n/a", "", "")
    stats(vals[r, s, m])
    if (N == 0) return sprintf("%6s %5s %5s", ((r, s) in fails) ? "FAIL" : "-", "", "")
    # Taken before ratio_text(), which reuses the globals stats() sets.
    v = fmt(m, MED)
    spread = N > 1 && MED ? sprintf("%.0f%%", (MAX - MIN) / 2 / MED * 100) : "-"
    return sprintf("%6s %5s %5s", v, ratio_text(r, s, m), spread)
}

# The server's CPU use during the measured window (median): near 100% means the server
# was the bottleneck; well below means the load generator (or the machine) was.
function cpu_cell(r, s) {
    stats(vals[r, s, "server_cpu_pct"])
    return N ? sprintf("%6.0f%%", MED) : sprintf("%7s", "-")
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
        line = line " | srv cpu"
    print line
    for (i = 1; i <= ns; i++) {
        line = sprintf("  %-10s", srv[i])
        for (j = 1; j <= nm; j++)
            line = line (j > 1 ? " | " : " ") cell(r, srv[i], ms[j])
        if (r != "idle")
            line = line " | " cpu_cell(r, srv[i])
        print line fail_note(r, srv[i])
    }
}

# One line of the targets summary; cmp is ">=", "<=" or ">" against goal.
function target_line(label, r, m, goal, cmp, against,    v, ref, x, met, shown, goal_text) {
    goal_text = cmp " " goal (m == "bytes_per_conn" ? " B" : "x")
    if ("ssock" in na) { printf "  %-34s %-16s %-12s %s\n", label, "-", goal_text, "n/a (ssock not built)"; return }
    v = median(r, "ssock", m)
    ref = median(r, against, m)
    if (v == "" || ref == "") {
        printf "  %-34s %-16s %-12s %s\n", label, "-", goal_text, ((r, "ssock") in fails) ? "FAILED (see log)" : "not run"
        return
    }
    if (m == "bytes_per_conn") { x = v - ref; shown = sprintf("%+.0f B", x) }
    else { x = ref ? v / ref : 0; shown = sprintf("%.3fx", x) }
    met = cmp == ">=" ? x >= goal : cmp == "<=" ? x <= goal : x > goal
    targets_total++
    if (met) targets_met++
    printf "  %-34s %-16s %-12s %s\n", label, shown, goal_text, met ? "met" : "MISSED"
}

# Whether ssock beats library lib in the primary metric of every row both ran.
function ahead_line(lib,    i, r, m, v, w, behind, rowsn, rs, n) {
    if ("ssock" in na || lib in na) { printf "  %-34s %-16s %-12s %s\n", "ahead of " lib, "-", "all rows", "n/a"; return }
    n = split(rows, rs, " ")
    behind = ""
    rowsn = 0
    for (i = 1; i <= n; i++) {
        r = rs[i]
        if (r == "udp") continue
        m = primary[r]
        v = median(r, "ssock", m)
        w = median(r, lib, m)
        if (v == "" || w == "") continue
        rowsn++
        if (hi_better(m) ? v <= w : v >= w)
            behind = behind " " r (m == "bytes_per_conn" ? sprintf(" (%+.0f B)", v - w) : sprintf(" (%.2fx)", w ? v / w : 0))
    }
    targets_total++
    if (behind == "" && rowsn > 0) targets_met++
    printf "  %-34s %-16s %-12s %s\n", "ahead of " lib, rowsn " rows", "all rows", rowsn == 0 ? "not run" : behind == "" ? "met" : "MISSED (behind in:" behind ")"
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
    for (k in kv)
        if (k ~ /_per_s$|_us$|_per_conn$|_pct$/)
            vals[r, s, k] = vals[r, s, k] " " kv[k]
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

    printf "Each cell: median over %d round(s); x ref = median / median of the reference server\n", rounds
    printf "(epoll-raw; udp-plain for udp) in this same run; spread = (max - min) / 2 across rounds,\n"
    printf "as %% of the median (in bytes for B/conn); srv cpu = the server's CPU use while measured\n"
    printf "(near 100%% = server-bound). n/a = not built; FAIL = the run failed.\n"

    n = split(rows, rs, " ")
    for (i = 1; i <= n; i++) {
        r = rs[i]
        if (r == "sweep" || !(r in title)) continue
        print_block(r, title[r], metrics[r], target[r], r == "udp" ? udp_servers : servers)
    }

    nsz = split(sweep, sz, " ")
    if (nsz > 0 && rows ~ /(^| )sweep( |$)/) {
        ns = split(servers, srv, " ")
        printf "\npipeline message-size sweep: 10 connections, depth 64 (above 4 KiB: 256 KiB\n"
        printf "outstanding per connection, at least 2 messages); payload MB/s: median, x epoll-raw, spread\n"
        line = sprintf("  %-7s", "size")
        for (j = 1; j <= ns; j++) line = line sprintf("  %-18s", srv[j])
        print line
        for (i = 1; i <= nsz; i++) {
            r = "sweep-" sz[i]
            label = sz[i] >= 1048576 ? (sz[i] / 1048576) " MiB" : sz[i] >= 1024 ? (sz[i] / 1024) " KiB" : sz[i] " B"
            line = sprintf("  %-7s", label)
            for (j = 1; j <= ns; j++) line = line "  " small_cell(r, srv[j], "mb_per_s")
            print line
        }
    }

    printf "\nssock against the issue-4 targets (same-run medians):\n"
    printf "  %-34s %-16s %-12s %s\n", "row", "ssock", "target", "status"
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
