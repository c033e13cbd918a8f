/*
 * handle.c - what servers, clients and UDP sockets share: the lifetime of the
 * C handle (users, close, fork, interpreter exit), taking events from the
 * inbox without the GIL, the dispatcher thread of callback mode, and the
 * inbox-mode next_event() with its ring of pending events.
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
static const char *const cb_names[PS_CB_COUNT] = {"on_connect", NULL, "on_disconnect", "on_error"};

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

static void registry_add(ps_handle *self)
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
static void free_c_handle(ps_handle *self)
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

static void release_pending(ps_handle *self)
{
	for (size_t i = 0; i < self->pend_n; i++)
		ssock_event_release(&self->pend[(self->pend_head + i) % self->pend_cap]);
	self->pend_n = 0;
}

/* GIL: after the C handle is gone. Every connection is closed, and the
 * references that could form cycles (callbacks, connections) are dropped. */
static void after_free(ps_handle *self)
{
	registry_remove(self);
	release_pending(self);
	if (self->wake_fd >= 0) {
		close(self->wake_fd); /* nobody waits on it: the users are gone */
		self->wake_fd = -1;
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

/* Whether the calling thread is this handle's dispatcher. */
static int on_dispatcher(ps_handle *self)
{
	return self->disp_started && pthread_equal(pthread_self(), self->disp);
}

/* No GIL: joins the dispatcher, up to wait_ms at interpreter exit (-1 else).
 * Returns 0 once it is gone, -1 if it is still running a callback. */
static int join_dispatcher(ps_handle *self, int wait_ms)
{
	if (wait_ms < 0)
		return pthread_join(self->disp, NULL) == 0 ? 0 : -1;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += wait_ms / 1000;
	ts.tv_nsec += (long)(wait_ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	return pthread_timedjoin_np(self->disp, NULL, &ts) == 0 ? 0 : -1;
}

/* Claims the close: 1 if this caller must do it, 0 if it is done or being
 * done by another (after waiting for that one to finish, unless the caller is
 * the dispatcher, which must never wait for itself). */
static int claim_close(ps_handle *self)
{
	int done = 0;
	pthread_mutex_lock(&self->mu);
	if (self->state == PS_OPEN) {
		self->state = PS_CLOSING;
		pthread_mutex_unlock(&self->mu);
		return 1;
	}
	done = self->state == PS_FREED || on_dispatcher(self);
	pthread_mutex_unlock(&self->mu);
	if (!done) {
		Py_BEGIN_ALLOW_THREADS pthread_mutex_lock(&self->mu);
		while (self->state != PS_FREED)
			pthread_cond_wait(&self->cv, &self->mu);
		pthread_mutex_unlock(&self->mu);
		Py_END_ALLOW_THREADS
	}
	return 0;
}

/* A client's queued data gets up to `linger` seconds to go out first. */
static void linger_flush(ps_handle *self)
{
	if (self->kind != PS_CLIENT || self->linger <= 0 || on_dispatcher(self) ||
	    ps_handle_enter(self) < 0) {
		PyErr_Clear();
		return;
	}
	int ms = (int)(self->linger * 1000.0);
	Py_BEGIN_ALLOW_THREADS if (ssock_client_state_get(self->h) == SSOCK_STATE_CONNECTED)
		ssock_client_flush(self->h, ms);
	Py_END_ALLOW_THREADS ps_handle_leave(self);
}

/* Closes the handle; with exit_wait_ms >= 0 (interpreter exit) a dispatcher
 * stuck in a callback is waited for only that long, and then left alone
 * (with its C handle, which the process exit takes). */
static void close_handle(ps_handle *self, int exit_wait_ms)
{
	if (self->forked || !self->h)
		return;
	linger_flush(self);
	if (!claim_close(self))
		return;
	atomic_store(&self->closing, 1);
	if (self->wake_fd >= 0)
		eventfd_write(self->wake_fd, 1);
	if (self->disp_started) {
		if (on_dispatcher(self)) {
			self->close_in_disp = 1; /* the dispatcher frees after the callback */
			return;
		}
		int rc;
		Py_BEGIN_ALLOW_THREADS rc = join_dispatcher(self, exit_wait_ms);
		Py_END_ALLOW_THREADS if (rc < 0)
		{
			registry_remove(self);
			return;
		}
		self->disp_started = 0;
	}
	Py_BEGIN_ALLOW_THREADS free_c_handle(self);
	Py_END_ALLOW_THREADS after_free(self);
}

PyObject *ps_handle_close_impl(ps_handle *self)
{
	close_handle(self, -1);
	Py_RETURN_NONE;
}

/* ------------------------------------------------------------ taking events */

/* No GIL; the caller is a user of the handle. Takes up to max events,
 * waiting up to timeout_ms (-1: no limit) for the first. Returns the count
 * (0 on timeout), -1 once the handle is closing, -2 when a signal
 * interrupted the wait (nothing taken). */
int ps_take(ps_handle *self, ssock_event *evs, int max, int timeout_ms)
{
	int64_t deadline = timeout_ms > 0 ? ps_now_ms() + timeout_ms : 0;
	for (;;) {
		if (atomic_load(&self->closing))
			return -1;
		int n = 0;
		while (n < max && self->ops->next_event(self->h, &evs[n], 0) == 0)
			n++;
		if (n > 0 || timeout_ms == 0)
			return n;
		int wait = -1;
		if (timeout_ms > 0) {
			int64_t left = deadline - ps_now_ms();
			if (left <= 0)
				return 0;
			wait = (int)left;
		}
		int rc = ps_wait_fds(self->event_fd, self->wake_fd, wait);
		if (rc == -EINTR)
			return -2;
		if (rc < 0)
			return -1;
	}
}

/* GIL: appends taken events to the pending ring. */
static int pend_push(ps_handle *self, ssock_event *evs, int n)
{
	if (self->pend_n + (size_t)n > self->pend_cap) {
		size_t cap = self->pend_cap ? self->pend_cap : 64;
		while (cap < self->pend_n + (size_t)n)
			cap *= 2;
		ssock_event *ring = PyMem_Malloc(cap * sizeof *ring);
		if (!ring) {
			for (int i = 0; i < n; i++)
				ssock_event_release(&evs[i]);
			PyErr_NoMemory();
			return -1;
		}
		for (size_t i = 0; i < self->pend_n; i++)
			ring[i] = self->pend[(self->pend_head + i) % self->pend_cap];
		PyMem_Free(self->pend);
		self->pend = ring;
		self->pend_cap = cap;
		self->pend_head = 0;
	}
	for (int i = 0; i < n; i++)
		self->pend[(self->pend_head + self->pend_n++) % self->pend_cap] = evs[i];
	return 0;
}

static int pend_pop(ps_handle *self, ssock_event *ev)
{
	if (self->pend_n == 0)
		return 0;
	*ev = self->pend[self->pend_head];
	self->pend_head = (self->pend_head + 1) % self->pend_cap;
	self->pend_n--;
	return 1;
}

enum { TAKE_CHUNK = 64 };

/* No GIL: locks take_mu, until the deadline when there is one. */
static int lock_take(ps_handle *self, int64_t deadline)
{
	if (!deadline)
		return pthread_mutex_lock(&self->take_mu) == 0;
	int64_t left = deadline - ps_now_ms();
	if (left < 0)
		left = 0;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += left / 1000;
	ts.tv_nsec += (long)(left % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	return pthread_mutex_timedlock(&self->take_mu, &ts) == 0;
}

/* GIL, take_mu held: one blocking take into the ring. Returns as ps_take. */
static int take_blocking(ps_handle *self, int64_t deadline)
{
	ssock_event tmp[TAKE_CHUNK];
	int wait = -1;
	if (deadline) {
		int64_t left = deadline - ps_now_ms();
		wait = left > 0 ? (int)left : 0;
	}
	int n;
	Py_BEGIN_ALLOW_THREADS n = ps_take(self, tmp, TAKE_CHUNK, wait);
	Py_END_ALLOW_THREADS if (n > 0 && pend_push(self, tmp, n) < 0) return -3;
	return n;
}

/* GIL; the caller is a user. Takes the next raw event into *ev: 1, 0 when
 * timeout_ms passed (0: don't wait, -1: no limit), -1 with an exception
 * (ClosedError once closing), -2 when a signal cut the wait short (see
 * ps_signal_pause()). Events keep their order whichever threads take them. */
int ps_pop_raw(ps_handle *self, ssock_event *ev, int timeout_ms)
{
	if (pend_pop(self, ev))
		return 1;
	if (pthread_mutex_trylock(&self->take_mu) == 0) {
		ssock_event tmp[TAKE_CHUNK];
		int n = ps_take(self, tmp, TAKE_CHUNK, 0);
		int rc = n > 0 ? pend_push(self, tmp, n) : 0;
		pthread_mutex_unlock(&self->take_mu);
		if (rc < 0)
			return -1;
		if (pend_pop(self, ev))
			return 1;
	}
	if (timeout_ms == 0)
		return 0;
	int64_t deadline = timeout_ms > 0 ? ps_now_ms() + timeout_ms : 0;
	for (;;) {
		int locked;
		Py_BEGIN_ALLOW_THREADS locked = lock_take(self, deadline);
		Py_END_ALLOW_THREADS if (!locked) return 0;
		int n = self->pend_n ? 0 : take_blocking(self, deadline);
		pthread_mutex_unlock(&self->take_mu);
		if (pend_pop(self, ev))
			return 1;
		if (n == -1 || atomic_load(&self->closing)) {
			ps_raise(SSOCK_ESHUTDOWN);
			return -1;
		}
		if (n == -3)
			return -1;
		if (n == -2)
			return -2;
		if (deadline && ps_now_ms() >= deadline)
			return 0;
	}
}

/* ------------------------------------------------------------ connections and events */

PyObject *ps_conn_for(ps_handle *self, uint64_t id, const ssock_addr *peer, int create)
{
	if (self->last_conn && ((ps_conn *)self->last_conn)->id == id)
		return Py_NewRef(self->last_conn);
	PyObject *key = PyLong_FromUnsignedLongLong(id);
	if (!key)
		return NULL;
	PyObject *conn = PyDict_GetItemWithError(self->conns, key);
	if (conn) {
		Py_INCREF(conn);
	} else if (!PyErr_Occurred() && create) {
		conn = ps_conn_new(self, id, peer);
		if (conn && PyDict_SetItem(self->conns, key, conn) < 0)
			Py_CLEAR(conn);
	}
	Py_DECREF(key);
	if (conn)
		Py_XSETREF(self->last_conn, Py_NewRef(conn));
	else if (!PyErr_Occurred())
		conn = Py_NewRef(Py_None);
	return conn;
}

/* At a disconnect: the Conn leaves the map and is marked closed. */
PyObject *ps_take_conn(ps_handle *self, uint64_t id, const ssock_addr *peer)
{
	PyObject *conn = ps_conn_for(self, id, peer, 1);
	if (!conn || conn == Py_None)
		return conn;
	((ps_conn *)conn)->open = 0;
	Py_CLEAR(self->last_conn);
	PyObject *key = PyLong_FromUnsignedLongLong(id);
	if (!key || PyDict_DelItem(self->conns, key) < 0)
		PyErr_Clear(); /* not in the map: nothing to drop */
	Py_XDECREF(key);
	return conn;
}

static PyObject *disconnect_error(ssock_event *ev)
{
	if (ev->code == 0)
		Py_RETURN_NONE;
	return ps_error_new(ev->code, "disconnect", ev->conn, &ev->peer, 0);
}

/* GIL: an inbox event as an Event object; *ev is released. */
static PyObject *event_to_py(ps_handle *self, ssock_event *ev)
{
	PyObject *conn = NULL, *data = NULL, *peer = NULL, *err = NULL, *res = NULL;
	int t = ev->type;
	if (t == SSOCK_EVENT_MESSAGE) {
		data = ps_event_data(self, ev);
		if (self->kind == PS_UDP)
			peer = ps_addr_to_tuple(&ev->peer);
		else
			conn = ps_conn_for(self, ev->conn, &ev->peer, 1);
	} else if (t == SSOCK_EVENT_CONNECT) {
		conn = ps_conn_for(self, ev->conn, &ev->peer, 1);
	} else if (t == SSOCK_EVENT_DISCONNECT) {
		conn = ps_take_conn(self, ev->conn, &ev->peer);
		err = disconnect_error(ev);
	} else if (t == SSOCK_EVENT_ERROR) {
		const ssock_addr *p = ev->peer.len ? &ev->peer : NULL;
		err = ps_error_new(ev->code, ev->op, ev->conn, p, 0);
		conn = ev->conn ? ps_conn_for(self, ev->conn, p, 0) : Py_NewRef(Py_None);
		peer = ps_addr_to_tuple(p);
	}
	if (!PyErr_Occurred() && t > 0 && t <= SSOCK_EVENT_ERROR)
		res = ps_event_new(ps_ev_type[t], conn, data, peer, err, (Py_ssize_t)ev->unsent);
	Py_XDECREF(conn);
	Py_XDECREF(data);
	Py_XDECREF(peer);
	Py_XDECREF(err);
	ssock_event_release(ev);
	return res;
}

/* GIL, the caller a user, after ps_pop_raw() returned -2: runs the Python
 * signal handlers with the handle left, since a handler may close it (and
 * close() waits for every user to leave). Returns 0 when the caller is a
 * user again and may go on waiting, -1 with an exception and the handle
 * left. */
int ps_signal_pause(ps_handle *self)
{
	ps_handle_leave(self);
	if (PyErr_CheckSignals() < 0)
		return -1;
	return ps_handle_enter(self);
}

/* ms left until deadline (0: none), at least 0; -1 when there is none. */
int ps_left_ms(int64_t deadline)
{
	if (!deadline)
		return -1;
	int64_t left = deadline - ps_now_ms();
	return left > 0 ? (int)left : 0;
}

PyObject *ps_next_event(ps_handle *self, int timeout_ms)
{
	if (self->callback_mode)
		return ps_raise(SSOCK_ENOINBOX);
	if (ps_handle_enter(self) < 0)
		return NULL;
	int64_t deadline = timeout_ms > 0 ? ps_now_ms() + timeout_ms : 0;
	ssock_event ev;
	int got;
	while ((got = ps_pop_raw(self, &ev, timeout_ms)) == -2) {
		if (ps_signal_pause(self) < 0)
			return NULL;
		if (timeout_ms > 0)
			timeout_ms = ps_left_ms(deadline);
	}
	PyObject *res = NULL;
	if (got > 0)
		res = event_to_py(self, &ev);
	else if (got == 0)
		res = Py_NewRef(Py_None);
	ps_handle_leave(self);
	return res;
}

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
		err = conn ? disconnect_error(ev) : NULL;
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
static void *dispatcher_main(void *arg)
{
	ps_handle *self = arg;
	block_signals();
	pthread_setname_np(pthread_self(), "ssock-dispatch");
	PyThreadState *ts = PyThreadState_New(self->interp);
	ssock_event *evs = malloc(PS_BATCH * sizeof *evs);
	for (;;) {
		int n = evs ? ps_take(self, evs, PS_BATCH, -1) : -1;
		if (n == -2)
			continue; /* signals are blocked here; a stray EINTR */
		PyEval_RestoreThread(ts);
		for (int i = 0; i < n; i++) {
			if (atomic_load(&self->closing))
				ssock_event_release(&evs[i]);
			else
				dispatch_one(self, &evs[i]);
		}
		if (n < 0 || atomic_load(&self->closing))
			break;
		PyEval_SaveThread();
	}
	/* The GIL is held from here on. */
	free(evs);
	ps_handle_leave(self);
	if (self->close_in_disp) {
		Py_BEGIN_ALLOW_THREADS free_c_handle(self);
		Py_END_ALLOW_THREADS after_free(self);
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
	registry_add(self);
	if (!self->callback_mode)
		return 0;
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
	self->wake_fd = self->event_fd = self->user_fd = -1;
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
	if (self->weakrefs)
		PyObject_ClearWeakRefs((PyObject *)self);
	close_handle(self, -1);
	registry_remove(self);
	release_pending(self);
	PyMem_Free(self->pend);
	if (self->wake_fd >= 0)
		close(self->wake_fd);
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

PyGetSetDef ps_handle_getset[] = {
	{"closed", (getter)handle_get_closed, NULL, "True once close() was called.", NULL},
	{"callback_mode", (getter)handle_get_callback_mode, NULL,
	 "True when events go to callbacks, False when they go to next_event().", NULL},
	{"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

/* ------------------------------------------------------------ exit and fork */

/* atexit: closes every open handle; a dispatcher stuck in a callback gets 2 s. */
static PyObject *close_all(PyObject *mod, PyObject *unused)
{
	(void)mod;
	(void)unused;
	while (registry) {
		ps_handle *h = registry;
		Py_INCREF(h);
		registry_remove(h);
		close_handle(h, 2000);
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
		after_free(h);
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
