/*
 * util.c - conversions between Python values and ssock's: addresses (tuples
 * as the socket module uses them, or "HOST:PORT" text), timeouts (seconds,
 * None for no limit) and option values; and the fd wait used without the GIL.
 */
#include "pyssock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <string.h>
#include <time.h>

/* ('1.2.3.4', 80) or ('::1', 80, flowinfo, scope_id), like socket.getpeername();
 * None for an unset address. */
PyObject *ps_addr_to_tuple(const ssock_addr *a)
{
	char host[INET6_ADDRSTRLEN];
	if (!a || a->len == 0)
		Py_RETURN_NONE;
	if (a->u.sa.sa_family == AF_INET) {
		inet_ntop(AF_INET, &a->u.in4.sin_addr, host, sizeof host);
		return Py_BuildValue("(si)", host, ntohs(a->u.in4.sin_port));
	}
	if (a->u.sa.sa_family == AF_INET6) {
		inet_ntop(AF_INET6, &a->u.in6.sin6_addr, host, sizeof host);
		return Py_BuildValue("(siII)", host, ntohs(a->u.in6.sin6_port),
				     (unsigned)ntohl(a->u.in6.sin6_flowinfo),
				     (unsigned)a->u.in6.sin6_scope_id);
	}
	Py_RETURN_NONE;
}

/* A numeric (host, port[, flowinfo, scope_id]) tuple straight into *out, with
 * no resolver call: the fast path for replying to a datagram's sender.
 * Returns 1 on success, 0 when the host is not a numeric address. */
static int tuple_numeric(PyObject *t, ssock_addr *out)
{
	const char *host;
	int port;
	unsigned flow = 0, scope = 0;
	if (!PyArg_ParseTuple(t, "si|II", &host, &port, &flow, &scope))
		return -1;
	if (port < 0 || port > 65535) {
		PyErr_SetString(PyExc_OverflowError, "port must be 0-65535");
		return -1;
	}
	memset(out, 0, sizeof *out);
	if (inet_pton(AF_INET, host, &out->u.in4.sin_addr) == 1) {
		out->u.in4.sin_family = AF_INET;
		out->u.in4.sin_port = htons((uint16_t)port);
		out->len = sizeof out->u.in4;
		return 1;
	}
	if (inet_pton(AF_INET6, host, &out->u.in6.sin6_addr) == 1) {
		out->u.in6.sin6_family = AF_INET6;
		out->u.in6.sin6_port = htons((uint16_t)port);
		out->u.in6.sin6_flowinfo = htonl(flow);
		out->u.in6.sin6_scope_id = scope;
		out->len = sizeof out->u.in6;
		return 1;
	}
	return 0;
}

/* C reads these strings up to the first NUL, so one inside would silently
 * drop the rest (an address or framing other than the one given): rejected
 * as the socket module does. Returns 0, or -1 with ValueError set. */
static int reject_nul(PyObject *str)
{
	if (PyUnicode_FindChar(str, 0, 0, PyUnicode_GET_LENGTH(str), 1) == -1)
		return 0;
	if (!PyErr_Occurred())
		PyErr_SetString(PyExc_ValueError, "embedded null character");
	return -1;
}

/* "HOST:PORT" (brackets around an IPv6 host) from a str or a tuple. */
PyObject *ps_addr_text(PyObject *obj)
{
	if (PyUnicode_Check(obj))
		return reject_nul(obj) < 0 ? NULL : Py_NewRef(obj);
	if (!PyTuple_Check(obj) || PyTuple_GET_SIZE(obj) < 2) {
		PyErr_SetString(PyExc_TypeError,
				"an address is 'HOST:PORT', '[IPV6]:PORT' or a (host, port) tuple");
		return NULL;
	}
	PyObject *host = PyTuple_GET_ITEM(obj, 0);
	PyObject *port = PyTuple_GET_ITEM(obj, 1);
	if (!PyUnicode_Check(host) || !PyLong_Check(port)) {
		PyErr_SetString(PyExc_TypeError, "an address tuple is (str host, int port)");
		return NULL;
	}
	if (reject_nul(host) < 0)
		return NULL;
	if (PyUnicode_FindChar(host, ':', 0, PyUnicode_GET_LENGTH(host), 1) >= 0)
		return PyUnicode_FromFormat("[%U]:%S", host, port);
	return PyUnicode_FromFormat("%U:%S", host, port);
}

/* Any address form into *out; names are resolved (GIL released, it may block
 * on DNS). Returns 0, or -1 with an exception set. */
int ps_addr_from_obj(PyObject *obj, ssock_addr *out, int passive)
{
	if (PyTuple_Check(obj)) {
		int rc = tuple_numeric(obj, out);
		if (rc != 0)
			return rc < 0 ? -1 : 0;
	}
	PyObject *text = ps_addr_text(obj);
	if (!text)
		return -1;
	const char *s = PyUnicode_AsUTF8(text);
	int rc = SSOCK_EINVAL;
	if (s) {
		Py_BEGIN_ALLOW_THREADS
			rc = ssock_addr_resolve(s, passive, out, 1);
		Py_END_ALLOW_THREADS
	}
	Py_DECREF(text);
	if (!s)
		return -1;
	if (rc < 0) {
		ps_raise(rc);
		return -1;
	}
	return 0;
}

/* Seconds (int or float, >= 0) to ms, rounding up so a tiny timeout still
 * waits; None means no limit (-1). */
int ps_timeout_ms(PyObject *obj, int *out)
{
	if (!obj || obj == Py_None) {
		*out = -1;
		return 0;
	}
	double s = PyFloat_AsDouble(obj);
	if (s == -1.0 && PyErr_Occurred())
		return -1;
	if (isnan(s) || s < 0) {
		PyErr_SetString(PyExc_ValueError, "a timeout is None or seconds >= 0");
		return -1;
	}
	double ms = ceil(s * 1000.0);
	*out = ms > 2147483647.0 ? -1 : (int)ms;
	return 0;
}

int ps_timeout_arg(PyObject *args, PyObject *kw, const char *fmt, int *ms)
{
	static char *kwlist[] = {"timeout", NULL};
	PyObject *timeout = Py_None;
	if (!PyArg_ParseTupleAndKeywords(args, kw, fmt, kwlist, &timeout))
		return -1;
	return ps_timeout_ms(timeout, ms);
}

/* An option given in seconds: None or 0 is the C default (0). */
int ps_opt_ms(PyObject *obj, const char *name, int *out)
{
	*out = 0;
	if (!obj || obj == Py_None)
		return 0;
	double s = PyFloat_AsDouble(obj);
	if (s == -1.0 && PyErr_Occurred())
		return -1;
	if (isnan(s) || s < 0 || s * 1000.0 > 2147483647.0) {
		PyErr_Format(PyExc_ValueError, "%s must be seconds >= 0", name);
		return -1;
	}
	*out = (int)ceil(s * 1000.0);
	return 0;
}

int ps_opt_size(PyObject *obj, const char *name, size_t *out)
{
	*out = 0;
	if (!obj || obj == Py_None)
		return 0;
	Py_ssize_t v = PyNumber_AsSsize_t(obj, PyExc_OverflowError);
	if (v == -1 && PyErr_Occurred())
		return -1;
	if (v < 0) {
		PyErr_Format(PyExc_ValueError, "%s must be >= 0", name);
		return -1;
	}
	*out = (size_t)v;
	return 0;
}

int ps_opt_int(PyObject *obj, const char *name, int *out)
{
	size_t v;
	if (ps_opt_size(obj, name, &v) < 0)
		return -1;
	if (v > 2147483647u) {
		PyErr_Format(PyExc_OverflowError, "%s is too large", name);
		return -1;
	}
	*out = (int)v;
	return 0;
}

int ps_framing(PyObject *obj, ssock_framing *out)
{
	*out = SSOCK_FRAMING_U32;
	if (!obj || obj == Py_None)
		return 0;
	const char *s = PyUnicode_Check(obj) && reject_nul(obj) == 0 ? PyUnicode_AsUTF8(obj) : NULL;
	if (!s || ssock_framing_parse(s, out) != 0) {
		if (!PyErr_Occurred())
			PyErr_SetString(PyExc_ValueError,
					"framing is 'u32', 'line', 'raw' or 'tinyproto'");
		return -1;
	}
	return 0;
}

int64_t ps_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits (call it without the GIL) until fd1 or fd2 is readable or timeout_ms
 * passes (-1: no limit). Returns 1, 0 on timeout, or -EINTR when a signal
 * arrived (the caller checks for a Python signal handler). */
int ps_wait_fds(int fd1, int fd2, int fd3, int timeout_ms)
{
	struct pollfd p[3] = {{.fd = fd1, .events = POLLIN},
			      {.fd = fd2, .events = POLLIN},
			      {.fd = fd3, .events = POLLIN}};
	int n = poll(p, 3, timeout_ms);
	if (n < 0)
		return -errno;
	return n > 0;
}

/* getattr(obj, name, None) without the None: *out is NULL when absent. */
int ps_optional_attr(PyObject *obj, const char *name, PyObject **out)
{
	*out = PyObject_GetAttrString(obj, name);
	if (*out)
		return 1;
	if (!PyErr_ExceptionMatches(PyExc_AttributeError))
		return -1;
	PyErr_Clear();
	return 0;
}

/* A small vectorcall argument parser: fills out[0..n) from the positional
 * arguments, then from keywords by name; missing ones stay NULL. The first
 * `required` must be there. No tuple or dict is made (the hot path of send).
 * Returns 0, or -1 with a TypeError. */
int ps_fast_args(const char *fn, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
		 const char *const *names, int n, int required, PyObject **out)
{
	if (nargs > n) {
		PyErr_Format(PyExc_TypeError, "%s() takes at most %d arguments", fn, n);
		return -1;
	}
	for (int i = 0; i < n; i++)
		out[i] = i < nargs ? args[i] : NULL;
	Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
	for (Py_ssize_t k = 0; k < nkw; k++) {
		const char *key = PyUnicode_AsUTF8(PyTuple_GET_ITEM(kwnames, k));
		int i = 0;
		while (key && i < n && strcmp(key, names[i]) != 0)
			i++;
		if (!key || i == n || out[i]) {
			if (key)
				PyErr_Format(PyExc_TypeError,
					     "%s() got an unexpected or repeated "
					     "argument '%s'",
					     fn, key);
			return -1;
		}
		out[i] = args[nargs + k];
	}
	for (int i = 0; i < required; i++)
		if (!out[i]) {
			PyErr_Format(PyExc_TypeError, "%s() missing argument '%s'", fn, names[i]);
			return -1;
		}
	return 0;
}

/* A send's timeout: absent means 0 (fail at once on a full queue). */
int ps_send_timeout(PyObject *obj, int *out)
{
	if (!obj) {
		*out = 0;
		return 0;
	}
	return ps_timeout_ms(obj, out);
}
