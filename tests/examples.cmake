# The example programs (examples/), each pair run over loopback by
# run_examples.sh, which checks what the server and the clients print.
# Examples are not built in the sanitizer builds (SSOCK_EXAMPLES=OFF): then
# these tests are simply not registered.
function(ssock_example_test case)
  set(paths)
  foreach(t ${ARGN})
    if(NOT TARGET ${t})
      return()
    endif()
    list(APPEND paths $<TARGET_FILE:${t}>)
  endforeach()
  add_test(NAME examples.${case}
    COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/run_examples.sh ${case} ${paths})
  set_tests_properties(examples.${case} PROPERTIES LABELS net TIMEOUT 60 SKIP_RETURN_CODE 77)
endfunction()

ssock_example_test(echo echo_server echo_client)
ssock_example_test(simplesockets_inbox
  simplesockets_server_inbox simplesockets_client_inbox simplesockets_client_callbacks)
ssock_example_test(simplesockets_callbacks
  simplesockets_server_callbacks simplesockets_client_callbacks simplesockets_client_inbox)
ssock_example_test(hello hello_server hello_client)
ssock_example_test(greeter greeter_server greeter_client)
ssock_example_test(bye bye_server bye_client)
ssock_example_test(tinyproto tinyproto_server ssock_tool)
ssock_example_test(udp udp_server udp_client)
