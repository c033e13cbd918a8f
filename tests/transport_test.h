/* A second transport for the tests (transport_test.c). */
#ifndef SSOCK_TRANSPORT_TEST_H
#define SSOCK_TRANSPORT_TEST_H

#include "transport.h"

extern const ssock__transport test_transport;

#endif
