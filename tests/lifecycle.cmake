ssock_test(test_lifecycle LABELS net threaded SOURCES net_helpers.c)
