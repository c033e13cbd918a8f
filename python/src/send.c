/*
 * send.c - one send path for every kind of handle: the data through the
 * buffer protocol (bytes, bytearray, memoryview, array, mmap ... no copy on
 * the Python side), the GIL released for large copies and for waits, and a
 * wait for room in a full send queue cut into slices so close() is never
 * held up by it.
 *
 * Large immutable payloads (bytes, zero_copy payloads) are not copied at
 * all: ssock reads the object's buffer while the message waits, and gives
 * it back (ref_given_back(), on the loop's thread, without the GIL) once
 * written or dropped. The object's view is released by the next thread to
 * hold the GIL here: in callback mode the dispatcher, woken for it; else
 * the handle's next send, next_event() or close(). (In inbox mode a
 * program that neither sends nor takes events keeps what it sent last
 * alive until then: within the send queue's bounds.)
 */
#include "pyssock.h"

#include <stdlib.h>
#include <sys/eventfd.h>

/* A message sent by reference: the view holds its object until released. */
struct ps_ref {
	Py_buffer view;
	ps_handle *owner; /* outlives its C handle, which gives every ref back */
	struct ps_ref *next;
};

/* Any thread, no GIL (ssock_release_fn): onto the owner's list. */
static void ref_given_back(const void *data, void *arg)
{
	(void)data;
	struct ps_ref *r = arg;
	ps_handle *owner = r->owner;
	struct ps_ref *head = atomic_load_explicit(&owner->refs_done, memory_order_relaxed);
	do {
		r->next = head;
	} while (!atomic_compare_exchange_weak_explicit(
		&owner->refs_done, &head, r, memory_order_release, memory_order_relaxed));
	if (!head && owner->refs_fd >= 0)
		eventfd_write(owner->refs_fd, 1); /* the dispatcher releases it */
}

void ps_refs_drain(ps_handle *self)
{
	if (!atomic_load_explicit(&self->refs_done, memory_order_relaxed))
		return;
	struct ps_ref *r = atomic_exchange_explicit(&self->refs_done, NULL, memory_order_acquire);
	while (r) {
		struct ps_ref *next = r->next;
		PyBuffer_Release(&r->view); /* bytes or our payload: no Python code runs */
		free(r);
		r = next;
	}
}

/* Whether data may be sent by reference: its bytes can't change while
 * ssock reads them, and releasing it runs no Python code. */
static int immutable(PyObject *data)
{
	return PyBytes_CheckExact(data) || ps_is_payload(data);
}

struct send_try {
	ps_send_fn fn;
	uint64_t id;
	const ssock_addr *to;
	const void *buf;
	size_t len;
	struct ps_ref *ref;
};

static int send_attempt(ps_handle *self, int slice_ms, void *arg)
{
	struct send_try *t = arg;
	return t->fn(self->h, t->id, t->to, t->buf, t->len, slice_ms,
		     t->ref ? ref_given_back : NULL, t->ref);
}

/* Sends `data` (any object with the buffer protocol) as one message.
 * timeout_ms: 0 fails at once with SendQueueFullError when the queue is full,
 * -1 waits without limit, else waits up to that. Returns None. */
PyObject *ps_send(ps_handle *self, ps_send_fn fn, uint64_t id, const ssock_addr *to, PyObject *data,
		  int timeout_ms)
{
	ps_refs_drain(self);
	Py_buffer view;
	if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
		return NULL;
	if (ps_handle_enter(self) < 0) {
		PyBuffer_Release(&view);
		return NULL;
	}
	size_t len = (size_t)view.len;
	struct ps_ref *ref = NULL;
	if (len >= PS_REF_BYTES && self->kind != PS_UDP && immutable(data) &&
	    (ref = malloc(sizeof *ref)))
		*ref = (struct ps_ref){.view = view, .owner = self};
	ssock_release_fn release = ref ? ref_given_back : NULL;
	int rc;
	if (len < PS_NOGIL_BYTES) {
		rc = fn(self->h, id, to, view.buf, len, 0, release, ref);
	} else {
		Py_BEGIN_ALLOW_THREADS
			rc = fn(self->h, id, to, view.buf, len, 0, release, ref);
		Py_END_ALLOW_THREADS
	}
	if (rc == SSOCK_ESENDQFULL && timeout_ms != 0) {
		struct send_try t = {fn, id, to, view.buf, len, ref};
		rc = ps_wait(self, timeout_ms, send_attempt, &t);
	}
	if (rc != PS_RAISED)
		ps_handle_leave(self);
	if (ref && rc == 0) {
		/* The view is the ref's now (maybe given back already). */
	} else {
		free(ref);
		PyBuffer_Release(&view);
	}
	if (rc == PS_RAISED)
		return NULL;
	if (rc < 0)
		return ps_raise(rc);
	Py_RETURN_NONE;
}
