/*
 * handle.c - what servers, clients and UDP sockets share: the lifetime of the
 * C handle (users, close, interpreter exit, fork) and the base type _Handle
 * with the methods they have in common. Taking events is in inbox.c, the
 * dispatcher of callback mode in dispatch.c.
 */
#include "pyssock.h"

#include <structmember.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

PyTypeObject *ps_HandleType;

static ps_handle *registry; /* open handles, GIL-protected */

/* ------------------------------------------------------------ lifetime */

int ps_handle_enter(ps_handle *self)
{
	atomic_fetch_add(&self->users, 1);
	if (!atomic_load(&self->closing) && self->h)
		return 0;
	ps_handle_leave(self);
	if (self->forked)
		PyErr_SetString(ps_ClosedError, "this ssock handle was created before fork()");
	else if (!self->h && self->state == PS_OPEN)
		PyErr_SetString(ps_ClosedError, "this ssock handle was not initialised");
	else
		ps_raise(SSOCK_ECLOSED);
	return -1;
}

void ps_handle_leave(ps_handle *self)
{
	if (atomic_fetch_sub(&self->users, 1) == 1 && atomic_load(&self->closing)) {
		pthread_mutex_lock(&self->mu);
		pthread_cond_broadcast(&self->cv);
		pthread_mutex_unlock(&self->mu);
	}
}

void ps_registry_add(ps_handle *self)
{
	self->reg_prev = NULL;
	self->reg_next = registry;
	if (registry)
		registry->reg_prev = self;
	registry = self;
}

static void registry_remove(ps_handle *self)
{
	if (self->reg_prev)
		self->reg_prev->reg_next = self->reg_next;
	else if (registry == self)
		registry = self->reg_next;
	if (self->reg_next)
		self->reg_next->reg_prev = self->reg_prev;
	self->reg_prev = self->reg_next = NULL;
}

/* No GIL: waits until the users have left, then frees the C handle. */
void ps_free_c_handle(ps_handle *self)
{
	pthread_mutex_lock(&self->mu);
	while (atomic_load(&self->users) > 0)
		pthread_cond_wait(&self->cv, &self->mu);
	void *h = self->h;
	pthread_mutex_unlock(&self->mu);
	if (h)
		self->ops->free(h);
	pthread_mutex_lock(&self->mu);
	self->h = NULL;
	self->state = PS_FREED;
	pthread_cond_broadcast(&self->cv);
	pthread_mutex_unlock(&self->mu);
}

/* GIL: after the C handle is gone. Every connection is closed, and the
 * references that could form cycles (callbacks, connections) are dropped. */
void ps_after_free(ps_handle *self)
{
	registry_remove(self);
	ps_refs_drain(self); /* the free gave every one back */
	ps_spare_drop(self, 0);
	if (self->wake_fd >= 0) {
		close(self->wake_fd); /* nobody waits on it: the users are gone */
		self->wake_fd = -1;
	}
	if (self->refs_fd >= 0) {
		close(self->refs_fd); /* the C handle, which wrote it, is gone */
		self->refs_fd = -1;
	}
	if (self->conns) {
		PyObject *key, *value;
		Py_ssize_t pos = 0;
		while (PyDict_Next(self->conns, &pos, &key, &value))
			((ps_conn *)value)->open = 0;
		PyDict_Clear(self->conns);
	}
	Py_CLEAR(self->last_conn);
	for (int i = 0; i < PS_CB_COUNT; i++)
		Py_CLEAR(self->cb[i]);
}

/* The CLOCK_REALTIME time wait_ms from now (what the pthread calls take). */
static struct timespec realtime_in(int wait_ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += wait_ms / 1000;
	ts.tv_nsec += (long)(wait_ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	return ts;
}

/* No GIL: joins the dispatcher, up to wait_ms at interpreter exit (-1 else).
 * Returns 0 once it is gone, -1 if it is still running a callback. */
static int join_dispatcher(ps_handle *self, int wait_ms)
{
	if (wait_ms < 0)
		return pthread_join(self->disp, NULL) == 0 ? 0 : -1;
	struct timespec ts = realtime_in(wait_ms);
	return pthread_timedjoin_np(self->disp, NULL, &ts) == 0 ? 0 : -1;
}

/* Claims the close: 1 if this caller must do it, 0 if it is done or being
 * done by another: after waiting for that one to finish (up to wait_ms at
 * interpreter exit: the other may be a dispatcher stuck in a callback),
 * unless the caller is a dispatcher, of this handle or another: a callback
 * never waits for a close, which may be waiting for that very callback. */
static int claim_close(ps_handle *self, int wait_ms)
{
	pthread_mutex_lock(&self->mu);
	if (self->state == PS_OPEN) {
		self->state = PS_CLOSING;
		pthread_mutex_unlock(&self->mu);
		return 1;
	}
	int done = self->state == PS_FREED || ps_in_dispatcher;
	pthread_mutex_unlock(&self->mu);
	if (!done) {
		struct timespec until = realtime_in(wait_ms < 0 ? 0 : wait_ms);
		Py_BEGIN_ALLOW_THREADS
			pthread_mutex_lock(&self->mu);
			int rc = 0;
			while (self->state != PS_FREED && rc == 0)
				rc = wait_ms < 0
					     ? pthread_cond_wait(&self->cv, &self->mu)
					     : pthread_cond_timedwait(&self->cv, &self->mu, &until);
			pthread_mutex_unlock(&self->mu);
		Py_END_ALLOW_THREADS
	}
	return 0;
}

/* The wait of linger_flush(): only a connected client has a connection
 * whose queue can drain. */
static int linger_attempt(ps_handle *self, int slice_ms, void *arg)
{
	(void)arg;
	if (self->kind == PS_SERVER)
		return ssock_server_flush(self->h, 0, slice_ms);
	if (ssock_client_state_get(self->h) != SSOCK_STATE_CONNECTED)
		return 0;
	return ssock_client_flush(self->h, slice_ms);
}

void ps_linger_nogil(ps_handle *self)
{
	if (self->kind != PS_UDP && self->linger_ms > 0)
		linger_attempt(self, self->linger_ms, NULL);
}

/* Gives queued data up to `linger` (at most cap_ms, -1: no cap) to be
 * written. Not in a callback (of any handle): it would hold up every event
 * of its handle (the handle's dispatcher lingers when it frees it).
 * Returns -1 when a signal handler raised meanwhile (the exception is set):
 * the wait ends there, the close goes on. */
static int linger_flush(ps_handle *self, int cap_ms)
{
	int ms = cap_ms >= 0 && cap_ms < self->linger_ms ? cap_ms : self->linger_ms;
	if (self->kind == PS_UDP || ms <= 0 || ps_in_dispatcher)
		return 0;
	if (ps_handle_enter(self) < 0) {
		PyErr_Clear();
		return 0;
	}
	int rc = ps_wait(self, ms, linger_attempt, NULL);
	if (rc != PS_RAISED) {
		ps_handle_leave(self);
		return 0;
	}
	if (PyErr_ExceptionMatches(ps_ClosedError)) {
		PyErr_Clear(); /* a signal handler closed it: nothing to report */
		return 0;
	}
	return -1;
}

/* Closes the handle after its linger (capped at linger_cap_ms; -1: none);
 * with exit_wait_ms >= 0 (interpreter exit) a dispatcher stuck in a callback
 * is waited for only that long, and then left alone (with its C handle,
 * which the process exit takes). From a callback the close is left to the
 * handle's dispatcher, once its own callback returns: a dispatcher never
 * waits for another (two callbacks closing each other's handles would wait
 * for ever). Returns -1 when a signal handler raised during the linger (the
 * exception set; the handle is closed all the same). */
static int close_handle(ps_handle *self, int exit_wait_ms, int linger_cap_ms)
{
	if (self->forked || !self->h)
		return 0;
	int raised = linger_flush(self, linger_cap_ms);
	if (!claim_close(self, exit_wait_ms)) {
		if (exit_wait_ms >= 0)
			registry_remove(self); /* left to the process exit */
		return raised;
	}
	atomic_store(&self->closing, 1);
	if (self->wake_fd >= 0)
		eventfd_write(self->wake_fd, 1);
	if (self->disp_started) {
		if (ps_in_dispatcher) {
			self->close_in_disp = 1; /* its dispatcher frees it after the callback */
			return raised;
		}
		int rc;
		Py_BEGIN_ALLOW_THREADS
			rc = join_dispatcher(self, exit_wait_ms);
		Py_END_ALLOW_THREADS
		if (rc < 0) {
			registry_remove(self);
			return raised;
		}
		self->disp_started = 0;
	}
	Py_BEGIN_ALLOW_THREADS
		ps_free_c_handle(self);
	Py_END_ALLOW_THREADS
	ps_after_free(self);
	return raised;
}

PyObject *ps_handle_close_impl(ps_handle *self)
{
	if (close_handle(self, -1, -1) < 0)
		return NULL;
	Py_RETURN_NONE;
}

/* ------------------------------------------------------------ the base type */

static PyObject *handle_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
	(void)args;
	(void)kw;
	ps_handle *self = (ps_handle *)type->tp_alloc(type, 0);
	if (!self)
		return NULL;
	pthread_mutex_init(&self->mu, NULL);
	pthread_mutex_init(&self->take_mu, NULL);
	pthread_cond_init(&self->cv, NULL);
	self->wake_fd = self->event_fd = self->user_fd = self->refs_fd = -1;
	self->conns = PyDict_New();
	if (!self->conns) {
		Py_DECREF(self);
		return NULL;
	}
	return (PyObject *)self;
}

int ps_handle_traverse(ps_handle *self, visitproc visit, void *arg)
{
	for (int i = 0; i < PS_CB_COUNT; i++)
		Py_VISIT(self->cb[i]);
	Py_VISIT(self->conns);
	Py_VISIT(self->last_conn);
	Py_VISIT(self->loop);
	Py_VISIT(self->dict);
	Py_VISIT(Py_TYPE(self));
	return 0;
}

int ps_handle_clear(ps_handle *self)
{
	for (int i = 0; i < PS_CB_COUNT; i++)
		Py_CLEAR(self->cb[i]);
	if (self->conns)
		PyDict_Clear(self->conns);
	Py_CLEAR(self->last_conn);
	Py_CLEAR(self->dict);
	return 0;
}

static void handle_dealloc(ps_handle *self)
{
	PyObject_GC_UnTrack(self);
	/* Out of the registry before anything lets the GIL go: close_all() at
	 * exit must never take up an object already being freed. */
	registry_remove(self);
	if (self->weakrefs)
		PyObject_ClearWeakRefs((PyObject *)self);
	if (close_handle(self, -1, -1) < 0)
		PyErr_WriteUnraisable((PyObject *)self);
	ps_refs_drain(self);
	ps_spare_drop(self, 0);
	if (self->wake_fd >= 0)
		close(self->wake_fd);
	if (self->refs_fd >= 0)
		close(self->refs_fd);
	if (self->user_fd >= 0)
		close(self->user_fd);
	ps_handle_clear(self);
	Py_CLEAR(self->conns);
	Py_CLEAR(self->loop);
	Py_CLEAR(self->target);
	if (!self->forked) {
		pthread_mutex_destroy(&self->mu);
		pthread_mutex_destroy(&self->take_mu);
		pthread_cond_destroy(&self->cv);
	}
	PyTypeObject *tp = Py_TYPE(self);
	tp->tp_free(self);
	Py_DECREF(tp);
}

static PyObject *handle_close(ps_handle *self, PyObject *unused)
{
	(void)unused;
	return ps_handle_close_impl(self);
}

static PyObject *handle_next_event(ps_handle *self, PyObject *const *args, Py_ssize_t nargs,
				   PyObject *kwnames)
{
	static const char *const names[] = {"timeout"};
	PyObject *timeout;
	int ms;
	if (ps_fast_args("next_event", args, nargs, kwnames, names, 1, 0, &timeout) < 0 ||
	    ps_timeout_ms(timeout, &ms) < 0)
		return NULL;
	return ps_next_event(self, ms);
}

static PyObject *handle_iternext(ps_handle *self)
{
	PyObject *ev = ps_next_event(self, -1);
	if (!ev && PyErr_ExceptionMatches(ps_ClosedError))
		PyErr_Clear(); /* the handle closed: the iteration ends */
	return ev;
}

static PyObject *handle_errors(ps_handle *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"clear", NULL};
	int clear = 0;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "|p:errors", kwlist, &clear) ||
	    ps_handle_enter(self) < 0)
		return NULL;
	PyObject *res = ps_error_list(self, clear);
	ps_handle_leave(self);
	return res;
}

/* A dup of the inbox's event fd: it stays valid (and readable once closed)
 * as long as this object lives, so an asyncio reader never sees it vanish. */
static PyObject *handle_fileno(ps_handle *self, PyObject *unused)
{
	(void)unused;
	if (self->callback_mode)
		return ps_raise(SSOCK_ENOINBOX);
	if (self->user_fd < 0) {
		if (ps_handle_enter(self) < 0)
			return NULL;
		self->user_fd = fcntl(self->event_fd, F_DUPFD_CLOEXEC, 0);
		ps_handle_leave(self);
		if (self->user_fd < 0)
			return PyErr_SetFromErrno(PyExc_OSError);
	}
	return PyLong_FromLong(self->user_fd);
}

static PyObject *handle_enter_ctx(ps_handle *self, PyObject *unused)
{
	(void)unused;
	return Py_NewRef(self);
}

static PyObject *handle_exit_ctx(ps_handle *self, PyObject *args)
{
	(void)args;
	PyObject *res = ps_handle_close_impl(self);
	Py_XDECREF(res);
	if (!res)
		return NULL;
	Py_RETURN_FALSE;
}

static PyObject *handle_get_closed(ps_handle *self, void *closure)
{
	(void)closure;
	return PyBool_FromLong(self->forked || atomic_load(&self->closing) || !self->h);
}

static PyObject *handle_get_callback_mode(ps_handle *self, void *closure)
{
	(void)closure;
	return PyBool_FromLong(self->callback_mode);
}

PyMethodDef ps_handle_methods[] = {
	{"close", (PyCFunction)handle_close, METH_NOARGS,
	 "close()\n--\n\nCloses the handle: every connection, the sockets, the threads. "
	 "Idempotent; from inside a callback it takes effect when the callback returns."},
	{"next_event", (PyCFunction)(void (*)(void))handle_next_event,
	 METH_FASTCALL | METH_KEYWORDS,
	 "next_event(timeout=None)\n--\n\nInbox mode: the next Event, waiting up to timeout "
	 "seconds (None: no limit); None when the time passed. Raises ClosedError once closed."},
	{"errors", (PyCFunction)(void (*)(void))handle_errors, METH_VARARGS | METH_KEYWORDS,
	 "errors(clear=False)\n--\n\nThe background error log, oldest first, as ssock.Error "
	 "objects."},
	{"fileno", (PyCFunction)handle_fileno, METH_NOARGS,
	 "fileno()\n--\n\nInbox mode: a file descriptor that is readable while an event waits "
	 "(for select, poll or an asyncio reader). Only wait on it."},
	{"__enter__", (PyCFunction)handle_enter_ctx, METH_NOARGS, NULL},
	{"__exit__", (PyCFunction)handle_exit_ctx, METH_VARARGS, NULL},
	{NULL, NULL, 0, NULL},
};

static PyObject *handle_get_kept_payloads(ps_handle *self, void *closure)
{
	(void)closure;
	return PyLong_FromSize_t(self->spare_bytes);
}

PyGetSetDef ps_handle_getset[] = {
	{"closed", (getter)handle_get_closed, NULL, "True once close() was called.", NULL},
	{"callback_mode", (getter)handle_get_callback_mode, NULL,
	 "True when events go to callbacks, False when they go to next_event().", NULL},
	{"_kept_payloads", (getter)handle_get_kept_payloads, NULL,
	 "Bytes of large payloads kept for reuse (given back after a second idle).", NULL},
	{"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

/* ------------------------------------------------------------ exit and fork */

/* atexit: closes every open handle. Their queued data gets the longest
 * linger among them, counted once for all (the loops drain every queue at
 * the same time), or less once Ctrl-C is pressed; a dispatcher stuck in a
 * callback gets 2 s. */
static PyObject *close_all(PyObject *mod, PyObject *unused)
{
	(void)mod;
	(void)unused;
	int longest = 0;
	for (ps_handle *h = registry; h; h = h->reg_next)
		if (h->linger_ms > longest)
			longest = h->linger_ms;
	int64_t end = ps_now_ms() + longest;
	while (registry) {
		ps_handle *h = registry;
		Py_INCREF(h);
		registry_remove(h);
		int64_t left = end - ps_now_ms();
		if (close_handle(h, 2000, left > 0 ? (int)left : 0) < 0) {
			PyErr_Clear(); /* interrupted: the rest close at once */
			end = 0;
		}
		Py_DECREF(h);
	}
	Py_RETURN_NONE;
}

/* os.register_at_fork(after_in_child=...): the child has none of the
 * parent's threads, so its handles are unusable and must never be freed. */
static PyObject *after_fork(PyObject *mod, PyObject *unused)
{
	(void)mod;
	(void)unused;
	while (registry) {
		ps_handle *h = registry;
		registry_remove(h);
		h->forked = 1;
		h->disp_started = 0;
		atomic_store(&h->closing, 1);
		atomic_store(&h->users, 0);
		h->state = PS_FREED;
		pthread_mutex_init(&h->mu, NULL);
		pthread_mutex_init(&h->take_mu, NULL);
		pthread_cond_init(&h->cv, NULL);
		ps_after_free(h);
	}
	Py_RETURN_NONE;
}

static PyMethodDef module_handle_methods[] = {
	{"_close_all", close_all, METH_NOARGS, "Closes every open handle (atexit)."},
	{"_after_fork", after_fork, METH_NOARGS, "Marks every handle unusable (fork child)."},
	{NULL, NULL, 0, NULL},
};

int ps_module_handles_init(PyObject *m)
{
	return PyModule_AddFunctions(m, module_handle_methods);
}

static PyType_Slot handle_slots[] = {
	{Py_tp_new, handle_new},
	{Py_tp_dealloc, handle_dealloc},
	{Py_tp_traverse, ps_handle_traverse},
	{Py_tp_clear, ps_handle_clear},
	{Py_tp_methods, ps_handle_methods},
	{Py_tp_getset, ps_handle_getset},
	{Py_tp_iter, PyObject_SelfIter},
	{Py_tp_iternext, handle_iternext},
	{Py_tp_doc, "The base of Server, Client and UDP."},
	{0, NULL},
};

static PyMemberDef handle_members[] = {
	{"__weaklistoffset__", T_PYSSIZET, offsetof(ps_handle, weakrefs), READONLY, NULL},
	{"__dictoffset__", T_PYSSIZET, offsetof(ps_handle, dict), READONLY, NULL},
	{NULL, 0, 0, 0, NULL},
};

int ps_handle_types_init(PyObject *m)
{
	PyType_Slot slots[sizeof handle_slots / sizeof handle_slots[0] + 1];
	memcpy(slots, handle_slots, sizeof handle_slots);
	slots[sizeof handle_slots / sizeof handle_slots[0] - 1] =
		(PyType_Slot){Py_tp_members, handle_members};
	slots[sizeof handle_slots / sizeof handle_slots[0]] = (PyType_Slot){0, NULL};
	PyType_Spec spec = {
		.name = "ssock._Handle",
		.basicsize = sizeof(ps_handle),
		.flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
		.slots = slots,
	};
	ps_HandleType = (PyTypeObject *)PyType_FromSpec(&spec);
	if (!ps_HandleType)
		return -1;
	return PyModule_AddObject(m, "_Handle", Py_NewRef(ps_HandleType));
}
