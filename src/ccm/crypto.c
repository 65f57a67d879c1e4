/* Secrets, proofs and message authentication of the CCM (OpenSSL libcrypto).
 *
 * Proofs of the handshake are HMAC-SHA256(secret, label || cluster id ||
 * writer identity || target identity) over fresh nonces of both sides;
 * the session key is derived from the secret and both identities; every
 * message carries a truncated HMAC-SHA256 under the session key.
 *
 * Layering: the bottom of the CCM; calls no other file of it.
 */
#define LOG_MODULE "ccm"
#include "ccm/ccm_int.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A key nobody can guess, distinct from the two predefined ones. */
uint64_t ccm_random_key(void)
{
	uint64_t k = 0;

	while (k == 0 || k == CCM_BOOT_KEY || k == CCM_SLOT_KEY) {
		if (util_random_bytes(&k, sizeof(k)) < 0)
			k = (uint64_t)loop_now_ns() *
			    0x9e3779b97f4a7c15ull; /* never reached in practice */
	}
	return k;
}

bool ccm_ct_equal(const void *a, const void *b, size_t len)
{
	return CRYPTO_memcmp(a, b, len) == 0;
}

/* The file's bytes are the key; trailing whitespace is dropped so that
 * "echo secret > f" and "printf secret > f" agree. */
int ccm_load_secret(struct ccm *ccm)
{
	uint8_t buf[sizeof(ccm->secret) + 1];
	struct stat st;
	size_t n = 0;
	int fd, err;

	fd = open(ccm->opts.secret_file, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		LOG_ERROR("[ic] secret_file %s: %s", ccm->opts.secret_file, strerror(errno));
		return err;
	}
	if (fstat(fd, &st) == 0 && (st.st_mode & 077))
		LOG_WARN("[ic] secret_file %s is readable by others (mode %03o)",
			 ccm->opts.secret_file, (unsigned)(st.st_mode & 0777));
	while (n < sizeof(buf)) {
		ssize_t r = read(fd, buf + n, sizeof(buf) - n);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			err = -errno;
			LOG_ERROR("[ic] secret_file %s: %s", ccm->opts.secret_file,
				  strerror(errno));
			close(fd);
			return err;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	if (n > sizeof(ccm->secret)) {
		LOG_ERROR("[ic] secret_file %s: longer than %zu bytes", ccm->opts.secret_file,
			  sizeof(ccm->secret));
		return -EINVAL;
	}
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' ||
			 buf[n - 1] == '\t'))
		n--;
	if (n < 16) {
		LOG_ERROR("[ic] secret_file %s: want at least 16 bytes of secret, found %zu",
			  ccm->opts.secret_file, n);
		OPENSSL_cleanse(buf, sizeof(buf));
		return -EINVAL;
	}
	memcpy(ccm->secret, buf, n);
	ccm->secret_len = n;
	OPENSSL_cleanse(buf, sizeof(buf));
	return 0;
}

struct ident {
	char node[CCM_NODE_MAX];
	uint64_t gen;
	uint8_t nonce[CCM_NONCE_LEN];
};

static size_t put_ident(uint8_t *p, const char *node, uint64_t gen, const uint8_t *nonce)
{
	memset(p, 0, CCM_NODE_MAX);
	ccm_put_str((char *)p, node, CCM_NODE_MAX);
	put_le64(p + CCM_NODE_MAX, gen);
	memcpy(p + CCM_NODE_MAX + 8, nonce, CCM_NONCE_LEN);
	return CCM_NODE_MAX + 8 + CCM_NONCE_LEN;
}

/* Everything a proof binds: which step, which cluster, who wrote it for whom
 * in which boot and which attempt. */
void ccm_proof(const struct ccm *ccm, const char *label, const char *w_node, uint64_t w_gen,
	       const uint8_t *w_nonce, const char *t_node, uint64_t t_gen, const uint8_t *t_nonce,
	       uint8_t out[CCM_PROOF_LEN])
{
	uint8_t in[32 + CCM_CLUSTER_MAX + 2 * (CCM_NODE_MAX + 8 + CCM_NONCE_LEN)];
	unsigned int outlen = CCM_PROOF_LEN;
	size_t n = 0;

	memset(in, 0, sizeof(in));
	ccm_put_str((char *)in, label, 32);
	n += 32;
	ccm_put_str((char *)in + n, ccm->opts.cluster_id, CCM_CLUSTER_MAX);
	n += CCM_CLUSTER_MAX;
	n += put_ident(in + n, w_node, w_gen, w_nonce);
	n += put_ident(in + n, t_node, t_gen, t_nonce);
	if (!HMAC(EVP_sha256(), ccm->secret, (int)ccm->secret_len, in, n, out, &outlen))
		memset(out, 0, CCM_PROOF_LEN); /* fails every comparison */
}

/* Session key and id from the secret and both identities, in node id order
 * so that both sides compute the same. */
int ccm_session_keys(struct ccm *ccm)
{
	const char *label = "duet-ccm-1 session";
	uint8_t in[32 + CCM_CLUSTER_MAX + 2 * (CCM_NODE_MAX + 8 + CCM_NONCE_LEN)];
	uint8_t idmac[32];
	unsigned int outlen = 32;
	bool we_first = strcmp(ccm->opts.node, ccm->partner.node) < 0;
	size_t n = 0;
	uint64_t id;

	memset(in, 0, sizeof(in));
	ccm_put_str((char *)in, label, 32);
	n += 32;
	ccm_put_str((char *)in + n, ccm->opts.cluster_id, CCM_CLUSTER_MAX);
	n += CCM_CLUSTER_MAX;
	if (we_first) {
		n += put_ident(in + n, ccm->opts.node, ccm->gen, ccm->nonce);
		n += put_ident(in + n, ccm->partner.node, ccm->partner.gen, ccm->partner.nonce);
	} else {
		n += put_ident(in + n, ccm->partner.node, ccm->partner.gen, ccm->partner.nonce);
		n += put_ident(in + n, ccm->opts.node, ccm->gen, ccm->nonce);
	}
	if (!HMAC(EVP_sha256(), ccm->secret, (int)ccm->secret_len, in, n, ccm->skey, &outlen))
		goto fail;
	outlen = 32;
	if (!HMAC(EVP_sha256(), ccm->skey, 32, (const uint8_t *)"session-id", 10, idmac, &outlen))
		goto fail;
	memcpy(&id, idmac, 8);
	ccm->session_id = get_le64(&id) | 1;

	ccm_mac_free(ccm);
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	if (!mac)
		goto fail;
	EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(mac);
	EVP_MAC_free(mac);
	if (!ctx)
		goto fail;
	OSSL_PARAM params[] = {
	    OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
	    OSSL_PARAM_construct_end(),
	};
	if (!EVP_MAC_init(ctx, ccm->skey, sizeof(ccm->skey), params)) {
		EVP_MAC_CTX_free(ctx);
		goto fail;
	}
	ccm->mac = (struct evp_mac_ctx_st *)ctx;
	return 0;
fail:
	LOG_ERROR("cannot derive the session key (OpenSSL HMAC failed)");
	return -EIO;
}

void ccm_mac_free(struct ccm *ccm)
{
	if (ccm->mac) {
		EVP_MAC_CTX_free((EVP_MAC_CTX *)ccm->mac);
		ccm->mac = NULL;
	}
}

void ccm_msg_mac(struct ccm *ccm, const struct wire_msg *h, const void *payload, size_t len,
		 uint8_t out[CCM_MAC_LEN])
{
	EVP_MAC_CTX *ctx = (EVP_MAC_CTX *)ccm->mac;
	struct wire_msg hc = *h;
	uint8_t full[32];
	size_t outl = 0;

	memset(hc.mac, 0, sizeof(hc.mac));
	if (!ctx || !EVP_MAC_init(ctx, NULL, 0, NULL) ||
	    !EVP_MAC_update(ctx, (const uint8_t *)&hc, sizeof(hc)) ||
	    (len && !EVP_MAC_update(ctx, payload, len)) ||
	    !EVP_MAC_final(ctx, full, &outl, sizeof(full))) {
		/* A MAC of zeros with an unusable context is never accepted:
		 * the receiver's check uses the same failing path. */
		memset(out, 0, CCM_MAC_LEN);
		return;
	}
	memcpy(out, full, CCM_MAC_LEN);
}

bool ccm_msg_mac_ok(struct ccm *ccm, const struct wire_msg *h, const void *payload, size_t len)
{
	uint8_t m[CCM_MAC_LEN];
	static const uint8_t zero[CCM_MAC_LEN];

	if (!ccm->mac)
		return false;
	ccm_msg_mac(ccm, h, payload, len, m);
	if (ccm_ct_equal(m, zero, CCM_MAC_LEN))
		return false;
	return ccm_ct_equal(m, h->mac, CCM_MAC_LEN);
}
