# Loopback tests: servers on 127.0.0.1:0 / [::1]:0, a raw peer on plain
# sockets, every wait with a deadline. "threaded" ones also run under TSan.
ssock_test(test_server LABELS net SOURCES net_helpers.c)
ssock_test(test_client LABELS net SOURCES net_helpers.c)
ssock_test(test_regress LABELS net SOURCES net_helpers.c)
ssock_test(test_threads LABELS net threaded SOURCES net_helpers.c)
# The core's "done when" load check: 50 clients x 200 echoes up to 1 MiB.
ssock_test(test_load LABELS net load SOURCES net_helpers.c)
target_compile_definitions(test_load PRIVATE SSOCK_TOOL="$<TARGET_FILE:ssock_tool>")
# Issue 9's holes: one named test per hole, each failed before its fix.
ssock_test(test_holes LABELS net threaded SOURCES net_helpers.c)
