#include "philox.h"
#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

/* Round: (hi(M0*c0) ^ c1 ^ k0, lo(M1*c2), hi(M1*c2) ^ c3 ^ k1, lo(M0*c0)); key += W after each. */
void rt_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0, p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        uint32_t n3 = (uint32_t)p0;
        c0 = n0, c1 = n1, c2 = n2, c3 = n3;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

uint64_t rt_fnv1a64(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ull;
    }
    return h;
}

/* 24 high bits, centred in their bucket: never 0 or 1, so log(u) is finite. */
static double unit_open(uint32_t x) { return ((double)(x >> 8) + 0.5) * (1.0 / 16777216.0); }

void rt_init_values(int kind, double a, double b, int64_t fan_in, uint64_t seed, const char *name,
                    int64_t n, double *out)
{
    const double two_pi = 6.283185307179586476925286766559;
    uint64_t h = rt_fnv1a64(name ? name : "");
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    double bound = 1.0 / sqrt((double)(fan_in < 1 ? 1 : fan_in));
    for (int64_t i = 0; i < n; i++) {
        double v = 0;
        if (kind == RT_INIT_ONES) {
            v = 1;
        } else if (kind == RT_INIT_FULL) {
            v = a;
        } else if (kind == RT_INIT_NORMAL || kind == RT_INIT_UNIFORM || kind == RT_INIT_KAIMING_UNIFORM) {
            uint64_t idx = (uint64_t)i;
            uint32_t ctr[4] = {(uint32_t)idx, (uint32_t)(idx >> 32), (uint32_t)h, (uint32_t)(h >> 32)};
            uint32_t x[4];
            rt_philox4x32(ctr, key, x);
            double u = unit_open(x[0]);
            if (kind == RT_INIT_NORMAL)
                v = a + b * (sqrt(-2.0 * log(u)) * cos(two_pi * unit_open(x[1])));
            else if (kind == RT_INIT_UNIFORM)
                v = a + (b - a) * u;
            else
                v = -bound + 2.0 * bound * u;
        }
        out[i] = v;
    }
}
