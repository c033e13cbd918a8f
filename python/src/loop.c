/*
 * loop.c - ssock.Loop: one event loop shared by many servers, clients and
 * UDP sockets (pass it as loop=). By default it runs on a background thread
 * of its own; Loop(start=False) leaves it to run() calls from a thread of
 * the program's.
 */
#include "pyssock.h"

#include <unistd.h>

PyTypeObject *ps_LoopType;

static int loop_init(ps_loop *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"start", NULL};
	int start = 1;
	if (self->loop) {
		PyErr_SetString(PyExc_RuntimeError, "Loop.__init__ called twice");
		return -1;
	}
	if (!PyArg_ParseTupleAndKeywords(args, kw, "|$p:Loop", kwlist, &start))
		return -1;
	int rc = ssock_loop_new(&self->loop);
	if (rc == 0 && start)
		rc = ssock_loop_start(self->loop);
	if (rc < 0) {
		ssock_loop_free(self->loop);
		self->loop = NULL;
		ps_raise(rc);
		return -1;
	}
	self->started = start;
	self->pid = getpid();
	return 0;
}

ssock_loop *ps_loop_get(PyObject *obj)
{
	if (!PyObject_TypeCheck(obj, ps_LoopType)) {
		PyErr_SetString(PyExc_TypeError, "loop must be an ssock.Loop");
		return NULL;
	}
	ps_loop *l = (ps_loop *)obj;
	if (!l->loop || l->pid != getpid()) {
		ps_raise(SSOCK_ECLOSED);
		return NULL;
	}
	return l->loop;
}

/* Frees the loop; SSOCK_EBUSY while handles still use it. */
static int loop_free(ps_loop *self)
{
	if (!self->loop || self->pid != getpid())
		return 0;
	int rc;
	Py_BEGIN_ALLOW_THREADS
		rc = ssock_loop_free(self->loop);
	Py_END_ALLOW_THREADS
	if (rc == 0)
		self->loop = NULL;
	return rc;
}

static PyObject *loop_close(ps_loop *self, PyObject *unused)
{
	(void)unused;
	int rc = loop_free(self);
	return rc < 0 ? ps_raise(rc) : Py_NewRef(Py_None);
}

static PyObject *loop_run(ps_loop *self, PyObject *args, PyObject *kw)
{
	int ms, rc;
	if (ps_timeout_arg(args, kw, "|O:run", &ms) < 0 || !ps_loop_get((PyObject *)self))
		return NULL;
	Py_BEGIN_ALLOW_THREADS
		rc = ssock_loop_run(self->loop, ms);
	Py_END_ALLOW_THREADS
	return rc < 0 ? ps_raise(rc) : Py_NewRef(Py_None);
}

static PyObject *loop_stop(ps_loop *self, PyObject *unused)
{
	(void)unused;
	if (!ps_loop_get((PyObject *)self))
		return NULL;
	int rc;
	Py_BEGIN_ALLOW_THREADS
		rc = ssock_loop_stop(self->loop);
	Py_END_ALLOW_THREADS
	return rc < 0 ? ps_raise(rc) : Py_NewRef(Py_None);
}

static PyObject *loop_start(ps_loop *self, PyObject *unused)
{
	(void)unused;
	if (!ps_loop_get((PyObject *)self))
		return NULL;
	int rc = ssock_loop_start(self->loop);
	return rc < 0 ? ps_raise(rc) : Py_NewRef(Py_None);
}

static void loop_dealloc(ps_loop *self)
{
	if (self->weakrefs)
		PyObject_ClearWeakRefs((PyObject *)self);
	loop_free(self); /* the handles using it hold references: none is left */
	PyTypeObject *tp = Py_TYPE(self);
	tp->tp_free(self);
	Py_DECREF(tp);
}

static PyObject *loop_enter(PyObject *self, PyObject *unused)
{
	(void)unused;
	return Py_NewRef(self);
}

static PyObject *loop_exit(ps_loop *self, PyObject *args)
{
	(void)args;
	PyObject *r = loop_close(self, NULL);
	Py_XDECREF(r);
	return r ? Py_NewRef(Py_False) : NULL;
}

static PyMethodDef loop_methods[] = {
	{"run", (PyCFunction)(void (*)(void))loop_run, METH_VARARGS | METH_KEYWORDS,
	 "run(timeout=None)\n--\n\nLoop(start=False): runs one pass on this thread, waiting "
	 "up to timeout seconds for I/O."},
	{"start", (PyCFunction)loop_start, METH_NOARGS,
	 "start()\n--\n\nRuns the loop on a background thread."},
	{"stop", (PyCFunction)loop_stop, METH_NOARGS,
	 "stop()\n--\n\nStops the background thread (joins it)."},
	{"close", (PyCFunction)loop_close, METH_NOARGS,
	 "close()\n--\n\nStops and frees the loop. Raises ssock.Error (EBUSY) while handles "
	 "still use it: close them first."},
	{"__enter__", (PyCFunction)loop_enter, METH_NOARGS, NULL},
	{"__exit__", (PyCFunction)loop_exit, METH_VARARGS, NULL},
	{NULL, NULL, 0, NULL},
};

#include <structmember.h>

static PyMemberDef loop_members[] = {
	{"__weaklistoffset__", T_PYSSIZET, offsetof(ps_loop, weakrefs), READONLY, NULL},
	{NULL, 0, 0, 0, NULL},
};

static PyType_Slot loop_slots[] = {
	{Py_tp_init, loop_init},
	{Py_tp_new, PyType_GenericNew},
	{Py_tp_dealloc, loop_dealloc},
	{Py_tp_methods, loop_methods},
	{Py_tp_members, loop_members},
	{Py_tp_doc, "Loop(*, start=True)\n--\n\nAn event loop many handles can share "
		    "(loop=...)."},
	{0, NULL},
};

int ps_loop_type_init(PyObject *m)
{
	PyType_Spec spec = {
		.name = "ssock.Loop",
		.basicsize = sizeof(ps_loop),
		.flags = Py_TPFLAGS_DEFAULT,
		.slots = loop_slots,
	};
	ps_LoopType = (PyTypeObject *)PyType_FromSpec(&spec);
	if (!ps_LoopType)
		return -1;
	return PyModule_AddObject(m, "Loop", Py_NewRef(ps_LoopType));
}
