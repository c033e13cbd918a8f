/*
 * server.c - ssock.Server: a TCP server on ssock_server.
 */
#include "pyssock.h"

#include <string.h>

PyTypeObject *ps_ServerType;
PyTypeObject *ps_StatsType;

/* The ops of the shared code, typed for it (no function-pointer casts). */
static int srv_next_event(void *h, ssock_event *ev, int timeout_ms)
{
	return ssock_server_next_event((ssock_server *)h, ev, timeout_ms);
}

static int srv_event_fd(void *h)
{
	return ssock_server_event_fd((ssock_server *)h);
}

static int srv_errors(void *h, ssock_error_info *out, int max, int clear)
{
	return ssock_server_errors((ssock_server *)h, out, max, clear);
}

static int srv_free(void *h)
{
	return ssock_server_free((ssock_server *)h);
}

static const ps_ops server_ops = {
	.next_event = srv_next_event,
	.event_fd = srv_event_fd,
	.errors = srv_errors,
	.free = srv_free,
};

/* The listen argument: one address (str or tuple) or a list of them. */
static PyObject *listen_list(PyObject *listen)
{
	if (PyList_Check(listen))
		return PySequence_List(listen);
	if (PyTuple_Check(listen) && PyTuple_GET_SIZE(listen) > 0 &&
	    !PyUnicode_Check(PyTuple_GET_ITEM(listen, 0)))
		return PySequence_List(listen);
	PyObject *one = PyList_New(1);
	if (one)
		PyList_SET_ITEM(one, 0, Py_NewRef(listen));
	return one;
}

enum {
	O_FRAMING,
	O_BACKLOG,
	O_MAX_CONNS,
	O_MAX_MESSAGE,
	O_READ_SIZE,
	O_SEND_QUEUE_MAX,
	O_SEND_BUDGET,
	O_INBOX_MAX,
	O_INBOX_MAX_BYTES,
	O_IDLE_TIMEOUT,
	O_READ_TIMEOUT,
	O_KEEPALIVE,
	O_ERROR_LOG_MAX,
	O_LOOP,
	O_ZERO_COPY,
	O_HANDSHAKE_TIMEOUT,
	O_LINGER,
	O_COUNT
};

static int server_opts(ps_handle *self, PyObject *o[O_COUNT], ssock_server_opts *opts)
{
	if (o[O_ZERO_COPY] && (self->zero_copy = PyObject_IsTrue(o[O_ZERO_COPY])) < 0)
		return -1;
	size_t max_message;
	if (ps_framing(o[O_FRAMING], &opts->framing) < 0 ||
	    ps_opt_int(o[O_BACKLOG], "backlog", &opts->backlog) < 0 ||
	    ps_opt_int(o[O_MAX_CONNS], "max_conns", &opts->max_conns) < 0 ||
	    ps_opt_size(o[O_MAX_MESSAGE], "max_message", &max_message) < 0 ||
	    ps_opt_size(o[O_READ_SIZE], "read_size", &opts->read_size) < 0 ||
	    ps_opt_size(o[O_SEND_QUEUE_MAX], "send_queue_max", &opts->send_queue_max) < 0 ||
	    ps_opt_size(o[O_SEND_BUDGET], "send_budget", &opts->send_budget) < 0 ||
	    ps_opt_size(o[O_INBOX_MAX], "inbox_max", &opts->inbox_max) < 0 ||
	    ps_opt_size(o[O_INBOX_MAX_BYTES], "inbox_max_bytes", &opts->inbox_max_bytes) < 0 ||
	    ps_opt_ms(o[O_IDLE_TIMEOUT], "idle_timeout", &opts->idle_timeout_ms) < 0 ||
	    ps_opt_ms(o[O_READ_TIMEOUT], "read_timeout", &opts->read_timeout_ms) < 0 ||
	    ps_opt_ms(o[O_HANDSHAKE_TIMEOUT], "handshake_timeout", &opts->handshake_timeout_ms) <
		    0 ||
	    ps_opt_int(o[O_KEEPALIVE], "keepalive", &opts->keepalive_s) < 0 ||
	    ps_opt_int(o[O_ERROR_LOG_MAX], "error_log_max", &opts->error_log_max) < 0)
		return -1;
	if (max_message > 0xFFFFFFFFu) {
		PyErr_SetString(PyExc_OverflowError, "max_message is at most 4 GiB - 1");
		return -1;
	}
	opts->max_message = (uint32_t)max_message;
	if (o[O_LOOP] && o[O_LOOP] != Py_None && !(opts->loop = ps_loop_get(o[O_LOOP])))
		return -1;
	return ps_linger_ms(o[O_LINGER], &self->linger_ms);
}

/* Creates the C server on the first address and adds the others. */
static int server_create(ps_handle *self, PyObject *addrs, ssock_server_opts *opts)
{
	PyObject *first = ps_addr_text(PyList_GET_ITEM(addrs, 0));
	const char *text = first ? PyUnicode_AsUTF8(first) : NULL;
	if (!text) {
		Py_XDECREF(first);
		return -1;
	}
	opts->listen = text;
	ssock_server *srv = NULL;
	int rc;
	Py_BEGIN_ALLOW_THREADS
		rc = ssock_server_new(&srv, opts);
	Py_END_ALLOW_THREADS
	Py_DECREF(first);
	if (rc < 0) {
		ps_raise(rc);
		return -1;
	}
	self->h = srv;
	for (Py_ssize_t i = 1; i < PyList_GET_SIZE(addrs); i++) {
		PyObject *t = ps_addr_text(PyList_GET_ITEM(addrs, i));
		const char *s = t ? PyUnicode_AsUTF8(t) : NULL;
		if (s) {
			Py_BEGIN_ALLOW_THREADS
				rc = ssock_server_listen(srv, s);
			Py_END_ALLOW_THREADS
		}
		Py_XDECREF(t);
		if (!s || rc < 0) {
			if (s)
				ps_raise(rc);
			return -1;
		}
	}
	return 0;
}

static int server_init(ps_handle *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"listen",
				 "framing",
				 "backlog",
				 "max_conns",
				 "max_message",
				 "read_size",
				 "send_queue_max",
				 "send_budget",
				 "inbox_max",
				 "inbox_max_bytes",
				 "idle_timeout",
				 "read_timeout",
				 "keepalive",
				 "error_log_max",
				 "loop",
				 "zero_copy",
				 "handshake_timeout",
				 "linger",
				 "on_connect",
				 "on_message",
				 "on_disconnect",
				 "on_error",
				 NULL};
	PyObject *listen, *o[O_COUNT] = {0}, *cb[PS_CB_COUNT] = {0};
	if (self->h || self->state != PS_OPEN) {
		PyErr_SetString(PyExc_RuntimeError, "Server.__init__ called twice");
		return -1;
	}
	if (!PyArg_ParseTupleAndKeywords(
		    args, kw, "O|$OOOOOOOOOOOOOOOOOOOOO:Server", kwlist, &listen, &o[0], &o[1],
		    &o[2], &o[3], &o[4], &o[5], &o[6], &o[7], &o[8], &o[9], &o[10], &o[11], &o[12],
		    &o[13], &o[14], &o[15], &o[16], &cb[PS_CB_CONNECT], &cb[PS_CB_MESSAGE],
		    &cb[PS_CB_DISCONNECT], &cb[PS_CB_ERROR]))
		return -1;
	self->ops = &server_ops;
	self->kind = PS_SERVER;
	ssock_server_opts opts;
	memset(&opts, 0, sizeof opts);
	PyObject *addrs = listen_list(listen);
	if (!addrs)
		return -1;
	int rc = -1;
	if (PyList_GET_SIZE(addrs) == 0)
		PyErr_SetString(PyExc_ValueError, "listen needs at least one address");
	else if (ps_handle_setup(self, cb, "on_message", o[O_LOOP]) == 0 &&
		 server_opts(self, o, &opts) == 0 && server_create(self, addrs, &opts) == 0)
		rc = ps_handle_start(self);
	Py_DECREF(addrs);
	if (rc < 0 && self->h) {
		ssock_server_free(self->h);
		self->h = NULL;
	}
	return rc;
}

/* ------------------------------------------------------------ methods */

static PyObject *server_listen(ps_handle *self, PyObject *addr)
{
	PyObject *t = ps_addr_text(addr);
	const char *s = t ? PyUnicode_AsUTF8(t) : NULL;
	if (!s || ps_handle_enter(self) < 0) {
		Py_XDECREF(t);
		return NULL;
	}
	int rc;
	Py_BEGIN_ALLOW_THREADS
		rc = ssock_server_listen(self->h, s);
	Py_END_ALLOW_THREADS
	ps_handle_leave(self);
	Py_DECREF(t);
	return rc < 0 ? ps_raise(rc) : PyLong_FromLong(rc);
}

static PyObject *server_addr(ps_handle *self, PyObject *args)
{
	int index = 0;
	if (!PyArg_ParseTuple(args, "|i:addr", &index) || ps_handle_enter(self) < 0)
		return NULL;
	ssock_addr a;
	int rc = ssock_server_addr(self->h, index, &a);
	ps_handle_leave(self);
	if (rc == SSOCK_EINVAL) {
		PyErr_Format(PyExc_IndexError, "no listener %d", index);
		return NULL;
	}
	return rc < 0 ? ps_raise(rc) : ps_addr_to_tuple(&a);
}

static PyObject *server_get_addresses(ps_handle *self, void *closure)
{
	(void)closure;
	if (ps_handle_enter(self) < 0)
		return NULL;
	PyObject *list = PyList_New(0);
	ssock_addr a;
	for (int i = 0; list && ssock_server_addr(self->h, i, &a) == 0; i++) {
		PyObject *t = ps_addr_to_tuple(&a);
		if (!t || PyList_Append(list, t) < 0)
			Py_CLEAR(list);
		Py_XDECREF(t);
	}
	ps_handle_leave(self);
	return list;
}

static PyObject *server_get_address(ps_handle *self, void *closure)
{
	(void)closure;
	PyObject *args = PyTuple_New(0);
	PyObject *r = args ? server_addr(self, args) : NULL;
	Py_XDECREF(args);
	return r;
}

int ps_server_send_fn(void *h, uint64_t id, const ssock_addr *to, const void *data, size_t len,
		      int timeout_ms, ssock_release_fn release, void *arg)
{
	(void)to;
	if (release)
		return ssock_server_send_ref(h, id, data, len, timeout_ms, release, arg);
	if (timeout_ms == 0)
		return ssock_server_send(h, id, data, len);
	return ssock_server_send_timeout(h, id, data, len, timeout_ms);
}

static PyObject *server_send(ps_handle *self, PyObject *const *args, Py_ssize_t nargs,
			     PyObject *kwnames)
{
	static const char *const names[] = {"conn", "data", "timeout"};
	PyObject *a[3];
	int ok, ms;
	if (ps_fast_args("send", args, nargs, kwnames, names, 3, 2, a) < 0 ||
	    ps_send_timeout(a[2], &ms) < 0)
		return NULL;
	uint64_t id = ps_conn_id_arg(a[0], &ok);
	if (!ok)
		return NULL;
	return ps_send(self, ps_server_send_fn, id, NULL, a[1], ms);
}

static PyObject *server_broadcast(ps_handle *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"data", "exclude", NULL};
	PyObject *data, *exclude = Py_None;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O:broadcast", kwlist, &data, &exclude))
		return NULL;
	int ok = 1;
	uint64_t except = exclude == Py_None ? 0 : ps_conn_id_arg(exclude, &ok);
	Py_buffer view;
	if (!ok || PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
		return NULL;
	if (ps_handle_enter(self) < 0) {
		PyBuffer_Release(&view);
		return NULL;
	}
	int rc;
	Py_BEGIN_ALLOW_THREADS
		rc = exclude == Py_None
			     ? ssock_server_broadcast(self->h, view.buf, (size_t)view.len)
			     : ssock_server_broadcast_except(self->h, except, view.buf,
							     (size_t)view.len);
	Py_END_ALLOW_THREADS
	ps_handle_leave(self);
	PyBuffer_Release(&view);
	return rc < 0 ? ps_raise(rc) : PyLong_FromLong(rc);
}

static PyObject *server_disconnect(ps_handle *self, PyObject *conn)
{
	int ok;
	uint64_t id = ps_conn_id_arg(conn, &ok);
	if (!ok || ps_handle_enter(self) < 0)
		return NULL;
	int rc;
	Py_BEGIN_ALLOW_THREADS
		rc = ssock_server_disconnect(self->h, id);
	Py_END_ALLOW_THREADS
	ps_handle_leave(self);
	return rc < 0 ? ps_raise(rc) : Py_NewRef(Py_None);
}

static int flush_attempt(ps_handle *self, int slice_ms, void *arg)
{
	return ssock_server_flush(self->h, *(uint64_t *)arg, slice_ms);
}

PyObject *ps_server_flush(ps_handle *self, uint64_t id, int timeout_ms)
{
	return ps_wait_method(self, timeout_ms, flush_attempt, &id);
}

static PyObject *server_flush(ps_handle *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"conn", "timeout", NULL};
	PyObject *conn = Py_None, *timeout = Py_None;
	int ok = 1, ms;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "|OO:flush", kwlist, &conn, &timeout) ||
	    ps_timeout_ms(timeout, &ms) < 0)
		return NULL;
	uint64_t id = conn == Py_None ? 0 : ps_conn_id_arg(conn, &ok);
	return ok ? ps_server_flush(self, id, ms) : NULL;
}

/* GIL: the connections ssock lists, as Conn objects (a Conn whose connect
 * event is still in the inbox is made now and found again later). */
static PyObject *conns_to_list(ps_handle *self, ssock_conn_info *info, int n)
{
	PyObject *list = PyList_New(0);
	for (int i = 0; list && i < n; i++) {
		PyObject *c = ps_conn_for(self, info[i].id, &info[i].peer, 1);
		if (c && c != Py_None)
			((ps_conn *)c)->queued = (Py_ssize_t)info[i].queued;
		if (!c || PyList_Append(list, c) < 0)
			Py_CLEAR(list);
		Py_XDECREF(c);
	}
	return list;
}

static PyObject *server_conns(ps_handle *self, PyObject *unused)
{
	(void)unused;
	if (ps_handle_enter(self) < 0)
		return NULL;
	int cap = 64, n;
	ssock_conn_info *info = NULL;
	for (;;) {
		PyMem_Free(info);
		info = PyMem_Malloc((size_t)cap * sizeof *info);
		if (!info) {
			ps_handle_leave(self);
			return PyErr_NoMemory();
		}
		n = ssock_server_conns(self->h, info, cap);
		if (n <= cap)
			break;
		cap = n + 64;
	}
	ps_handle_leave(self);
	PyObject *list = n < 0 ? ps_raise(n) : conns_to_list(self, info, n);
	PyMem_Free(info);
	return list;
}

static PyStructSequence_Field stats_fields[] = {
	{"accepted", "connections accepted since the start"},
	{"refused", "connections closed at once: over max_conns"},
	{"conns", "connections open now"},
	{"accepting", "True while listeners accept"},
	{"queued", "bytes queued to send, all connections"},
	{"inbox_events", "events waiting in the inbox"},
	{"inbox_bytes", "their payload bytes"},
	{NULL, NULL},
};

static PyStructSequence_Desc stats_desc = {
	"ssock.ServerStats", "A server's counters, from Server.stats().", stats_fields, 7};

static PyObject *server_stats(ps_handle *self, PyObject *unused)
{
	(void)unused;
	if (ps_handle_enter(self) < 0)
		return NULL;
	ssock_server_stats st;
	int rc = ssock_server_stats_get(self->h, &st);
	ps_handle_leave(self);
	if (rc < 0)
		return ps_raise(rc);
	PyObject *s = PyStructSequence_New(ps_StatsType);
	if (!s)
		return NULL;
	PyStructSequence_SetItem(s, 0, PyLong_FromUnsignedLongLong(st.accepted));
	PyStructSequence_SetItem(s, 1, PyLong_FromUnsignedLongLong(st.refused));
	PyStructSequence_SetItem(s, 2, PyLong_FromLong(st.conns));
	PyStructSequence_SetItem(s, 3, PyBool_FromLong(st.accepting));
	PyStructSequence_SetItem(s, 4, PyLong_FromSize_t(st.queued));
	PyStructSequence_SetItem(s, 5, PyLong_FromSize_t(st.inbox_events));
	PyStructSequence_SetItem(s, 6, PyLong_FromSize_t(st.inbox_bytes));
	if (PyErr_Occurred())
		Py_CLEAR(s);
	return s;
}

static PyObject *server_pause_resume(ps_handle *self, int resume)
{
	if (ps_handle_enter(self) < 0)
		return NULL;
	int rc;
	Py_BEGIN_ALLOW_THREADS /* it waits for the loop thread to run it */
		rc = resume ? ssock_server_resume(self->h) : ssock_server_pause(self->h);
	Py_END_ALLOW_THREADS
	ps_handle_leave(self);
	return rc < 0 ? ps_raise(rc) : Py_NewRef(Py_None);
}

static PyObject *server_pause(ps_handle *self, PyObject *unused)
{
	(void)unused;
	return server_pause_resume(self, 0);
}

static PyObject *server_resume(ps_handle *self, PyObject *unused)
{
	(void)unused;
	return server_pause_resume(self, 1);
}

static PyMethodDef server_methods[] = {
	{"listen", (PyCFunction)server_listen, METH_O,
	 "listen(addr)\n--\n\nAdds a listen address; returns its index."},
	{"addr", (PyCFunction)server_addr, METH_VARARGS,
	 "addr(index=0)\n--\n\nThe bound address of listener `index` (the real port)."},
	{"send", (PyCFunction)(void (*)(void))server_send, METH_FASTCALL | METH_KEYWORDS,
	 "send(conn, data, timeout=0)\n--\n\nQueues data as one message to conn (a Conn or its "
	 "id); see Conn.send."},
	{"broadcast", (PyCFunction)(void (*)(void))server_broadcast, METH_VARARGS | METH_KEYWORDS,
	 "broadcast(data, exclude=None)\n--\n\nQueues data to every open connection but "
	 "`exclude`; returns how many it went to."},
	{"disconnect", (PyCFunction)server_disconnect, METH_O,
	 "disconnect(conn)\n--\n\nCloses a connection gracefully (queued data is sent)."},
	{"flush", (PyCFunction)(void (*)(void))server_flush, METH_VARARGS | METH_KEYWORDS,
	 "flush(conn=None, timeout=None)\n--\n\nWaits until what is queued to conn (None: to "
	 "every connection) has been written, or its connection ended; TimeoutError after "
	 "timeout seconds (None: no limit). close() discards what is still queued after "
	 "`linger` seconds."},
	{"conns", (PyCFunction)server_conns, METH_NOARGS,
	 "conns()\n--\n\nThe open connections, oldest first, as Conn objects (with .queued)."},
	{"stats", (PyCFunction)server_stats, METH_NOARGS, "stats()\n--\n\nA ServerStats."},
	{"pause", (PyCFunction)server_pause, METH_NOARGS,
	 "pause()\n--\n\nStops accepting (listeners stay bound)."},
	{"resume", (PyCFunction)server_resume, METH_NOARGS, "resume()\n--\n\nAccepts again."},
	{NULL, NULL, 0, NULL},
};

static PyGetSetDef server_getset[] = {
	{"address", (getter)server_get_address, NULL, "The first listener's bound address.", NULL},
	{"addresses", (getter)server_get_addresses, NULL, "Every listener's bound address.", NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot server_slots[] = {
	{Py_tp_traverse, ps_handle_traverse},
	{Py_tp_clear, ps_handle_clear},
	{Py_tp_init, server_init},
	{Py_tp_methods, server_methods},
	{Py_tp_getset, server_getset},
	{Py_tp_doc,
	 "Server(listen, *, framing='u32', backlog=0, max_conns=0, max_message=0, read_size=0, "
	 "send_queue_max=0, send_budget=0, inbox_max=0, inbox_max_bytes=0, idle_timeout=0, "
	 "read_timeout=0, keepalive=0, error_log_max=0, loop=None, zero_copy=False, "
	 "handshake_timeout=0, linger=1.0, on_connect=None, "
	 "on_message=None, on_disconnect=None, on_error=None)\n--\n\n"
	 "A TCP server. 0 (or None) means ssock's default for every option. zero_copy=True "
	 "hands payloads over as read-only memoryviews of the library's buffers instead of "
	 "bytes copies."},
	{0, NULL},
};

int ps_server_type_init(PyObject *m)
{
	PyType_Spec spec = {
		.name = "ssock.Server",
		.basicsize = sizeof(ps_handle),
		.flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
		.slots = server_slots,
	};
	ps_ServerType = (PyTypeObject *)PyType_FromSpecWithBases(&spec, (PyObject *)ps_HandleType);
	if (!ps_ServerType || PyModule_AddObject(m, "Server", Py_NewRef(ps_ServerType)) < 0)
		return -1;
	ps_StatsType = PyStructSequence_NewType(&stats_desc);
	if (!ps_StatsType)
		return -1;
	return PyModule_AddObject(m, "ServerStats", Py_NewRef(ps_StatsType));
}
