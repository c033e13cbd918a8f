ssock_test(test_lifecycle TRANSPORT LABELS net threaded SOURCES net_helpers.c)
