/* Allocation wrappers. Everything in imprint allocates through these, so tests can make
 * the n-th allocation fail (imp_mem_fail_after) and check that every path recovers. */
#ifndef IMP_MEM_H
#define IMP_MEM_H
#include <stddef.h>

void *imp_malloc(size_t n);
void *imp_calloc(size_t count, size_t n);
void *imp_realloc(void *p, size_t n);
char *imp_strdup(const char *s);
char *imp_strndup(const char *s, size_t n);
void imp_free(void *p);

/* Test hook: after n more successful allocations, fail every one. -1 disables. */
void imp_mem_fail_after(long n);

#endif
