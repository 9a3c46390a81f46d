/* A stand-in for the macOS SDK's string.h (see TargetConditionals.h). */
#ifndef CHATD_STRING_STUB
#define CHATD_STRING_STUB
#include <stddef.h>
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
#endif
