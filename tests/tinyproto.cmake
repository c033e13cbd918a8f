ssock_test(test_tinyproto_codec LABELS unit)
ssock_test(test_tinyproto TRANSPORT LABELS net SOURCES net_helpers.c)
