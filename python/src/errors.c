/*
 * errors.c - ssock's error codes as Python exceptions.
 *
 * ssock.Error is an OSError; every instance has .code (the negative ssock
 * code), .name ("SSOCK_ESENDQFULL"), .errno (the errno for -errno codes,
 * else None), .strerror (for -errno codes; else None, so that str() is the
 * message itself, not "[Errno None] ..."), and for errors from the
 * background .op, .peer,
 * .conn_id and .time. Common codes have subclasses, some of which are also
 * the builtin exception a Python programmer would catch (TimeoutError,
 * ConnectionRefusedError, ConnectionResetError). One made by the program has
 * the same attributes (class defaults), and all of them survive pickling.
 */
#include "pyssock.h"

PyObject *ps_Error, *ps_ClosedError;

/* code -> exception class, for the codes that have a subclass. */
static PyObject *class_by_code;

typedef struct {
	const char *name;
	const char *doc;
	PyObject **builtin; /* a second base, or NULL */
	int codes[6];       /* 0-terminated */
} subclass_def;

static const subclass_def subclasses[] = {
	{"ClosedError",
	 "The handle or connection is closed or closing.",
	 NULL,
	 {SSOCK_ECLOSED, SSOCK_ESHUTDOWN, 0}},
	{"NoConnectionError",
	 "No such connection: an unknown or stale id.",
	 NULL,
	 {SSOCK_ENOCONN, 0}},
	{"NotConnectedError",
	 "The client is not connected (or the connection ended).",
	 NULL,
	 {SSOCK_ENOTCONN, 0}},
	{"SendQueueFullError",
	 "The connection's send queue (or the send budget) is full.",
	 NULL,
	 {SSOCK_ESENDQFULL, 0}},
	{"MessageTooLargeError",
	 "A message above max_message (or the queue limit).",
	 NULL,
	 {SSOCK_EMSGSIZE, 0}},
	{"LimitError", "The connection limit was reached.", NULL, {SSOCK_ELIMIT, 0}},
	{"ProtocolError",
	 "The peer broke the framing or protocol.",
	 NULL,
	 {SSOCK_EFRAMING, SSOCK_EPROTO, SSOCK_EREFUSED, SSOCK_ECOLLISION, SSOCK_EHANDSHAKE,
	  SSOCK_ETRUNCATED}},
	{"AddressError",
	 "An address that does not parse or resolve.",
	 NULL,
	 {SSOCK_EBADADDR, SSOCK_ERESOLVE, 0}},
	{"TimeoutError",
	 "A wait, connect, idle or read timeout.",
	 &PyExc_TimeoutError,
	 {SSOCK_ETIMEDOUT, SSOCK_EIDLE, SSOCK_ESTALLED, 0}},
	{"ConnectionRefusedError",
	 "The peer refused the connection.",
	 &PyExc_ConnectionRefusedError,
	 {SSOCK_ECONNREFUSED, 0}},
	{"ConnectionResetError",
	 "The peer reset the connection.",
	 &PyExc_ConnectionResetError,
	 {SSOCK_ECONNRESET, SSOCK_EPIPE, 0}},
};

/* The attributes every instance has, as class attributes: what an Error made
 * by the program (ssock.Error("x"), ssock.TimeoutError("x")) answers, where
 * ps_error_new() would have set them. A subclass stands for its first code;
 * the base class, made by hand, for none (code 0, name "UNKNOWN"). */
static int set_defaults(PyObject *cls, int code)
{
	static const char *const none_attrs[] = {"op", "peer", "conn_id", "time"};
	PyObject *v = PyLong_FromLong(code);
	int rc = v ? PyObject_SetAttrString(cls, "code", v) : -1;
	Py_XDECREF(v);
	v = rc == 0 ? PyUnicode_FromString(code ? ssock_errname(code) : "UNKNOWN") : NULL;
	rc = v ? PyObject_SetAttrString(cls, "name", v) : -1;
	Py_XDECREF(v);
	for (size_t i = 0; rc == 0 && i < sizeof none_attrs / sizeof none_attrs[0]; i++)
		rc = PyObject_SetAttrString(cls, none_attrs[i], Py_None);
	return rc;
}

static int add_subclass(PyObject *m, const subclass_def *d)
{
	char qual[80];
	snprintf(qual, sizeof qual, "ssock.%s", d->name);
	PyObject *bases =
		d->builtin ? PyTuple_Pack(2, ps_Error, *d->builtin) : PyTuple_Pack(1, ps_Error);
	if (!bases)
		return -1;
	PyObject *cls = PyErr_NewExceptionWithDoc(qual, d->doc, bases, NULL);
	Py_DECREF(bases);
	if (!cls)
		return -1;
	if (set_defaults(cls, d->codes[0]) < 0) {
		Py_DECREF(cls);
		return -1;
	}
	for (const int *c = d->codes; *c; c++) {
		PyObject *key = PyLong_FromLong(*c);
		int rc = key ? PyDict_SetItem(class_by_code, key, cls) : -1;
		Py_XDECREF(key);
		if (rc < 0) {
			Py_DECREF(cls);
			return -1;
		}
	}
	if (d->codes[0] == SSOCK_ECLOSED)
		ps_ClosedError = Py_NewRef(cls);
	return PyModule_AddObject(m, d->name, cls) < 0 ? (Py_DECREF(cls), -1) : 0;
}

/* Exports every SSOCK_E* code as a module constant (ssock.ESENDQFULL). */
static int add_codes(PyObject *m)
{
#define PS_ADD_CODE(name, value, msg)                                          \
	if (PyModule_AddIntConstant(m, #name + 6, (value)) < 0) /* "SSOCK_" */ \
		return -1;
	SSOCK_ERRORS(PS_ADD_CODE)
#undef PS_ADD_CODE
	return 0;
}

/* OSError's own __reduce__ rebuilds from args and __dict__ only: errno and
 * strerror (members, not in __dict__) were lost, and with them str()'s
 * "[Errno N] ..." (an error sent back by multiprocessing, or copied). The
 * same class is called with the same args, and __setstate__ sets every
 * attribute back, errno and strerror too. */
static PyObject *error_reduce(PyObject *self, PyObject *unused)
{
	(void)unused;
	static const char *const members[] = {"errno", "strerror", "filename", "filename2"};
	PyObject *args = PyObject_GetAttrString(self, "args");
	PyObject *dict = args ? PyObject_GetAttrString(self, "__dict__") : NULL;
	PyObject *state = dict ? PyDict_Copy(dict) : NULL;
	Py_XDECREF(dict);
	for (size_t i = 0; state && i < sizeof members / sizeof members[0]; i++) {
		PyObject *v = PyObject_GetAttrString(self, members[i]);
		if (!v || (v != Py_None && PyDict_SetItemString(state, members[i], v) < 0))
			Py_CLEAR(state);
		Py_XDECREF(v);
	}
	if (!state) {
		Py_XDECREF(args);
		return NULL;
	}
	return Py_BuildValue("(ONN)", Py_TYPE(self), args, state);
}

static PyMethodDef error_reduce_def = {"__reduce__", error_reduce, METH_NOARGS,
				       "Pickles the error with its code, errno and details."};

int ps_errors_init(PyObject *m)
{
	ps_Error = PyErr_NewExceptionWithDoc(
		"ssock.Error",
		"An ssock error. .code is the negative ssock code, .name its symbol "
		"(SSOCK_E...), .errno the errno for codes that are -errno (else None); "
		"background errors also carry .op, .peer, .conn_id and .time.",
		PyExc_OSError, NULL);
	if (!ps_Error || PyModule_AddObject(m, "Error", Py_NewRef(ps_Error)) < 0 ||
	    set_defaults(ps_Error, 0) < 0)
		return -1;
	PyObject *reduce = PyDescr_NewMethod((PyTypeObject *)ps_Error, &error_reduce_def);
	int rc = reduce ? PyObject_SetAttrString(ps_Error, "__reduce__", reduce) : -1;
	Py_XDECREF(reduce);
	if (rc < 0)
		return -1;
	class_by_code = PyDict_New();
	if (!class_by_code)
		return -1;
	for (size_t i = 0; i < sizeof subclasses / sizeof subclasses[0]; i++)
		if (add_subclass(m, &subclasses[i]) < 0)
			return -1;
	return add_codes(m);
}

static int set_attr(PyObject *obj, const char *name, PyObject *value)
{
	if (!value)
		return -1;
	int rc = PyObject_SetAttrString(obj, name, value);
	Py_DECREF(value);
	return rc;
}

/* The exception's text: "op peer: message", parts present when known. */
static PyObject *error_text(int code, const char *op, const ssock_addr *peer)
{
	char addr[SSOCK_ADDRSTRLEN] = "";
	if (peer && peer->len > 0)
		ssock_addr_format(peer, addr, sizeof addr);
	const char *msg = ssock_strerror(code);
	if (op && *addr)
		return PyUnicode_FromFormat("%s %s: %s", op, addr, msg);
	if (op)
		return PyUnicode_FromFormat("%s: %s", op, msg);
	if (*addr)
		return PyUnicode_FromFormat("%s: %s", addr, msg);
	return PyUnicode_FromString(msg);
}

static PyObject *error_class(int code)
{
	PyObject *key = PyLong_FromLong(code);
	if (!key)
		return NULL;
	PyObject *cls = PyDict_GetItemWithError(class_by_code, key);
	Py_DECREF(key);
	if (!cls && PyErr_Occurred())
		return NULL;
	return cls ? cls : ps_Error;
}

static int set_details(PyObject *err, int code, const char *op, uint64_t conn,
		       const ssock_addr *peer, int64_t time_ms)
{
	int is_errno = code < 0 && code > -30000;
	if (set_attr(err, "code", PyLong_FromLong(code)) < 0 ||
	    set_attr(err, "name", PyUnicode_FromString(ssock_errname(code))) < 0 ||
	    set_attr(err, "errno", is_errno ? PyLong_FromLong(-code) : Py_NewRef(Py_None)) < 0 ||
	    (is_errno &&
	     set_attr(err, "strerror", PyUnicode_FromString(ssock_strerror(code))) < 0) ||
	    set_attr(err, "op", op ? PyUnicode_FromString(op) : Py_NewRef(Py_None)) < 0 ||
	    set_attr(err, "conn_id",
		     conn ? PyLong_FromUnsignedLongLong(conn) : Py_NewRef(Py_None)) < 0 ||
	    set_attr(err, "peer", peer ? ps_addr_to_tuple(peer) : Py_NewRef(Py_None)) < 0)
		return -1;
	return set_attr(err, "time",
			time_ms ? PyFloat_FromDouble((double)time_ms / 1000.0)
				: Py_NewRef(Py_None));
}

PyObject *ps_error_new(int code, const char *op, uint64_t conn, const ssock_addr *peer,
		       int64_t time_ms)
{
	PyObject *cls = error_class(code);
	PyObject *text = cls ? error_text(code, op, peer) : NULL;
	if (!text)
		return NULL;
	PyObject *err = PyObject_CallOneArg(cls, text);
	Py_DECREF(text);
	if (err && set_details(err, code, op, conn, peer, time_ms) < 0)
		Py_CLEAR(err);
	return err;
}

PyObject *ps_raise(int code)
{
	PyObject *err = ps_error_new(code, NULL, 0, NULL, 0);
	if (err) {
		PyErr_SetObject((PyObject *)Py_TYPE(err), err);
		Py_DECREF(err);
	}
	return NULL;
}

/* handle.errors(clear=False): the background error log, oldest first. */
PyObject *ps_error_list(ps_handle *self, int clear)
{
	enum { MAX = 1024 };
	ssock_error_info *info = PyMem_Calloc(MAX, sizeof *info);
	if (!info)
		return PyErr_NoMemory();
	int n = self->ops->errors(self->h, info, MAX, clear);
	PyObject *list = n < 0 ? ps_raise(n) : PyList_New(0);
	for (int i = 0; list && i < n && i < MAX; i++) {
		const ssock_addr *peer = info[i].peer.len ? &info[i].peer : NULL;
		PyObject *e =
			ps_error_new(info[i].code, info[i].op, info[i].conn, peer, info[i].time_ms);
		if (!e || PyList_Append(list, e) < 0)
			Py_CLEAR(list);
		Py_XDECREF(e);
	}
	PyMem_Free(info);
	return list;
}
