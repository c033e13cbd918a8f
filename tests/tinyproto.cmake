ssock_test(test_tinyproto_codec LABELS unit)
ssock_test(test_tinyproto LABELS net SOURCES net_helpers.c)
