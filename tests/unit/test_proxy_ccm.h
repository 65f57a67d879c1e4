/*
 * A fake of the CCM client API (ccm/ccm.h) for the proxy's unit tests: two
 * "nodes" in one process, each a struct ccm, joined in memory. Messages
 * and RDMA operations travel through a queue drained by a loop task, in
 * order; a session can be brought down and up at will (what was in
 * transit is lost, operations fail with -ECONNRESET), and a filter may
 * drop, duplicate or capture messages. Only what the proxy uses exists.
 */
#ifndef DUET_TESTS_PROXY_CCM_H
#define DUET_TESTS_PROXY_CCM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loop;
struct ccm;

enum fake_verdict {
	FAKE_DELIVER = 0,
	FAKE_DROP,
	FAKE_DUP, /* deliver twice */
};

/* Called for every message a node sends; @p port is the sender's index. */
typedef enum fake_verdict (*fake_filter_fn)(struct ccm *from, unsigned port, const void *msg,
					    size_t len, void *arg);

struct ccm *fake_ccm_create(struct loop *loop, const char *node);
void fake_ccm_destroy(struct ccm *c);
void fake_ccm_pair(struct ccm *a, struct ccm *b);
/* Session up: ports up on both sides, then partner_ready on both. */
void fake_session_up(struct ccm *a);
/* Session down: terminating, then ports down, on both sides. */
void fake_session_down(struct ccm *a);
bool fake_session_is_up(const struct ccm *a);
/* The node restarted: a new boot generation for the next session. */
void fake_new_generation(struct ccm *c);
void fake_set_filter(struct ccm *c, fake_filter_fn fn, void *arg);
/* Messages in transit per port beyond which ccm_port_send says -EAGAIN (0: no limit). */
void fake_set_window(struct ccm *c, unsigned window);
/* Deliver @p msg to @p to's port @p port as if the partner had sent it. */
void fake_inject(struct ccm *to, unsigned port, const void *msg, size_t len);
/* Drop everything in transit and forget the loop (between tests). */
void fake_reset(void);
/* Events (messages, operations) in transit. */
unsigned fake_in_transit(void);
/* Counters. */
uint64_t fake_msgs_sent(const struct ccm *c);
uint64_t fake_ops(const struct ccm *c);

#endif
