/*
 * cli.h - what the ssock tool's files share: exit codes, the parsed
 * options, option parsing, usage errors, stop signals, and the progress bar.
 * The tool uses only the public API (ssock.h).
 */
#ifndef SSOCK_CLI_H
#define SSOCK_CLI_H

#include "ssock.h"

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define EXIT_RUNTIME 1
#define EXIT_USAGE   2

extern const char *prog; /* "ssock", the prefix of every error line */

/* Options, one bit each, so every subcommand accepts only its own. */
enum {
	O_LISTEN = 1 << 0,
	O_FRAMING = 1 << 1,
	O_UDP = 1 << 2,
	O_MAX_CONNS = 1 << 3,
	O_MAX_MSG = 1 << 4,
	O_WAIT = 1 << 5,
	O_HEX = 1 << 6,
	O_REPLY = 1 << 7,
	O_DIR = 1 << 8,
	O_OVERWRITE = 1 << 9,
	O_MAX_SIZE = 1 << 10,
	O_STATS = 1 << 11,
	O_ONCE = 1 << 12,
	O_IDLE_TIMEOUT = 1 << 13,
};

/* Every option's value after parsing; zero fields mean "not given". */
struct opts {
	const char *addr;
	ssock_framing framing;
	int max_conns;
	uint32_t max_msg;
	int wait_ms;         /* -1: not given */
	int idle_timeout_ms; /* -1: not given; 0: off */
	bool udp;
	bool hex;
	bool reply;
	const char *dir;
	bool overwrite;
	uint64_t max_size;
	bool stats;
	bool once;
	char **args; /* the operands after the options */
	int nargs;
};

/* A subcommand: its name, the options it takes, its help text and its run
 * function. */
struct command {
	const char *name;
	unsigned allowed; /* O_* bits */
	const char *synopsis;
	const char *help; /* what it does, option by option */
	int (*run)(struct opts *o);
};

/* Parses argv (argv[0] is the subcommand) into *o. Returns 0, EXIT_USAGE
 * (after printing the error and usage), or -1 when --help was asked for. */
int cli_parse(const struct command *cmd, int argc, char **argv, struct opts *o);

/* Prints "ssock: <fmt>" and the command's synopsis on stderr; returns
 * EXIT_USAGE. */
int cli_usage_error(const struct command *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Prints "ssock: <fmt>" on stderr and returns EXIT_RUNTIME. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The exit code for a failed ssock call on an address given by the user:
 * a malformed address is a usage error (then the command's usage follows the
 * error line already printed), the rest are runtime errors. */
int cli_addr_exit(const struct command *cmd, int rc);

/* How long a client waits for the peer's handshake (tinyproto's 0xFF): set
 * as the clients' connect_timeout_ms, which bounds it in the library. */
#define CLI_HANDSHAKE_MS 10000

/* Prints "ssock: the tinyproto handshake with ADDR did not complete ..." on
 * stderr and returns EXIT_RUNTIME. */
int cli_handshake_fail(const char *addr);

/* Blocks SIGINT and SIGTERM in the calling thread (call before any loop
 * thread starts, so it inherits the mask); cli_wait_stop() then takes them. */
void cli_block_stop(sigset_t *set);
void cli_wait_stop(const sigset_t *set);

/* Raises the soft fd limit to the hard one (a server may hold many). */
void cli_raise_fd_limit(void);

/* Milliseconds on the monotonic clock. */
int64_t cli_now_ms(void);

/* Writes "12.3 MiB" (or B, KiB, GiB) into buf. */
void cli_fmt_bytes(char *buf, size_t size, double bytes);

/* The process's peak resident set (VmHWM) in KiB, or -1 when unknown. */
long cli_peak_rss_kib(void);

/* A progress bar on stderr: drawn only when stderr is a terminal, at most
 * ten times a second, with bytes done, rate and time left. */
struct progress {
	bool on;
	char label[64];
	uint64_t total, done;
	int64_t start_ms, drawn_ms;
};

void progress_start(struct progress *p, const char *label, uint64_t total);
void progress_add(struct progress *p, uint64_t bytes);
/* Draws the final state and ends the line (or clears it when `ok` is false). */
void progress_end(struct progress *p, bool ok);

/* Terminal-safe text from peers (text.c): printable ASCII as is, a backslash
 * doubled, every other byte as \xNN, so a peer can't reach the terminal and
 * the bytes can be recovered. */
enum {
	ESC_HEX = 1,     /* the whole message as lowercase hex instead */
	ESC_KEEP_NL = 2, /* '\n' as is (a raw byte stream keeps its lines) */
};
/* Writes data[0..len) escaped to f (no newline added). */
void cli_print_escaped(FILE *f, const void *data, size_t len, unsigned flags);
/* Writes data[0..len) escaped into out (NUL-terminated, "..." when cut);
 * returns the length written. */
size_t cli_escape(char *out, size_t size, const void *data, size_t len);

/* The log of per-peer lines (log.c): cli_log() never blocks, whatever
 * stderr does, so loop-thread callbacks use it for every line they print.
 * It prints "ssock: <fmt>\n"; above 100 lines at once and then 10 a second,
 * or when 256 lines wait, lines are dropped and counted ("... N more lines
 * dropped"). main() starts it before a command runs and stops it after,
 * waiting at most wait_ms for the queued lines to be written. */
void cli_log_start(void);
void cli_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cli_log_stop(int wait_ms);

/* The subcommands (cmd_*.c). */
extern const struct command cmd_echo, cmd_chat, cmd_listen, cmd_send, cmd_send_file, cmd_recv_files;

#endif /* SSOCK_CLI_H */
