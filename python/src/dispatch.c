/*
 * dispatch.c - callback mode: one dispatcher thread per handle takes every
 * event waiting (up to PS_BATCH) without the GIL, then takes the GIL once and
 * runs the Python callbacks of the whole batch. A callback that raises goes
 * to on_error, or is printed as unraisable; it never stops the dispatcher.
 */
#include "pyssock.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/eventfd.h>

static const char *const cb_names[PS_CB_COUNT] = {"on_connect", NULL, "on_disconnect", "on_error"};

/* ------------------------------------------------------------ the dispatcher */

/* GIL, with an exception set: hands it to on_error, or prints it as an
 * unraisable exception of the callback that raised it. Never lets it out. */
static void report_exception(ps_handle *self, PyObject *cb)
{
	PyObject *on_error = self->cb[PS_CB_ERROR];
	if (!on_error || cb == on_error) {
		PyErr_WriteUnraisable(cb ? cb : (PyObject *)self);
		return;
	}
	PyObject *type, *value, *tb;
	PyErr_Fetch(&type, &value, &tb);
	PyErr_NormalizeException(&type, &value, &tb);
	if (tb && value)
		PyException_SetTraceback(value, tb);
	PyObject *res = value ? PyObject_CallOneArg(on_error, value) : NULL;
	Py_XDECREF(type);
	Py_XDECREF(value);
	Py_XDECREF(tb);
	if (!res)
		PyErr_WriteUnraisable(on_error);
	Py_XDECREF(res);
}

static PyObject *call2(PyObject *cb, PyObject *a, PyObject *b)
{
	PyObject *args[2] = {a, b};
	return PyObject_Vectorcall(cb, args, 2, NULL);
}

static PyObject *call3(PyObject *cb, PyObject *a, PyObject *b, PyObject *c)
{
	PyObject *args[3] = {a, b, c};
	return PyObject_Vectorcall(cb, args, 3, NULL);
}

static PyObject *dispatch_message(ps_handle *self, ssock_event *ev, PyObject *cb)
{
	PyObject *res = NULL;
	if (self->kind == PS_UDP) {
		PyObject *data = ps_event_data(self, ev);
		PyObject *peer = data ? ps_addr_to_tuple(&ev->peer) : NULL;
		if (peer && cb)
			res = call3(cb, (PyObject *)self, data, peer);
		else if (peer)
			res = Py_NewRef(Py_None);
		Py_XDECREF(data);
		Py_XDECREF(peer);
		return res;
	}
	PyObject *conn = ps_conn_for(self, ev->conn, &ev->peer, 1);
	PyObject *data = conn ? ps_event_data(self, ev) : NULL;
	if (data && cb)
		res = call2(cb, conn, data);
	else if (data)
		res = Py_NewRef(Py_None);
	Py_XDECREF(conn);
	Py_XDECREF(data);
	return res;
}

/* GIL: runs the callback of one event; *ev is released. */
static void dispatch_one(ps_handle *self, ssock_event *ev)
{
	PyObject *res = NULL, *cb = NULL, *conn = NULL, *err = NULL;
	switch (ev->type) {
	case SSOCK_EVENT_MESSAGE:
		cb = self->cb[PS_CB_MESSAGE];
		res = dispatch_message(self, ev, cb);
		break;
	case SSOCK_EVENT_CONNECT:
		cb = self->cb[PS_CB_CONNECT];
		conn = ps_conn_for(self, ev->conn, &ev->peer, 1);
		res = conn && cb ? PyObject_CallOneArg(cb, conn) : Py_XNewRef(conn);
		break;
	case SSOCK_EVENT_DISCONNECT:
		cb = self->cb[PS_CB_DISCONNECT];
		conn = ps_take_conn(self, ev->conn, &ev->peer);
		err = conn ? ps_disconnect_error(ev) : NULL;
		res = err && cb ? call2(cb, conn, err) : Py_XNewRef(err);
		break;
	case SSOCK_EVENT_ERROR:
		cb = self->cb[PS_CB_ERROR];
		err = ps_error_new(ev->code, ev->op, ev->conn, ev->peer.len ? &ev->peer : NULL, 0);
		res = err && cb ? PyObject_CallOneArg(cb, err) : Py_XNewRef(err);
		break;
	default:
		res = Py_NewRef(Py_None);
	}
	if (!res)
		report_exception(self, cb);
	Py_XDECREF(res);
	Py_XDECREF(conn);
	Py_XDECREF(err);
	ssock_event_release(ev);
}

static void block_signals(void)
{
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
}

/* The dispatcher thread of a handle in callback mode. It counts as a user of
 * the handle from ps_handle_start() until it leaves its loop, and holds a
 * reference to the handle object for its whole life. */
__thread int ps_in_dispatcher;

static void *dispatcher_main(void *arg)
{
	ps_handle *self = arg;
	ps_in_dispatcher = 1;
	block_signals();
	pthread_setname_np(pthread_self(), "ssock-dispatch");
	PyThreadState *ts = PyThreadState_New(self->interp);
	ssock_event *evs = malloc(PS_BATCH * sizeof *evs);
	int wait = -1; /* a second while payloads are kept for reuse */
	for (;;) {
		int n = evs ? ps_take(self, evs, PS_BATCH, wait) : -1;
		if (n == -2)
			continue; /* signals are blocked here; a stray EINTR */
		PyEval_RestoreThread(ts);
		for (int i = 0; i < n; i++) {
			if (atomic_load(&self->closing))
				ssock_event_release(&evs[i]);
			else
				dispatch_one(self, &evs[i]);
		}
		ps_refs_drain(self);
		if (n < 0 || atomic_load(&self->closing))
			break;
		wait = ps_spare_drop(self, 1) ? PS_SPARE_IDLE_MS : -1;
		PyEval_SaveThread();
	}
	/* The GIL is held from here on. */
	free(evs);
	ps_handle_leave(self);
	if (self->close_in_disp) {
		Py_BEGIN_ALLOW_THREADS
			ps_linger_nogil(self); /* no more callbacks: nothing waits for it */
			ps_free_c_handle(self);
		Py_END_ALLOW_THREADS
		ps_after_free(self);
		pthread_detach(pthread_self());
		self->disp_started = 0;
	}
	Py_DECREF(self);
	PyThreadState_Clear(ts);
	PyThreadState_DeleteCurrent();
	return NULL;
}

/* ------------------------------------------------------------ set-up */

/* GIL: the callbacks (keyword arguments first, then methods or attributes of
 * a subclass), the mode, the wake fd, the registry. */
int ps_handle_setup(ps_handle *self, PyObject *kwcb[PS_CB_COUNT], const char *msg_name,
		    PyObject *loop)
{
	for (int i = 0; i < PS_CB_COUNT; i++) {
		PyObject *cb = kwcb[i];
		const char *name = i == PS_CB_MESSAGE ? msg_name : cb_names[i];
		if (!cb || cb == Py_None) {
			cb = NULL;
			if (ps_optional_attr((PyObject *)self, name, &cb) < 0)
				return -1;
			if (cb == Py_None)
				Py_CLEAR(cb);
		} else {
			Py_INCREF(cb);
		}
		if (cb && !PyCallable_Check(cb)) {
			PyErr_Format(PyExc_TypeError, "%s must be callable", name);
			Py_DECREF(cb);
			return -1;
		}
		Py_XSETREF(self->cb[i], cb);
	}
	self->callback_mode = self->cb[PS_CB_MESSAGE] != NULL;
	if (!self->callback_mode &&
	    (self->cb[PS_CB_CONNECT] || self->cb[PS_CB_DISCONNECT] || self->cb[PS_CB_ERROR])) {
		PyErr_Format(PyExc_TypeError,
			     "on_connect, on_disconnect and on_error need %s (callback mode); "
			     "without it every event comes from next_event()",
			     msg_name);
		return -1;
	}
	self->loop = Py_XNewRef(loop != Py_None ? loop : NULL);
	return 0;
}

/* GIL, after the C handle exists: event fd, wake fd, registry, dispatcher. */
int ps_handle_start(ps_handle *self)
{
	self->interp = PyInterpreterState_Get();
	self->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	self->event_fd = self->ops->event_fd(self->h);
	if (self->wake_fd < 0 || self->event_fd < 0) {
		if (self->event_fd < 0)
			ps_raise(self->event_fd);
		else
			PyErr_SetFromErrno(PyExc_OSError);
		return -1;
	}
	ps_registry_add(self);
	if (!self->callback_mode)
		return 0;
	self->refs_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (self->refs_fd < 0) {
		PyErr_SetFromErrno(PyExc_OSError);
		return -1;
	}
	atomic_fetch_add(&self->users, 1); /* the dispatcher's, left when it ends */
	Py_INCREF(self);
	int rc = pthread_create(&self->disp, NULL, dispatcher_main, self);
	if (rc != 0) {
		atomic_fetch_sub(&self->users, 1);
		Py_DECREF(self);
		errno = rc;
		PyErr_SetFromErrno(PyExc_OSError);
		return -1;
	}
	self->disp_started = 1;
	return 0;
}
