/* Differential check of every UTF-8 path one build has (scalar, SSE4/NEON, AVX2, AVX-512) against the scalar automaton
 * of _speedups_impl.h, on random near-UTF-8 input. Run by scripts/check_utf8_simd.sh, natively and, for the
 * NEON path, cross-compiled for AArch64 under qemu-user. */
#include <stdio.h>
#include <stdlib.h>
#include "_speedups_impl.h"
static const char *pieces[] = {"a", "hello ", "\xc3\xa9", "\xe4\xb8\xad", "\xf0\x9f\x98\x80", "\xed\x9f\xbf", "\xef\xbf\xbd",
                               "\x80", "\xc0", "\xc2", "\xe0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xf5", "\xff", "\xe0", "\xf0\x90"};
int main(void) {
    ws_init_cpu();
    int best = ws_utf8_set_impl(-1);
    unsigned char buf[5000];
    long checked = 0, valid = 0;
    srand(7);
    for (int iter = 0; iter < 200000; iter++) {
        /* mostly short, some past the AVX-512 path's 256-byte groups and 1 KiB stretches */
        size_t n = 0, target = (size_t)(rand() % 8 == 0 ? rand() % 4000 : rand() % 400);
        int bad_rate = rand() % 4 == 0 ? 3 : 200;
        while (n < target) {
            int k = rand() % bad_rate == 0 ? 7 + rand() % 10 : rand() % 7;
            const char *p = pieces[k]; size_t l = strlen(p);
            if (n + l > sizeof buf) break;
            memcpy(buf + n, p, l); n += l;
        }
        int ref = ws_utf8_step(0, buf, n) == 0;
        for (int impl = 0; impl <= best; impl++) {
            ws_utf8_set_impl(impl);
            int got = ws_utf8_valid(buf, n);
            uint32_t st = 0; size_t cut = n ? (size_t)rand() % n : 0;
            st = ws_utf8_feed(st, buf, cut); st = ws_utf8_feed(st, buf + cut, n - cut);
            if (got != ref || (st == 0) != ref) { printf("MISMATCH impl %d n %zu ref %d got %d feed %u\n", impl, n, ref, got, st); return 1; }
        }
        checked++; valid += ref;
    }
    printf("ok: %ld inputs (%ld valid), paths 0..%d\n", checked, valid, best);
    return 0;
}
