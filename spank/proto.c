/*
 * proto.c - encoding and decoding of protocol frames (see proto.h).
 */
#include <stdlib.h>
#include <string.h>

#include "proto.h"

void phpc_msg_init(struct phpc_msg *m, uint8_t type)
{
	memset(m, 0, sizeof(*m));
	m->type = type;
}

void phpc_msg_free(struct phpc_msg *m)
{
	free(m->body);
	phpc_msg_init(m, 0);
}

int phpc_msg_add(struct phpc_msg *m, const char *key, const char *value)
{
	size_t klen, vlen, need;
	char *nb;

	if (key == NULL || value == NULL || *key == '\0')
		return -1;
	klen = strlen(key) + 1;
	vlen = strlen(value) + 1;
	need = m->len + klen + vlen;
	if (need > PHPC_MAX_FRAME)
		return -1;
	if (need > m->cap) {
		size_t cap = m->cap ? m->cap : 256;
		while (cap < need)
			cap *= 2;
		nb = realloc(m->body, cap);
		if (nb == NULL)
			return -1;
		m->body = nb;
		m->cap = cap;
	}
	memcpy(m->body + m->len, key, klen);
	memcpy(m->body + m->len + klen, value, vlen);
	m->len = need;
	return 0;
}

void phpc_msg_header(const struct phpc_msg *m, unsigned char hdr[PHPC_FRAME_HEADER])
{
	uint32_t n = (uint32_t)(m->len + 4);

	hdr[0] = (unsigned char)(n >> 24);
	hdr[1] = (unsigned char)(n >> 16);
	hdr[2] = (unsigned char)(n >> 8);
	hdr[3] = (unsigned char)n;
	hdr[4] = PHPC_PROTO_VERSION;
	hdr[5] = m->type;
	hdr[6] = 0;
	hdr[7] = 0;
}

int phpc_parse_header(const unsigned char hdr[PHPC_FRAME_HEADER], uint8_t *type, size_t *body_len)
{
	uint32_t n = ((uint32_t)hdr[0] << 24) | ((uint32_t)hdr[1] << 16) |
		     ((uint32_t)hdr[2] << 8) | (uint32_t)hdr[3];

	if (hdr[4] != PHPC_PROTO_VERSION || n < 4 || n - 4 > PHPC_MAX_FRAME)
		return -1;
	*type = hdr[5];
	*body_len = n - 4;
	return 0;
}

/* Checks that body is a whole number of pairs of C strings with non-empty keys. */
static int body_is_valid(const char *body, size_t len)
{
	size_t off = 0, n;
	int field = 0;

	while (off < len) {
		const char *nul = memchr(body + off, '\0', len - off);
		if (nul == NULL)
			return 0;
		n = (size_t)(nul - (body + off));
		if (field % 2 == 0 && n == 0)
			return 0;
		off += n + 1;
		field++;
	}
	return field % 2 == 0;
}

int phpc_msg_set_body(struct phpc_msg *m, const char *body, size_t len)
{
	char *copy = NULL;

	if (len > PHPC_MAX_FRAME || !body_is_valid(body, len))
		return -1;
	if (len > 0) {
		copy = malloc(len);
		if (copy == NULL)
			return -1;
		memcpy(copy, body, len);
	}
	free(m->body);
	m->body = copy;
	m->len = m->cap = len;
	return 0;
}

int phpc_msg_next(const struct phpc_msg *m, size_t *off, const char **key, const char **value)
{
	if (*off >= m->len)
		return 0;
	*key = m->body + *off;
	*off += strlen(*key) + 1;
	*value = m->body + *off;
	*off += strlen(*value) + 1;
	return 1;
}

const char *phpc_msg_get(const struct phpc_msg *m, const char *key)
{
	size_t off = 0;
	const char *k, *v;

	while (phpc_msg_next(m, &off, &k, &v))
		if (strcmp(k, key) == 0)
			return v;
	return NULL;
}
