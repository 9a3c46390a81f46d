/* A stand-in for the macOS SDK's assert.h (see TargetConditionals.h). */
#ifndef CHATD_ASSERT_STUB
#define CHATD_ASSERT_STUB
#define assert(condition) ((void)0)
#endif
