/*
 * Printing what peers send, terminal-safe: one escaping rule for every
 * command (listen, send --reply, chat, the logs of recv-files and send-file).
 *
 * Printable ASCII (0x20..0x7e) is printed as is, a backslash as "\\", and
 * every other byte as "\xNN": no byte a peer chose can start an escape
 * sequence, move the cursor or end the line, and the bytes can be recovered
 * from the text. Bytes 0x80..0xff are escaped too, valid UTF-8 or not: a C1
 * control (U+009B is C2 9B) is a terminal command as much as ESC is.
 */
#include "cli.h"

#include <string.h>

/* The escaped form of one byte into out[0..4); returns its length. */
static size_t escape_byte(unsigned char c, char out[4])
{
	static const char hex[] = "0123456789abcdef";
	if (c == '\\') {
		out[0] = out[1] = '\\';
		return 2;
	}
	if (c >= 0x20 && c < 0x7f) {
		out[0] = (char)c;
		return 1;
	}
	out[0] = '\\';
	out[1] = 'x';
	out[2] = hex[c >> 4];
	out[3] = hex[c & 15];
	return 4;
}

void cli_print_escaped(FILE *f, const void *data, size_t len, unsigned flags)
{
	const unsigned char *p = data;
	char buf[4096];
	size_t n = 0;
	for (size_t i = 0; i < len; i++) {
		if (n + 4 > sizeof buf) {
			fwrite(buf, 1, n, f);
			n = 0;
		}
		if (flags & ESC_HEX) {
			static const char hex[] = "0123456789abcdef";
			buf[n++] = hex[p[i] >> 4];
			buf[n++] = hex[p[i] & 15];
		} else if (p[i] == '\n' && (flags & ESC_KEEP_NL)) {
			buf[n++] = '\n';
		} else {
			n += escape_byte(p[i], buf + n);
		}
	}
	fwrite(buf, 1, n, f);
}

size_t cli_escape(char *out, size_t size, const void *data, size_t len)
{
	const unsigned char *p = data;
	size_t n = 0;
	if (size < 4) {
		if (size)
			out[0] = '\0';
		return 0;
	}
	for (size_t i = 0; i < len; i++) {
		char e[4];
		size_t k = escape_byte(p[i], e);
		if (n + k + 4 > size) { /* room for "..." and the NUL */
			memcpy(out + n, "...", 3);
			n += 3;
			break;
		}
		memcpy(out + n, e, k);
		n += k;
	}
	out[n] = '\0';
	return n;
}
