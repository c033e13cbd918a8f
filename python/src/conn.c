/*
 * conn.c - the Conn object (one connection of a server or client, named by
 * its never-reused id) and the Event object that next_event() returns.
 */
#include "pyssock.h"

#include <structmember.h>

PyTypeObject *ps_ConnType, *ps_EventType;

/* ------------------------------------------------------------ Conn */

PyObject *ps_conn_new(ps_handle *owner, uint64_t id, const ssock_addr *peer)
{
	ps_conn *c = PyObject_GC_New(ps_conn, ps_ConnType);
	if (!c)
		return NULL;
	c->id = id;
	c->owner = (ps_handle *)Py_NewRef(owner);
	if (peer)
		c->peer = *peer;
	else
		memset(&c->peer, 0, sizeof c->peer);
	c->peer_obj = NULL;
	c->open = 1;
	c->queued = 0;
	c->dict = NULL;
	c->weakrefs = NULL;
	PyObject_GC_Track(c);
	return (PyObject *)c;
}

uint64_t ps_conn_id_arg(PyObject *obj, int *ok)
{
	*ok = 1;
	if (PyObject_TypeCheck(obj, ps_ConnType))
		return ((ps_conn *)obj)->id;
	unsigned long long id = PyLong_AsUnsignedLongLong(obj);
	if (id == (unsigned long long)-1 && PyErr_Occurred()) {
		PyErr_SetString(PyExc_TypeError, "a connection is a Conn or its int id");
		*ok = 0;
	}
	return id;
}

static int conn_traverse(ps_conn *c, visitproc visit, void *arg)
{
	Py_VISIT(c->owner);
	Py_VISIT(c->peer_obj);
	Py_VISIT(c->dict);
	Py_VISIT(Py_TYPE(c));
	return 0;
}

static int conn_clear(ps_conn *c)
{
	Py_CLEAR(c->owner);
	Py_CLEAR(c->peer_obj);
	Py_CLEAR(c->dict);
	return 0;
}

static void conn_dealloc(ps_conn *c)
{
	PyObject_GC_UnTrack(c);
	if (c->weakrefs)
		PyObject_ClearWeakRefs((PyObject *)c);
	conn_clear(c);
	PyTypeObject *tp = Py_TYPE(c);
	tp->tp_free(c);
	Py_DECREF(tp);
}

/* A client's Conn names one connection: after a reconnect the old Conn no
 * longer sends on the new one. */
static int client_send_fn(void *h, uint64_t id, const ssock_addr *to, const void *data, size_t len,
			  int timeout_ms, ssock_release_fn release, void *arg)
{
	(void)to;
	if (ssock_client_id(h) != id)
		return SSOCK_ENOCONN;
	if (release)
		return ssock_client_send_ref(h, data, len, timeout_ms, release, arg);
	if (timeout_ms == 0)
		return ssock_client_send(h, data, len);
	return ssock_client_send_timeout(h, data, len, timeout_ms);
}

static PyObject *conn_send(ps_conn *c, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
	static const char *const names[] = {"data", "timeout"};
	PyObject *a[2];
	int ms;
	if (ps_fast_args("send", args, nargs, kwnames, names, 2, 1, a) < 0 ||
	    ps_send_timeout(a[1], &ms) < 0)
		return NULL;
	if (!c->owner)
		return ps_raise(SSOCK_ECLOSED);
	ps_send_fn fn = c->owner->kind == PS_CLIENT ? client_send_fn : ps_server_send_fn;
	return ps_send(c->owner, fn, c->id, NULL, a[0], ms);
}

static PyObject *conn_close(ps_conn *c, PyObject *unused)
{
	(void)unused;
	if (!c->owner || ps_handle_enter(c->owner) < 0)
		return NULL;
	int rc;
	ps_handle *h = c->owner;
	uint64_t id = c->id;
	Py_BEGIN_ALLOW_THREADS /* it waits for the loop thread to run it */
		if (h->kind == PS_CLIENT)
			rc = ssock_client_id(h->h) == id ? ssock_client_disconnect(h->h)
							 : SSOCK_ENOCONN;
		else
			rc = ssock_server_disconnect(h->h, id);
	Py_END_ALLOW_THREADS
	ps_handle_leave(c->owner);
	/* Closing one that is already going (or gone) is not an error. */
	if (rc < 0 && rc != SSOCK_ECLOSED && rc != SSOCK_ENOCONN && rc != SSOCK_ENOTCONN)
		return ps_raise(rc);
	Py_RETURN_NONE;
}

/* Whether c is a client's connection from before a reconnect: gone, and
 * with it its queue; what the client does now is not its to flush or
 * pause. The caller is a user of c->owner (no GIL needed). */
static int stale_client_conn(const ps_conn *c)
{
	return c->owner->kind == PS_CLIENT && ssock_client_id(c->owner->h) != c->id;
}

static PyObject *conn_flush(ps_conn *c, PyObject *args, PyObject *kw)
{
	int ms;
	if (ps_timeout_arg(args, kw, "|O:flush", &ms) < 0)
		return NULL;
	if (!c->owner)
		return ps_raise(SSOCK_ECLOSED);
	if (ps_handle_enter(c->owner) < 0)
		return NULL;
	int stale = stale_client_conn(c);
	ps_handle_leave(c->owner);
	if (stale)
		return ps_raise(SSOCK_ENOCONN);
	if (c->owner->kind == PS_CLIENT)
		return ps_client_flush(c->owner, ms);
	return ps_server_flush(c->owner, c->id, ms);
}

/* Pauses (hold) or resumes reading this connection. */
static PyObject *conn_hold(ps_conn *c, int hold)
{
	if (!c->owner)
		return ps_raise(SSOCK_ECLOSED);
	ps_handle *h = c->owner;
	if (ps_handle_enter(h) < 0)
		return NULL;
	uint64_t id = c->id;
	int rc, stale = stale_client_conn(c);
	Py_BEGIN_ALLOW_THREADS /* it waits for the loop thread to run it */
		if (stale)
			rc = SSOCK_ENOCONN;
		else if (h->kind != PS_CLIENT)
			rc = hold ? ssock_server_pause_reading(h->h, id)
				  : ssock_server_resume_reading(h->h, id);
		else
			rc = hold ? ssock_client_pause_reading(h->h)
				  : ssock_client_resume_reading(h->h);
	Py_END_ALLOW_THREADS
	ps_handle_leave(h);
	if (rc == SSOCK_ENOTCONN)
		rc = SSOCK_ENOCONN;
	return rc < 0 ? ps_raise(rc) : Py_NewRef(Py_None);
}

static PyObject *conn_pause_reading(ps_conn *c, PyObject *unused)
{
	(void)unused;
	return conn_hold(c, 1);
}

static PyObject *conn_resume_reading(ps_conn *c, PyObject *unused)
{
	(void)unused;
	return conn_hold(c, 0);
}

static PyObject *conn_get_peer(ps_conn *c, void *closure)
{
	(void)closure;
	if (!c->peer_obj)
		c->peer_obj = ps_addr_to_tuple(&c->peer);
	return Py_XNewRef(c->peer_obj);
}

static PyObject *conn_get_id(ps_conn *c, void *closure)
{
	(void)closure;
	return PyLong_FromUnsignedLongLong(c->id);
}

static PyObject *conn_get_open(ps_conn *c, void *closure)
{
	(void)closure;
	return PyBool_FromLong(c->open && c->owner && c->owner->h);
}

static PyObject *conn_get_owner(ps_conn *c, void *closure)
{
	int want = closure == NULL ? -1 : (int)(intptr_t)closure - 1;
	if (!c->owner || (want >= 0 && c->owner->kind != want))
		Py_RETURN_NONE;
	return Py_NewRef(c->owner);
}

static PyObject *conn_repr(ps_conn *c)
{
	char addr[SSOCK_ADDRSTRLEN] = "?";
	ssock_addr_format(&c->peer, addr, sizeof addr);
	return PyUnicode_FromFormat("<ssock.Conn id=%llu peer=%s%s>", (unsigned long long)c->id,
				    addr, c->open ? "" : " closed");
}

static PyMethodDef conn_methods[] = {
	{"send", (PyCFunction)(void (*)(void))conn_send, METH_FASTCALL | METH_KEYWORDS,
	 "send(data, timeout=0)\n--\n\nQueues data (bytes or any buffer) as one message. "
	 "timeout: 0 raises SendQueueFullError at once when the queue is full, None waits "
	 "for room, seconds wait up to that."},
	{"flush", (PyCFunction)(void (*)(void))conn_flush, METH_VARARGS | METH_KEYWORDS,
	 "flush(timeout=None)\n--\n\nWaits until what is queued to this connection has been "
	 "written (or it ended); TimeoutError after timeout seconds (None: no limit). "
	 "NoConnectionError when it is gone already."},
	{"pause_reading", (PyCFunction)conn_pause_reading, METH_NOARGS,
	 "pause_reading()\n--\n\nStops reading from this connection: its peer meets TCP "
	 "backpressure while the other connections go on. Events already read may still "
	 "come. NoConnectionError once it is gone."},
	{"resume_reading", (PyCFunction)conn_resume_reading, METH_NOARGS,
	 "resume_reading()\n--\n\nReads from this connection again."},
	{"close", (PyCFunction)conn_close, METH_NOARGS,
	 "close()\n--\n\nCloses the connection gracefully: what is queued is sent first. "
	 "The disconnect event follows."},
	{NULL, NULL, 0, NULL},
};

static PyGetSetDef conn_getset[] = {
	{"id", (getter)conn_get_id, NULL, "The connection's id (never reused).", NULL},
	{"peer", (getter)conn_get_peer, NULL, "The peer's address, as a socket tuple.", NULL},
	{"open", (getter)conn_get_open, NULL, "False once its disconnect was handed out.", NULL},
	{"handle", (getter)conn_get_owner, NULL, "The Server or Client it belongs to.", NULL},
	{"server", (getter)conn_get_owner, NULL, "Its Server, or None.",
	 (void *)(intptr_t)(PS_SERVER + 1)},
	{"client", (getter)conn_get_owner, NULL, "Its Client, or None.",
	 (void *)(intptr_t)(PS_CLIENT + 1)},
	{"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef conn_members[] = {
	{"queued", T_PYSSIZET, offsetof(ps_conn, queued), READONLY,
	 "Bytes in its send queue as of the last Server.conns()."},
	{"__weaklistoffset__", T_PYSSIZET, offsetof(ps_conn, weakrefs), READONLY, NULL},
	{"__dictoffset__", T_PYSSIZET, offsetof(ps_conn, dict), READONLY, NULL},
	{NULL, 0, 0, 0, NULL},
};

static PyType_Slot conn_slots[] = {
	{Py_tp_dealloc, conn_dealloc},
	{Py_tp_traverse, conn_traverse},
	{Py_tp_clear, conn_clear},
	{Py_tp_methods, conn_methods},
	{Py_tp_getset, conn_getset},
	{Py_tp_members, conn_members},
	{Py_tp_repr, conn_repr},
	{Py_tp_doc, "One connection of a Server or Client. Set any attribute on it to keep "
		    "per-connection state."},
	{0, NULL},
};

/* ------------------------------------------------------------ Event */

PyObject *ps_event_new(PyObject *type, PyObject *conn, PyObject *data, PyObject *peer,
		       PyObject *error, Py_ssize_t unsent)
{
	ps_event *e = PyObject_GC_New(ps_event, ps_EventType);
	if (!e)
		return NULL;
	e->type = Py_NewRef(type);
	e->conn = Py_NewRef(conn ? conn : Py_None);
	e->data = Py_NewRef(data ? data : Py_None);
	e->peer = Py_XNewRef(peer);
	e->error = Py_NewRef(error ? error : Py_None);
	e->unsent = unsent;
	PyObject_GC_Track(e);
	return (PyObject *)e;
}

static int event_traverse(ps_event *e, visitproc visit, void *arg)
{
	Py_VISIT(e->type);
	Py_VISIT(e->conn);
	Py_VISIT(e->data);
	Py_VISIT(e->peer);
	Py_VISIT(e->error);
	Py_VISIT(Py_TYPE(e));
	return 0;
}

static int event_clear(ps_event *e)
{
	Py_CLEAR(e->type);
	Py_CLEAR(e->conn);
	Py_CLEAR(e->data);
	Py_CLEAR(e->peer);
	Py_CLEAR(e->error);
	return 0;
}

static void event_dealloc(ps_event *e)
{
	PyObject_GC_UnTrack(e);
	event_clear(e);
	PyTypeObject *tp = Py_TYPE(e);
	tp->tp_free(e);
	Py_DECREF(tp);
}

/* The sender of a datagram or an error's peer; else the connection's. */
static PyObject *event_get_peer(ps_event *e, void *closure)
{
	(void)closure;
	if (e->peer && e->peer != Py_None)
		return Py_NewRef(e->peer);
	if (PyObject_TypeCheck(e->conn, ps_ConnType))
		return conn_get_peer((ps_conn *)e->conn, NULL);
	Py_RETURN_NONE;
}

static PyObject *event_error_attr(ps_event *e, const char *name)
{
	if (e->error == Py_None)
		return strcmp(name, "code") == 0 ? PyLong_FromLong(0) : Py_NewRef(Py_None);
	return PyObject_GetAttrString(e->error, name);
}

static PyObject *event_get_code(ps_event *e, void *closure)
{
	(void)closure;
	return event_error_attr(e, "code");
}

static PyObject *event_get_op(ps_event *e, void *closure)
{
	(void)closure;
	return event_error_attr(e, "op");
}

static PyObject *event_repr(ps_event *e)
{
	PyObject *name = PyObject_GetAttrString(e->type, "name");
	if (!name)
		return NULL;
	PyObject *r;
	Py_ssize_t len = e->data != Py_None ? PyObject_Length(e->data) : 0;
	if (len < 0 && PyErr_ExceptionMatches(PyExc_ValueError)) {
		/* A zero_copy payload the program released: repr() must still
		 * work (debuggers and logs call it on anything). */
		PyErr_Clear();
		r = PyUnicode_FromFormat("<ssock.Event %U %R released>", name, e->conn);
	} else if (len < 0)
		r = NULL;
	else if (e->data != Py_None)
		r = PyUnicode_FromFormat("<ssock.Event %U %R len=%zd>", name, e->conn, len);
	else if (e->error != Py_None)
		r = PyUnicode_FromFormat("<ssock.Event %U %R %R>", name, e->conn, e->error);
	else
		r = PyUnicode_FromFormat("<ssock.Event %U %R>", name, e->conn);
	Py_DECREF(name);
	return r;
}

/* T_OBJECT_EX (never NULL: None stands in), which lets CPython 3.11+
 * specialise `ev.data` into a direct load (LOAD_ATTR_SLOT). */
static PyMemberDef event_members[] = {
	{"type", T_OBJECT_EX, offsetof(ps_event, type), READONLY, "An EventType."},
	{"conn", T_OBJECT_EX, offsetof(ps_event, conn), READONLY,
	 "The Conn (None for UDP and for errors of no connection)."},
	{"data", T_OBJECT_EX, offsetof(ps_event, data), READONLY, "MESSAGE: the payload (bytes)."},
	{"error", T_OBJECT_EX, offsetof(ps_event, error), READONLY,
	 "ERROR: the ssock.Error; DISCONNECT: why (None when the peer closed cleanly)."},
	{"unsent", T_PYSSIZET, offsetof(ps_event, unsent), READONLY,
	 "DISCONNECT: queued bytes that were never sent."},
	{NULL, 0, 0, 0, NULL},
};

static PyGetSetDef event_getset[] = {
	{"peer", (getter)event_get_peer, NULL, "The peer's address (a datagram's sender).", NULL},
	{"code", (getter)event_get_code, NULL, "The error code (0 when none).", NULL},
	{"op", (getter)event_get_op, NULL, "ERROR: the operation that failed.", NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot event_slots[] = {
	{Py_tp_dealloc, event_dealloc},
	{Py_tp_traverse, event_traverse},
	{Py_tp_clear, event_clear},
	{Py_tp_members, event_members},
	{Py_tp_getset, event_getset},
	{Py_tp_repr, event_repr},
	{Py_tp_doc, "One event from an inbox: CONNECT, MESSAGE, DISCONNECT or ERROR."},
	{0, NULL},
};

int ps_conn_types_init(PyObject *m)
{
	PyType_Spec conn_spec = {
		.name = "ssock.Conn",
		.basicsize = sizeof(ps_conn),
		.flags =
			Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
		.slots = conn_slots,
	};
	PyType_Spec event_spec = {
		.name = "ssock.Event",
		.basicsize = sizeof(ps_event),
		.flags =
			Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
		.slots = event_slots,
	};
	ps_ConnType = (PyTypeObject *)PyType_FromSpec(&conn_spec);
	ps_EventType = ps_ConnType ? (PyTypeObject *)PyType_FromSpec(&event_spec) : NULL;
	if (!ps_EventType)
		return -1;
	if (PyModule_AddObject(m, "Conn", Py_NewRef(ps_ConnType)) < 0 ||
	    PyModule_AddObject(m, "Event", Py_NewRef(ps_EventType)) < 0)
		return -1;
	return 0;
}
