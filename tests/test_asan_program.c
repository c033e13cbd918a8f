/*
 * A program built with AddressSanitizer against a plain libssock (this file
 * is, see net.cmake): the large blocks ssock keeps for reuse (memory.c) are
 * never poisoned, so keeping one would hide the program's use of a payload
 * after ssock_event_release() from ASan. memory.c asks at run time whether
 * ASan is in the process, not only whether it was built with it.
 */
#include "internal.h"
#include "net_helpers.h"
#include "ssock.h"
#include "test.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define T   TEST_TIMEOUT_MS
#define MiB (1u << 20)

/* In a child: a 1 MiB payload given back, then read. Exits 0 only when
 * the read went unnoticed. */
static void read_after_release(void)
{
	ssock_server_opts o = {0};
	int port;
	ssock_server *srv = np_server(&o, &port);
	int fd = srv ? np_connect(port, false) : -1;
	uint8_t *msg = malloc(MiB);
	if (fd < 0 || !msg || !np_take_connect(srv))
		_exit(3);
	np_pattern(msg, MiB, 7);
	ssock_event ev;
	if (np_send_u32(fd, msg, MiB) != 0 ||
	    np_server_wait(srv, SSOCK_EVENT_MESSAGE, &ev, T) != 0 || ev.len != MiB)
		_exit(4);
	volatile const uint8_t *data = ev.data;
	ssock_event_release(&ev);
	(void)data[MiB / 2]; /* ASan stops here, as it must */
	_exit(0);
}

static pid_t child;
static int child_status;

static bool child_ended(void *arg)
{
	(void)arg;
	return waitpid(child, &child_status, WNOHANG) == child;
}

TEST(payload_read_after_release_is_reported_by_the_programs_asan)
{
	CHECK(!ssock__big_enabled()); /* nothing is kept in this process */
	child = fork();
	CHECK(child >= 0);
	if (child == 0)
		read_after_release();
	if (!test_wait_until(child_ended, NULL, 3 * T)) {
		kill(child, SIGKILL);
		waitpid(child, &child_status, 0);
		TEST__FAIL("the child never ended");
	}
	if (WIFEXITED(child_status) && WEXITSTATUS(child_status) >= 3)
		TEST__FAIL("the child could not set up its round trip (%d)",
			   WEXITSTATUS(child_status));
	if (WIFEXITED(child_status) && WEXITSTATUS(child_status) == 0)
		TEST__FAIL("a payload read after ssock_event_release() went unreported: "
			   "libssock kept its block although the program runs ASan");
}
