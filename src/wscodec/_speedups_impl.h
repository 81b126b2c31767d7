/* C helpers for wscodec._speedups: masking and strict UTF-8 validation.
 *
 * Portable code works in 8-byte words; on x86-64 with GCC or Clang an AVX2 path (masking and UTF-8), an
 * AVX-512 one (UTF-8, with AVX512F and AVX512BW) or an SSE4.1 one (UTF-8) is picked at run time
 * (__builtin_cpu_supports, which also checks that the OS saves the wider registers), so the wheel never needs
 * -march=native; on AArch64 the UTF-8 validator uses NEON, which every AArch64 CPU has.
 *
 * UTF-8: the bulk validator is the "lookup" algorithm of Keiser and Lemire (Validating UTF-8 in less than
 * one instruction per byte, 2021), as in simdjson; the scalar fallback and the chunk edges use a small
 * state machine that fails at the first byte that cannot continue a valid sequence (RFC 3629 section 4).
 */
#ifndef WSCODEC_SPEEDUPS_IMPL_H
#define WSCODEC_SPEEDUPS_IMPL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define WS_X86 1
#include <immintrin.h>
#else
#define WS_X86 0
#endif

#if defined(__aarch64__) && defined(__ARM_NEON)
#define WS_NEON 1
#include <arm_neon.h>
#else
#define WS_NEON 0
#endif

static int ws_have_avx2 = 0;
/* UTF-8 validator in use: 3 = AVX-512, 2 = AVX2, 1 = SSE4.1 (with SSSE3) or, on AArch64, NEON,
 * 0 = portable scalar. Picked once by ws_init_cpu from what the CPU offers; ws_utf8_set_impl lets the
 * tests run each path the CPU supports. */
static int ws_utf8_impl = 0;
static int ws_utf8_best = 0;
/* Masking into a fresh buffer: ask for the destination lines in exclusive state this far ahead
 * (prefetchw), so the stores do not wait for their read-for-ownership; measured 5-15% at 64 KiB-1 MiB. */
#define WS_PFD 1024

static void ws_init_cpu(void)
{
#if WS_X86
    __builtin_cpu_init();
    ws_have_avx2 = __builtin_cpu_supports("avx2") ? 1 : 0;
    if (ws_have_avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw"))
        ws_utf8_best = 3;
    else if (ws_have_avx2)
        ws_utf8_best = 2;
    else if (__builtin_cpu_supports("sse4.1") && __builtin_cpu_supports("ssse3"))
        ws_utf8_best = 1;
#endif
#if WS_NEON
    ws_utf8_best = 1;
#endif
    ws_utf8_impl = ws_utf8_best;
}

/* The names of the paths, by number, on this architecture. */
#if WS_NEON
#define WS_UTF8_SIMD128 "neon"
#else
#define WS_UTF8_SIMD128 "sse4"
#endif

/* Force a UTF-8 path (tests): returns the one in use, never one the CPU lacks. */
static int ws_utf8_set_impl(int impl)
{
    if (impl >= 0 && impl <= ws_utf8_best)
        ws_utf8_impl = impl;
    return ws_utf8_impl;
}

static inline uint32_t ws_load_key(const unsigned char *k)
{
    uint32_t key;
    memcpy(&key, k, 4);
    return key;
}

/* ---------------------------------------------------------------------------------------------------- */
/* Masking: dst[i] = src[i] ^ key[i & 3]; dst may equal src.                                            */

static inline void ws_mask_words(unsigned char *dst, const unsigned char *src, size_t n, uint32_t key)
{
    uint64_t k8 = ((uint64_t)key << 32) | key;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        uint64_t a, b, c, d;
        memcpy(&a, src + i, 8);
        memcpy(&b, src + i + 8, 8);
        memcpy(&c, src + i + 16, 8);
        memcpy(&d, src + i + 24, 8);
        a ^= k8; b ^= k8; c ^= k8; d ^= k8;
        memcpy(dst + i, &a, 8);
        memcpy(dst + i + 8, &b, 8);
        memcpy(dst + i + 16, &c, 8);
        memcpy(dst + i + 24, &d, 8);
    }
    for (; i + 8 <= n; i += 8) {
        uint64_t a;
        memcpy(&a, src + i, 8);
        a ^= k8;
        memcpy(dst + i, &a, 8);
    }
    if (i + 4 <= n) {
        uint32_t a;
        memcpy(&a, src + i, 4);
        a ^= key;
        memcpy(dst + i, &a, 4);
        i += 4;
    }
    {
        unsigned char kb[4];
        memcpy(kb, &key, 4);
        for (; i < n; i++)
            dst[i] = src[i] ^ kb[i & 3];
    }
}

/* The key as seen from `shift` bytes further on (the mask's byte shift & 3 first). */
static inline uint32_t ws_rotate_key(uint32_t key, size_t shift)
{
    unsigned char kb[8];
    uint32_t out;
    memcpy(kb, &key, 4);
    memcpy(kb + 4, &key, 4);
    memcpy(&out, kb + (shift & 3), 4);
    return out;
}

#if WS_X86
__attribute__((target("avx2")))
static void ws_mask_avx2(unsigned char *dst, const unsigned char *src, size_t n, uint32_t key)
{
    /* Align the stores: a 32-byte store that straddles two cache lines costs about twice as much. */
    size_t i = (32 - ((uintptr_t)dst & 31)) & 31;
    __m256i k;
    ws_mask_words(dst, src, i, key);
    key = ws_rotate_key(key, i);
    k = _mm256_set1_epi32((int)key);
    for (; i + 128 <= n; i += 128) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(src + i));
        __m256i b = _mm256_loadu_si256((const __m256i *)(src + i + 32));
        __m256i c = _mm256_loadu_si256((const __m256i *)(src + i + 64));
        __m256i d = _mm256_loadu_si256((const __m256i *)(src + i + 96));
        if (dst != src) {
            __builtin_prefetch(dst + i + WS_PFD, 1, 3);
            __builtin_prefetch(dst + i + WS_PFD + 64, 1, 3);
        }
        _mm256_store_si256((__m256i *)(dst + i), _mm256_xor_si256(a, k));
        _mm256_store_si256((__m256i *)(dst + i + 32), _mm256_xor_si256(b, k));
        _mm256_store_si256((__m256i *)(dst + i + 64), _mm256_xor_si256(c, k));
        _mm256_store_si256((__m256i *)(dst + i + 96), _mm256_xor_si256(d, k));
    }
    for (; i + 32 <= n; i += 32) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(src + i));
        _mm256_store_si256((__m256i *)(dst + i), _mm256_xor_si256(a, k));
    }
    ws_mask_words(dst + i, src + i, n - i, key);
}
#endif

static inline void ws_mask(unsigned char *dst, const unsigned char *src, size_t n, uint32_t key)
{
#if WS_X86
    if (n >= 128 && ws_have_avx2) {
        ws_mask_avx2(dst, src, n, key);
        return;
    }
#endif
    ws_mask_words(dst, src, n, key);
}

/* ---------------------------------------------------------------------------------------------------- */
/* UTF-8, scalar state machine. State: 0 = on a character boundary; otherwise                           */
/* (continuation bytes still needed << 16) | (lowest allowed next byte << 8) | highest allowed next byte. */
/* WS_UTF8_FAIL is sticky.                                                                              */

#define WS_UTF8_FAIL 0xFFFFFFFFu

static inline uint32_t ws_utf8_lead(unsigned char c)
{
    if (c >= 0xC2 && c <= 0xDF) return (1u << 16) | (0x80u << 8) | 0xBFu;
    if (c == 0xE0) return (2u << 16) | (0xA0u << 8) | 0xBFu;
    if (c == 0xED) return (2u << 16) | (0x80u << 8) | 0x9Fu;
    if (c >= 0xE1 && c <= 0xEF) return (2u << 16) | (0x80u << 8) | 0xBFu;
    if (c == 0xF0) return (3u << 16) | (0x90u << 8) | 0xBFu;
    if (c >= 0xF1 && c <= 0xF3) return (3u << 16) | (0x80u << 8) | 0xBFu;
    if (c == 0xF4) return (3u << 16) | (0x80u << 8) | 0x8Fu;
    return WS_UTF8_FAIL;
}

/* Run the state machine over s[0:n]; returns the new state (WS_UTF8_FAIL at the first impossible byte). */
static uint32_t ws_utf8_step(uint32_t state, const unsigned char *s, size_t n)
{
    size_t i = 0;
    if (state == WS_UTF8_FAIL)
        return state;
    while (i < n) {
        unsigned char c = s[i];
        if (state == 0) {
            if (c < 0x80) {
                /* ASCII run, 8 bytes at a time */
                i++;
                while (i + 8 <= n) {
                    uint64_t w;
                    memcpy(&w, s + i, 8);
                    if (w & 0x8080808080808080ull)
                        break;
                    i += 8;
                }
                while (i < n && s[i] < 0x80)
                    i++;
                continue;
            }
            state = ws_utf8_lead(c);
            if (state == WS_UTF8_FAIL)
                return state;
            /* whole character available: check it without going round the loop */
            {
                uint32_t need = state >> 16;
                if (i + need < n) {
                    unsigned char c1 = s[i + 1];
                    if (c1 < ((state >> 8) & 0xFF) || c1 > (state & 0xFF))
                        return WS_UTF8_FAIL;
                    if (need >= 2 && (s[i + 2] & 0xC0) != 0x80)
                        return WS_UTF8_FAIL;
                    if (need >= 3 && (s[i + 3] & 0xC0) != 0x80)
                        return WS_UTF8_FAIL;
                    i += need + 1;
                    state = 0;
                    continue;
                }
            }
            i++;
        } else {
            if (c < ((state >> 8) & 0xFF) || c > (state & 0xFF))
                return WS_UTF8_FAIL;
            state = state - (1u << 16);
            state = (state & 0xFFFF0000u) ? (state & 0xFFFF0000u) | (0x80u << 8) | 0xBFu : 0;
            i++;
        }
    }
    return state;
}

/* Keiser-Lemire lookup validator: the error classes, then the SIMD block functions. */
#define WS_TOO_SHORT (1 << 0)
#define WS_TOO_LONG (1 << 1)
#define WS_OVERLONG_3 (1 << 2)
#define WS_TOO_LARGE (1 << 3)
#define WS_SURROGATE (1 << 4)
#define WS_OVERLONG_2 (1 << 5)
#define WS_TOO_LARGE_1000 (1 << 6)
#define WS_OVERLONG_4 (1 << 6)
#define WS_TWO_CONTS (-0x80) /* bit 7, spelled so that it fits a char */
#define WS_CARRY (WS_TOO_SHORT | WS_TOO_LONG | WS_TWO_CONTS)

/* The three 16-entry lookup tables of the algorithm, indexed by nibbles (shared by the AVX2 and SSE4 paths). */
#define WS_T1H \
    WS_TOO_LONG, WS_TOO_LONG, WS_TOO_LONG, WS_TOO_LONG, WS_TOO_LONG, WS_TOO_LONG, WS_TOO_LONG, WS_TOO_LONG, \
    WS_TWO_CONTS, WS_TWO_CONTS, WS_TWO_CONTS, WS_TWO_CONTS, WS_TOO_SHORT | WS_OVERLONG_2, WS_TOO_SHORT, \
    WS_TOO_SHORT | WS_OVERLONG_3 | WS_SURROGATE, WS_TOO_SHORT | WS_TOO_LARGE | WS_TOO_LARGE_1000 | WS_OVERLONG_4
#define WS_L1 WS_CARRY | WS_TOO_LARGE | WS_TOO_LARGE_1000
#define WS_T1L \
    WS_CARRY | WS_OVERLONG_3 | WS_OVERLONG_2 | WS_OVERLONG_4, WS_CARRY | WS_OVERLONG_2, WS_CARRY, WS_CARRY, \
    WS_CARRY | WS_TOO_LARGE, WS_L1, WS_L1, WS_L1, WS_L1, WS_L1, WS_L1, WS_L1, WS_L1, WS_L1 | WS_SURROGATE, \
    WS_L1, WS_L1
#define WS_C8 WS_TOO_LONG | WS_OVERLONG_2 | WS_TWO_CONTS | WS_OVERLONG_3 | WS_TOO_LARGE_1000 | WS_OVERLONG_4
#define WS_C9 WS_TOO_LONG | WS_OVERLONG_2 | WS_TWO_CONTS | WS_OVERLONG_3 | WS_TOO_LARGE
#define WS_CA WS_TOO_LONG | WS_OVERLONG_2 | WS_TWO_CONTS | WS_SURROGATE | WS_TOO_LARGE
#define WS_T2H \
    WS_TOO_SHORT, WS_TOO_SHORT, WS_TOO_SHORT, WS_TOO_SHORT, WS_TOO_SHORT, WS_TOO_SHORT, WS_TOO_SHORT, \
    WS_TOO_SHORT, WS_C8, WS_C9, WS_CA, WS_CA, WS_TOO_SHORT, WS_TOO_SHORT, WS_TOO_SHORT, WS_TOO_SHORT

#if WS_NEON
/* The same over 16-byte blocks with NEON (baseline on AArch64: no run-time check needed). */
static inline uint8x16_t ws_utf8_block_neon(uint8x16_t input, uint8x16_t prev_input)
{
    static const uint8_t t1h[16] = {WS_T1H}, t1l[16] = {WS_T1L}, t2h[16] = {WS_T2H};
    const uint8x16_t lo_nibble = vdupq_n_u8(0x0F);
    uint8x16_t prev1 = vextq_u8(prev_input, input, 16 - 1);
    uint8x16_t prev2 = vextq_u8(prev_input, input, 16 - 2);
    uint8x16_t prev3 = vextq_u8(prev_input, input, 16 - 3);
    uint8x16_t b1h = vqtbl1q_u8(vld1q_u8(t1h), vshrq_n_u8(prev1, 4));
    uint8x16_t b1l = vqtbl1q_u8(vld1q_u8(t1l), vandq_u8(prev1, lo_nibble));
    uint8x16_t b2h = vqtbl1q_u8(vld1q_u8(t2h), vshrq_n_u8(input, 4));
    uint8x16_t sc = vandq_u8(vandq_u8(b1h, b1l), b2h);
    uint8x16_t third = vqsubq_u8(prev2, vdupq_n_u8(0xE0 - 0x80));
    uint8x16_t fourth = vqsubq_u8(prev3, vdupq_n_u8(0xF0 - 0x80));
    uint8x16_t must23 = vandq_u8(vorrq_u8(third, fourth), vdupq_n_u8(0x80));
    return veorq_u8(must23, sc);
}

static int ws_utf8_valid_neon(const unsigned char *s, size_t n)
{
    static const uint8_t max_bytes[16] = {
        255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 0xF0 - 1, 0xE0 - 1, 0xC0 - 1};
    const uint8x16_t max_value = vld1q_u8(max_bytes);
    uint8x16_t prev = vdupq_n_u8(0), err = vdupq_n_u8(0), prev_incomplete = vdupq_n_u8(0);
    size_t i = 0;
    while (i + 64 <= n) {
        uint8x16_t a = vld1q_u8(s + i), b = vld1q_u8(s + i + 16), c = vld1q_u8(s + i + 32), d = vld1q_u8(s + i + 48);
        if (vmaxvq_u8(vorrq_u8(vorrq_u8(a, b), vorrq_u8(c, d))) < 0x80) {
            err = vorrq_u8(err, prev_incomplete);
            prev_incomplete = vdupq_n_u8(0);
        } else {
            err = vorrq_u8(err, ws_utf8_block_neon(a, prev));
            err = vorrq_u8(err, ws_utf8_block_neon(b, a));
            err = vorrq_u8(err, ws_utf8_block_neon(c, b));
            err = vorrq_u8(err, ws_utf8_block_neon(d, c));
            prev_incomplete = vqsubq_u8(d, max_value);
        }
        prev = d;
        i += 64;
        if ((i & 4095) == 0 && vmaxvq_u8(err) != 0)
            return 0;
    }
    while (i + 16 <= n) {
        uint8x16_t a = vld1q_u8(s + i);
        if (vmaxvq_u8(a) < 0x80) {
            err = vorrq_u8(err, prev_incomplete);
            prev_incomplete = vdupq_n_u8(0);
        } else {
            err = vorrq_u8(err, ws_utf8_block_neon(a, prev));
            prev_incomplete = vqsubq_u8(a, max_value);
        }
        prev = a;
        i += 16;
    }
    if (i < n) {
        unsigned char tail[16];
        uint8x16_t a;
        memset(tail, 0, 16);
        memcpy(tail, s + i, n - i);
        a = vld1q_u8(tail);
        err = vorrq_u8(err, ws_utf8_block_neon(a, prev));
        prev_incomplete = vqsubq_u8(a, max_value);
    }
    err = vorrq_u8(err, prev_incomplete);
    return vmaxvq_u8(err) == 0;
}
#endif

#if WS_X86

__attribute__((target("avx2")))
static inline __m256i ws_utf8_block(__m256i input, __m256i prev_input)
{
    const __m256i lo_nibble = _mm256_set1_epi8(0x0F);
    /* (prev_input ++ input) shifted right by 1, 2 and 3 bytes: the bytes 1, 2, 3 positions earlier */
    __m256i t = _mm256_permute2x128_si256(prev_input, input, 0x21);
    __m256i prev1 = _mm256_alignr_epi8(input, t, 16 - 1);
    __m256i prev2 = _mm256_alignr_epi8(input, t, 16 - 2);
    __m256i prev3 = _mm256_alignr_epi8(input, t, 16 - 3);
    const __m256i t1h = _mm256_setr_epi8(WS_T1H, WS_T1H);
    const __m256i t1l = _mm256_setr_epi8(WS_T1L, WS_T1L);
    const __m256i t2h = _mm256_setr_epi8(WS_T2H, WS_T2H);
    __m256i b1h = _mm256_shuffle_epi8(t1h, _mm256_and_si256(_mm256_srli_epi16(prev1, 4), lo_nibble));
    __m256i b1l = _mm256_shuffle_epi8(t1l, _mm256_and_si256(prev1, lo_nibble));
    __m256i b2h = _mm256_shuffle_epi8(t2h, _mm256_and_si256(_mm256_srli_epi16(input, 4), lo_nibble));
    __m256i sc = _mm256_and_si256(_mm256_and_si256(b1h, b1l), b2h);
    __m256i third = _mm256_subs_epu8(prev2, _mm256_set1_epi8((char)(0xE0 - 0x80)));
    __m256i fourth = _mm256_subs_epu8(prev3, _mm256_set1_epi8((char)(0xF0 - 0x80)));
    __m256i must23 = _mm256_and_si256(_mm256_or_si256(third, fourth), _mm256_set1_epi8((char)0x80));
    return _mm256_xor_si256(must23, sc);
}

/* The same over 16-byte blocks with SSSE3's pshufb and SSE4.1's ptest (x86-64 CPUs without AVX2). */
__attribute__((target("sse4.1,ssse3")))
static inline __m128i ws_utf8_block_sse(__m128i input, __m128i prev_input)
{
    const __m128i lo_nibble = _mm_set1_epi8(0x0F);
    __m128i prev1 = _mm_alignr_epi8(input, prev_input, 16 - 1);
    __m128i prev2 = _mm_alignr_epi8(input, prev_input, 16 - 2);
    __m128i prev3 = _mm_alignr_epi8(input, prev_input, 16 - 3);
    const __m128i t1h = _mm_setr_epi8(WS_T1H);
    const __m128i t1l = _mm_setr_epi8(WS_T1L);
    const __m128i t2h = _mm_setr_epi8(WS_T2H);
    __m128i b1h = _mm_shuffle_epi8(t1h, _mm_and_si128(_mm_srli_epi16(prev1, 4), lo_nibble));
    __m128i b1l = _mm_shuffle_epi8(t1l, _mm_and_si128(prev1, lo_nibble));
    __m128i b2h = _mm_shuffle_epi8(t2h, _mm_and_si128(_mm_srli_epi16(input, 4), lo_nibble));
    __m128i sc = _mm_and_si128(_mm_and_si128(b1h, b1l), b2h);
    __m128i third = _mm_subs_epu8(prev2, _mm_set1_epi8((char)(0xE0 - 0x80)));
    __m128i fourth = _mm_subs_epu8(prev3, _mm_set1_epi8((char)(0xF0 - 0x80)));
    __m128i must23 = _mm_and_si128(_mm_or_si128(third, fourth), _mm_set1_epi8((char)0x80));
    return _mm_xor_si128(must23, sc);
}

__attribute__((target("sse4.1,ssse3")))
static int ws_utf8_valid_sse4(const unsigned char *s, size_t n)
{
    __m128i prev = _mm_setzero_si128();
    __m128i err = _mm_setzero_si128();
    __m128i prev_incomplete = _mm_setzero_si128();
    const __m128i max_value = _mm_setr_epi8(
        -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, (char)(0xF0 - 1), (char)(0xE0 - 1), (char)(0xC0 - 1));
    size_t i = 0;
    while (i + 64 <= n) {
        __m128i a = _mm_loadu_si128((const __m128i *)(s + i));
        __m128i b = _mm_loadu_si128((const __m128i *)(s + i + 16));
        __m128i c = _mm_loadu_si128((const __m128i *)(s + i + 32));
        __m128i d = _mm_loadu_si128((const __m128i *)(s + i + 48));
        __m128i any = _mm_or_si128(_mm_or_si128(a, b), _mm_or_si128(c, d));
        if (_mm_movemask_epi8(any) == 0) {
            err = _mm_or_si128(err, prev_incomplete);
            prev_incomplete = _mm_setzero_si128();
        } else {
            err = _mm_or_si128(err, ws_utf8_block_sse(a, prev));
            err = _mm_or_si128(err, ws_utf8_block_sse(b, a));
            err = _mm_or_si128(err, ws_utf8_block_sse(c, b));
            err = _mm_or_si128(err, ws_utf8_block_sse(d, c));
            prev_incomplete = _mm_subs_epu8(d, max_value);
        }
        prev = d;
        i += 64;
        if ((i & 4095) == 0 && !_mm_testz_si128(err, err))
            return 0;
    }
    while (i + 16 <= n) {
        __m128i a = _mm_loadu_si128((const __m128i *)(s + i));
        if (_mm_movemask_epi8(a) == 0) {
            err = _mm_or_si128(err, prev_incomplete);
            prev_incomplete = _mm_setzero_si128();
        } else {
            err = _mm_or_si128(err, ws_utf8_block_sse(a, prev));
            prev_incomplete = _mm_subs_epu8(a, max_value);
        }
        prev = a;
        i += 16;
    }
    if (i < n) {
        unsigned char tail[16];
        __m128i a;
        memset(tail, 0, 16);
        memcpy(tail, s + i, n - i);
        a = _mm_loadu_si128((const __m128i *)tail);
        err = _mm_or_si128(err, ws_utf8_block_sse(a, prev));
        prev_incomplete = _mm_subs_epu8(a, max_value);
    }
    err = _mm_or_si128(err, prev_incomplete);
    return _mm_testz_si128(err, err);
}

/* Validate s[0:n] as complete UTF-8 (n a multiple of 32 not required). Returns 1 if valid. */
__attribute__((target("avx2")))
static int ws_utf8_valid_avx2(const unsigned char *s, size_t n)
{
    __m256i prev = _mm256_setzero_si256();
    __m256i err = _mm256_setzero_si256();
    __m256i prev_incomplete = _mm256_setzero_si256();
    const __m256i max_value = _mm256_setr_epi8(
        -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
        -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, (char)(0xF0 - 1), (char)(0xE0 - 1), (char)(0xC0 - 1));
    size_t i = 0;
    while (i + 128 <= n) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(s + i));
        __m256i b = _mm256_loadu_si256((const __m256i *)(s + i + 32));
        __m256i c = _mm256_loadu_si256((const __m256i *)(s + i + 64));
        __m256i d = _mm256_loadu_si256((const __m256i *)(s + i + 96));
        __m256i any = _mm256_or_si256(_mm256_or_si256(a, b), _mm256_or_si256(c, d));
        if (_mm256_movemask_epi8(any) == 0) {
            err = _mm256_or_si256(err, prev_incomplete);
            prev_incomplete = _mm256_setzero_si256();
            prev = d;
        } else {
            err = _mm256_or_si256(err, ws_utf8_block(a, prev));
            err = _mm256_or_si256(err, ws_utf8_block(b, a));
            err = _mm256_or_si256(err, ws_utf8_block(c, b));
            err = _mm256_or_si256(err, ws_utf8_block(d, c));
            prev_incomplete = _mm256_subs_epu8(d, max_value);
            prev = d;
        }
        i += 128;
        if ((i & 4095) == 0 && !_mm256_testz_si256(err, err))
            return 0;
    }
    while (i + 32 <= n) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(s + i));
        if (_mm256_movemask_epi8(a) == 0) {
            err = _mm256_or_si256(err, prev_incomplete);
            prev_incomplete = _mm256_setzero_si256();
        } else {
            err = _mm256_or_si256(err, ws_utf8_block(a, prev));
            prev_incomplete = _mm256_subs_epu8(a, max_value);
        }
        prev = a;
        i += 32;
    }
    if (i < n) {
        unsigned char tail[32];
        __m256i a;
        memset(tail, 0, 32);
        memcpy(tail, s + i, n - i);
        a = _mm256_loadu_si256((const __m256i *)tail);
        err = _mm256_or_si256(err, ws_utf8_block(a, prev));
        prev_incomplete = _mm256_subs_epu8(a, max_value); /* zero padding: incomplete shows as an error */
    }
    err = _mm256_or_si256(err, prev_incomplete);
    return _mm256_testz_si256(err, err);
}

/* The same over 64-byte blocks with AVX-512 (F and BW): half the instructions per byte of AVX2, and three-input
 * logic (vpternlogd) folds the ANDs and ORs; measured 1.3x the AVX2 path on CJK and mixed text (Zen 4). */
__attribute__((target("avx512f,avx512bw")))
static inline __m512i ws_utf8_block512(__m512i input, __m512i prev_input)
{
    const __m512i lo_nibble = _mm512_set1_epi8(0x0F);
    /* (prev_input ++ input) shifted right by 1, 2 and 3 bytes: lanes [p3, i0, i1, i2], then a byte align */
    __m512i t = _mm512_alignr_epi64(input, prev_input, 6);
    __m512i prev1 = _mm512_alignr_epi8(input, t, 16 - 1);
    __m512i prev2 = _mm512_alignr_epi8(input, t, 16 - 2);
    __m512i prev3 = _mm512_alignr_epi8(input, t, 16 - 3);
    const __m512i t1h = _mm512_broadcast_i32x4(_mm_setr_epi8(WS_T1H));
    const __m512i t1l = _mm512_broadcast_i32x4(_mm_setr_epi8(WS_T1L));
    const __m512i t2h = _mm512_broadcast_i32x4(_mm_setr_epi8(WS_T2H));
    __m512i b1h = _mm512_shuffle_epi8(t1h, _mm512_and_si512(_mm512_srli_epi16(prev1, 4), lo_nibble));
    __m512i b1l = _mm512_shuffle_epi8(t1l, _mm512_and_si512(prev1, lo_nibble));
    __m512i b2h = _mm512_shuffle_epi8(t2h, _mm512_and_si512(_mm512_srli_epi16(input, 4), lo_nibble));
    __m512i sc = _mm512_ternarylogic_epi32(b1h, b1l, b2h, 0x80);              /* a & b & c */
    __m512i third = _mm512_subs_epu8(prev2, _mm512_set1_epi8((char)(0xE0 - 0x80)));
    __m512i fourth = _mm512_subs_epu8(prev3, _mm512_set1_epi8((char)(0xF0 - 0x80)));
    __m512i must23 = _mm512_ternarylogic_epi32(third, fourth, _mm512_set1_epi8((char)0x80), 0xA8); /* (a|b)&c */
    return _mm512_xor_si512(must23, sc);
}

/* Validate s[0:n] as complete UTF-8 (any n). Returns 1 if valid. */
__attribute__((target("avx512f,avx512bw")))
static int ws_utf8_valid_avx512(const unsigned char *s, size_t n)
{
    __m512i prev = _mm512_setzero_si512();
    __m512i err = _mm512_setzero_si512();
    __m512i prev_incomplete = _mm512_setzero_si512();
    /* A lead byte in the last three positions whose character cannot fit in the block: 0xF0.. at 61,
     * 0xE0.. at 62, 0xC0.. at 63 */
    static const unsigned char max_bytes[64] = {
        255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
        255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
        255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
        255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 0xF0 - 1, 0xE0 - 1, 0xC0 - 1};
    const __m512i max_value = _mm512_loadu_si512((const void *)max_bytes);
    size_t i = 0;
    while (i + 256 <= n) {
        __m512i a = _mm512_loadu_si512((const void *)(s + i));
        __m512i b = _mm512_loadu_si512((const void *)(s + i + 64));
        __m512i c = _mm512_loadu_si512((const void *)(s + i + 128));
        __m512i d = _mm512_loadu_si512((const void *)(s + i + 192));
        if (_mm512_movepi8_mask(_mm512_ternarylogic_epi32(a, b, _mm512_or_si512(c, d), 0xFE)) == 0) { /* a|b|c|d */
            err = _mm512_or_si512(err, prev_incomplete);
            prev_incomplete = _mm512_setzero_si512();
            prev = d;
            i += 256;
            continue;
        }
        /* Text that is not ASCII tends to stay so: the next 1 KiB goes through without the ASCII test, which
         * costs more than it saves there. */
        {
            size_t stop = i + 1024 < n ? i + 1024 : n;
            for (;;) {
                err = _mm512_ternarylogic_epi32(err, ws_utf8_block512(a, prev), ws_utf8_block512(b, a), 0xFE); /* |= */
                err = _mm512_ternarylogic_epi32(err, ws_utf8_block512(c, b), ws_utf8_block512(d, c), 0xFE);
                prev = d;
                i += 256;
                if (i + 256 > stop)
                    break;
                a = _mm512_loadu_si512((const void *)(s + i));
                b = _mm512_loadu_si512((const void *)(s + i + 64));
                c = _mm512_loadu_si512((const void *)(s + i + 128));
                d = _mm512_loadu_si512((const void *)(s + i + 192));
            }
            prev_incomplete = _mm512_subs_epu8(prev, max_value);
        }
        if (_mm512_test_epi8_mask(err, err) != 0)
            return 0;
    }
    while (i + 64 <= n) {
        __m512i a = _mm512_loadu_si512((const void *)(s + i));
        if (_mm512_movepi8_mask(a) == 0) {
            err = _mm512_or_si512(err, prev_incomplete);
            prev_incomplete = _mm512_setzero_si512();
        } else {
            err = _mm512_or_si512(err, ws_utf8_block512(a, prev));
            prev_incomplete = _mm512_subs_epu8(a, max_value);
        }
        prev = a;
        i += 64;
    }
    if (i < n) {
        /* a masked load: no byte past the end is read, and the zero padding shows an incomplete tail */
        __m512i a = _mm512_maskz_loadu_epi8(((__mmask64)1 << (n - i)) - 1, (const void *)(s + i));
        err = _mm512_or_si512(err, ws_utf8_block512(a, prev));
        prev_incomplete = _mm512_subs_epu8(a, max_value);
    }
    err = _mm512_or_si512(err, prev_incomplete);
    return _mm512_test_epi8_mask(err, err) == 0;
}
#endif

/* 1 if s[0:n] is complete, strict UTF-8. */
static int ws_utf8_valid(const unsigned char *s, size_t n)
{
#if WS_X86
    if (n >= 64) {
        if (ws_utf8_impl == 3)
            return ws_utf8_valid_avx512(s, n);
        if (ws_utf8_impl == 2)
            return ws_utf8_valid_avx2(s, n);
        if (ws_utf8_impl == 1)
            return ws_utf8_valid_sse4(s, n);
    }
#endif
#if WS_NEON
    if (n >= 64 && ws_utf8_impl == 1)
        return ws_utf8_valid_neon(s, n);
#endif
    return ws_utf8_step(0, s, n) == 0;
}

/* Incremental: validate s[0:n] continuing from `state`; returns the new state (WS_UTF8_FAIL if invalid).
 * The bulk between the first and the last character boundary goes through the fast validator. */
static uint32_t ws_utf8_feed(uint32_t state, const unsigned char *s, size_t n)
{
    size_t i = 0, end, k;
    if (state == WS_UTF8_FAIL)
        return state;
    if (n < 64)
        return ws_utf8_step(state, s, n);
    /* finish the pending character */
    while (state != 0 && i < n) {
        state = ws_utf8_step(state, s + i, 1);
        if (state == WS_UTF8_FAIL)
            return state;
        i++;
    }
    /* find the last boundary: a lead byte in the last 3 bytes whose character is incomplete */
    end = n;
    for (k = 1; k <= 3 && k <= n - i; k++) {
        unsigned char c = s[n - k];
        if (c < 0x80)
            break;
        if (c >= 0xC0) {
            size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
            if (k < need)
                end = n - k;
            break;
        }
    }
    if (!ws_utf8_valid(s + i, end - i))
        return WS_UTF8_FAIL;
    return ws_utf8_step(0, s + end, n - end);
}

#endif /* WSCODEC_SPEEDUPS_IMPL_H */
