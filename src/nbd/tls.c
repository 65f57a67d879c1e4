/*
 * TLS under a connection (NBD_OPT_STARTTLS), with GnuTLS, on the node's
 * reactor: every call is non-blocking. The handshake is driven by socket
 * readiness (server.c calls nbd_tls_handshake on each event, and asks
 * for EPOLLOUT while GnuTLS waits to write); once done the connection's
 * transport becomes the TLS one below and the receive and send paths go
 * on unchanged.
 *
 * Rules kept: bytes the client sent right after STARTTLS, already in the
 * receive buffer, are the first TLS input (nothing read is lost); input
 * read ahead of GnuTLS counts as pending, like its decoded records; output
 * accepted by writev is owned by GnuTLS (corked: copied into its records)
 * until flush says it is out, so the send path never re-offers bytes and
 * may give a reply's memory back (nbd_io.release) as soon as writev took
 * it, as with the plain socket; decoded input GnuTLS holds
 * is reported by pending(), since epoll cannot see it. A client is known
 * by its PSK username, or with tls_verify_peer by its certificate (DN, CN
 * and SAN names), and only after its certificate was verified.
 */
#define LOG_MODULE "nbd"
#include "nbd/nbd_int.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TLS_BATCH	 (256u << 10) /* bytes corked into records per round */
#define TLS_WARNINGS_MAX 64	      /* non-fatal TLS events in one read */
#define TLS_READ_AHEAD	 (64u << 10)  /* ciphertext read per recv */
#define PRIO_X509	 "NORMAL"
#define PRIO_WITH_PSK	 "NORMAL:+ECDHE-PSK:+DHE-PSK:+PSK"

struct nbd_tls {
	char name[32];
	gnutls_certificate_credentials_t x509; /* NULL: no certificates */
	gnutls_psk_server_credentials_t psk;   /* NULL: no PSK file */
	gnutls_priority_t prio;
	bool verify_peer;
};

struct nbd_tls_sess {
	struct nbd_conn *c;
	gnutls_session_t s;
	/* Ciphertext read ahead of GnuTLS (which asks for a record's header,
	 * then its body): one recv for several records. It starts with the
	 * bytes read before STARTTLS took effect. */
	uint8_t *in;
	size_t in_len, in_off;
	bool out_pending; /* corked records not yet all sent */
};

/* ---- server credentials ---- */

static bool file_exists(const char *path)
{
	return access(path, F_OK) == 0;
}

static int load_x509(struct nbd_tls *t, const char *dir)
{
	char ca[4096], crl[4096], cert[4096], key[4096];
	int r;

	snprintf(ca, sizeof(ca), "%s/ca-cert.pem", dir);
	snprintf(crl, sizeof(crl), "%s/ca-crl.pem", dir);
	snprintf(cert, sizeof(cert), "%s/server-cert.pem", dir);
	snprintf(key, sizeof(key), "%s/server-key.pem", dir);
	if (gnutls_certificate_allocate_credentials(&t->x509) < 0)
		return -ENOMEM;
	if (file_exists(ca)) {
		r = gnutls_certificate_set_x509_trust_file(t->x509, ca, GNUTLS_X509_FMT_PEM);
		if (r < 0) {
			LOG_ERROR("%s: tls: %s: %s", t->name, ca, gnutls_strerror(r));
			return -EINVAL;
		}
	} else if (t->verify_peer) {
		LOG_ERROR("%s: tls_verify_peer needs %s", t->name, ca);
		return -ENOENT;
	}
	if (file_exists(crl)) {
		r = gnutls_certificate_set_x509_crl_file(t->x509, crl, GNUTLS_X509_FMT_PEM);
		if (r < 0) {
			LOG_ERROR("%s: tls: %s: %s", t->name, crl, gnutls_strerror(r));
			return -EINVAL;
		}
	}
	r = gnutls_certificate_set_x509_key_file(t->x509, cert, key, GNUTLS_X509_FMT_PEM);
	if (r < 0) {
		LOG_ERROR("%s: tls: %s, %s: %s", t->name, cert, key, gnutls_strerror(r));
		return -EINVAL;
	}
	gnutls_certificate_set_known_dh_params(t->x509, GNUTLS_SEC_PARAM_MEDIUM);
	return 0;
}

static int load_psk(struct nbd_tls *t, const char *file)
{
	FILE *f = fopen(file, "r");
	int r;

	/* GnuTLS reads the file at each handshake: check it now, so that a
	 * typo stops the node at start rather than fails every client. */
	if (!f) {
		LOG_ERROR("%s: tls_psk %s: %s", t->name, file, strerror(errno));
		return -errno;
	}
	fclose(f);
	if (gnutls_psk_allocate_server_credentials(&t->psk) < 0)
		return -ENOMEM;
	r = gnutls_psk_set_server_credentials_file(t->psk, file);
	if (r < 0) {
		LOG_ERROR("%s: tls_psk %s: %s", t->name, file, gnutls_strerror(r));
		return -EINVAL;
	}
	gnutls_psk_set_server_known_dh_params(t->psk, GNUTLS_SEC_PARAM_MEDIUM);
	return 0;
}

int nbd_tls_create(const struct nbd_server_opts *o, const char *name, struct nbd_tls **out)
{
	bool certs = o->tls_certificates && o->tls_certificates[0];
	bool psk = o->tls_psk && o->tls_psk[0];
	struct nbd_tls *t;
	const char *where = NULL;
	int rc;

	if (!certs && !psk) {
		LOG_ERROR("%s: tls = %s needs tls_certificates or tls_psk", name,
			  o->tls == NBD_TLS_REQUIRE ? "require" : "on");
		return -EINVAL;
	}
	if (o->tls_verify_peer && !certs) {
		LOG_ERROR("%s: tls_verify_peer needs tls_certificates", name);
		return -EINVAL;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	snprintf(t->name, sizeof(t->name), "%s", name);
	t->verify_peer = o->tls_verify_peer;
	rc = certs ? load_x509(t, o->tls_certificates) : 0;
	if (rc == 0 && psk)
		rc = load_psk(t, o->tls_psk);
	if (rc == 0 &&
	    gnutls_priority_init(&t->prio, psk ? PRIO_WITH_PSK : PRIO_X509, &where) < 0) {
		LOG_ERROR("%s: tls: bad priority string at '%s'", name, where ? where : "?");
		rc = -EINVAL;
	}
	if (rc < 0) {
		nbd_tls_destroy(t);
		return rc;
	}
	LOG_INFO("%s: TLS %s (%s%s%s%s)", name, o->tls == NBD_TLS_REQUIRE ? "required" : "offered",
		 certs ? "x509" : "", certs && psk ? ", " : "", psk ? "PSK" : "",
		 t->verify_peer ? ", client certificates verified" : "");
	*out = t;
	return 0;
}

void nbd_tls_destroy(struct nbd_tls *t)
{
	if (!t)
		return;
	if (t->prio)
		gnutls_priority_deinit(t->prio);
	if (t->x509)
		gnutls_certificate_free_credentials(t->x509);
	if (t->psk)
		gnutls_psk_free_server_credentials(t->psk);
	free(t);
}

/* ---- GnuTLS's view of the socket ---- */

static ssize_t tls_pull(gnutls_transport_ptr_t p, void *buf, size_t len)
{
	struct nbd_tls_sess *ts = p;
	size_t n;

	if (ts->in_off == ts->in_len) {
		ssize_t r = recv(ts->c->fd, ts->in, TLS_READ_AHEAD, 0);
		if (r <= 0) {
			if (r < 0)
				gnutls_transport_set_errno(ts->s, errno);
			return r;
		}
		ts->in_off = 0;
		ts->in_len = (size_t)r;
	}
	n = MIN(len, ts->in_len - ts->in_off);
	memcpy(buf, ts->in + ts->in_off, n);
	ts->in_off += n;
	return (ssize_t)n;
}

static ssize_t tls_push(gnutls_transport_ptr_t p, const giovec_t *iov, int n)
{
	struct nbd_tls_sess *ts = p;
	struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n};
	ssize_t r = sendmsg(ts->c->fd, &m, MSG_NOSIGNAL);

	if (r < 0)
		gnutls_transport_set_errno(ts->s, errno);
	return r;
}

static int tls_pull_timeout(gnutls_transport_ptr_t p, unsigned ms)
{
	struct nbd_tls_sess *ts = p;
	struct pollfd pfd = {.fd = ts->c->fd, .events = POLLIN};

	if (ts->in_off < ts->in_len)
		return 1;
	return poll(&pfd, 1, (int)MIN(ms, 1000u));
}

/* ---- the TLS transport (struct nbd_xport) ---- */

static ssize_t tls_readv(void *arg, const struct iovec *iov, int n)
{
	struct nbd_tls_sess *ts = arg;
	size_t total = 0;
	ssize_t r = GNUTLS_E_AGAIN;
	unsigned warnings = 0;

	for (int i = 0; i < n; i++) {
		size_t off = 0;
		while (off < iov[i].iov_len) {
			r = gnutls_record_recv(ts->s, (uint8_t *)iov[i].iov_base + off,
					       iov[i].iov_len - off);
			if (r > 0) {
				off += (size_t)r;
				total += (size_t)r;
				continue;
			}
			/* A warning alert or a refused renegotiation: nothing for
			 * us; a client sending only those is cut off. */
			if (r == GNUTLS_E_INTERRUPTED ||
			    (r < 0 && r != GNUTLS_E_AGAIN && !gnutls_error_is_fatal((int)r) &&
			     ++warnings < TLS_WARNINGS_MAX))
				continue;
			goto out;
		}
	}
out:
	if (total)
		return (ssize_t)total;
	if (r == 0 || r == GNUTLS_E_PREMATURE_TERMINATION)
		return 0;
	if (r == GNUTLS_E_AGAIN || r > 0)
		return -EAGAIN;
	LOG_DEBUG("nbd: %s: TLS receive: %s", ts->c->peer, gnutls_strerror((int)r));
	return -EPROTO;
}

/* Push the corked records: 0 when all are out, -EAGAIN, or -EPIPE. */
static int tls_uncork(struct nbd_tls_sess *ts)
{
	int r;

	do {
		r = gnutls_record_uncork(ts->s, 0);
	} while (r == GNUTLS_E_INTERRUPTED);
	if (r == GNUTLS_E_AGAIN) {
		ts->out_pending = true;
		return -EAGAIN;
	}
	ts->out_pending = false;
	if (r < 0) {
		LOG_DEBUG("nbd: %s: TLS send: %s", ts->c->peer, gnutls_strerror(r));
		return -EPIPE;
	}
	return 0;
}

static int tls_flush(void *arg)
{
	struct nbd_tls_sess *ts = arg;

	return ts->out_pending ? tls_uncork(ts) : 0;
}

/* Accept the iovecs into records, TLS_BATCH bytes at a time, each batch
 * pushed before the next is taken; stops when the socket is full. The
 * count returned is what GnuTLS now owns (flush sends the rest). */
static ssize_t tls_writev(void *arg, const struct iovec *iov, int n, bool more)
{
	struct nbd_tls_sess *ts = arg;
	size_t total = 0;
	int i = 0;
	size_t off = 0;
	int rc;

	(void)more;
	if (ts->out_pending && (rc = tls_uncork(ts)) < 0)
		return rc;
	while (i < n) {
		size_t batch = 0;

		gnutls_record_cork(ts->s);
		while (i < n && batch < TLS_BATCH) {
			size_t take = MIN(iov[i].iov_len - off, TLS_BATCH - batch);
			ssize_t r =
			    gnutls_record_send(ts->s, (uint8_t *)iov[i].iov_base + off, take);
			if (r < 0) {
				LOG_DEBUG("nbd: %s: TLS send: %s", ts->c->peer,
					  gnutls_strerror((int)r));
				return -EPIPE;
			}
			batch += (size_t)r;
			off += (size_t)r;
			if (off == iov[i].iov_len) {
				i++;
				off = 0;
			}
		}
		total += batch;
		rc = tls_uncork(ts);
		if (rc == -EAGAIN)
			break;
		if (rc < 0)
			return rc;
	}
	return (ssize_t)total;
}

static bool tls_pending(void *arg)
{
	struct nbd_tls_sess *ts = arg;

	return gnutls_record_check_pending(ts->s) > 0 || ts->in_off < ts->in_len;
}

static const struct nbd_xport tls_xport = {
    .readv = tls_readv,
    .writev = tls_writev,
    .flush = tls_flush,
    .pending = tls_pending,
};

/* ---- sessions ---- */

int nbd_tls_start(struct nbd_conn *c)
{
	struct nbd_tls *t = c->srv->tls;
	struct nbd_tls_sess *ts = calloc(1, sizeof(*ts));
	int r;

	if (!ts)
		return -ENOMEM;
	ts->c = c;
	ts->in_len = c->rlen - c->rpos;
	ts->in = malloc(MAX(ts->in_len, (size_t)TLS_READ_AHEAD));
	if (!ts->in) {
		free(ts);
		return -ENOMEM;
	}
	memcpy(ts->in, c->rbuf + c->rpos, ts->in_len);
	c->rpos = c->rlen = 0;
	r = gnutls_init(&ts->s, GNUTLS_SERVER | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL);
	if (r < 0)
		goto fail;
	r = gnutls_priority_set(ts->s, t->prio);
	if (r == 0 && t->x509) {
		r = gnutls_credentials_set(ts->s, GNUTLS_CRD_CERTIFICATE, t->x509);
		gnutls_certificate_server_set_request(ts->s, t->verify_peer ? GNUTLS_CERT_REQUIRE
									    : GNUTLS_CERT_IGNORE);
	}
	if (r == 0 && t->psk)
		r = gnutls_credentials_set(ts->s, GNUTLS_CRD_PSK, t->psk);
	if (r < 0)
		goto fail;
	/* The connection's own timer bounds the handshake. */
	gnutls_handshake_set_timeout(ts->s, 0);
	gnutls_transport_set_ptr(ts->s, ts);
	gnutls_transport_set_pull_function(ts->s, tls_pull);
	gnutls_transport_set_pull_timeout_function(ts->s, tls_pull_timeout);
	gnutls_transport_set_vec_push_function(ts->s, tls_push);
	c->tls = ts;
	return 0;
fail:
	LOG_WARN("%s: %s: TLS session: %s", c->srv->name, c->peer, gnutls_strerror(r));
	if (ts->s)
		gnutls_deinit(ts->s);
	free(ts->in);
	free(ts);
	return -ENOMEM;
}

static void add_id(struct nbd_conn *c, const char *id, size_t len)
{
	if (c->n_ids == NBD_TLS_IDS_MAX || len == 0 || len >= NBD_TLS_ID_LEN ||
	    memchr(id, '\0', len))
		return;
	for (unsigned i = 0; i < c->n_ids; i++)
		if (strlen(c->ids[i]) == len && memcmp(c->ids[i], id, len) == 0)
			return;
	c->ids[c->n_ids] = strndup(id, len);
	if (c->ids[c->n_ids])
		c->n_ids++;
}

/* The names a verified certificate gives its holder: the whole DN, the
 * CN, and the DNS, e-mail and URI names of the subjectAltName. */
static void cert_ids(struct nbd_conn *c, gnutls_session_t s)
{
	unsigned n = 0;
	const gnutls_datum_t *der = gnutls_certificate_get_peers(s, &n);
	gnutls_x509_crt_t crt;
	char buf[NBD_TLS_ID_LEN];
	size_t len;

	if (!der || n == 0 || gnutls_x509_crt_init(&crt) < 0)
		return;
	if (gnutls_x509_crt_import(crt, &der[0], GNUTLS_X509_FMT_DER) < 0)
		goto out;
	len = sizeof(buf);
	if (gnutls_x509_crt_get_dn(crt, buf, &len) == 0)
		add_id(c, buf, strnlen(buf, len));
	len = sizeof(buf);
	if (gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, buf, &len) == 0)
		add_id(c, buf, strnlen(buf, len));
	for (unsigned i = 0; i < 64; i++) {
		int type;
		len = sizeof(buf) - 1;
		type = gnutls_x509_crt_get_subject_alt_name(crt, i, buf, &len, NULL);
		if (type == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
			break;
		if (type == GNUTLS_SAN_DNSNAME || type == GNUTLS_SAN_RFC822NAME ||
		    type == GNUTLS_SAN_URI)
			add_id(c, buf, len);
	}
out:
	gnutls_x509_crt_deinit(crt);
}

/* With tls_verify_peer: the certificate chains to ca-cert.pem and is in
 * date. @return 0 or -EACCES (logged). */
static int verify_peer(struct nbd_conn *c, gnutls_session_t s)
{
	unsigned status = 0;
	gnutls_datum_t why = {0};
	int r = gnutls_certificate_verify_peers2(s, &status);

	if (r == 0 && status == 0)
		return 0;
	if (r < 0) {
		LOG_WARN("%s: %s: client certificate refused: %s", c->srv->name, c->peer,
			 gnutls_strerror(r));
	} else {
		gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &why, 0);
		LOG_WARN("%s: %s: client certificate refused: %s", c->srv->name, c->peer,
			 why.data ? (const char *)why.data : "not trusted");
		gnutls_free(why.data);
	}
	return -EACCES;
}

int nbd_tls_handshake(struct nbd_conn *c)
{
	struct nbd_tls_sess *ts = c->tls;
	unsigned warnings = 0;
	int r;

	do {
		r = gnutls_handshake(ts->s);
	} while (r == GNUTLS_E_INTERRUPTED ||
		 (r < 0 && r != GNUTLS_E_AGAIN && !gnutls_error_is_fatal(r) &&
		  ++warnings < TLS_WARNINGS_MAX));
	if (r == GNUTLS_E_AGAIN) {
		c->tls_want_out = gnutls_record_get_direction(ts->s) == 1;
		return -EAGAIN;
	}
	c->tls_want_out = false;
	if (r < 0) {
		LOG_WARN("%s: %s: TLS handshake failed: %s", c->srv->name, c->peer,
			 gnutls_strerror(r));
		return -EPROTO;
	}
	if (gnutls_auth_get_type(ts->s) == GNUTLS_CRD_PSK) {
		const char *user = gnutls_psk_server_get_username(ts->s);
		if (user)
			add_id(c, user, strlen(user));
	} else if (c->srv->tls->verify_peer) {
		if (verify_peer(c, ts->s) < 0)
			return -EACCES;
		cert_ids(c, ts->s);
	}
	c->xp = &tls_xport;
	c->xp_arg = ts;
	c->tls_up = true;
	LOG_DEBUG("%s: %s: TLS up (%s), client %s", c->srv->name, c->peer,
		  gnutls_protocol_get_name(gnutls_protocol_get_version(ts->s)),
		  c->n_ids ? c->ids[c->n_ids > 1 ? 1 : 0] : "without identity");
	return 0;
}

void nbd_tls_free(struct nbd_conn *c)
{
	struct nbd_tls_sess *ts = c->tls;

	for (unsigned i = 0; i < c->n_ids; i++)
		free(c->ids[i]);
	c->n_ids = 0;
	if (!ts)
		return;
	/* One try at a close_notify; the socket closes right after. */
	if (c->tls_up && c->fd >= 0)
		gnutls_bye(ts->s, GNUTLS_SHUT_WR);
	gnutls_deinit(ts->s);
	free(ts->in);
	free(ts);
	c->tls = NULL;
	c->tls_up = false;
	c->xp = &nbd_xport_socket;
	c->xp_arg = c;
}
