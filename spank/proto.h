/*
 * proto.h - the wire protocol between the plugin and podman-hpcd.
 *
 * A frame is a 4-byte big-endian length of what follows, then a 4-byte header
 * (version, message type, two reserved zero bytes), then the body: a sequence
 * of "key\0value\0" pairs. Keys may repeat (one "mount" per bind mount).
 * The Go side is pkg/wire; both are tested against each other in spank/cgotest.
 * File descriptors (the container's namespaces) travel as SCM_RIGHTS beside a
 * frame.
 */
#ifndef PHPC_PROTO_H
#define PHPC_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define PHPC_PROTO_VERSION 1
#define PHPC_FRAME_HEADER 8              /* length + version, type, reserved */
#define PHPC_MAX_FRAME (1u << 20)        /* body limit, both directions */

enum phpc_msg_type {
	PHPC_MSG_HELLO = 1,      /* client -> daemon: who I am, protocol check */
	PHPC_MSG_CONTAINER = 2,  /* stepd -> daemon: a container for this step */
	PHPC_MSG_PULL = 3,       /* user or root -> daemon: pull "ref" ("prefetch": the job prolog's) */
	PHPC_MSG_RM = 8,         /* root -> daemon: remove the containers of "job" */
	PHPC_MSG_END = 9,        /* stepd -> daemon: the step is over (save, remove) */
	PHPC_MSG_SAVE = 13,      /* the job user's task -> daemon: save step "job"."step" now */
	PHPC_MSG_NOTES = 14,     /* stepd -> daemon: lines for the user at the step's end ("message"s) */
	PHPC_MSG_OK = 64,        /* daemon -> client: request done */
	PHPC_MSG_ERROR = 65,     /* daemon -> client: "message" says why */
	PHPC_MSG_PROGRESS = 66,  /* daemon -> client: "message" for the user */
};

struct phpc_msg {
	uint8_t type;
	char *body;
	size_t len;
	size_t cap;
};

void phpc_msg_init(struct phpc_msg *m, uint8_t type);
void phpc_msg_free(struct phpc_msg *m);

/* Appends a pair. The key is non-empty; neither may contain '\0' (they are C
 * strings) and the body may not grow past PHPC_MAX_FRAME. Returns 0 or -1. */
int phpc_msg_add(struct phpc_msg *m, const char *key, const char *value);

/* Writes the 8-byte header for m into hdr. */
void phpc_msg_header(const struct phpc_msg *m, unsigned char hdr[PHPC_FRAME_HEADER]);

/* Reads a header: sets *type and *body_len; returns 0, or -1 when the version
 * is not ours or the length is out of range. */
int phpc_parse_header(const unsigned char hdr[PHPC_FRAME_HEADER], uint8_t *type, size_t *body_len);

/* Takes a received body (copied). Returns 0, or -1 when it is not a whole
 * sequence of key\0value\0 pairs with non-empty keys. */
int phpc_msg_set_body(struct phpc_msg *m, const char *body, size_t len);

/* Iterates pairs: start with *off = 0; returns 1 with key/value set, 0 at the end. */
int phpc_msg_next(const struct phpc_msg *m, size_t *off, const char **key, const char **value);

/* The first value of key, or NULL. */
const char *phpc_msg_get(const struct phpc_msg *m, const char *key);

#endif
