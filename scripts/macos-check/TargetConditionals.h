/* A stand-in for the macOS SDK's TargetConditionals.h, for the compile
 * check of the macOS build on Linux (.ci/run): ring's C code includes it.
 * The objects are never linked or run, so only the macros must exist. */
#ifndef CHATD_TARGET_CONDITIONALS_STUB
#define CHATD_TARGET_CONDITIONALS_STUB
#define TARGET_OS_MAC 1
#define TARGET_OS_OSX 1
#define TARGET_OS_IPHONE 0
#define TARGET_OS_IOS 0
#define TARGET_OS_TV 0
#define TARGET_OS_WATCH 0
#define TARGET_OS_SIMULATOR 0
#endif
