/* Wire formats of the CCM: the boot region, the slot, the session region
 * and the message header. Every integer is little-endian on the wire; the
 * structs are laid out without padding (checked by static asserts) and are
 * read and written through the le*() helpers below. Private to src/ccm. */
#ifndef DUET_CCM_WIRE_H
#define DUET_CCM_WIRE_H

#include <assert.h>
#include <endian.h>
#include <stdint.h>

/* Predefined keys of the two public regions, the same on every link. */
#define CCM_BOOT_KEY 0x3130304254455544ull /* "DUETB001" */
#define CCM_SLOT_KEY 0x3130305354455544ull /* "DUETS001" */

#define CCM_BOOT_MAGIC 0x544f4f4254455544ull /* "DUETBOOT" */
#define CCM_SLOT_MAGIC 0x544f4c5354455544ull /* "DUETSLOT" */
#define CCM_SESS_MAGIC 0x5353455354455544ull /* "DUETSESS" */
#define CCM_MSG_MAGIC  0x314d4344u	     /* "DCM1" */

/* Immediate data of the slot doorbell: "look at your slot". */
#define CCM_IMM_SLOT 0x534c4f54u

#define CCM_NONCE_LEN	32
#define CCM_PROOF_LEN	32
#define CCM_MAC_LEN	16
#define CCM_CLUSTER_MAX 64

/* Boot region state. */
enum {
	BOOT_INIT = 0,
	BOOT_HANDSHAKING = 1,
	BOOT_SESSION = 2,
};

/* Slot state (what the writer says). */
enum {
	SLOT_HELLO = 1,
	SLOT_READY = 2,
};

/*
 * The boot region: read-only for the partner, at key CCM_BOOT_KEY,
 * offset 0, on every link. seq_head == seq_tail when consistent.
 */
struct wire_boot {
	uint64_t seq_head;
	uint64_t magic;
	uint16_t major;
	uint16_t minor;
	uint32_t state;
	uint64_t generation;
	char node[16];
	char cluster[CCM_CLUSTER_MAX];
	uint8_t nonce[CCM_NONCE_LEN];
	uint64_t session_id;
	/* The partner whose hello we accepted, and our proof of the secret. */
	uint64_t ack_gen;
	uint8_t ack_nonce[CCM_NONCE_LEN];
	uint8_t ack_proof[CCM_PROOF_LEN];
	uint32_t n_links;
	uint32_t flags;
	uint8_t pad[16];
	uint64_t seq_tail;
};
static_assert(sizeof(struct wire_boot) == 256, "boot region layout");

/* The slot: write-only for the partner, at key CCM_SLOT_KEY, offset 0. */
struct wire_slot {
	uint64_t seq_head;
	uint64_t magic;
	uint16_t major;
	uint16_t minor;
	uint32_t state;
	uint64_t generation; /* the writer's */
	char node[16];
	char cluster[CCM_CLUSTER_MAX];
	uint8_t nonce[CCM_NONCE_LEN];
	uint64_t target_gen; /* the reader's, as the writer last read it */
	uint8_t target_nonce[CCM_NONCE_LEN];
	uint8_t proof[CCM_PROOF_LEN];
	uint8_t pad[32];
	uint64_t seq_tail;
};
static_assert(sizeof(struct wire_slot) == 256, "slot layout");

/* Load of one CCM instance, published for the partner. */
struct wire_inst_load {
	uint64_t bytes_per_sec;
	uint64_t ops_inflight;
	uint64_t bytes_inflight;
	uint32_t ports;
	uint32_t links_up;
};
static_assert(sizeof(struct wire_inst_load) == 32, "instance load layout");

/* The session region: read-only for the partner, under a random key known
 * only to it; read by every heartbeat on every link. */
struct wire_sess {
	uint64_t seq_head;
	uint64_t magic;
	uint64_t generation;
	uint64_t session_id;
	uint64_t hb_counter;
	uint32_t n_instances;
	uint32_t flags;
	struct wire_inst_load inst[8];
	uint64_t seq_tail;
};
static_assert(sizeof(struct wire_sess) == 312, "session region layout");

/* Message types. */
enum {
	MSG_ACK = 1,	    /* unsequenced: cumulative ack only */
	MSG_PEER_INFO = 2,  /* control */
	MSG_CLIENT_ADD = 3, /* control */
	MSG_CLIENT_ACK = 4, /* control */
	MSG_CLIENT_DEL = 5, /* control */
	MSG_SETUP_DONE = 6, /* control */
	MSG_READY = 7,	    /* control */
	MSG_TERMINATE = 8,  /* control */
	MSG_FENCE = 9,	    /* control: close your end of a lane I took out */
	MSG_FENCE_ACK = 10, /* control: done */
	MSG_DATA = 16,	    /* port: client message */
	MSG_NOTIFY = 17,    /* port: write_notify */
};

/* Header of every message; mac = HMAC-SHA256(session key, header with mac
 * zeroed || payload), first 16 bytes. port is the receiver's port id. */
struct wire_msg {
	uint32_t magic;
	uint16_t type;
	uint16_t flags;
	uint32_t port;
	uint32_t len;
	uint64_t session_id;
	uint64_t seq;
	uint64_t ack;
	uint8_t mac[CCM_MAC_LEN];
};
static_assert(sizeof(struct wire_msg) == 56, "message header layout");

#define CCM_CAP_NOTIFY (1u << 0)
#define CCM_CAPS       CCM_CAP_NOTIFY

struct wire_peer_info {
	uint16_t major;
	uint16_t minor;
	uint32_t caps;
	uint64_t generation;
	char node[16];
	char cluster[CCM_CLUSTER_MAX];
	uint32_t n_links;
	uint32_t n_instances;
	uint64_t sess_key;
	uint64_t sess_size;
	uint32_t max_msg;
	uint32_t rsvd;
	char links[8][16];
};
static_assert(sizeof(struct wire_peer_info) == 256, "peer info layout");

struct wire_port_info {
	uint32_t id;
	uint32_t rsvd;
	uint64_t key;
	uint64_t size;
};

struct wire_client_add {
	char name[32];
	uint32_t n_ports;
	uint32_t flags;
	struct wire_port_info ports[]; /* n_ports */
};

struct wire_client_ref {
	char name[32];
	uint32_t first_port_id; /* identifies the incarnation acked */
	uint32_t rsvd;
};

struct wire_terminate {
	uint32_t reason;
	uint32_t rsvd;
};

struct wire_fence {
	uint32_t lane;
	uint32_t rsvd;
	uint64_t seq;
};

struct wire_notify {
	uint64_t offset;
	uint64_t len;
	uint64_t value;
};

#define le16(x)	     htole16(x)
#define le32(x)	     htole32(x)
#define le64(x)	     htole64(x)
#define from_le16(x) le16toh(x)
#define from_le32(x) le32toh(x)
#define from_le64(x) le64toh(x)

#endif
