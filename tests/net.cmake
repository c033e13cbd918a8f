# Loopback tests: servers on 127.0.0.1:0 / [::1]:0, a raw peer on plain
# sockets, every wait with a deadline. "threaded" ones also run under TSan.
ssock_test(test_server TRANSPORT LABELS net SOURCES net_helpers.c)
ssock_test(test_client TRANSPORT LABELS net SOURCES net_helpers.c)
ssock_test(test_regress TRANSPORT LABELS net SOURCES net_helpers.c)
ssock_test(test_threads LABELS net threaded SOURCES net_helpers.c)
# The core's "done when" load check: 50 clients x 200 echoes up to 1 MiB.
ssock_test(test_load LABELS net load SOURCES net_helpers.c)
target_compile_definitions(test_load PRIVATE SSOCK_TOOL="$<TARGET_FILE:ssock_tool>")
# Issue 9's holes: one named test per hole, each failed before its fix.
ssock_test(test_holes LABELS net threaded SOURCES net_helpers.c)
# Host names are resolved off the loop: a name server that never answers
# does not stop it (tests/dns_silent.sh runs this in a network namespace
# of its own; skipped without root).
ssock_test(test_resolve LABELS net threaded SOURCES net_helpers.c)
set_tests_properties(test_resolve.silent_name_server_does_not_block_the_loop PROPERTIES
  DISABLED TRUE)
add_test(NAME resolve.silent_name_server_does_not_block_the_loop
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/dns_silent.sh $<TARGET_FILE:test_resolve>
          silent_name_server_does_not_block_the_loop)
set_tests_properties(resolve.silent_name_server_does_not_block_the_loop PROPERTIES
  LABELS "net;threaded" TIMEOUT 120 SKIP_RETURN_CODE 77)
# The review of the redesigned inside: one named test per finding, each
# failed on the code it was written against.
ssock_test(test_review LABELS net threaded SOURCES net_helpers.c)
ssock_test(test_review2 LABELS net threaded SOURCES net_helpers.c)
foreach(case silent_name_does_not_starve_other_lookups
             distinct_silent_names_do_not_starve_other_lookups)
  set_tests_properties(test_review.${case} PROPERTIES DISABLED TRUE)
  add_test(NAME review.${case}
    COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/dns_silent.sh $<TARGET_FILE:test_review> ${case})
  set_tests_properties(review.${case} PROPERTIES
    LABELS "net;threaded" TIMEOUT 120 SKIP_RETURN_CODE 77)
endforeach()
set_tests_properties(test_review2.many_silent_names_do_not_starve_other_lookups PROPERTIES
  DISABLED TRUE)
add_test(NAME review2.many_silent_names_do_not_starve_other_lookups
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/dns_silent.sh $<TARGET_FILE:test_review2>
          many_silent_names_do_not_starve_other_lookups)
set_tests_properties(review2.many_silent_names_do_not_starve_other_lookups PROPERTIES
  LABELS "net;threaded" TIMEOUT 120 SKIP_RETURN_CODE 77)
# Sends by reference: the caller's buffer on the wire, given back once.
ssock_test(test_send_ref TRANSPORT LABELS net threaded SOURCES net_helpers.c)
# Their review: unusual orders (free, reset, reconnect, storms, waits, the
# callback's own payload), and writes cut to a few bytes (sendmsg replaced).
ssock_test(test_send_ref_review TRANSPORT LABELS net threaded SOURCES net_helpers.c)
ssock_test(test_send_ref_short TRANSPORT LABELS net threaded SOURCES net_helpers.c)
ssock_test(test_bigbuf LABELS net threaded SOURCES net_helpers.c)
ssock_test(test_server_flush TRANSPORT LABELS net threaded SOURCES net_helpers.c)
ssock_test(test_pause_reading TRANSPORT LABELS net threaded SOURCES net_helpers.c)
# The same, in a program built with ASan against the plain library: the
# check is made at run time. (Not under valgrind, nor in a sanitizer build.)
if(NOT SSOCK_SANITIZER)
  ssock_test(test_asan_program LABELS net sanitized SOURCES net_helpers.c)
  target_compile_options(test_asan_program PRIVATE -fsanitize=address -fno-omit-frame-pointer)
  target_link_options(test_asan_program PRIVATE -fsanitize=address)
endif()
ssock_test(test_post_small TRANSPORT LABELS net threaded SOURCES net_helpers.c)
ssock_test(test_review_post LABELS net threaded SOURCES net_helpers.c)
