/* mac-bench: the CCM's message MAC against the one it replaced, per message
 * size: ccm_msg_seal() itself (GMAC, AES-256-GCM over no plaintext with a
 * fresh IV per message, CCM protocol 2) on a session key derived by
 * ccm_session_keys(), against HMAC-SHA256 re-initialised per message on one
 * kept context, as protocol 1's src/ccm/crypto.c computed it. Prints one
 * Markdown table with microseconds per message and the ratio.
 *
 *   mac-bench [--iters N]    (default 20000 for the largest size, more for
 *                             the smaller ones)
 */
#include "ccm/ccm_int.h"

#include <getopt.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int hmac_one(EVP_MAC_CTX *h, const uint8_t *buf, size_t n, uint8_t out[32])
{
	size_t ol = 0;

	return EVP_MAC_init(h, NULL, 0, NULL) && EVP_MAC_update(h, buf, n) &&
	       EVP_MAC_final(h, out, &ol, 32);
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {{"iters", required_argument, NULL, 'i'}, {0}};
	/* A header alone (an ack), a 4 KiB read reply, a full 16 KiB message. */
	static const size_t sizes[] = {64, 64 + 4096, 64 + 16384};
	static uint8_t buf[64 + 16384];
	static const uint8_t zero[CCM_MAC_LEN];
	struct wire_msg *m = (struct wire_msg *)(void *)buf;
	uint8_t key[32], out[32];
	long iters = 20000;
	EVP_MAC_CTX *h = NULL;
	EVP_MAC *mac = NULL;
	struct ccm *ccm;
	int c, rc = 1;

	_Static_assert(sizeof(struct wire_msg) == 64, "sizes[] start with a header");

	while ((c = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
		if (c != 'i' || (iters = strtol(optarg, NULL, 10)) <= 0) {
			fprintf(stderr, "usage: mac-bench [--iters N]\n");
			return 2;
		}
	}
	for (size_t i = 0; i < sizeof(key); i++)
		key[i] = (uint8_t)(i * 7 + 1);
	memset(buf, 0x5a, sizeof(buf));
	OSSL_PARAM params[] = {
	    OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
	    OSSL_PARAM_construct_end(),
	};
	/* A session as the handshake leaves it: the secret and both ids. */
	ccm = calloc(1, sizeof(*ccm));
	if (!ccm)
		return 1;
	snprintf(ccm->opts.node, sizeof(ccm->opts.node), "a");
	snprintf(ccm->opts.cluster_id, sizeof(ccm->opts.cluster_id), "duet");
	snprintf(ccm->partner.node, sizeof(ccm->partner.node), "b");
	memset(ccm->secret, 0x42, 32);
	ccm->secret_len = 32;
	mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	h = mac ? EVP_MAC_CTX_new(mac) : NULL;
	if (!h || !EVP_MAC_init(h, key, sizeof(key), params) || ccm_session_keys(ccm) < 0) {
		fprintf(stderr, "mac-bench: OpenSSL set-up failed\n");
		goto out;
	}
	printf("| message bytes | HMAC-SHA256 us (protocol 1) | GMAC us (protocol 2) | "
	       "HMAC / GMAC |\n|---:|---:|---:|---:|\n");
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		long n = iters * (long)(sizes[2] / sizes[s] > 8 ? 8 : sizes[2] / sizes[s]);
		double t0 = now_s(), t1, t2;
		for (long i = 0; i < n; i++)
			if (!hmac_one(h, buf, sizes[s], out))
				goto fail;
		t1 = now_s();
		for (long i = 0; i < n; i++)
			ccm_msg_seal(ccm, m, buf + sizeof(*m), sizes[s] - sizeof(*m));
		t2 = now_s();
		if (ccm_ct_equal(m->mac, zero, sizeof(zero)))
			goto fail; /* ccm_msg_seal's mark of an OpenSSL failure */
		double hu = (t1 - t0) / (double)n * 1e6, gu = (t2 - t1) / (double)n * 1e6;
		printf("| %zu | %.2f | %.2f | %.1f |\n", sizes[s], hu, gu, hu / gu);
	}
	rc = 0;
	goto out;
fail:
	fprintf(stderr, "mac-bench: a MAC failed\n");
out:
	ccm_mac_free(ccm);
	ccm_wipe_keys(ccm);
	free(ccm);
	EVP_MAC_CTX_free(h);
	EVP_MAC_free(mac);
	return rc;
}
