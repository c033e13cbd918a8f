/*
 * module.c - the _ssock extension module: its types, exceptions, enums and
 * small functions. The package ssock (python/ssock/__init__.py) re-exports
 * all of it and adds the asyncio helpers.
 */
#include "pyssock.h"

PyObject *ps_ev_type[5];
PyObject *ps_client_state[3];

/* The text fn gives for the code in arg. "i": a code out of int range
 * raises OverflowError rather than being cut to its low bits (2**32 - 110
 * is not SSOCK_ETIMEDOUT). */
static PyObject *code_text(PyObject *arg, const char *fmt, const char *(*fn)(int code))
{
	int code;
	if (!PyArg_Parse(arg, fmt, &code))
		return NULL;
	return PyUnicode_FromString(fn(code));
}

static PyObject *mod_strerror(PyObject *mod, PyObject *arg)
{
	(void)mod;
	return code_text(arg, "i:strerror", ssock_strerror);
}

static PyObject *mod_errname(PyObject *mod, PyObject *arg)
{
	(void)mod;
	return code_text(arg, "i:errname", ssock_errname);
}

static PyObject *mod_version(PyObject *mod, PyObject *unused)
{
	(void)mod;
	(void)unused;
	return PyUnicode_FromString(ssock_version());
}

/* _make_error(code, op=None): the exception ssock raises for code. */
static PyObject *mod_make_error(PyObject *mod, PyObject *args)
{
	(void)mod;
	int code;
	const char *op = NULL;
	if (!PyArg_ParseTuple(args, "i|z:_make_error", &code, &op))
		return NULL;
	return ps_error_new(code, op, 0, NULL, 0);
}

static PyMethodDef module_methods[] = {
	{"_make_error", mod_make_error, METH_VARARGS,
	 "_make_error(code, op=None)\n--\n\nThe ssock.Error (subclass) for a code."},
	{"strerror", mod_strerror, METH_O, "strerror(code)\n--\n\nThe message of an error code."},
	{"errname", mod_errname, METH_O, "errname(code)\n--\n\nThe symbol of an error code."},
	{"version", mod_version, METH_NOARGS,
	 "version()\n--\n\nThe version of the C library linked in."},
	{NULL, NULL, 0, NULL},
};

/* An IntEnum named `name` with the given members; each member object is
 * stored in out[value] when out is given. */
static int add_enum(PyObject *m, const char *name, const char *const *names, int n, PyObject **out)
{
	PyObject *enum_mod = PyImport_ImportModule("enum");
	PyObject *members = PyList_New(0);
	PyObject *cls = NULL;
	for (int i = 0; members && i < n; i++) {
		PyObject *item = Py_BuildValue("(si)", names[i], out == ps_ev_type ? i + 1 : i);
		if (!item || PyList_Append(members, item) < 0)
			Py_CLEAR(members);
		Py_XDECREF(item);
	}
	if (enum_mod && members) {
		PyObject *kw = Py_BuildValue("{s:s}", "module", "ssock");
		PyObject *args = Py_BuildValue("(sO)", name, members);
		PyObject *intenum = PyObject_GetAttrString(enum_mod, "IntEnum");
		if (kw && args && intenum)
			cls = PyObject_Call(intenum, args, kw);
		Py_XDECREF(kw);
		Py_XDECREF(args);
		Py_XDECREF(intenum);
	}
	Py_XDECREF(enum_mod);
	Py_XDECREF(members);
	for (int i = 0; cls && i < n; i++) {
		PyObject *member = PyObject_GetAttrString(cls, names[i]);
		if (!member || PyModule_AddObject(m, names[i], Py_NewRef(member)) < 0) {
			Py_XDECREF(member);
			Py_CLEAR(cls);
			break;
		}
		out[out == ps_ev_type ? i + 1 : i] = member; /* kept for the module's life */
	}
	if (!cls || PyModule_AddObject(m, name, cls) < 0) {
		Py_XDECREF(cls);
		return -1;
	}
	return 0;
}

static int add_enums(PyObject *m)
{
	static const char *const ev_names[] = {"CONNECT", "MESSAGE", "DISCONNECT", "ERROR"};
	static const char *const st_names[] = {"DISCONNECTED", "CONNECTING", "CONNECTED"};
	ps_ev_type[0] = Py_None;
	if (add_enum(m, "EventType", ev_names, 4, ps_ev_type) < 0 ||
	    add_enum(m, "ClientState", st_names, 3, ps_client_state) < 0)
		return -1;
	return 0;
}

static struct PyModuleDef module_def = {
	PyModuleDef_HEAD_INIT,
	.m_name = "_ssock",
	.m_doc = "The C half of the ssock package (see `help(ssock)`).",
	.m_size = -1,
	.m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__ssock(void)
{
	PyObject *m = PyModule_Create(&module_def);
	if (!m)
		return NULL;
	if (ps_errors_init(m) < 0 || ps_handle_types_init(m) < 0 || ps_conn_types_init(m) < 0 ||
	    ps_server_type_init(m) < 0 || ps_client_type_init(m) < 0 || ps_udp_type_init(m) < 0 ||
	    ps_loop_type_init(m) < 0 || ps_buffer_type_init(m) < 0 ||
	    ps_module_handles_init(m) < 0 || add_enums(m) < 0 ||
	    PyModule_AddStringConstant(m, "__version__", SSOCK_VERSION_STRING) < 0 ||
	    PyModule_AddIntConstant(m, "UDP_MAX_MESSAGE", SSOCK_UDP_MAX_MESSAGE) < 0) {
		Py_DECREF(m);
		return NULL;
	}
	return m;
}
