ssock_test(test_tinyproto_codec LABELS unit)
