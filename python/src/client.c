/*
 * client.c - ssock.Client: a TCP client on ssock_client.
 */
#include "pyssock.h"

#include <string.h>

PyTypeObject *ps_ClientType;

/* The ops of the shared code, typed for it (no function-pointer casts). */
static int cli_next_event(void *h, ssock_event *ev, int timeout_ms)
{
	return ssock_client_next_event((ssock_client *)h, ev, timeout_ms);
}

static int cli_event_fd(void *h)
{
	return ssock_client_event_fd((ssock_client *)h);
}

static int cli_errors(void *h, ssock_error_info *out, int max, int clear)
{
	return ssock_client_errors((ssock_client *)h, out, max, clear);
}

static int cli_free(void *h)
{
	return ssock_client_free((ssock_client *)h);
}

static const ps_ops client_ops = {
	.next_event = cli_next_event,
	.event_fd = cli_event_fd,
	.errors = cli_errors,
	.free = cli_free,
};

enum {
	O_FRAMING,
	O_MAX_MESSAGE,
	O_READ_SIZE,
	O_SEND_QUEUE_MAX,
	O_INBOX_MAX,
	O_INBOX_MAX_BYTES,
	O_CONNECT_TIMEOUT,
	O_IDLE_TIMEOUT,
	O_READ_TIMEOUT,
	O_KEEPALIVE,
	O_AUTO_RECONNECT,
	O_RECONNECT_MIN,
	O_RECONNECT_MAX,
	O_RECONNECT_MAX_TRIES,
	O_QUEUE_WHILE_OFFLINE,
	O_ERROR_LOG_MAX,
	O_LOOP,
	O_LINGER,
	O_ZERO_COPY,
	O_COUNT
};

static int client_opts(ps_handle *self, PyObject *o[O_COUNT], ssock_client_opts *opts)
{
	size_t max_message;
	if (ps_framing(o[O_FRAMING], &opts->framing) < 0 ||
	    ps_opt_size(o[O_MAX_MESSAGE], "max_message", &max_message) < 0 ||
	    ps_opt_size(o[O_READ_SIZE], "read_size", &opts->read_size) < 0 ||
	    ps_opt_size(o[O_SEND_QUEUE_MAX], "send_queue_max", &opts->send_queue_max) < 0 ||
	    ps_opt_size(o[O_INBOX_MAX], "inbox_max", &opts->inbox_max) < 0 ||
	    ps_opt_size(o[O_INBOX_MAX_BYTES], "inbox_max_bytes", &opts->inbox_max_bytes) < 0 ||
	    ps_opt_ms(o[O_CONNECT_TIMEOUT], "connect_timeout", &opts->connect_timeout_ms) < 0 ||
	    ps_opt_ms(o[O_IDLE_TIMEOUT], "idle_timeout", &opts->idle_timeout_ms) < 0 ||
	    ps_opt_ms(o[O_READ_TIMEOUT], "read_timeout", &opts->read_timeout_ms) < 0 ||
	    ps_opt_int(o[O_KEEPALIVE], "keepalive", &opts->keepalive_s) < 0 ||
	    ps_opt_ms(o[O_RECONNECT_MIN], "reconnect_min", &opts->reconnect_min_ms) < 0 ||
	    ps_opt_ms(o[O_RECONNECT_MAX], "reconnect_max", &opts->reconnect_max_ms) < 0 ||
	    ps_opt_int(o[O_RECONNECT_MAX_TRIES], "reconnect_max_tries",
		       &opts->reconnect_max_tries) < 0 ||
	    ps_opt_int(o[O_ERROR_LOG_MAX], "error_log_max", &opts->error_log_max) < 0)
		return -1;
	if (max_message > 0xFFFFFFFFu) {
		PyErr_SetString(PyExc_OverflowError, "max_message is at most 4 GiB - 1");
		return -1;
	}
	opts->max_message = (uint32_t)max_message;
	if (o[O_ZERO_COPY] && (self->zero_copy = PyObject_IsTrue(o[O_ZERO_COPY])) < 0)
		return -1;
	if ((o[O_AUTO_RECONNECT] &&
	     (opts->auto_reconnect = PyObject_IsTrue(o[O_AUTO_RECONNECT])) < 0) ||
	    (o[O_QUEUE_WHILE_OFFLINE] &&
	     (opts->queue_while_offline = PyObject_IsTrue(o[O_QUEUE_WHILE_OFFLINE])) < 0))
		return -1;
	if (o[O_LOOP] && o[O_LOOP] != Py_None && !(opts->loop = ps_loop_get(o[O_LOOP])))
		return -1;
	return ps_linger_ms(o[O_LINGER], &self->linger_ms);
}

static int client_init(ps_handle *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"connect",
				 "framing",
				 "max_message",
				 "read_size",
				 "send_queue_max",
				 "inbox_max",
				 "inbox_max_bytes",
				 "connect_timeout",
				 "idle_timeout",
				 "read_timeout",
				 "keepalive",
				 "auto_reconnect",
				 "reconnect_min",
				 "reconnect_max",
				 "reconnect_max_tries",
				 "queue_while_offline",
				 "error_log_max",
				 "loop",
				 "linger",
				 "zero_copy",
				 "on_connect",
				 "on_message",
				 "on_disconnect",
				 "on_error",
				 NULL};
	PyObject *addr, *o[O_COUNT] = {0}, *cb[PS_CB_COUNT] = {0};
	if (self->h || self->state != PS_OPEN) {
		PyErr_SetString(PyExc_RuntimeError, "Client.__init__ called twice");
		return -1;
	}
	if (!PyArg_ParseTupleAndKeywords(
		    args, kw, "O|$OOOOOOOOOOOOOOOOOOOOOOO:Client", kwlist, &addr, &o[0], &o[1],
		    &o[2], &o[3], &o[4], &o[5], &o[6], &o[7], &o[8], &o[9], &o[10], &o[11], &o[12],
		    &o[13], &o[14], &o[15], &o[16], &o[17], &o[18], &cb[PS_CB_CONNECT],
		    &cb[PS_CB_MESSAGE], &cb[PS_CB_DISCONNECT], &cb[PS_CB_ERROR]))
		return -1;
	self->ops = &client_ops;
	self->kind = PS_CLIENT;
	ssock_client_opts opts;
	memset(&opts, 0, sizeof opts);
	PyObject *text = ps_addr_text(addr);
	opts.connect = text ? PyUnicode_AsUTF8(text) : NULL;
	int rc = -1;
	if (opts.connect && ps_handle_setup(self, cb, "on_message", o[O_LOOP]) == 0 &&
	    client_opts(self, o, &opts) == 0) {
		ssock_client *cli = NULL;
		Py_BEGIN_ALLOW_THREADS
			rc = ssock_client_new(&cli, &opts);
		Py_END_ALLOW_THREADS
		self->h = cli;
		self->target = Py_NewRef(text);
		rc = rc < 0 ? (ps_raise(rc), -1) : ps_handle_start(self);
	}
	Py_XDECREF(text);
	if (rc < 0 && self->h) {
		ssock_client_free(self->h);
		self->h = NULL;
	}
	return rc;
}

/* ------------------------------------------------------------ methods */

static int connect_attempt(ps_handle *self, int slice_ms, void *arg)
{
	(void)arg;
	return ssock_client_connect(self->h, slice_ms);
}

static PyObject *client_connect(ps_handle *self, PyObject *args, PyObject *kw)
{
	int ms;
	if (ps_timeout_arg(args, kw, "|O:connect", &ms) < 0)
		return NULL;
	return ps_wait_method(self, ms, connect_attempt, NULL);
}

static PyObject *client_simple(ps_handle *self, int (*fn)(ssock_client *), int ok_code)
{
	if (ps_handle_enter(self) < 0)
		return NULL;
	int rc;
	Py_BEGIN_ALLOW_THREADS /* it waits for the loop thread to run it */
		rc = fn(self->h);
	Py_END_ALLOW_THREADS
	ps_handle_leave(self);
	return rc < 0 && rc != ok_code ? ps_raise(rc) : Py_NewRef(Py_None);
}

static PyObject *client_reconnect(ps_handle *self, PyObject *unused)
{
	(void)unused;
	return client_simple(self, ssock_client_reconnect, 0);
}

static PyObject *client_disconnect(ps_handle *self, PyObject *unused)
{
	(void)unused;
	return client_simple(self, ssock_client_disconnect, SSOCK_ENOTCONN);
}

static int send_fn(void *h, uint64_t id, const ssock_addr *to, const void *data, size_t len,
		   int timeout_ms, ssock_release_fn release, void *arg)
{
	(void)id;
	(void)to;
	if (release)
		return ssock_client_send_ref(h, data, len, timeout_ms, release, arg);
	if (timeout_ms == 0)
		return ssock_client_send(h, data, len);
	return ssock_client_send_timeout(h, data, len, timeout_ms);
}

static PyObject *client_send(ps_handle *self, PyObject *const *args, Py_ssize_t nargs,
			     PyObject *kwnames)
{
	static const char *const names[] = {"data", "timeout"};
	PyObject *a[2];
	int ms;
	if (ps_fast_args("send", args, nargs, kwnames, names, 2, 1, a) < 0 ||
	    ps_send_timeout(a[1], &ms) < 0)
		return NULL;
	return ps_send(self, send_fn, 0, NULL, a[0], ms);
}

static int flush_attempt(ps_handle *self, int slice_ms, void *arg)
{
	(void)arg;
	return ssock_client_flush(self->h, slice_ms);
}

PyObject *ps_client_flush(ps_handle *self, int timeout_ms)
{
	return ps_wait_method(self, timeout_ms, flush_attempt, NULL);
}

static PyObject *client_flush(ps_handle *self, PyObject *args, PyObject *kw)
{
	int ms;
	if (ps_timeout_arg(args, kw, "|O:flush", &ms) < 0)
		return NULL;
	return ps_client_flush(self, ms);
}

/* Raises NotConnectedError for a connection that ended; .reason is why
 * (an ssock.Error, or None when the peer closed cleanly). */
static void raise_ended(ssock_event *ev)
{
	PyObject *e = ps_error_new(SSOCK_ENOTCONN, "recv", ev->conn, &ev->peer, 0);
	PyObject *why = !e         ? NULL
			: ev->code ? ps_error_new(ev->code, "disconnect", ev->conn, &ev->peer, 0)
				   : Py_NewRef(Py_None);
	if (why && PyObject_SetAttrString(e, "reason", why) == 0)
		PyErr_SetObject((PyObject *)Py_TYPE(e), e);
	Py_XDECREF(why);
	Py_XDECREF(e);
}

/* recv(timeout=None): the next message's bytes. Connect events are skipped;
 * the end of the connection raises NotConnectedError, an error event its
 * error, an expired timeout ssock.TimeoutError. */
static PyObject *client_recv(ps_handle *self, PyObject *args, PyObject *kw)
{
	PyObject *res = NULL;
	int ms;
	if (ps_timeout_arg(args, kw, "|O:recv", &ms) < 0)
		return NULL;
	if (self->callback_mode)
		return ps_raise(SSOCK_ENOINBOX);
	if (ps_handle_enter(self) < 0)
		return NULL;
	int64_t deadline = ms > 0 ? ps_now_ms() + ms : 0;
	while (!res && !PyErr_Occurred()) {
		ssock_event ev;
		int got = ps_pop_raw(self, &ev, ms <= 0 ? ms : ps_left_ms(deadline));
		if (got == -2 && ps_signal_pause(self) < 0)
			return NULL;
		if (got == 0) {
			ps_raise(SSOCK_ETIMEDOUT);
		} else if (got > 0 && ev.type == SSOCK_EVENT_MESSAGE) {
			res = ps_event_data(self, &ev);
		} else if (got > 0 && ev.type == SSOCK_EVENT_CONNECT) {
			Py_XDECREF(ps_conn_for(self, ev.conn, &ev.peer, 1));
		} else if (got > 0 && ev.type == SSOCK_EVENT_DISCONNECT) {
			Py_XDECREF(ps_take_conn(self, ev.conn, &ev.peer));
			raise_ended(&ev);
		} else if (got > 0) {
			PyObject *e = ps_error_new(ev.code, ev.op, ev.conn, &ev.peer, 0);
			if (e)
				PyErr_SetObject((PyObject *)Py_TYPE(e), e);
			Py_XDECREF(e);
		}
		if (got > 0)
			ssock_event_release(&ev);
	}
	ps_handle_leave(self);
	return res;
}

static PyObject *client_get_state(ps_handle *self, void *closure)
{
	(void)closure;
	if (ps_handle_enter(self) < 0)
		return NULL;
	ssock_client_state st = ssock_client_state_get(self->h);
	ps_handle_leave(self);
	return Py_NewRef(ps_client_state[st <= SSOCK_STATE_CONNECTED ? st : 0]);
}

static PyObject *client_get_connected(ps_handle *self, void *closure)
{
	(void)closure;
	if (!self->h || atomic_load(&self->closing) || ps_handle_enter(self) < 0) {
		PyErr_Clear();
		Py_RETURN_FALSE;
	}
	int st = ssock_client_state_get(self->h);
	ps_handle_leave(self);
	return PyBool_FromLong(st == SSOCK_STATE_CONNECTED);
}

static PyObject *client_get_target(ps_handle *self, void *closure)
{
	(void)closure;
	return Py_XNewRef(self->target ? self->target : Py_None);
}

static PyObject *client_get_id(ps_handle *self, void *closure)
{
	(void)closure;
	if (ps_handle_enter(self) < 0)
		return NULL;
	uint64_t id = ssock_client_id(self->h);
	ps_handle_leave(self);
	return PyLong_FromUnsignedLongLong(id);
}

/* The Conn of the current connection, from the events seen so far, or None. */
static PyObject *client_get_conn(ps_handle *self, void *closure)
{
	(void)closure;
	if (ps_handle_enter(self) < 0)
		return NULL;
	uint64_t id = ssock_client_id(self->h);
	ps_handle_leave(self);
	if (id == 0)
		Py_RETURN_NONE;
	return ps_conn_for(self, id, NULL, 0);
}

/* The peer of the current connection: from its connect event when one was
 * seen, else the first address the target resolves to (libssock has no call
 * for a client's peer address); None when not connected. */
static PyObject *client_get_peer(ps_handle *self, void *closure)
{
	PyObject *conn = client_get_conn(self, closure);
	if (!conn || conn != Py_None) {
		PyObject *peer = conn ? PyObject_GetAttrString(conn, "peer") : NULL;
		Py_XDECREF(conn);
		return peer;
	}
	Py_DECREF(conn);
	if (ps_handle_enter(self) < 0)
		return NULL;
	int st = ssock_client_state_get(self->h);
	ps_handle_leave(self);
	if (st != SSOCK_STATE_CONNECTED)
		Py_RETURN_NONE;
	ssock_addr a;
	if (ps_addr_from_obj(self->target, &a, 0) < 0)
		return NULL;
	return ps_addr_to_tuple(&a);
}

static PyMethodDef client_methods[] = {
	{"connect", (PyCFunction)(void (*)(void))client_connect, METH_VARARGS | METH_KEYWORDS,
	 "connect(timeout=None)\n--\n\nConnects, waiting up to timeout seconds (None: until "
	 "connected or failed; 0: start and return at once). Raises the attempt's error."},
	{"reconnect", (PyCFunction)client_reconnect, METH_NOARGS,
	 "reconnect()\n--\n\nDrops the connection (if any) and connects again, in the "
	 "background."},
	{"disconnect", (PyCFunction)client_disconnect, METH_NOARGS,
	 "disconnect()\n--\n\nCloses the connection gracefully and stops reconnecting."},
	{"send", (PyCFunction)(void (*)(void))client_send, METH_FASTCALL | METH_KEYWORDS,
	 "send(data, timeout=0)\n--\n\nQueues data as one message (see Conn.send)."},
	{"flush", (PyCFunction)(void (*)(void))client_flush, METH_VARARGS | METH_KEYWORDS,
	 "flush(timeout=None)\n--\n\nWaits until everything queued was written."},
	{"recv", (PyCFunction)(void (*)(void))client_recv, METH_VARARGS | METH_KEYWORDS,
	 "recv(timeout=None)\n--\n\nInbox mode: the next message (bytes). Raises TimeoutError, "
	 "NotConnectedError when the connection ended, or the error that came instead."},
	{NULL, NULL, 0, NULL},
};

static PyGetSetDef client_getset[] = {
	{"state", (getter)client_get_state, NULL, "A ClientState.", NULL},
	{"connected", (getter)client_get_connected, NULL, "True while connected.", NULL},
	{"id", (getter)client_get_id, NULL, "The current connection's id, 0 when none.", NULL},
	{"conn", (getter)client_get_conn, NULL,
	 "The current connection's Conn once its connect event was seen, else None.", NULL},
	{"peer", (getter)client_get_peer, NULL, "The current connection's peer address.", NULL},
	{"target", (getter)client_get_target, NULL, "The address it connects to ('HOST:PORT').",
	 NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot client_slots[] = {
	{Py_tp_traverse, ps_handle_traverse},
	{Py_tp_clear, ps_handle_clear},
	{Py_tp_init, client_init},
	{Py_tp_methods, client_methods},
	{Py_tp_getset, client_getset},
	{Py_tp_doc,
	 "Client(connect, *, framing='u32', max_message=0, read_size=0, send_queue_max=0, "
	 "inbox_max=0, inbox_max_bytes=0, connect_timeout=0, idle_timeout=0, read_timeout=0, "
	 "keepalive=0, auto_reconnect=False, reconnect_min=0, reconnect_max=0, "
	 "reconnect_max_tries=0, queue_while_offline=False, error_log_max=0, loop=None, "
	 "linger=1.0, zero_copy=False, on_connect=None, on_message=None, on_disconnect=None, "
	 "on_error=None)"
	 "\n--\n\nA TCP client (not connected until connect()). close() first lets queued "
	 "data go out for up to `linger` seconds."},
	{0, NULL},
};

int ps_client_type_init(PyObject *m)
{
	PyType_Spec spec = {
		.name = "ssock.Client",
		.basicsize = sizeof(ps_handle),
		.flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
		.slots = client_slots,
	};
	ps_ClientType = (PyTypeObject *)PyType_FromSpecWithBases(&spec, (PyObject *)ps_HandleType);
	if (!ps_ClientType)
		return -1;
	return PyModule_AddObject(m, "Client", Py_NewRef(ps_ClientType));
}
