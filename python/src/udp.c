/*
 * udp.c - ssock.UDP: datagrams on ssock_udp, bound or connected.
 */
#include "pyssock.h"

#include <string.h>

PyTypeObject *ps_UDPType;

/* The ops of the shared code, typed for it (no function-pointer casts). */
static int udp_next_event(void *h, ssock_event *ev, int timeout_ms)
{
	return ssock_udp_next_event((ssock_udp *)h, ev, timeout_ms);
}

static int udp_event_fd(void *h)
{
	return ssock_udp_event_fd((ssock_udp *)h);
}

static int udp_errors(void *h, ssock_error_info *out, int max, int clear)
{
	return ssock_udp_errors((ssock_udp *)h, out, max, clear);
}

static int udp_free(void *h)
{
	return ssock_udp_free((ssock_udp *)h);
}

static const ps_ops udp_ops = {
	.next_event = udp_next_event,
	.event_fd = udp_event_fd,
	.errors = udp_errors,
	.free = udp_free,
};

static int udp_init(ps_handle *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"bind", "connect",   "max_message", "inbox_max", "error_log_max",
				 "loop", "zero_copy", "on_datagram", "on_error",  NULL};
	PyObject *bind = Py_None, *conn = Py_None, *maxmsg = NULL, *inbox = NULL, *elog = NULL;
	PyObject *loop = NULL, *zc = NULL, *cb[PS_CB_COUNT] = {0};
	if (self->h || self->state != PS_OPEN) {
		PyErr_SetString(PyExc_RuntimeError, "UDP.__init__ called twice");
		return -1;
	}
	if (!PyArg_ParseTupleAndKeywords(args, kw, "|O$OOOOOOOO:UDP", kwlist, &bind, &conn, &maxmsg,
					 &inbox, &elog, &loop, &zc, &cb[PS_CB_MESSAGE],
					 &cb[PS_CB_ERROR]))
		return -1;
	self->ops = &udp_ops;
	self->kind = PS_UDP;
	ssock_udp_opts opts;
	memset(&opts, 0, sizeof opts);
	PyObject *btext = bind != Py_None ? ps_addr_text(bind) : NULL;
	PyObject *ctext = conn != Py_None ? ps_addr_text(conn) : NULL;
	size_t mm = 0;
	int rc = -1;
	if ((bind != Py_None && !btext) || (conn != Py_None && !ctext))
		goto out;
	if (!btext && !ctext) {
		PyErr_SetString(PyExc_TypeError, "UDP needs bind=, connect= or both");
		goto out;
	}
	opts.bind = btext ? PyUnicode_AsUTF8(btext) : NULL;
	opts.connect = ctext ? PyUnicode_AsUTF8(ctext) : NULL;
	if (PyErr_Occurred() || ps_opt_size(maxmsg, "max_message", &mm) < 0 ||
	    ps_opt_size(inbox, "inbox_max", &opts.inbox_max) < 0 ||
	    ps_opt_int(elog, "error_log_max", &opts.error_log_max) < 0 ||
	    ps_handle_setup(self, cb, "on_datagram", loop) < 0 ||
	    (zc && (self->zero_copy = PyObject_IsTrue(zc)) < 0))
		goto out;
	if (mm > SSOCK_UDP_MAX_MESSAGE) {
		PyErr_Format(PyExc_ValueError, "max_message is at most %d", SSOCK_UDP_MAX_MESSAGE);
		goto out;
	}
	opts.max_message = (uint32_t)mm;
	if (loop && loop != Py_None && !(opts.loop = ps_loop_get(loop)))
		goto out;
	ssock_udp *u = NULL;
	Py_BEGIN_ALLOW_THREADS
		rc = ssock_udp_new(&u, &opts);
	Py_END_ALLOW_THREADS
	self->h = u;
	rc = rc < 0 ? (ps_raise(rc), -1) : ps_handle_start(self);
	if (rc < 0 && self->h) {
		ssock_udp_free(self->h);
		self->h = NULL;
	}
out:
	Py_XDECREF(btext);
	Py_XDECREF(ctext);
	return rc;
}

static int send_fn(void *h, uint64_t id, const ssock_addr *to, const void *data, size_t len,
		   int timeout_ms, ssock_release_fn release, void *arg)
{
	(void)id;
	(void)release; /* datagrams are always copied: ps_send() gives none */
	(void)arg;
	if (timeout_ms == 0)
		return ssock_udp_send_to(h, to, data, len);
	return ssock_udp_send_to_timeout(h, to, data, len, timeout_ms);
}

static PyObject *udp_send_to(ps_handle *self, PyObject *const *args, Py_ssize_t nargs,
			     PyObject *kwnames)
{
	static const char *const names[] = {"data", "addr", "timeout"};
	PyObject *a[3];
	ssock_addr to;
	int ms;
	if (ps_fast_args("send_to", args, nargs, kwnames, names, 3, 2, a) < 0 ||
	    ps_send_timeout(a[2], &ms) < 0 || ps_addr_from_obj(a[1], &to, 0) < 0)
		return NULL;
	return ps_send(self, send_fn, 0, &to, a[0], ms);
}

static PyObject *udp_send(ps_handle *self, PyObject *const *args, Py_ssize_t nargs,
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

/* recv(timeout=None) -> (data, addr), like socket.recvfrom(). */
static PyObject *udp_recv(ps_handle *self, PyObject *args, PyObject *kw)
{
	PyObject *res = NULL;
	int ms;
	if (ps_timeout_arg(args, kw, "|O:recv", &ms) < 0)
		return NULL;
	if (self->callback_mode)
		return ps_raise(SSOCK_ENOINBOX);
	if (ps_handle_enter(self) < 0)
		return NULL;
	ssock_event ev;
	int64_t deadline = ms > 0 ? ps_now_ms() + ms : 0;
	int got;
	while ((got = ps_pop_raw(self, &ev, ms)) == -2) {
		if (ps_signal_pause(self) < 0)
			return NULL;
		if (ms > 0)
			ms = ps_left_ms(deadline);
	}
	if (got == 0) {
		ps_raise(SSOCK_ETIMEDOUT);
	} else if (got > 0 && ev.type == SSOCK_EVENT_MESSAGE) {
		PyObject *data = ps_event_data(self, &ev);
		PyObject *peer = data ? ps_addr_to_tuple(&ev.peer) : NULL;
		res = peer ? PyTuple_Pack(2, data, peer) : NULL;
		Py_XDECREF(data);
		Py_XDECREF(peer);
	} else if (got > 0) {
		PyObject *e = ps_error_new(ev.code, ev.op, 0, ev.peer.len ? &ev.peer : NULL, 0);
		if (e)
			PyErr_SetObject((PyObject *)Py_TYPE(e), e);
		Py_XDECREF(e);
	}
	if (got > 0)
		ssock_event_release(&ev);
	ps_handle_leave(self);
	return res;
}

static PyObject *udp_get_address(ps_handle *self, void *closure)
{
	(void)closure;
	if (ps_handle_enter(self) < 0)
		return NULL;
	ssock_addr a;
	int rc = ssock_udp_addr(self->h, &a);
	ps_handle_leave(self);
	return rc < 0 ? ps_raise(rc) : ps_addr_to_tuple(&a);
}

static PyMethodDef udp_methods[] = {
	{"send_to", (PyCFunction)(void (*)(void))udp_send_to, METH_FASTCALL | METH_KEYWORDS,
	 "send_to(data, addr, timeout=0)\n--\n\nSends one datagram to addr (a tuple or "
	 "'HOST:PORT'). timeout: 0 raises SendQueueFullError when the socket buffer is full, "
	 "None or seconds wait for room."},
	{"send", (PyCFunction)(void (*)(void))udp_send, METH_FASTCALL | METH_KEYWORDS,
	 "send(data, timeout=0)\n--\n\nConnected form: one datagram to the peer."},
	{"recv", (PyCFunction)(void (*)(void))udp_recv, METH_VARARGS | METH_KEYWORDS,
	 "recv(timeout=None)\n--\n\nInbox mode: (data, addr) of the next datagram. Raises "
	 "TimeoutError, or the error that came first."},
	{NULL, NULL, 0, NULL},
};

static PyGetSetDef udp_getset[] = {
	{"address", (getter)udp_get_address, NULL, "The local address (the real port).", NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot udp_slots[] = {
	{Py_tp_traverse, ps_handle_traverse},
	{Py_tp_clear, ps_handle_clear},
	{Py_tp_init, udp_init},
	{Py_tp_methods, udp_methods},
	{Py_tp_getset, udp_getset},
	{Py_tp_doc,
	 "UDP(bind=None, *, connect=None, max_message=0, inbox_max=0, "
	 "error_log_max=0, loop=None, zero_copy=False, on_datagram=None, on_error=None)\n--\n\n"
	 "A UDP socket: one datagram is one message. on_datagram(udp, data, addr)."},
	{0, NULL},
};

int ps_udp_type_init(PyObject *m)
{
	PyType_Spec spec = {
		.name = "ssock.UDP",
		.basicsize = sizeof(ps_handle),
		.flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
		.slots = udp_slots,
	};
	ps_UDPType = (PyTypeObject *)PyType_FromSpecWithBases(&spec, (PyObject *)ps_HandleType);
	if (!ps_UDPType)
		return -1;
	return PyModule_AddObject(m, "UDP", Py_NewRef(ps_UDPType));
}
