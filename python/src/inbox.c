/*
 * inbox.c - taking events from a handle's inbox without the GIL (ps_take(),
 * shared with the dispatcher), next_event() and the other takes of inbox
 * mode (ps_pop_raw()), and the map of connection ids to Conn objects.
 */
#include "pyssock.h"

#include <errno.h>
#include <sys/eventfd.h>
#include <time.h>

/* ------------------------------------------------------------ taking events */

/* No GIL; the caller is a user of the handle. Takes up to max events,
 * waiting up to timeout_ms (-1: no limit) for the first. Returns the count
 * (0 on timeout, or in callback mode when objects sent by reference were
 * given back: the dispatcher releases them), -1 once the handle is
 * closing, -2 when a signal interrupted the wait (nothing taken). */
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
		int rc = ps_wait_fds(self->event_fd, self->wake_fd, self->refs_fd, wait);
		if (rc == -EINTR)
			return -2;
		if (rc < 0)
			return -1;
		eventfd_t v;
		if (self->refs_fd >= 0 && eventfd_read(self->refs_fd, &v) == 0)
			return 0;
	}
}

/* Waits for take_mu are cut into slices this long (ms): pthread_mutex_lock()
 * can't be interrupted by a signal, so a thread waiting for the lock while
 * another one holds it inside poll() (say, Ctrl-C in the main thread while a
 * worker waits on the same handle) comes back this often to run the Python
 * signal handlers (ps_signal_pause()). */
enum { TAKE_LOCK_SLICE_MS = 50 };

/* No GIL: locks take_mu, giving up at the deadline (a ps_now_ms() time). */
static int lock_take(ps_handle *self, int64_t deadline)
{
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

/* GIL, take_mu held: one blocking take into *ev. Returns as ps_take. */
static int take_blocking(ps_handle *self, ssock_event *ev, int64_t deadline)
{
	int wait = -1;
	if (deadline) {
		int64_t left = deadline - ps_now_ms();
		wait = left > 0 ? (int)left : 0;
	}
	int n;
	Py_BEGIN_ALLOW_THREADS
		n = ps_take(self, ev, 1, wait);
	Py_END_ALLOW_THREADS
	return n;
}

/* GIL; the caller is a user. Takes the next raw event into *ev: 1, 0 when
 * timeout_ms passed (0: don't wait, -1: no limit), -1 with an exception
 * (ClosedError once closing), -2 when the wait was cut short so that signal
 * handlers can run (a signal, or a slice of waiting for take_mu: see
 * ps_signal_pause()), nothing taken.
 *
 * One event at a time, straight from the C inbox to the caller: an event
 * taken ahead into a ring of ours would leave the inbox's fd (fileno())
 * unreadable while it waits, and would be one more than inbox_max allows.
 * Taking happens under take_mu and with the GIL held up to the hand-out (a
 * blocking take keeps take_mu until it has the GIL back), so events are
 * handed out in their order whichever threads take them. */
int ps_pop_raw(ps_handle *self, ssock_event *ev, int timeout_ms)
{
	if (self->spare_bytes)
		ps_spare_drop(self, 1); /* also for takers that never wait here */
	if (pthread_mutex_trylock(&self->take_mu) == 0) {
		int n = ps_take(self, ev, 1, 0);
		pthread_mutex_unlock(&self->take_mu);
		if (n > 0)
			return 1;
	}
	if (timeout_ms == 0)
		return 0;
	int64_t deadline = timeout_ms > 0 ? ps_now_ms() + timeout_ms : 0;
	for (;;) {
		/* Payloads kept for reuse go once idle: wait a slice at a time. */
		int64_t until = deadline;
		if (ps_spare_drop(self, 1)) {
			int64_t cut = ps_now_ms() + PS_SPARE_IDLE_MS;
			if (!until || cut < until)
				until = cut;
		}
		int64_t slice = ps_now_ms() + TAKE_LOCK_SLICE_MS;
		int64_t lock_until = until && until < slice ? until : slice;
		int locked;
		Py_BEGIN_ALLOW_THREADS
			locked = lock_take(self, lock_until);
		Py_END_ALLOW_THREADS
		if (!locked) {
			if (deadline && ps_now_ms() >= deadline)
				return 0;
			if (lock_until == slice)
				return -2;
			continue;
		}
		int n = take_blocking(self, ev, until);
		pthread_mutex_unlock(&self->take_mu);
		if (n > 0)
			return 1;
		if (n == -1 || atomic_load(&self->closing)) {
			ps_raise(SSOCK_ESHUTDOWN);
			return -1;
		}
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

PyObject *ps_disconnect_error(ssock_event *ev)
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
		err = ps_disconnect_error(ev);
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
	ps_refs_drain(self);
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
