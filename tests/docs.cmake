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
