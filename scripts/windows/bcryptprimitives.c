/*
 * A stand-in for Windows' bcryptprimitives.dll, for running chatd.exe under
 * Debian's Wine 8, which lacks it. Rust's standard library on Windows takes
 * its random bytes (hash map seeds) from ProcessPrng in that DLL; here they
 * come from RtlGenRandom (SystemFunction036 in advapi32), which Wine has.
 *
 * Built by scripts/test-windows.sh:
 *   x86_64-w64-mingw32-gcc -shared -O2 -o bcryptprimitives.dll bcryptprimitives.c -ladvapi32
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x7fffffff ? 0x7fffffff : (ULONG)length;
        if (!SystemFunction036(data, chunk)) {
            return FALSE;
        }
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
