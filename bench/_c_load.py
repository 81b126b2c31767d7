# ruff: noqa: E501  (the C sources below keep their own line lengths)
"""The compiled side of the echo benchmark: a C load client and a raw C TCP echo server (the physical floor).

Nothing compiled is committed: :func:`build` writes the two sources below to a temporary directory and compiles
them with the system C compiler (``cc``, or ``$CC``), once per benchmark run.

* ``client PORT INFLIGHT SIZE WARMUP DURATION DEFLATE [PAYLOAD_FILE]`` opens one WebSocket connection (offering
  permessage-deflate when DEFLATE is 1; it sends uncompressed messages and only counts the echoes, so a
  compressing server pays for compression alone), keeps INFLIGHT binary messages of SIZE bytes outstanding
  with non-blocking I/O, and prints round trips, seconds, p50 and p99 latency as JSON. It parses frames in
  place without copying payloads, so it outpaces every server measured, the floor included. Every reply is
  checked: an uncompressed one must be exactly SIZE bytes, and the first 8 byte for byte the message sent;
  on a mismatch it exits with status 3 and says which reply. A compressed reply (with DEFLATE) is not
  inflated there: those among the first 8 are printed in hex (``compressed``) for the caller to inflate and
  compare (``bench_echo.py`` does); the length of the later ones is not checked.
* ``echo LIFETIME`` answers the upgrade with a fixed 101 and echoes every byte back: what one TCP round trip
  over loopback costs, with no WebSocket work at all. It exits by itself after LIFETIME seconds.
"""

from __future__ import annotations

import os
import shutil
import subprocess

CLIENT_C = r"""
/* wscodec bench load client: one WebSocket connection, `inflight` binary messages kept outstanding.
 * usage: client PORT INFLIGHT SIZE WARMUP_S DURATION_S DEFLATE(0|1) [PAYLOAD_FILE]
 * (the payload: SIZE bytes of PAYLOAD_FILE, repeated as needed; without it, bytes 0..255 repeated)
 * prints {"round_trips":N,"seconds":S,"p50_us":X,"p99_us":Y,"compressed":[HEX,...]} */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ns(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec; }
static void die(const char *m) { fprintf(stderr, "client: %s: %s\n", m, strerror(errno)); exit(2); }
static int cmp64(const void *a, const void *b) { int64_t x = *(const int64_t *)a, y = *(const int64_t *)b; return x < y ? -1 : x > y; }

static unsigned char *out; static size_t out_len, out_cap, out_off;
static void queue(const unsigned char *p, size_t n) {
    if (out_off && out_off == out_len) out_off = out_len = 0;
    if (out_len + n > out_cap) { out_cap = (out_len + n) * 2; out = realloc(out, out_cap); if (!out) die("realloc"); }
    memcpy(out + out_len, p, n); out_len += n;
}


/* Every echo is checked: an uncompressed reply must be exactly SIZE bytes, and the first CHECK_FIRST replies
 * byte for byte the payload sent (echoes come back in order on one connection). A compressed reply (RSV1,
 * with DEFLATE) is not inflated here: those among the first CHECK_FIRST are kept and printed in hex
 * ("compressed" in the JSON) for the caller to inflate and compare. A mismatch exits 3. */
#define CHECK_FIRST 8
static unsigned char *expect; static size_t size;
static void mismatch(size_t msg_no, const char *what, uint64_t got) {
    fprintf(stderr, "client: reply %zu is not an echo: %s %llu, sent %zu bytes\n", msg_no + 1, what, (unsigned long long)got, size);
    exit(3);
}
static void check_bytes(const unsigned char *p, uint64_t n, uint64_t at, uint64_t foff, const unsigned char *mkey, size_t msg_no) {
    if (at + n > size) mismatch(msg_no, "length at least", at + n);
    for (uint64_t i = 0; i < n; i++) {
        unsigned char b = mkey ? p[i] ^ mkey[(foff + i) & 3] : p[i];
        if (b != expect[at + i]) mismatch(msg_no, "content differs at byte", at + i);
    }
}
static unsigned char *kept; static size_t kept_len, kept_cap, kept_end[CHECK_FIRST]; static int kept_n;
static void keep_bytes(const unsigned char *p, uint64_t n, uint64_t foff, const unsigned char *mkey) {
    if (kept_len + n > kept_cap) { kept_cap = (kept_len + n) * 2; kept = realloc(kept, kept_cap); if (!kept) exit(2); }
    for (uint64_t i = 0; i < n; i++) kept[kept_len++] = mkey ? p[i] ^ mkey[(foff + i) & 3] : p[i];
}
/* A frame is over: a final data frame ends a reply (returns 1 for an echo); a Close ends the run. */
static int end_frame(int op, int fin, int comp, uint64_t *mlen, size_t *msg_no) {
    if (op == 8) { fprintf(stderr, "client: server closed\n"); exit(2); }
    if (op > 2 || !fin) return 0;
    if (!comp && *mlen != size) mismatch(*msg_no, "length", *mlen);
    if (comp && *msg_no < CHECK_FIRST) kept_end[kept_n++] = kept_len;
    *mlen = 0; ++*msg_no;
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 7 && argc != 8) { fprintf(stderr, "usage: client PORT INFLIGHT SIZE WARMUP DURATION DEFLATE [PAYLOAD_FILE]\n"); return 2; }
    int port = atoi(argv[1]), inflight = atoi(argv[2]); size = (size_t)atol(argv[3]);
    double warmup = atof(argv[4]), duration = atof(argv[5]); int deflate = atoi(argv[6]);
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a; memset(&a, 0, sizeof a); a.sin_family = AF_INET; a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) die("connect");
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char req[512];
    int rl = snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n%s\r\n", port,
        deflate ? "Sec-WebSocket-Extensions: permessage-deflate\r\n" : "");
    if (write(fd, req, rl) != rl) die("write handshake");
    size_t cap = 1 << 20; unsigned char *buf = malloc(cap); size_t have = 0; unsigned char *body = NULL;
    while (!body) {
        ssize_t n = read(fd, buf + have, cap - have - 1);
        if (n <= 0) die("handshake read");
        have += n; buf[have] = 0;
        char *e = strstr((char *)buf, "\r\n\r\n");
        if (e) { if (strncmp((char *)buf, "HTTP/1.1 101", 12)) { fprintf(stderr, "client: no 101: %.200s\n", buf); return 2; } body = (unsigned char *)e + 4; }
    }
    size_t leftover = have - (size_t)(body - buf);
    /* the frame: FIN binary, masked, payload bytes 0..255 repeated */
    size_t hl = size < 126 ? 2 : size < 65536 ? 4 : 10, flen = hl + 4 + size;
    unsigned char *frame = malloc(flen), key[4] = {0x37, 0xfa, 0x21, 0x3d};
    frame[0] = 0x82;
    if (size < 126) frame[1] = 0x80 | size;
    else if (size < 65536) { frame[1] = 0x80 | 126; frame[2] = size >> 8; frame[3] = size & 255; }
    else { frame[1] = 0x80 | 127; for (int i = 0; i < 8; i++) frame[2 + i] = (unsigned char)((uint64_t)size >> (56 - 8 * i)); }
    memcpy(frame + hl, key, 4);
    for (size_t i = 0; i < size; i++) frame[hl + 4 + i] = (unsigned char)i;
    if (argc == 8) {
        FILE *f = fopen(argv[7], "rb"); size_t got = 0;
        if (!f) die("payload file");
        while (got < size) { size_t n = fread(frame + hl + 4 + got, 1, size - got, f); if (!n) { if (!got) die("empty payload file"); rewind(f); } got += n; }
        fclose(f);
    }
    expect = malloc(size ? size : 1); memcpy(expect, frame + hl + 4, size);
    for (size_t i = 0; i < size; i++) frame[hl + 4 + i] ^= key[i & 3];
    int64_t *sent = malloc(sizeof(int64_t) * inflight); int s_head = 0, s_tail = 0, outstanding = 0;
    size_t lat_cap = 1 << 16, lat_n = 0; int64_t *lat = malloc(sizeof(int64_t) * lat_cap);
    int64_t t0 = now_ns(), measure_from = t0 + (int64_t)(warmup * 1e9), stop_at = measure_from + (int64_t)(duration * 1e9), last = measure_from;
    for (int i = 0; i < inflight; i++) { sent[s_head] = now_ns(); s_head = (s_head + 1) % inflight; outstanding++; queue(frame, flen); }
    unsigned char hdr[14], mkey[4]; int hlen = 0, masked = 0, comp = 0; uint64_t skip = 0, foff = 0, mlen = 0; size_t msg_no = 0;
    int in_frame = 0, cur_fin = 0, cur_op = 0;
    int64_t hard_stop = stop_at + 30 * (int64_t)1000000000;
    unsigned char *p = body, *end = body + leftover;
    for (;;) {
        int echoes = 0;
        while (p < end) {
            if (in_frame) {
                uint64_t take = (uint64_t)(end - p) < skip ? (uint64_t)(end - p) : skip;
                if (cur_op <= 2 && msg_no < CHECK_FIRST) {
                    if (comp) keep_bytes(p, take, foff, masked ? mkey : NULL);
                    else check_bytes(p, take, mlen, foff, masked ? mkey : NULL, msg_no);
                }
                if (cur_op <= 2) mlen += take;
                skip -= take; p += take; foff += take;
                if (skip) break;
                in_frame = 0;
                echoes += end_frame(cur_op, cur_fin, comp, &mlen, &msg_no);
                continue;
            }
            hdr[hlen++] = *p++;
            if (hlen >= 2) {
                int l7 = hdr[1] & 127, need = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + ((hdr[1] & 0x80) ? 4 : 0);
                if (hlen == need) {
                    uint64_t len = l7;
                    if (l7 == 126) len = ((uint64_t)hdr[2] << 8) | hdr[3];
                    else if (l7 == 127) { len = 0; for (int i = 0; i < 8; i++) len = (len << 8) | hdr[2 + i]; }
                    cur_fin = hdr[0] >> 7; cur_op = hdr[0] & 15; skip = len; in_frame = 1; hlen = 0; foff = 0;
                    masked = (hdr[1] & 0x80) != 0; if (masked) memcpy(mkey, hdr + need - 4, 4);
                    if (cur_op == 1 || cur_op == 2) comp = (hdr[0] & 0x40) != 0; /* RSV1 on the first frame: compressed */
                    if (!skip) { in_frame = 0; echoes += end_frame(cur_op, cur_fin, comp, &mlen, &msg_no); }
                }
            }
        }
        if (echoes) {
            int64_t t = now_ns();
            for (int i = 0; i < echoes; i++) {
                int64_t s = sent[s_tail]; s_tail = (s_tail + 1) % inflight; outstanding--;
                if (s >= measure_from) { if (lat_n == lat_cap) { lat_cap *= 2; lat = realloc(lat, sizeof(int64_t) * lat_cap); if (!lat) die("realloc"); } lat[lat_n++] = t - s; last = t; }
            }
            if (t < stop_at) for (int i = 0; i < echoes; i++) { sent[s_head] = t; s_head = (s_head + 1) % inflight; outstanding++; queue(frame, flen); }
        }
        if (!outstanding && now_ns() >= stop_at) break;
        if (now_ns() > hard_stop) { fprintf(stderr, "client: timed out with %d outstanding\n", outstanding); return 2; }
        struct pollfd pf = {fd, POLLIN | (out_len > out_off ? POLLOUT : 0), 0};
        if (poll(&pf, 1, 1000) < 0 && errno != EINTR) die("poll");
        if (pf.revents & POLLOUT) {
            ssize_t n = send(fd, out + out_off, out_len - out_off, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n < 0 && errno != EAGAIN && errno != EINTR) die("send");
            if (n > 0) out_off += n;
        }
        p = end = buf;
        if (pf.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = recv(fd, buf, cap, MSG_DONTWAIT);
            if (n == 0) { fprintf(stderr, "client: connection closed\n"); return 2; }
            if (n < 0 && errno != EAGAIN && errno != EINTR) die("recv");
            if (n > 0) end = buf + n;
        }
    }
    unsigned char close_frame[8] = {0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8};
    if (write(fd, close_frame, 8) < 0) { /* the server may be gone already */ }
    close(fd);
    qsort(lat, lat_n, sizeof(int64_t), cmp64);
    double secs = (double)(last - measure_from) / 1e9; if (secs <= 0) secs = 1e-9;
    printf("{\"round_trips\": %zu, \"seconds\": %.6f, \"p50_us\": %.3f, \"p99_us\": %.3f, \"compressed\": [", lat_n, secs,
           lat_n ? lat[(size_t)(0.5 * lat_n)] / 1e3 : -1.0, lat_n ? lat[(size_t)(0.99 * lat_n)] / 1e3 : -1.0);
    for (int m = 0; m < kept_n; m++) {
        printf("%s\"", m ? ", " : "");
        for (size_t i = m ? kept_end[m - 1] : 0; i < kept_end[m]; i++) printf("%02x", kept[i]);
        printf("\"");
    }
    printf("]}\n");
    return 0;
}
"""

ECHO_C = r"""
/* The physical floor: a TCP echo server that answers the upgrade request with a fixed 101 and then echoes
 * every byte back unchanged (the client's masked frames come back masked; the client parses either).
 * usage: echo LIFETIME_S [SPIN_US] ; prints "listening on PORT" */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* With SPIN_US > 0 (argv[2], bench_echo.py --busy-poll), poll the socket without blocking for that long
   before sleeping in poll(): the floor for servers that busy-poll too. */
static long spin_us;
static int64_t mono_us(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000; }
static ssize_t read_next(int fd, char *p, size_t n) {
    if (spin_us <= 0) return read(fd, p, n);
    int64_t until = mono_us() + spin_us;
    for (;;) {
        ssize_t r = recv(fd, p, n, MSG_DONTWAIT);
        if (r >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) return r;
        if (mono_us() > until) { struct pollfd q = {fd, POLLIN, 0}; poll(&q, 1, -1); until = mono_us() + spin_us; }
    }
}

static int write_all(int fd, const char *p, size_t n) {
    while (n) { ssize_t w = write(fd, p, n); if (w <= 0) return -1; p += w; n -= (size_t)w; }
    return 0;
}

int main(int argc, char **argv) {
    int lifetime = argc > 1 ? atoi(argv[1]) : 600, one = 1;
    spin_us = argc > 2 ? atol(argv[2]) : 0;
    signal(SIGPIPE, SIG_IGN);
    alarm(lifetime > 0 ? lifetime : 600);
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a; socklen_t al = sizeof a; memset(&a, 0, sizeof a);
    a.sin_family = AF_INET; a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 16) || getsockname(ls, (struct sockaddr *)&a, &al)) { perror("echo"); return 2; }
    printf("listening on %d\n", ntohs(a.sin_port)); fflush(stdout);
    static char buf[1 << 20];
    static const char resp[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                               "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    for (;;) {
        int fd = accept(ls, NULL, NULL);
        if (fd < 0) continue;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        size_t have = 0; char *body = NULL;
        while (!body && have < sizeof buf - 1) {
            ssize_t n = read(fd, buf + have, sizeof buf - 1 - have);
            if (n <= 0) break;
            have += (size_t)n; buf[have] = 0;
            body = strstr(buf, "\r\n\r\n");
        }
        if (!body || write_all(fd, resp, sizeof resp - 1)) { close(fd); continue; }
        body += 4;
        if (write_all(fd, body, have - (size_t)(body - buf)) == 0) {
            for (;;) {
                ssize_t n = read_next(fd, buf, sizeof buf);
                if (n <= 0 || write_all(fd, buf, (size_t)n)) break;
            }
        }
        close(fd);
    }
}
"""


def build(directory: str) -> tuple[str, str]:
    """Compile the client and the echo server into ``directory``; return their paths."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        raise RuntimeError("no C compiler (cc) found: install build-essential, or use --client raw")
    paths = []
    for name, source in (("client", CLIENT_C), ("echo", ECHO_C)):
        c_path = os.path.join(directory, name + ".c")
        with open(c_path, "w") as f:
            f.write(source)
        exe = os.path.join(directory, name)
        subprocess.run([cc, "-O2", "-o", exe, c_path], check=True, capture_output=True, timeout=120)
        paths.append(exe)
    return paths[0], paths[1]
