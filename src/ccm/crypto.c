/* Secrets, proofs and message authentication of the CCM (OpenSSL libcrypto).
 *
 * Proofs of the handshake are HMAC-SHA256(secret, label || cluster id ||
 * writer identity || target identity) over fresh nonces of both sides;
 * the session key is derived from the secret and both identities; every
 * message carries a GMAC (AES-256-GCM over no plaintext) under the session
 * key: AES-NI and carry-less multiplication make it about six times cheaper
 * than HMAC-SHA256 per byte here (0.45 against 2.6 us per 4 KiB), and the
 * CCM MACs every byte of the proxy's data. GMAC must never see a nonce
 * twice under one key: the IV is the sender's direction (which node id
 * sorts first) and a per-session counter of its seals.
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
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
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

/* Read a secret file whole, or refuse it: a regular file owned by this
 * process's user, with no permission for group or others, not longer than
 * @p cap bytes, and unchanged from before the read to after it (an update
 * written in place while we read is retried, then refused). @p buf is
 * wiped on every error; the caller wipes it after use. */
static int secret_read(const char *path, uint8_t *buf, size_t cap, size_t *n_out,
		       uint64_t *changed_ns, char *why, size_t len)
{
	struct stat a, b;
	int fd, rc = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		rc = -errno;
		snprintf(why, len, "%s", strerror(errno));
		return rc;
	}
	for (unsigned attempt = 0;; attempt++) {
		size_t n = 0;

		if (fstat(fd, &a) < 0) {
			rc = -errno;
			snprintf(why, len, "%s", strerror(errno));
			break;
		}
		if (!S_ISREG(a.st_mode)) {
			snprintf(why, len, "not a regular file");
			rc = -EINVAL;
			break;
		}
		if (a.st_uid != geteuid()) {
			snprintf(why, len, "owned by uid %u, not by this daemon's user (uid %u)",
				 (unsigned)a.st_uid, (unsigned)geteuid());
			rc = -EPERM;
			break;
		}
		if (a.st_mode & 077) {
			snprintf(why, len,
				 "mode %04o gives group or others access to the secret: want 0600 "
				 "or 0400 (chmod 600 %s)",
				 (unsigned)(a.st_mode & 07777), path);
			rc = -EPERM;
			break;
		}
		while (n <= cap) {
			ssize_t r = pread(fd, buf + n, cap + 1 - n, (off_t)n);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0) {
				rc = -errno;
				snprintf(why, len, "%s", strerror(errno));
				break;
			}
			if (r == 0)
				break;
			n += (size_t)r;
		}
		if (rc < 0)
			break;
		if (n > cap) {
			snprintf(why, len, "longer than %zu bytes", cap);
			rc = -EINVAL;
			break;
		}
		if (fstat(fd, &b) < 0) {
			rc = -errno;
			snprintf(why, len, "%s", strerror(errno));
			break;
		}
		if (b.st_size == a.st_size && (off_t)n == b.st_size &&
		    b.st_mtim.tv_sec == a.st_mtim.tv_sec &&
		    b.st_mtim.tv_nsec == a.st_mtim.tv_nsec &&
		    b.st_ctim.tv_sec == a.st_ctim.tv_sec &&
		    b.st_ctim.tv_nsec == a.st_ctim.tv_nsec) {
			/* mtime: an update in place moves it; a complete
			 * file renamed into place keeps its own. */
			*n_out = n;
			*changed_ns =
			    (uint64_t)b.st_mtim.tv_sec * NS_PER_S + (uint64_t)b.st_mtim.tv_nsec;
			break;
		}
		if (attempt == 2) {
			snprintf(why, len, "it changed while being read (being written?)");
			rc = -EAGAIN;
			break;
		}
	}
	close(fd);
	if (rc < 0)
		OPENSSL_cleanse(buf, cap + 1);
	return rc;
}

/* Trailing whitespace is dropped so that "echo secret > f" and
 * "printf secret > f" agree. */
static size_t secret_trim(const uint8_t *buf, size_t n)
{
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' ||
			 buf[n - 1] == '\t'))
		n--;
	return n;
}

int ccm_secret_check(const char *path, char *err, size_t len)
{
	uint8_t buf[CCM_SECRET_MAX + 1];
	char why[320];
	uint64_t changed;
	size_t n = 0;
	int rc = secret_read(path, buf, CCM_SECRET_MAX, &n, &changed, why, sizeof(why));

	if (rc == 0 && secret_trim(buf, n) < 16) {
		snprintf(why, sizeof(why), "want at least 16 bytes of secret, found %zu",
			 secret_trim(buf, n));
		rc = -EINVAL;
	}
	OPENSSL_cleanse(buf, sizeof(buf));
	if (rc < 0)
		snprintf(err, len, "[ic] secret_file %s: %s", path, why);
	return rc;
}

static uint64_t wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

/* The file's bytes are the key. At the first load any valid file is
 * taken; a reload (every handshake epoch) takes a different secret only
 * once the file has not changed for CCM_SECRET_SETTLE_NS, so that an
 * update written in place is not used half-written: until then the
 * current secret stays. */
int ccm_load_secret(struct ccm *ccm)
{
	uint8_t buf[CCM_SECRET_MAX + 1];
	char why[320];
	uint64_t changed = 0;
	size_t n = 0;
	int rc;

	_Static_assert(sizeof(ccm->secret) == CCM_SECRET_MAX, "secret buffer");
	rc =
	    secret_read(ccm->opts.secret_file, buf, CCM_SECRET_MAX, &n, &changed, why, sizeof(why));
	if (rc < 0) {
		LOG_ERROR("[ic] secret_file %s: %s%s", ccm->opts.secret_file, why,
			  ccm->secret_len ? " (keeping the current secret)" : "");
		return rc;
	}
	n = secret_trim(buf, n);
	if (n < 16) {
		LOG_ERROR("[ic] secret_file %s: want at least 16 bytes of secret, found %zu%s",
			  ccm->opts.secret_file, n,
			  ccm->secret_len ? " (keeping the current secret)" : "");
		rc = -EINVAL;
		goto out;
	}
	if (ccm->secret_len && (n != ccm->secret_len || !ccm_ct_equal(buf, ccm->secret, n))) {
		uint64_t now = wall_ns();
		if (now < changed + CCM_SECRET_SETTLE_NS) {
			LOG_INFO(
			    "[ic] secret_file %s changed %llu ms ago: the new secret is taken "
			    "once the file has been still for %llu ms",
			    ccm->opts.secret_file,
			    (unsigned long long)((now > changed ? now - changed : 0) / NS_PER_MS),
			    (unsigned long long)(CCM_SECRET_SETTLE_NS / NS_PER_MS));
			rc = -EAGAIN;
			goto out;
		}
		LOG_INFO("[ic] secret_file %s: a new secret", ccm->opts.secret_file);
	}
	OPENSSL_cleanse(ccm->secret, sizeof(ccm->secret));
	memcpy(ccm->secret, buf, n);
	ccm->secret_len = n;
out:
	OPENSSL_cleanse(buf, sizeof(buf));
	return rc;
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

	ccm_mac_free(ccm); /* the previous session's key and context */
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
	OPENSSL_cleanse(idmac, sizeof(idmac));

	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	if (!ctx)
		goto fail;
	if (!EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, ccm->skey, NULL)) {
		EVP_CIPHER_CTX_free(ctx);
		goto fail;
	}
	ccm->mac_first = we_first;
	ccm->mac_nonce = 0;
	ccm->mac = (struct evp_cipher_ctx_st *)ctx;
	return 0;
fail:
	LOG_ERROR("cannot derive the session key (OpenSSL HMAC or AES-GCM failed)");
	return -EIO;
}

void ccm_wipe_keys(struct ccm *ccm)
{
	OPENSSL_cleanse(ccm->secret, sizeof(ccm->secret));
	OPENSSL_cleanse(ccm->skey, sizeof(ccm->skey));
	ccm->secret_len = 0;
}

void ccm_mac_free(struct ccm *ccm)
{
	OPENSSL_cleanse(ccm->skey, sizeof(ccm->skey));
	if (ccm->mac) {
		EVP_CIPHER_CTX_free((EVP_CIPHER_CTX *)ccm->mac);
		ccm->mac = NULL;
	}
}

/* GMAC of the header (mac zeroed) and the payload, with the IV of
 * @p first's direction and the header's nonce. A zero MAC when OpenSSL
 * fails: never accepted (ccm_msg_mac_ok). */
static void msg_gmac(struct ccm *ccm, bool first, const struct wire_msg *h, const void *payload,
		     size_t len, uint8_t out[CCM_MAC_LEN])
{
	EVP_CIPHER_CTX *ctx = (EVP_CIPHER_CTX *)ccm->mac;
	struct wire_msg hc = *h;
	uint8_t iv[12] = {first ? 1 : 2};
	int outl = 0;

	_Static_assert(CCM_MAC_LEN == 16, "a whole GCM tag");
	memcpy(iv + 4, &h->nonce, 8);
	memset(hc.mac, 0, sizeof(hc.mac));
	if (!ctx || len > CCM_MSG_MAX || !EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, iv) ||
	    !EVP_EncryptUpdate(ctx, NULL, &outl, (const uint8_t *)&hc, (int)sizeof(hc)) ||
	    (len && !EVP_EncryptUpdate(ctx, NULL, &outl, payload, (int)len)) ||
	    !EVP_EncryptFinal_ex(ctx, out, &outl) ||
	    !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, CCM_MAC_LEN, out))
		memset(out, 0, CCM_MAC_LEN);
}

void ccm_msg_seal(struct ccm *ccm, struct wire_msg *h, const void *payload, size_t len)
{
	put_le64(&h->nonce, ++ccm->mac_nonce);
	msg_gmac(ccm, ccm->mac_first, h, payload, len, h->mac);
}

bool ccm_msg_mac_ok(struct ccm *ccm, const struct wire_msg *h, const void *payload, size_t len)
{
	uint8_t m[CCM_MAC_LEN];
	static const uint8_t zero[CCM_MAC_LEN];

	if (!ccm->mac)
		return false;
	msg_gmac(ccm, !ccm->mac_first, h, payload, len, m);
	if (ccm_ct_equal(m, zero, CCM_MAC_LEN))
		return false;
	return ccm_ct_equal(m, h->mac, CCM_MAC_LEN);
}
