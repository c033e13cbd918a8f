# Unit tests: pure code, no sockets (test_addr resolves names through the
# local resolver only: literals, localhost and a reserved .invalid name).
ssock_test(test_frame LABELS unit)
ssock_test(test_addr LABELS unit threaded) # threaded: resolve_from_many_threads
ssock_test(test_guard LABELS unit)
ssock_test(test_error LABELS unit)
