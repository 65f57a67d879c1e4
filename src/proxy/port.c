/* The one way out to the partner, shared by the forwarding and serving
 * sides, and the only part of the proxy both of them call: a port's
 * outgoing batch and the log of refused partner messages. A leaf: it calls
 * only the wire codec and the CCM, never back into forward or serve.
 *
 * Batching: every message of one loop turn to a port becomes a record of
 * one PX_BATCH message, sent by a zero-delay timer at the end of the turn
 * (one CCM message, one MAC, instead of many); under load the timer waits a
 * little longer for more (PX_COALESCE_LOAD). A record alone goes bare. */
#define LOG_MODULE "proxy"
#include <errno.h>

#include "common/log.h"
#include "common/util.h"
#include "proxy/proxy_int.h"

/* A full channel keeps the batch and blocks the port until send_ready. */
int proxy_port_flush(struct pxport *p)
{
	int rc;

	if (p->batch_n == 0)
		return 0;
	if (!p->up) {
		rc = -ENOTCONN;
	} else if (p->batch_n == 1) {
		rc =
		    ccm_port_send(p->cp, p->batch + sizeof(struct px_batch) + sizeof(struct px_rec),
				  p->first_len);
	} else {
		proxy_wire_batch_finish(p->batch, p->batch_n);
		rc = ccm_port_send(p->cp, p->batch, p->batch_len);
	}
	if (rc == -EAGAIN) {
		p->blocked = true;
		return rc;
	}
	/* Sent, or lost with the session (the records are in doubt, as
	 * messages in transit would be). */
	proxy_port_drop_batch(p);
	return rc;
}

void proxy_port_flush_all(struct loop_timer *t)
{
	struct proxy *px = t->arg;

	for (unsigned i = 0; i < px->n_ports; i++)
		if (px->ports[i].batch_n && !px->ports[i].blocked)
			proxy_port_flush(&px->ports[i]);
}

/* How long a new batch waits for company: see PX_COALESCE_LOAD. Only the
 * forwarding side's load of small requests counts (a big one's transfer
 * dwarfs a message's fixed cost; waiting would only delay it): a server's replies follow the
 * requests' batches (executed together, they are answered together); the replies of a node that
 * also forwards under load wait with its requests. */
static uint64_t flush_delay(const struct proxy *px)
{
	if (px->small_outstanding < PX_COALESCE_LOAD)
		return 0;
	return MIN(px->rtt_ns, PX_COALESCE_MAX_NS);
}

int proxy_port_send(struct pxport *p, const void *msg, size_t len)
{
	return proxy_port_send2(p, msg, len, NULL, 0);
}

/* The data (a READ reply's, an inline WRITE's) goes from the caller's
 * buffer straight into the batch: no copy into a message first. */
int proxy_port_send2(struct pxport *p, const void *msg, size_t len, const void *data, size_t dlen)
{
	if (!p->up || p->blocked)
		return -EAGAIN;
	if (p->batch_len + PX_REC_SIZE(len + dlen) > PX_MSG_MAX && proxy_port_flush(p) == -EAGAIN)
		return -EAGAIN;
	if (p->batch_n == 0)
		p->first_len = len + dlen;
	p->batch_len = proxy_wire_batch_add2(p->batch, p->batch_len, msg, len, data, dlen);
	p->batch_n++;
	if (!loop_timer_armed(&p->px->flush_timer))
		loop_timer_arm(p->px->loop, &p->px->flush_timer, flush_delay(p->px));
	return 0;
}

void proxy_port_drop_batch(struct pxport *p)
{
	p->batch_n = 0;
	p->batch_len = sizeof(struct px_batch);
}

/* One log line per second at most for partner messages refused: a broken
 * or hostile partner must not flood the log. */
void proxy_log_bad(struct proxy *px, bool from_server, const char *what, const char *why)
{
	uint64_t now = loop_now_ns();

	if (from_server)
		px->st.bad_replies++;
	else
		px->st.bad_requests++;
	if (px->bad_logged_ns && now - px->bad_logged_ns < 1000 * NS_PER_MS)
		return;
	px->bad_logged_ns = now;
	LOG_WARN("partner %s sent a bad %s (%s): refused", px->partner[0] ? px->partner : "?", what,
		 why);
}
