/*
 * The plain socket transport under a connection (struct nbd_xport); TLS
 * (tls.c) and the fuzzer's memory transport have the same shape, so that
 * the receive and send paths of server.c never ask which one they use.
 */
#include "nbd/nbd_int.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/uio.h>

static ssize_t sock_readv(void *arg, const struct iovec *iov, int n)
{
	struct nbd_conn *c = arg;
	ssize_t r;

	do {
		r = readv(c->fd, iov, n);
	} while (r < 0 && errno == EINTR);
	if (r < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return r;
}

static ssize_t sock_writev(void *arg, const struct iovec *iov, int n, bool more)
{
	struct nbd_conn *c = arg;
	struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n};
	ssize_t r;

	do {
		r = sendmsg(c->fd, &m, MSG_NOSIGNAL | (more ? MSG_MORE : 0));
	} while (r < 0 && errno == EINTR);
	if (r < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return r;
}

const struct nbd_xport nbd_xport_socket = {
    .readv = sock_readv,
    .writev = sock_writev,
};
