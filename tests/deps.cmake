# scripts/deps.sh: each Makefile target asks only for what it uses, and a
# non-root user is told which Debian packages are missing. Each case_* in
# test_deps.sh is its own CTest test "deps.<case>".
file(STRINGS ${CMAKE_CURRENT_SOURCE_DIR}/test_deps.sh _deps_lines REGEX "^case_[a-z0-9_]+\\(\\)")
foreach(_line ${_deps_lines})
  string(REGEX REPLACE "^case_([a-z0-9_]+)\\(\\).*" "\\1" _case "${_line}")
  add_test(NAME deps.${_case} COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_deps.sh ${_case})
  set_tests_properties(deps.${_case} PROPERTIES LABELS unit TIMEOUT 60)
endforeach()
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/test_deps.sh)
