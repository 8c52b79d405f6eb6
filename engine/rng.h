/* A small deterministic random generator (splitmix64), so a seed reproduces a run on any
 * machine and libc. */
#pragma once

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t state;
} peer_rng;

void peer_rng_seed(peer_rng *rng, uint64_t seed);
uint64_t peer_rng_next(peer_rng *rng);
/* Uniform in [0, 1). */
float peer_rng_uniform(peer_rng *rng);
/* Standard normal (Box-Muller). */
float peer_rng_normal(peer_rng *rng);
/* Fills n floats with normal(0, std). */
void peer_rng_fill_normal(peer_rng *rng, float *out, size_t n, float std);
/* Fills n floats with uniform(-bound, bound). */
void peer_rng_fill_uniform(peer_rng *rng, float *out, size_t n, float bound);
