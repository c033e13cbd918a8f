/*
 * buffer.c - zero-copy message payloads (zero_copy=True): the library's own
 * buffer is handed to Python as a read-only memoryview, and freed with
 * ssock_free() when the last view of it goes.
 */
#include "pyssock.h"

typedef struct {
	PyObject_HEAD void *data;
	Py_ssize_t len;
} ps_buffer;

static PyTypeObject *ps_BufferType;

static int buffer_getbuffer(ps_buffer *self, Py_buffer *view, int flags)
{
	return PyBuffer_FillInfo(view, (PyObject *)self, self->data ? self->data : (void *)"",
				 self->len, 1, flags);
}

static void buffer_dealloc(ps_buffer *self)
{
	ssock_free(self->data);
	PyTypeObject *tp = Py_TYPE(self);
	tp->tp_free(self);
	Py_DECREF(tp);
}

static PyType_Slot buffer_slots[] = {
	{Py_bf_getbuffer, buffer_getbuffer},
	{Py_tp_dealloc, buffer_dealloc},
	{Py_tp_doc, "A message payload owned by ssock (behind a memoryview)."},
	{0, NULL},
};

int ps_buffer_type_init(PyObject *m)
{
	(void)m;
	PyType_Spec spec = {
		.name = "ssock._Buffer",
		.basicsize = sizeof(ps_buffer),
		.flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION,
		.slots = buffer_slots,
	};
	ps_BufferType = (PyTypeObject *)PyType_FromSpec(&spec);
	return ps_BufferType ? 0 : -1;
}

int ps_is_payload(PyObject *obj)
{
	if (!PyMemoryView_Check(obj))
		return 0;
	PyObject *base = PyMemoryView_GET_BUFFER(obj)->obj;
	return base && Py_TYPE(base) == ps_BufferType;
}

/* The payload of a message event: bytes (a copy), or with zero_copy a
 * memoryview of the library's buffer. ev->data is taken either way. */
PyObject *ps_event_data(ps_handle *self, ssock_event *ev)
{
	void *data = ev->data;
	ev->data = NULL;
	if (!self->zero_copy) {
		PyObject *b = PyBytes_FromStringAndSize(data, (Py_ssize_t)ev->len);
		ssock_free(data);
		return b;
	}
	ps_buffer *buf = PyObject_New(ps_buffer, ps_BufferType);
	if (!buf) {
		ssock_free(data);
		return NULL;
	}
	buf->data = data;
	buf->len = (Py_ssize_t)ev->len;
	PyObject *view = PyMemoryView_FromObject((PyObject *)buf);
	Py_DECREF(buf);
	return view;
}
