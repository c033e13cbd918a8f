# The README's examples are the files that are built and run.
find_package(Python3 COMPONENTS Interpreter)
if(Python3_FOUND)
  add_test(NAME docs.readme_examples_match_files
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/check_readme.py ${PROJECT_SOURCE_DIR})
  set_tests_properties(docs.readme_examples_match_files PROPERTIES LABELS unit)
endif()
# The examples do what the README says: two messages sent back to back come
# back as two messages.
if(TARGET echo_client AND TARGET ssock_tool)
  add_test(NAME examples.echo_client_against_ssock_echo
    COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/run_example.sh $<TARGET_FILE:ssock_tool> $<TARGET_FILE:echo_client>)
  set_tests_properties(examples.echo_client_against_ssock_echo PROPERTIES LABELS net TIMEOUT 60)
endif()
# What `make install` puts in place works for a program outside the tree.
find_program(PKG_CONFIG_EXE pkg-config)
if(PKG_CONFIG_EXE AND NOT SSOCK_SANITIZER)
  add_test(NAME install.find_package_and_pkg_config
    COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/install_check.sh ${PROJECT_BINARY_DIR} ${PROJECT_SOURCE_DIR})
  set_tests_properties(install.find_package_and_pkg_config PROPERTIES LABELS unit TIMEOUT 120)
endif()
# The code is formatted as .clang-format says.
add_test(NAME style.clang_format
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/check_format.sh ${PROJECT_SOURCE_DIR})
set_tests_properties(style.clang_format PROPERTIES LABELS unit SKIP_RETURN_CODE 77 TIMEOUT 120)
