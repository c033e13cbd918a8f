# Pieces of the ssock tool (tools/) tested on their own, in C.
# test_echo_guard: which datagrams `ssock echo --udp` answers (it asks the
# kernel which addresses are local, by binding sockets: label net).
ssock_test(test_echo_guard LABELS net
  SOURCES ${PROJECT_SOURCE_DIR}/tools/echo_guard.c ${PROJECT_SOURCE_DIR}/tools/xxh64.c)
target_include_directories(test_echo_guard PRIVATE ${PROJECT_SOURCE_DIR}/tools)
