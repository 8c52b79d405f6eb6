#include "rng.h"

#include <math.h>

void peer_rng_seed(peer_rng *rng, uint64_t seed)
{
    rng->state = seed;
}

uint64_t peer_rng_next(peer_rng *rng)
{
    uint64_t z = (rng->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

float peer_rng_uniform(peer_rng *rng)
{
    return (float)(peer_rng_next(rng) >> 40) * (1.0f / 16777216.0f);
}

float peer_rng_normal(peer_rng *rng)
{
    /* 53-bit uniforms in (0, 1] keep log() finite. */
    double u1 = ((double)(peer_rng_next(rng) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
    double u2 = (double)(peer_rng_next(rng) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

void peer_rng_fill_normal(peer_rng *rng, float *out, size_t n, float std)
{
    /* Both values of each Box-Muller pair, from one 64-bit draw: a million-expert table holds
     * half a billion floats. */
    size_t i = 0;
    for (; i + 1 < n; i += 2) {
        uint64_t bits = peer_rng_next(rng);
        float u1 = ((float)(bits >> 40) + 1.0f) * (1.0f / 16777216.0f); /* (0, 1] */
        float u2 = (float)((bits >> 8) & 0xffffff) * (1.0f / 16777216.0f);
        float radius = std * sqrtf(-2.0f * logf(u1));
        float angle = 2.0f * (float)M_PI * u2;
        out[i] = radius * cosf(angle);
        out[i + 1] = radius * sinf(angle);
    }
    if (i < n)
        out[i] = std * peer_rng_normal(rng);
}

void peer_rng_fill_uniform(peer_rng *rng, float *out, size_t n, float bound)
{
    for (size_t i = 0; i < n; i++)
        out[i] = bound * (2.0f * peer_rng_uniform(rng) - 1.0f);
}
