#include "core/mem.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static atomic_long fail_after = -1;

static int should_fail(void)
{
	long n = atomic_load(&fail_after);
	if(n < 0) return 0;
	if(n == 0) return 1;
	atomic_fetch_sub(&fail_after, 1);
	return 0;
}

void imp_mem_fail_after(long n) { atomic_store(&fail_after, n); }

void *imp_malloc(size_t n) { return should_fail() ? NULL : malloc(n ? n : 1); }

void *imp_calloc(size_t count, size_t n)
{
	return should_fail() ? NULL : calloc(count ? count : 1, n ? n : 1);
}

void *imp_realloc(void *p, size_t n) { return should_fail() ? NULL : realloc(p, n ? n : 1); }

char *imp_strndup(const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *d = imp_malloc(len + 1);
	if(!d) return NULL;
	memcpy(d, s, len);
	d[len] = '\0';
	return d;
}

char *imp_strdup(const char *s) { return imp_strndup(s, strlen(s)); }

void imp_free(void *p) { free(p); }
