/*
 * A one-line progress bar on stderr for file transfers:
 *   name  [#########.........]  45%  460.0 MiB / 1.0 GiB  812.3 MiB/s  0:01 left
 * Drawn only when stderr is a terminal (so logs and pipes stay clean), and
 * at most ten times a second (so drawing never costs throughput).
 */
#include "cli.h"

#include <string.h>
#include <unistd.h>

#define BAR_WIDTH     24
#define DRAW_EVERY_MS 100

static void draw(struct progress *p, int64_t now)
{
	double secs = (double)(now - p->start_ms) / 1000.0;
	double rate = secs > 0 ? (double)p->done / secs : 0;
	double frac = p->total ? (double)p->done / (double)p->total : 1.0;
	if (frac > 1)
		frac = 1;
	char bar[BAR_WIDTH + 1];
	int filled = (int)(frac * BAR_WIDTH);
	memset(bar, '#', (size_t)filled);
	memset(bar + filled, '.', (size_t)(BAR_WIDTH - filled));
	bar[BAR_WIDTH] = '\0';
	char done[32], total[32], speed[32], left[32] = "--:--";
	cli_fmt_bytes(done, sizeof done, (double)p->done);
	cli_fmt_bytes(total, sizeof total, (double)p->total);
	cli_fmt_bytes(speed, sizeof speed, rate);
	if (rate > 0 && p->total >= p->done) {
		long s = (long)((double)(p->total - p->done) / rate + 0.5);
		snprintf(left, sizeof left, "%ld:%02ld", s / 60, s % 60);
	}
	/* \033[K clears what a longer previous line left behind. */
	fprintf(stderr, "\r%-20.20s [%s] %3d%%  %s / %s  %s/s  %s left\033[K", p->label, bar,
		(int)(frac * 100), done, total, speed, left);
	fflush(stderr);
	p->drawn_ms = now;
}

void progress_start(struct progress *p, const char *label, uint64_t total)
{
	memset(p, 0, sizeof *p);
	p->on = isatty(STDERR_FILENO);
	snprintf(p->label, sizeof p->label, "%s", label);
	p->total = total;
	p->start_ms = cli_now_ms();
	if (p->on)
		draw(p, p->start_ms);
}

void progress_add(struct progress *p, uint64_t bytes)
{
	p->done += bytes;
	if (!p->on)
		return;
	int64_t now = cli_now_ms();
	if (now - p->drawn_ms >= DRAW_EVERY_MS)
		draw(p, now);
}

void progress_end(struct progress *p, bool ok)
{
	if (!p->on)
		return;
	if (ok) {
		draw(p, cli_now_ms());
		fputc('\n', stderr);
	} else {
		fputs("\r\033[K", stderr);
	}
	fflush(stderr);
	p->on = false;
}
