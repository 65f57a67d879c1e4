/* Port memory (a leaf: it calls nothing of the proxy): the maps and their
 * allocator. Port memory is cut into PX_UNIT units handed out first-fit
 * from a bitmap: a few hundred units per port, so a scan that skips full
 * words is cheap, and a request gets one contiguous range (one RDMA op).
 * The maps are reference counted: an NBD reply sent from a forwarder slot
 * may outlive the proxy (proxy_fw_held_orphan()). */
#define LOG_MODULE "proxy"
#include "proxy/proxy_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/log.h"

int proxy_pmem_maps_create(unsigned n, size_t size, struct pmaps **out)
{
	struct pmaps *m = calloc(1, sizeof(*m) + n * sizeof(m->map[0]));

	if (!m)
		return -ENOMEM;
	m->refs = 1;
	m->size = size;
	for (; m->n < n; m->n++) {
		/* Pages come on first touch: the memory costs what is in flight. */
		void *p =
		    mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			int rc = -errno;
			LOG_ERROR("cannot map %zu bytes of port memory: %s", size, strerror(-rc));
			proxy_pmem_maps_put(m);
			return rc;
		}
		m->map[m->n] = p;
	}
	*out = m;
	return 0;
}

void proxy_pmem_maps_put(struct pmaps *m)
{
	if (!m || --m->refs > 0)
		return;
	for (unsigned i = 0; i < m->n; i++)
		munmap(m->map[i], m->size);
	free(m);
}

unsigned proxy_pmem_units(size_t bytes)
{
	return (unsigned)((bytes + PX_UNIT - 1) >> PX_UNIT_SHIFT);
}

int proxy_pmem_init(struct pmem *m, size_t bytes)
{
	unsigned words;

	memset(m, 0, sizeof(*m));
	m->units = (unsigned)(bytes >> PX_UNIT_SHIFT);
	words = (m->units + 63) / 64;
	m->map = calloc(words ? words : 1, sizeof(uint64_t));
	if (!m->map)
		return -ENOMEM;
	/* Bits past the last unit are permanently in use. */
	if (m->units % 64)
		m->map[words - 1] = ~0ull << (m->units % 64);
	if (m->units == 0)
		m->map[0] = ~0ull;
	return 0;
}

void proxy_pmem_fini(struct pmem *m)
{
	free(m->map);
	m->map = NULL;
	m->units = 0;
}

static bool bit(const struct pmem *m, unsigned i)
{
	return (m->map[i / 64] >> (i % 64)) & 1;
}

static void set_range(struct pmem *m, unsigned first, unsigned n, bool on)
{
	for (unsigned i = first; i < first + n; i++) {
		uint64_t b = 1ull << (i % 64);
		if (on)
			m->map[i / 64] |= b;
		else
			m->map[i / 64] &= ~b;
	}
}

int64_t proxy_pmem_alloc(struct pmem *m, size_t bytes)
{
	unsigned need = proxy_pmem_units(bytes);
	unsigned i = 0;

	if (need == 0 || need > m->units - m->used)
		return -1;
	while (i + need <= m->units) {
		unsigned run = 0;
		/* Skip whole words in use. */
		if (i % 64 == 0 && m->map[i / 64] == ~0ull) {
			i += 64;
			continue;
		}
		if (bit(m, i)) {
			i++;
			continue;
		}
		while (run < need && !bit(m, i + run))
			run++;
		if (run == need) {
			set_range(m, i, need, true);
			m->used += need;
			return (int64_t)i << PX_UNIT_SHIFT;
		}
		i += run + 1;
	}
	return -1;
}

void proxy_pmem_free(struct pmem *m, int64_t off, size_t bytes)
{
	unsigned first = (unsigned)(off >> PX_UNIT_SHIFT);
	unsigned n = proxy_pmem_units(bytes);

	if (off < 0 || n == 0 || first + n > m->units)
		return;
	set_range(m, first, n, false);
	m->used -= n;
}
