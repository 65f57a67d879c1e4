/* Memory regions of a link: the application's (fab_mr_reg, under keys it
 * chooses) and the link's internal ones (receive and send buffers, only
 * on FI_MR_LOCAL providers).
 *
 * Rule: regions belong to the domain, not to the endpoint, so their keys
 * stay valid across endpoint resets; internal keys come from the reserved
 * top FAB_RESERVED_KEYS of the key space and never collide with the
 * application's. A region outlives its link: fab_link_close deregisters it
 * and fab_mr_close then only frees it.
 */
#define LOG_MODULE "fabric"
#include "fabric/fabric_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include <rdma/fi_errno.h>

#include "common/log.h"

int fab_mr_reg_internal(struct fab_link *link, void *buf, size_t len, struct fid_mr **mr)
{
	uint64_t access = FI_SEND | FI_RECV | FI_READ | FI_WRITE;
	int rc;

	*mr = NULL;
	if (!link->dom.mr_local)
		return 0;
	rc = fi_mr_reg(link->dom.domain, buf, len, access, 0, link->reg.next_internal_key--, 0, mr,
		       NULL);
	if (rc) {
		LOG_ERROR("%s: registering %zu internal bytes: %s", link->name, len,
			  fi_strerror(-rc));
		return fab_errno(rc);
	}
	return 0;
}

/* FI_MR_LOCAL: a local buffer must lie in a registered region, whose
 * descriptor goes with the operation. The newest region matching wins. */
int fab_mr_find_local(struct fab_link *link, const void *local, size_t len, void **desc)
{
	const unsigned char *p = local;
	struct list *pos;

	list_for_each(pos, &link->reg.mrs)
	{
		struct fab_mr *m = list_entry(pos, struct fab_mr, node);
		if (p >= m->buf && len <= m->len && (size_t)(p - m->buf) <= m->len - len) {
			*desc = m->desc;
			return 0;
		}
	}
	LOG_ERROR("%s: provider %s needs local buffers registered (FI_MR_LOCAL): "
		  "%p+%zu is in no region",
		  link->name, link->dom.prov, local, len);
	return -EINVAL;
}

void fab_mr_detach_all(struct fab_link *link)
{
	struct list *pos, *tmp;

	list_for_each_safe(pos, tmp, &link->reg.mrs)
	{
		struct fab_mr *m = list_entry(pos, struct fab_mr, node);
		fab_close_fid(link->name, m->mr ? &m->mr->fid : NULL, "region");
		m->mr = NULL;
		m->link = NULL;
		list_del(&m->node);
	}
}

int fab_mr_reg(struct fab_link *link, void *buf, size_t len, uint64_t key, unsigned access,
	       struct fab_mr **out)
{
	uint64_t fa = 0;
	struct fab_tstart t0;
	struct fab_mr *m;
	int rc;

	if (!link || !buf || !len || !out || (access & ~(FAB_REMOTE_READ | FAB_REMOTE_WRITE)))
		return -EINVAL;
	if (link->closing)
		return -ESHUTDOWN;
	if (key > link->dom.key_max - FAB_RESERVED_KEYS) {
		LOG_ERROR("%s: key %#" PRIx64 " too large for provider %s (max %#" PRIx64 ")",
			  link->name, key, link->dom.prov, link->dom.key_max - FAB_RESERVED_KEYS);
		return -EINVAL;
	}
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	list_init(&m->node);
	m->buf = buf;
	m->len = len;
	if (access & FAB_REMOTE_READ)
		fa |= FI_REMOTE_READ;
	if (access & FAB_REMOTE_WRITE)
		fa |= FI_REMOTE_WRITE;
	if (link->dom.mr_local)
		fa |= FI_READ | FI_WRITE | FI_SEND | FI_RECV;
	if (fa) {
		fab_tstart(&t0);
		rc = fi_mr_reg(link->dom.domain, buf, len, fa, 0, key, 0, &m->mr, NULL);
		fab_call_timed(link, "fi_mr_reg", &t0);
		if (rc) {
			if (rc == -FI_ENOKEY) {
				LOG_ERROR("%s: key %#" PRIx64 " is already registered", link->name,
					  key);
				rc = -EEXIST;
			} else {
				LOG_ERROR("%s: registering %zu bytes under key %#" PRIx64 ": %s",
					  link->name, len, key, fi_strerror(-rc));
				rc = fab_errno(rc);
			}
			free(m);
			return rc;
		}
		m->desc = fi_mr_desc(m->mr);
	}
	m->link = link;
	list_add_head(&link->reg.mrs, &m->node);
	*out = m;
	return 0;
}

void fab_mr_close(struct fab_mr *m)
{
	if (!m)
		return;
	if (m->link) {
		list_del(&m->node);
		if (m->mr) {
			int rc = fi_close(&m->mr->fid);
			if (rc)
				LOG_WARN("%s: closing a region: %s", m->link->name,
					 fi_strerror(-rc));
		}
	}
	free(m);
}
