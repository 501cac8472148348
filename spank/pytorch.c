/*
 * pytorch.c - torch.distributed's variables from Slurm's (see pytorch.h).
 */
#include <errno.h>
#include <string.h>

#include "pytorch.h"

int phpc_first_host(const char *list, char *out, size_t len)
{
	size_t n = 0;
	const char *p = list;

	if (list == NULL || len == 0) {
		errno = EINVAL;
		return -1;
	}
	while (*p != '\0' && *p != ',') {
		if (*p == ']') {
			errno = EINVAL;
			return -1;
		}
		if (*p != '[') {
			if (n + 1 >= len)
				goto toolong;
			out[n++] = *p++;
			continue;
		}
		/* A range list: its first number, as written (zero padding
		 * included), then past the closing bracket. */
		p++;
		if (*p < '0' || *p > '9') {
			errno = EINVAL;
			return -1;
		}
		while (*p >= '0' && *p <= '9') {
			if (n + 1 >= len)
				goto toolong;
			out[n++] = *p++;
		}
		while (*p != ']') {
			if (*p == '\0' || *p == '[') {
				errno = EINVAL;
				return -1;
			}
			p++;
		}
		p++;
	}
	if (n == 0) {
		errno = EINVAL;
		return -1;
	}
	out[n] = '\0';
	return 0;
toolong:
	errno = ENAMETOOLONG;
	return -1;
}

unsigned phpc_pytorch_port(uint32_t job)
{
	return job % 4536 + 61000;
}
