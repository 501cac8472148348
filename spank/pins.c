/*
 * pins.c - the job's tag-to-digest list (see pins.h).
 */
#include <stdio.h>
#include <string.h>

#include "pins.h"

int phpc_pins_lookup(const char *list, const char *ref, char *out, size_t len)
{
	size_t rlen = strlen(ref), n;
	const char *p = list, *end;

	if (list == NULL || rlen == 0)
		return -1;
	while (*p) {
		while (*p == ' ')
			p++;
		end = strchr(p, ' ');
		if (end == NULL)
			end = p + strlen(p);
		if ((size_t)(end - p) > rlen && strncmp(p, ref, rlen) == 0 && p[rlen] == '=') {
			n = (size_t)(end - p) - rlen - 1;
			if (n == 0 || n >= len)
				return -1;
			memcpy(out, p + rlen + 1, n);
			out[n] = '\0';
			return 0;
		}
		p = end;
	}
	return -1;
}

int phpc_pins_add(const char *list, const char *ref, const char *pinned, char *out, size_t len)
{
	int n;

	if (ref[0] == '\0' || pinned[0] == '\0' || strpbrk(ref, " =") != NULL || strchr(pinned, ' ') != NULL)
		return -1;
	if (list == NULL || list[0] == '\0')
		n = snprintf(out, len, "%s=%s", ref, pinned);
	else
		n = snprintf(out, len, "%s %s=%s", list, ref, pinned);
	return n < 0 || (size_t)n >= len ? -1 : 0;
}
