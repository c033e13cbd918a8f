# The ssock tool's subcommands (listen, send, send-file, recv-files, help and
# usage) run as programs over loopback by test_cli.sh, with nc and socat as
# the other side for the line and raw framings, and file_peer.py as a
# misbehaving file sender. Each case_* function in test_cli.sh is its own
# CTest test "cli.<case>".
file(STRINGS ${CMAKE_CURRENT_SOURCE_DIR}/test_cli.sh _cli_lines REGEX "^case_[a-z0-9_]+\\(\\)")
foreach(_line ${_cli_lines})
  string(REGEX REPLACE "^case_([a-z0-9_]+)\\(\\).*" "\\1" _case "${_line}")
  add_test(NAME cli.${_case}
    COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_cli.sh ${_case} $<TARGET_FILE:ssock_tool>)
  set_tests_properties(cli.${_case} PROPERTIES LABELS net TIMEOUT 120 SKIP_RETURN_CODE 77)
endforeach()
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/test_cli.sh)
