/*
 * send.c - one send path for every kind of handle: the data through the
 * buffer protocol (bytes, bytearray, memoryview, array, mmap ... no copy on
 * the Python side), the GIL released for large copies and for waits, and a
 * wait for room in a full send queue cut into slices so close() is never
 * held up by it.
 */
#include "pyssock.h"

/* No GIL; the caller is a user. Retries a full queue until deadline_ms (-1:
 * no limit) in slices, as long as the handle stays open. */
static int send_wait(ps_handle *self, ps_send_fn fn, uint64_t id, const ssock_addr *to,
		     const void *buf, size_t len, int timeout_ms)
{
	int64_t deadline = timeout_ms > 0 ? ps_now_ms() + timeout_ms : 0;
	for (;;) {
		int slice = PS_SLICE_MS;
		if (deadline) {
			int64_t left = deadline - ps_now_ms();
			if (left <= 0)
				return SSOCK_ETIMEDOUT;
			if (left < slice)
				slice = (int)left;
		}
		int rc = fn(self->h, id, to, buf, len, slice);
		if (rc != SSOCK_ETIMEDOUT)
			return rc;
		if (atomic_load(&self->closing))
			return SSOCK_ECLOSED;
	}
}

/* Sends `data` (any object with the buffer protocol) as one message.
 * timeout_ms: 0 fails at once with SendQueueFullError when the queue is full,
 * -1 waits without limit, else waits up to that. Returns None. */
PyObject *ps_send(ps_handle *self, ps_send_fn fn, uint64_t id, const ssock_addr *to, PyObject *data,
		  int timeout_ms)
{
	Py_buffer view;
	if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
		return NULL;
	if (ps_handle_enter(self) < 0) {
		PyBuffer_Release(&view);
		return NULL;
	}
	size_t len = (size_t)view.len;
	int rc;
	if (len < PS_NOGIL_BYTES) {
		rc = fn(self->h, id, to, view.buf, len, 0);
	} else {
		Py_BEGIN_ALLOW_THREADS
			rc = fn(self->h, id, to, view.buf, len, 0);
		Py_END_ALLOW_THREADS
	}
	if (rc == SSOCK_ESENDQFULL && timeout_ms != 0) {
		Py_BEGIN_ALLOW_THREADS
			rc = send_wait(self, fn, id, to, view.buf, len, timeout_ms);
		Py_END_ALLOW_THREADS
	}
	ps_handle_leave(self);
	PyBuffer_Release(&view);
	if (rc < 0)
		return ps_raise(rc);
	Py_RETURN_NONE;
}
