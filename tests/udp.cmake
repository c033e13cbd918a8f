# UDP over loopback: the library's UDP sockets, and `ssock echo --udp` /
# `ssock chat --udp` run as programs. Every test has a background loop thread
# (and one sends from several threads), so all also run under TSan.
ssock_test(test_udp LABELS net threaded)
target_compile_definitions(test_udp PRIVATE SSOCK_TOOL="$<TARGET_FILE:ssock_tool>")
add_dependencies(test_udp ssock_tool)
