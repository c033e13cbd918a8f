/* What handles share (endpoint.h): setting up and tearing down, settings
 * and their defaults, and reporting background errors. */
#include "codec.h"
#include "internal.h"
#include "transport.h"

#include <stdlib.h>
#include <string.h>

static void cfg_defaults(ssock__cfg *cfg)
{
	if (cfg->max_message == 0)
		cfg->max_message = SSOCK__DEFAULT_MAX_MESSAGE;
	if (cfg->read_size == 0)
		cfg->read_size = SSOCK__DEFAULT_READ_SIZE;
	if (cfg->send_queue_max == 0) {
		cfg->send_queue_max = SSOCK__DEFAULT_SENDQ;
		if ((size_t)cfg->max_message + 8 > cfg->send_queue_max)
			cfg->send_queue_max = (size_t)cfg->max_message + 8;
	}
	if (cfg->handshake_timeout_ms == 0)
		cfg->handshake_timeout_ms = SSOCK__DEFAULT_HANDSHAKE_TIMEOUT_MS;
}

static int cfg_check(const ssock__cfg *cfg)
{
	if (!ssock__codec_of(cfg->framing))
		return SSOCK_EINVAL;
	if (cfg->read_size < 64 || cfg->read_size > (64u << 20))
		return SSOCK_EINVAL;
	if (cfg->idle_timeout_ms < 0 || cfg->read_timeout_ms < 0 || cfg->keepalive_s < 0 ||
	    cfg->handshake_timeout_ms < 0)
		return SSOCK_EINVAL;
	/* Linux takes at most 32767 s for TCP_KEEPIDLE: a larger value would
	 * make setting up every connection fail, so refuse it here. */
	if (cfg->keepalive_s > SSOCK_KEEPALIVE_MAX)
		return SSOCK_EINVAL;
	return 0;
}

int ssock__ep_init(ssock__ep *ep, ssock_loop *given, bool inbox_mode, size_t inbox_max,
		   size_t inbox_bytes, int errlog_max, ssock_error_cb on_error, void *user)
{
	memset(ep, 0, sizeof *ep);
	if (errlog_max < 0)
		return SSOCK_EINVAL;
	ep->inbox_mode = inbox_mode;
	ep->on_error = on_error;
	ep->user = user;
	ssock__inbox_init(&ep->inbox, inbox_max ? inbox_max : SSOCK__DEFAULT_INBOX_MAX,
			  inbox_bytes ? inbox_bytes : SSOCK__DEFAULT_INBOX_BYTES);
	int rc = ssock__errlog_init(&ep->errlog, errlog_max ? errlog_max : SSOCK__DEFAULT_ERRLOG);
	if (rc == 0)
		rc = ssock__loop_acquire(&ep->loop, given, &ep->owns_loop);
	if (rc != 0) {
		ssock__errlog_destroy(&ep->errlog);
		ssock__inbox_destroy(&ep->inbox);
		ep->loop = NULL;
	}
	return rc;
}

int ssock__stream_ep_init(ssock__stream_ep *ep, ssock_loop *given, const ssock__cfg *cfg,
			  size_t inbox_max, size_t inbox_bytes, int errlog_max,
			  ssock_error_cb on_error, void *user, bool is_client)
{
	memset(ep, 0, sizeof *ep);
	ep->cfg = *cfg;
	cfg_defaults(&ep->cfg);
	int rc = cfg_check(&ep->cfg);
	if (rc != 0)
		return rc;
	ep->is_client = is_client;
	ep->send_budget = SIZE_MAX; /* a server sets its own */
	ep->transport = ssock__transport_default();
	ep->codec = ssock__codec_of(ep->cfg.framing);
	rc = ssock__ep_init(&ep->base, given, cfg->on_message == NULL, inbox_max, inbox_bytes,
			    errlog_max, on_error, user);
	if (rc != 0)
		return rc;
	/* The shared buffer must hold a whole read of any user. */
	ssock_loop *l = ep->base.loop;
	bool on_loop = ssock__on_loop(l);
	if (!on_loop)
		pthread_mutex_lock(&l->drive_mu);
	rc = ssock__loop_rbuf(l, ep->cfg.read_size);
	if (!on_loop)
		pthread_mutex_unlock(&l->drive_mu);
	if (rc != 0)
		ssock__ep_destroy(&ep->base);
	return rc;
}

void ssock__ep_destroy(ssock__ep *ep)
{
	if (ep->loop)
		ssock__loop_release(ep->loop, ep->owns_loop);
	ep->loop = NULL;
	ssock__inbox_destroy(&ep->inbox);
	ssock__errlog_destroy(&ep->errlog);
}

void ssock__ep_error(ssock__ep *ep, int code, const char *op, uint64_t conn, const ssock_addr *peer)
{
	ssock_error_info e = {.code = code, .op = op, .conn = conn, .time_ms = ssock__wall_ms()};
	if (peer)
		e.peer = *peer;
	ssock__errlog_add(&ep->errlog, &e);
	if (ep->on_error) {
		ep->on_error(&e, ep->user);
	} else if (ep->inbox_mode) {
		ssock_event ev = {.type = SSOCK_EVENT_ERROR, .conn = conn, .code = code, .op = op};
		if (peer)
			ev.peer = *peer;
		ssock__inbox_push(&ep->inbox, &ev, false);
	}
}

void ssock__stream_ep_shutdown(ssock__stream_ep *ep, void (*fn)(ssock__cmd *cmd), void *arg)
{
	ssock_loop *l = ep->base.loop;
	pthread_mutex_lock(&l->mu);
	ep->freeing = true;
	pthread_cond_broadcast(&l->cv);
	while (ep->waiters > 0)
		pthread_cond_wait(&l->cv, &l->mu);
	pthread_mutex_unlock(&l->mu);
	ssock__ep_shutdown(&ep->base, fn, arg);
}

struct shutdown {
	void (*fn)(ssock__cmd *cmd);
	void *arg;
	ssock_loop *loop;
	uint64_t pass;
};

static void shutdown_cmd(ssock__cmd *cmd)
{
	struct shutdown *s = cmd->arg;
	s->pass = s->loop->pass_begun;
	cmd->arg = s->arg;
	s->fn(cmd);
}

void ssock__ep_shutdown(ssock__ep *ep, void (*fn)(ssock__cmd *cmd), void *arg)
{
	/* No inbox command can be posted after this, so fn runs after every
	 * command that names this endpoint. */
	ssock__inbox_close(&ep->inbox);
	if (ssock__on_loop(ep->loop)) {
		/* Only a *_new() that failed in a callback of its own loop gets
		 * here (freeing is refused on a loop thread), and it had put
		 * nothing of the endpoint in front of the poller: no event of
		 * this pass can name it. */
		ssock__call(ep->loop, fn, arg, 0);
		return;
	}
	struct shutdown s = {fn, arg, ep->loop, 0};
	ssock__call(ep->loop, shutdown_cmd, &s, 0);
	if (ep->owns_loop) {
		ssock_loop_stop(ep->loop);
		return;
	}
	/* A shared loop may still hold readiness events for the endpoint's
	 * sockets, fetched in the pass that ran fn, and callbacks of that pass
	 * may still be running (fn may have run from inside one, see
	 * ssock__call()); once that pass has ended, nothing can reach the
	 * endpoint. */
	ssock__wait_pass_end(ep->loop, s.pass);
}
