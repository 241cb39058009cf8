/*
 * nc-dirty: a memory-dirtying workload for NovaCron's live-migration tests.
 *
 * Keeps a working set of MIB MiB and rewrites RATE pages per second in it, so a
 * migration has a known, steady dirty-page rate to converge against. CONTENT decides
 * how well those pages compress: "random" (every byte new, defeats xbzrle and
 * multifd compression) or "compressible" (zero pages carrying one changing counter
 * word, which xbzrle and zstd shrink to almost nothing but zero-page detection does
 * not skip).
 *
 * Configuration lives in a small key=value file (default /run/nc-dirty.conf) so the
 * guest's HTTP control endpoint can change it while the program runs: it is re-read
 * on SIGHUP and, as a fallback, whenever its mtime changes (checked once a second).
 * Counters are written to a status file once a second for tests to read back.
 *
 * Usage: nc-dirty [-c CONF] [-s STATUS] [-p PIDFILE]
 *        nc-dirty -r MIB     write MIB MiB of incompressible random bytes to stdout and
 *                            exit (the guest's disk writes: /dev/urandom manages only
 *                            ~2 MiB/s under TCG, this PRNG is far faster)
 *   CONF keys: mib=N rate=PAGES_PER_SEC content=random|compressible
 *   rate=0 stops writing (the working set is kept); mib=0 frees it.
 *
 * Built with `gcc -static -O2` at testbed `up` time and copied into the guest initramfs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL

struct cfg {
    long mib;
    long rate;          /* pages per second */
    int compressible;   /* 0 = random content */
};

static volatile sig_atomic_t reload = 1;
static void on_hup(int sig) { (void)sig; reload = 1; }

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static inline uint64_t xorshift64(void) {
    uint64_t x = rng_state;
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    return rng_state = x;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void read_cfg(const char *path, struct cfg *c, time_t *mtime) {
    FILE *f = fopen(path, "r");
    struct stat st;
    if (!f) return;                         /* keep the previous config */
    if (fstat(fileno(f), &st) == 0) *mtime = st.st_mtime;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        char *eq = strchr(line, '=');
        if (!eq) continue;
        *eq = 0;
        char *v = eq + 1;
        v[strcspn(v, "\r\n")] = 0;
        if (!strcmp(line, "mib")) c->mib = atol(v);
        else if (!strcmp(line, "rate")) c->rate = atol(v);
        else if (!strcmp(line, "content")) c->compressible = !strcmp(v, "compressible");
    }
    fclose(f);
    if (c->mib < 0) c->mib = 0;
    if (c->rate < 0) c->rate = 0;
}

static void fill_page(unsigned char *p, int compressible, uint64_t counter) {
    if (compressible) {
        /* One changing word per page: the page is dirty, but a delta or a general
         * compressor reduces it to a few bytes. Never all-zero, so QEMU's zero-page
         * shortcut does not apply. */
        uint64_t v = counter | 1;
        memcpy(p, &v, sizeof v);
    } else {
        uint64_t *q = (uint64_t *)p;
        for (size_t i = 0; i < PAGE / sizeof(uint64_t); i++) q[i] = xorshift64();
    }
}

int main(int argc, char **argv) {
    const char *conf = "/run/nc-dirty.conf";
    const char *status = "/run/nc-dirty.status";
    const char *pidfile = NULL;
    int opt;
    long stream_mib = -1;
    while ((opt = getopt(argc, argv, "c:s:p:r:")) != -1) {
        if (opt == 'r') stream_mib = atol(optarg);
        else if (opt == 'c') conf = optarg;
        else if (opt == 's') status = optarg;
        else if (opt == 'p') pidfile = optarg;
        else { fprintf(stderr, "usage: %s [-c conf] [-s status] [-p pidfile] | -r MIB\n", argv[0]); return 2; }
    }
    if (stream_mib >= 0) {
        /* Seeded from the kernel so two writes never produce the same blocks. */
        FILE *u = fopen("/dev/urandom", "r");
        if (!u || fread(&rng_state, sizeof rng_state, 1, u) != 1) rng_state ^= (uint64_t)time(NULL);
        if (u) fclose(u);
        rng_state |= 1;
        static uint64_t chunk[(1 << 20) / sizeof(uint64_t)];
        for (long m = 0; m < stream_mib; m++) {
            for (size_t i = 0; i < sizeof chunk / sizeof chunk[0]; i++) chunk[i] = xorshift64();
            if (fwrite(chunk, sizeof chunk, 1, stdout) != 1) return 1;
        }
        return fflush(stdout) == 0 ? 0 : 1;
    }
    if (pidfile) {
        FILE *f = fopen(pidfile, "w");
        if (f) { fprintf(f, "%d\n", (int)getpid()); fclose(f); }
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, NULL);
    rng_state ^= (uint64_t)getpid() << 32 ^ (uint64_t)time(NULL);

    struct cfg c = {0, 0, 0};
    unsigned char *buf = NULL;
    size_t pages = 0, cursor = 0;
    int cur_compressible = -1;
    uint64_t written = 0, counter = 0;
    time_t mtime = 0;
    double next_check = 0, tick_start = now_s(), credit = 0;

    for (;;) {
        double t = now_s();
        if (t >= next_check) {
            struct stat st;
            if (stat(conf, &st) == 0 && st.st_mtime != mtime) reload = 1;
            FILE *s = fopen(status, "w");
            if (s) {
                fprintf(s, "mib=%ld\nrate=%ld\ncontent=%s\npages_written=%llu\n",
                        c.mib, c.rate, c.compressible ? "compressible" : "random",
                        (unsigned long long)written);
                fclose(s);
            }
            next_check = t + 1.0;
        }
        if (reload) {
            reload = 0;
            struct cfg n = c;
            read_cfg(conf, &n, &mtime);
            size_t want = (size_t)n.mib * 256;     /* 4 KiB pages per MiB */
            if (want != pages) {
                if (buf) munmap(buf, pages * PAGE);
                buf = NULL; pages = 0; cursor = 0;
                if (want) {
                    buf = mmap(NULL, want * PAGE, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                    if (buf == MAP_FAILED) { buf = NULL; perror("mmap"); n.mib = 0; want = 0; }
                    pages = want;
                }
                cur_compressible = -1;
            }
            if (buf && cur_compressible != n.compressible) {
                /* Populate the whole set once so it is resident and has the requested
                 * character before the rate-limited rewriting starts. */
                if (n.compressible) memset(buf, 0, pages * PAGE);
                for (size_t i = 0; i < pages; i++) fill_page(buf + i * PAGE, n.compressible, ++counter);
                cur_compressible = n.compressible;
            }
            c = n;
            tick_start = now_s(); credit = 0;
        }
        if (!buf || c.rate == 0) { usleep(100000); continue; }

        /* Token bucket with 10 ms ticks: writes exactly `rate` pages per second on
         * average, smoothly rather than in one burst per second. */
        double t2 = now_s();
        credit += (t2 - tick_start) * (double)c.rate;
        tick_start = t2;
        if (credit > (double)c.rate) credit = (double)c.rate;   /* no catch-up storms */
        long n = (long)credit;
        for (long i = 0; i < n; i++) {
            fill_page(buf + cursor * PAGE, c.compressible, ++counter);
            if (++cursor >= pages) cursor = 0;
        }
        credit -= (double)n;
        written += (uint64_t)n;
        usleep(10000);
    }
}
