/*
 * ssock: the command-line tool. This file holds main(), the dispatch to the
 * subcommands (cmd_*.c), help, and the option parsing they share.
 * The contract of echo and chat (output lines, exit codes) is docs/DESIGN.md's:
 * tests and benchmarks drive it, so keep it exact.
 *
 * Exit codes everywhere: 0 success, 1 runtime error (one line on stderr
 * saying what failed and where), 2 usage error (the line, then the usage).
 */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

const char *prog = "ssock";

static const struct command *const commands[] = {
	&cmd_echo, &cmd_chat, &cmd_listen, &cmd_send, &cmd_send_file, &cmd_recv_files,
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *out)
{
	fprintf(out, "usage: %s <command> [options]\n\ncommands:\n", prog);
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(out, "  %s\n", commands[i]->synopsis);
	fprintf(out,
		"\n"
		"ADDR is HOST:PORT, [IPV6]:PORT or :PORT (all addresses).\n"
		"'%s help COMMAND' or '%s COMMAND --help' explains one command.\n"
		"options:\n"
		"  -V, --version  print the version and exit\n"
		"  -h, --help     print this help and exit\n"
		"exit codes: 0 success, 1 runtime error, 2 usage error\n",
		prog, prog);
}

static void command_help(const struct command *cmd, FILE *out)
{
	fprintf(out, "usage: %s %s\n\n%s", prog, cmd->synopsis, cmd->help);
}

int cli_usage_error(const struct command *cmd, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s: ", prog);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (cmd)
		fprintf(stderr, "usage: %s %s\n(see '%s help %s')\n", prog, cmd->synopsis, prog,
			cmd->name);
	else
		usage(stderr);
	return EXIT_USAGE;
}

int cli_fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s: ", prog);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return EXIT_RUNTIME;
}

int cli_handshake_fail(const char *addr)
{
	return cli_fail("the tinyproto handshake with %s did not complete within %d ms (does the "
			"server speak tinyproto?)",
			addr, CLI_HANDSHAKE_MS);
}

int cli_addr_exit(const struct command *cmd, int rc)
{
	if (rc != SSOCK_EBADADDR)
		return EXIT_RUNTIME;
	fprintf(stderr, "usage: %s %s\n(see '%s help %s')\n", prog, cmd->synopsis, prog, cmd->name);
	return EXIT_USAGE;
}

/* ------------------------------------------------------------- options */

/* A whole decimal number up to max: digits only (no sign, no space, no
 * "0x"), so " -1" can never wrap to the maximum as strtoull() would let it. */
static bool parse_uint(const char *s, unsigned long long max, unsigned long long *out)
{
	unsigned long long v = 0;
	if (!s || !*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		unsigned d = (unsigned)(*s - '0');
		if (v > (max - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

/* The getopt value of each option is its O_* bit. */
static const struct option long_opts[] = {
	{"listen", required_argument, NULL, O_LISTEN},
	{"framing", required_argument, NULL, O_FRAMING},
	{"udp", no_argument, NULL, O_UDP},
	{"max-conns", required_argument, NULL, O_MAX_CONNS},
	{"max-msg", required_argument, NULL, O_MAX_MSG},
	{"wait", required_argument, NULL, O_WAIT},
	{"hex", no_argument, NULL, O_HEX},
	{"reply", no_argument, NULL, O_REPLY},
	{"dir", required_argument, NULL, O_DIR},
	{"overwrite", no_argument, NULL, O_OVERWRITE},
	{"max-size", required_argument, NULL, O_MAX_SIZE},
	{"stats", no_argument, NULL, O_STATS},
	{"once", no_argument, NULL, O_ONCE},
	{"idle-timeout", required_argument, NULL, O_IDLE_TIMEOUT},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

/* Stores one option's value. Returns 0 or EXIT_USAGE. */
static int set_opt(const struct command *cmd, int c, const char *arg, struct opts *o)
{
	unsigned long long v;
	switch (c) {
	case O_LISTEN:
		o->addr = arg;
		return 0;
	case O_FRAMING:
		if (ssock_framing_parse(arg, &o->framing) != 0)
			return cli_usage_error(
				cmd, "unknown framing '%s' (u32, line, raw or tinyproto)", arg);
		return 0;
	case O_MAX_CONNS:
		if (!parse_uint(arg, INT32_MAX, &v) || v == 0)
			return cli_usage_error(
				cmd, "--max-conns takes a number from 1 to 2147483647, not '%s'",
				arg);
		o->max_conns = (int)v;
		return 0;
	case O_MAX_MSG:
		if (!parse_uint(arg, UINT32_MAX, &v) || v == 0)
			return cli_usage_error(
				cmd, "--max-msg takes 1 to 4294967295 bytes, not '%s'", arg);
		o->max_msg = (uint32_t)v;
		return 0;
	case O_WAIT:
		if (!parse_uint(arg, INT32_MAX, &v))
			return cli_usage_error(
				cmd, "--wait takes 0 to 2147483647 milliseconds, not '%s'", arg);
		o->wait_ms = (int)v;
		return 0;
	case O_IDLE_TIMEOUT:
		if (!parse_uint(arg, INT32_MAX, &v))
			return cli_usage_error(
				cmd,
				"--idle-timeout takes 0 (off) to 2147483647 milliseconds, not '%s'",
				arg);
		o->idle_timeout_ms = (int)v;
		return 0;
	case O_DIR:
		o->dir = arg;
		return 0;
	case O_MAX_SIZE:
		if (!parse_uint(arg, UINT64_MAX, &v) || v == 0)
			return cli_usage_error(cmd, "--max-size takes 1 or more bytes, not '%s'",
					       arg);
		o->max_size = v;
		return 0;
	}
	bool *flag = c == O_UDP         ? &o->udp
		     : c == O_HEX       ? &o->hex
		     : c == O_REPLY     ? &o->reply
		     : c == O_OVERWRITE ? &o->overwrite
		     : c == O_STATS     ? &o->stats
					: &o->once;
	*flag = true;
	return 0;
}

int cli_parse(const struct command *cmd, int argc, char **argv, struct opts *o)
{
	optind = 1;
	opterr = 0;
	for (;;) {
		int c = getopt_long(argc, argv, "h", long_opts, NULL);
		if (c == -1)
			break;
		if (c == 'h')
			return -1;
		if (c == '?' || c == ':')
			return cli_usage_error(cmd, "unknown or incomplete option '%s' for %s",
					       argv[optind - 1], cmd->name);
		if (!(cmd->allowed & (unsigned)c)) { /* argv[optind - 1] may be its value */
			const struct option *lo = long_opts;
			while (lo->name && lo->val != c)
				lo++;
			return cli_usage_error(cmd, "%s takes no option --%s", cmd->name,
					       lo->name ? lo->name : "?");
		}
		int rc = set_opt(cmd, c, optarg, o);
		if (rc != 0)
			return rc;
	}
	o->args = argv + optind;
	o->nargs = argc - optind;
	return 0;
}

/* ---------------------------------------------------------- utilities */

void cli_block_stop(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, set, NULL);
}

void cli_wait_stop(const sigset_t *set)
{
	int sig;
	sigwait(set, &sig);
}

void cli_raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int64_t cli_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void cli_fmt_bytes(char *buf, size_t size, double bytes)
{
	static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	int u = 0;
	while (bytes >= 1024 && u < 4) {
		bytes /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, size, "%.0f B", bytes);
	else
		snprintf(buf, size, "%.1f %s", bytes, unit[u]);
}

long cli_peak_rss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return -1;
	char line[256];
	long kib = -1;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

/* --------------------------------------------------------------- main */

static const struct command *find_command(const char *name)
{
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (strcmp(commands[i]->name, name) == 0)
			return commands[i];
	return NULL;
}

/* `ssock help [COMMAND]` */
static int help(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	const struct command *cmd = find_command(argv[1]);
	if (!cmd)
		return cli_usage_error(NULL, "no help for unknown command '%s'", argv[1]);
	command_help(cmd, stdout);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	const char *name = argv[1];
	if (strcmp(name, "--version") == 0 || strcmp(name, "-V") == 0 ||
	    strcmp(name, "version") == 0) {
		printf("ssock %s\n", ssock_version());
		return 0;
	}
	if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0)
		return help(1, argv);
	if (strcmp(name, "help") == 0)
		return help(argc - 1, argv + 1);
	const struct command *cmd = find_command(name);
	if (!cmd)
		return cli_usage_error(NULL, "unknown command '%s'", name);
	struct opts o = {.wait_ms = -1, .idle_timeout_ms = -1}; /* -1: not given */
	int rc = cli_parse(cmd, argc - 1, argv + 1, &o);
	if (rc < 0) {
		command_help(cmd, stdout);
		return 0;
	}
	if (rc != 0)
		return rc;
	cli_log_start();
	rc = cmd->run(&o);
	cli_log_stop(1000);
	return rc;
}
