/* The control socket's protocol version (docs/CONTROL.md), shared by duetd
 * and duetctl. Requests carry it as "version" (a request without one is
 * taken as version 1); every reply carries the node's. A new member is no
 * new version; a changed or removed one is. */
#ifndef DUET_COMMON_CONTROL_H
#define DUET_COMMON_CONTROL_H

#define DUET_CONTROL_VERSION 1

#endif
