/*
 * buffer.c - message payloads as Python sees them: bytes, large ones in
 * recycled objects (see PS_SPARE_MIN in pyssock.h), or with zero_copy=True
 * the library's own buffer as a read-only memoryview, freed with
 * ssock_free() when the last view of it goes.
 */
#include "pyssock.h"

#include <string.h>

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

/* Gives a payload back the way its event would: a large one is kept by
 * ssock for its next large read (ssock_event_release()). */
static void give_back(void *data, Py_ssize_t len)
{
	ssock_event ev = {.type = SSOCK_EVENT_MESSAGE, .data = data, .len = (size_t)len};
	ssock_event_release(&ev);
}

static void buffer_dealloc(ps_buffer *self)
{
	give_back(self->data, self->len);
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

/* ------------------------------------------------------------ recycled bytes */

/* A bytes object may be reused when this build's layout is known (the
 * cached hash, ob_shash) and a reference count of 1 means nobody else can
 * reach it: a build with the GIL, in which every holder of a bytes object,
 * a view of it included, holds a reference. That is the rule CPython's own
 * _PyBytes_Resize() relies on to change a bytes object in place. */
#if !defined(Py_GIL_DISABLED) && !defined(Py_LIMITED_API) && PY_VERSION_HEX < 0x030E0000
#define PS_RECYCLE 1
#else
#define PS_RECYCLE 0
#endif

static void spare_clear(ps_handle *self, ps_spare *s)
{
	self->spare_bytes -= s->cap;
	s->cap = 0;
	Py_CLEAR(s->bytes);
}

int ps_spare_drop(ps_handle *self, int idle_only)
{
	if (!self->spare_bytes)
		return 0;
	if (idle_only && ps_now_ms() - self->spare_used_ms < PS_SPARE_IDLE_MS)
		return 1;
	for (int i = 0; i < PS_SPARE_N; i++)
		if (self->spare[i].bytes)
			spare_clear(self, &self->spare[i]);
	return 0;
}

#if PS_RECYCLE
/* A kept object nobody else holds, len bytes long or at most a quarter
 * longer; NULL when there is none. */
static PyObject *spare_reuse(ps_handle *self, const void *data, size_t len)
{
	for (int i = 0; i < PS_SPARE_N; i++) {
		ps_spare *s = &self->spare[i];
		if (!s->bytes || Py_REFCNT(s->bytes) != 1 || s->cap < len ||
		    len < s->cap - s->cap / 4)
			continue;
		PyBytesObject *b = (PyBytesObject *)s->bytes;
		Py_SET_SIZE(b, (Py_ssize_t)len);
		memcpy(b->ob_sval, data, len);
		b->ob_sval[len] = '\0';
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
		b->ob_shash = -1; /* its hash, if one was taken, was of other bytes */
#pragma GCC diagnostic pop
		return Py_NewRef(b);
	}
	return NULL;
}

/* Keeps a new payload for reuse, in a free slot, else in place of one the
 * program still holds (dropping that costs nothing), else of the oldest;
 * then drops others until the total is within PS_SPARE_MAX. */
static void spare_keep(ps_handle *self, PyObject *b, size_t len)
{
	ps_spare *slot = NULL;
	for (int i = 0; i < PS_SPARE_N && !slot; i++)
		if (!self->spare[i].bytes)
			slot = &self->spare[i];
	for (int i = 0; i < PS_SPARE_N && !slot; i++)
		if (Py_REFCNT(self->spare[i].bytes) > 1)
			slot = &self->spare[i];
	if (!slot)
		slot = &self->spare[0];
	if (slot->bytes)
		spare_clear(self, slot);
	for (int i = 0; i < PS_SPARE_N && self->spare_bytes + len > PS_SPARE_MAX; i++)
		if (self->spare[i].bytes)
			spare_clear(self, &self->spare[i]);
	/* Oldest first next time: the slots move up, the new one goes last. */
	ps_spare keep = {Py_NewRef(b), len};
	size_t at = (size_t)(slot - self->spare);
	memmove(slot, slot + 1, (PS_SPARE_N - 1 - at) * sizeof *slot);
	self->spare[PS_SPARE_N - 1] = keep;
	self->spare_bytes += len;
}
#endif

/* GIL: the bytes of a payload, in a recycled object when one is free. */
static PyObject *payload_bytes(ps_handle *self, const void *data, size_t len)
{
#if PS_RECYCLE
	if (len >= PS_SPARE_MIN && len <= PS_SPARE_MAX) {
		self->spare_used_ms = ps_now_ms();
		PyObject *b = spare_reuse(self, data, len);
		if (b)
			return b;
		b = PyBytes_FromStringAndSize(data, (Py_ssize_t)len);
		if (b)
			spare_keep(self, b, len);
		return b;
	}
#else
	(void)self;
#endif
	return PyBytes_FromStringAndSize(data, (Py_ssize_t)len);
}

/* The payload of a message event: bytes (a copy; ev->data stays, for the
 * caller's ssock_event_release()), or with zero_copy a memoryview of the
 * library's buffer (ev->data is taken). */
PyObject *ps_event_data(ps_handle *self, ssock_event *ev)
{
	if (!self->zero_copy)
		return payload_bytes(self, ev->data, ev->len);
	void *data = ev->data;
	ev->data = NULL;
	ps_buffer *buf = PyObject_New(ps_buffer, ps_BufferType);
	if (!buf) {
		give_back(data, (Py_ssize_t)ev->len);
		return NULL;
	}
	buf->data = data;
	buf->len = (Py_ssize_t)ev->len;
	PyObject *view = PyMemoryView_FromObject((PyObject *)buf);
	Py_DECREF(buf);
	return view;
}
