/*
 * wait.c - long waits of the program's calls (send for room, connect, flush):
 * cut into slices without the GIL, so that close() from another thread ends
 * them and Python's signal handlers (Ctrl-C) run between two slices.
 */
#include "pyssock.h"

int ps_wait(ps_handle *self, int timeout_ms, ps_attempt_fn attempt, void *arg)
{
	int64_t deadline = timeout_ms > 0 ? ps_now_ms() + timeout_ms : 0;
	for (;;) {
		int slice = timeout_ms == 0 ? 0 : PS_SLICE_MS;
		if (deadline) {
			int64_t left = deadline - ps_now_ms();
			if (left <= 0)
				return SSOCK_ETIMEDOUT;
			if (left < slice)
				slice = (int)left;
		}
		int rc;
		Py_BEGIN_ALLOW_THREADS
			rc = attempt(self, slice, arg);
		Py_END_ALLOW_THREADS
		if (rc != SSOCK_ETIMEDOUT || slice == 0)
			return rc;
		if (atomic_load(&self->closing))
			return SSOCK_ECLOSED;
		if (ps_signal_pause(self) < 0)
			return PS_RAISED;
	}
}

PyObject *ps_wait_method(ps_handle *self, int timeout_ms, ps_attempt_fn attempt, void *arg)
{
	if (ps_handle_enter(self) < 0)
		return NULL;
	int rc = ps_wait(self, timeout_ms, attempt, arg);
	if (rc == PS_RAISED)
		return NULL;
	ps_handle_leave(self);
	return rc < 0 ? ps_raise(rc) : Py_NewRef(Py_None);
}

int ps_linger_ms(PyObject *obj, int *out)
{
	*out = 1000;
	if (!obj || obj == Py_None)
		return 0;
	if (ps_timeout_ms(obj, out) < 0) {
		PyErr_Clear();
		PyErr_SetString(PyExc_ValueError, "linger is seconds >= 0");
		return -1;
	}
	if (*out < 0)
		*out = INT32_MAX; /* more than 24 days: as good as no limit */
	return 0;
}
