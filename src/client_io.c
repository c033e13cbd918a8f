/* The TCP client's sending and receiving: the offline queue, sends from any
 * thread, flush, the blocking receive, events and errors, state. */
#include "client.h"

static ssock_loop *loop_of(ssock_client *cli)
{
	return ssock__client_loop(cli);
}

ssock_client_state ssock_client_state_get(ssock_client *cli)
{
	if (!cli)
		return SSOCK_STATE_DISCONNECTED;
	pthread_mutex_lock(&loop_of(cli)->mu);
	ssock_client_state st = cli->state;
	pthread_mutex_unlock(&loop_of(cli)->mu);
	return st;
}

uint64_t ssock_client_id(ssock_client *cli)
{
	if (!cli)
		return 0;
	pthread_mutex_lock(&loop_of(cli)->mu);
	uint64_t id = cli->cur_id;
	pthread_mutex_unlock(&loop_of(cli)->mu);
	return id;
}

/* mu held: queues ch while offline, bounded like a send queue (a borrowed
 * ch as in ssock__posted_push_locked()). */
static int queue_offline(ssock_client *cli, ssock__chunk *ch, bool borrowed)
{
	if (!cli->queue_offline)
		return SSOCK_ENOTCONN;
	if (!ch) /* an empty raw message: nothing to send */
		return 0;
	if (borrowed && !ssock__chunk_fits(&cli->ep, cli->off_tail, ch))
		return SSOCK__UNMERGED;
	if (cli->off_bytes + ch->len > cli->ep.cfg.send_queue_max)
		return SSOCK_ESENDQFULL;
	cli->off_bytes += ch->len;
	if (ssock__chunk_merge(&cli->ep, cli->off_tail, ch, borrowed))
		return 0;
	if (cli->off_tail)
		cli->off_tail->next = ch;
	else
		cli->off_head = ch;
	cli->off_tail = ch;
	return 0;
}

/* mu held: one try at queuing ch on the current connection or offline. */
static int queue_once(void *arg, ssock__chunk *ch, bool borrowed)
{
	ssock_client *cli = arg;
	int rc = SSOCK_ENOCONN;
	if (cli->cur_id)
		rc = ssock__posted_push_locked(&cli->ep, cli->cur_id, ch, borrowed);
	if (rc == SSOCK_ENOCONN || rc == SSOCK_ECLOSED)
		rc = queue_offline(cli, ch, borrowed);
	return rc;
}

/* A message to queue: a copy of data, or with release, data by reference
 * (see ssock_client_send_ref()). */
struct msg {
	const void *data;
	size_t len;
	ssock_release_fn release;
	void *arg;
};

static int send_from_loop(ssock_client *cli, const struct msg *m)
{
	ssock_loop *l = loop_of(cli);
	pthread_mutex_lock(&l->mu);
	uint64_t id = cli->cur_id;
	pthread_mutex_unlock(&l->mu);
	ssock_conn *c = id ? ssock__conn_by_id(&cli->ep, id) : NULL;
	if (c && c->state < SSOCK__CLOSING)
		return m->release ? ssock__conn_send_ref(c, m->data, m->len, m->release, m->arg)
				  : ssock__conn_send(c, m->data, m->len);
	if (!cli->queue_offline)
		return SSOCK_ENOTCONN;
	ssock__chunk *ch;
	int rc = ssock__frame_chunk(&cli->ep, m->data, m->len, m->release, m->arg, &ch);
	if (rc != 0)
		return rc;
	bool copied = !ch || !ch->payload; /* ch is the client's once queued */
	pthread_mutex_lock(&l->mu);
	rc = queue_offline(cli, ch, false);
	pthread_mutex_unlock(&l->mu);
	if (rc != 0)
		free(ch); /* its payload, if it refers to one, is still the caller's */
	else if (m->release && copied)
		m->release(m->data, m->arg);
	return rc;
}

static int client_send(ssock_client *cli, const struct msg *m, int timeout_ms)
{
	if (!cli || (!m->data && m->len > 0))
		return SSOCK_EINVAL;
	ssock_loop *l = loop_of(cli);
	if (ssock__on_loop(l))
		return send_from_loop(cli, m);
	return ssock__post_message(&cli->ep, m->data, m->len, timeout_ms, m->release, m->arg,
				   queue_once, cli);
}

int ssock_client_send_timeout(ssock_client *cli, const void *data, size_t len, int timeout_ms)
{
	return client_send(cli, &(struct msg){data, len, NULL, NULL}, timeout_ms);
}

int ssock_client_send_ref(ssock_client *cli, const void *data, size_t len, int timeout_ms,
			  ssock_release_fn release, void *arg)
{
	if (!release)
		return SSOCK_EINVAL;
	return client_send(cli, &(struct msg){data, len, release, arg}, timeout_ms);
}

int ssock_client_send(ssock_client *cli, const void *data, size_t len)
{
	return ssock_client_send_timeout(cli, data, len, 0);
}

struct flush_of {
	ssock_client *cli;
	uint64_t id;  /* the connection watched */
	bool started; /* id was set from last_id */
};

/* SSOCK__WAIT while the client has bytes to send. l->mu held. */
static int flushed(void *arg)
{
	struct flush_of *f = arg;
	ssock_client *cli = f->cli;
	if (!f->started) {
		f->started = true;
		f->id = cli->last_id;
	}
	for (;;) {
		ssock_conn *c = f->id ? ssock__table_get(&loop_of(cli)->conns, f->id) : NULL;
		if (c && atomic_load(&c->queued) > 0)
			return SSOCK__WAIT;
		/* Its part is done. */
		if (!c && f->id && cli->gone_id == f->id && cli->gone_unsent > 0)
			return SSOCK_ENOTCONN; /* it ended with bytes unsent */
		if (!c && cli->last_id != f->id) {
			f->id = cli->last_id; /* a new connection took over */
			continue;
		}
		if (cli->off_bytes == 0)
			return 0;
		/* Queued offline: waits for the next connection, if one comes. */
		return cli->state == SSOCK_STATE_DISCONNECTED ? SSOCK_ENOTCONN : SSOCK__WAIT;
	}
}

int ssock_client_flush(ssock_client *cli, int timeout_ms)
{
	if (!cli)
		return SSOCK_EINVAL;
	/* The latest connection is the one to watch, also once it no longer is
	 * the client's current one (closing after ssock_client_disconnect(),
	 * or closed by the peer); bytes queued offline go to the next one.
	 * (last_id is read under loop->mu, in flushed(): 0 means unset.) */
	struct flush_of f = {cli, 0, false};
	return ssock__wait_for(&cli->ep, timeout_ms, flushed, &f);
}

int ssock_client_next_event(ssock_client *cli, ssock_event *ev, int timeout_ms)
{
	if (!cli)
		return SSOCK_EINVAL;
	return ssock__inbox_next(&cli->ep.base, ev, timeout_ms);
}

int ssock_client_recv(ssock_client *cli, void **data, size_t *len, int timeout_ms)
{
	if (!cli || !data || !len)
		return SSOCK_EINVAL;
	*data = NULL;
	*len = 0;
	ssock_event ev;
	int rc = ssock__inbox_recv(&cli->ep.base, &ev, timeout_ms);
	if (rc != 0)
		return rc;
	if (ev.type == SSOCK_EVENT_MESSAGE) {
		*data = ev.data;
		*len = ev.len;
		return 0;
	}
	rc = ev.type == SSOCK_EVENT_DISCONNECT ? SSOCK_ENOTCONN : ev.code;
	ssock_event_release(&ev);
	return rc;
}

int ssock_client_event_fd(ssock_client *cli)
{
	if (!cli)
		return SSOCK_EINVAL;
	return ssock__inbox_fd(&cli->ep.base);
}

int ssock_client_errors(ssock_client *cli, ssock_error_info *out, int max, int clear)
{
	if (!cli || max < 0)
		return SSOCK_EINVAL;
	return ssock__errlog_read(&cli->ep.base.errlog, out, max, clear);
}
