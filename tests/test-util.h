/* Shared by the engine tests: a PEER layer with random (never zero) parameters drawn from the
 * engine's own generator with a fixed seed, double-precision references for the query, its norm
 * and the expert keys, and float comparisons that report what they compared. */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "activation.h"
#include "corpus.h"
#include "peer-layer.h"
#include "rng.h"

#define TEST_SEED 0x5eed2407u

typedef struct {
    peer_layer_config cfg;
    int max_tokens;
    float *arena;            /* (peer_layer_params_count) */
    float *grad_arena;       /* (peer_layer_grads_count) */
    peer_layer_params params;
    peer_layer_params grads;
    peer_layer_acts acts;
    peer_sparse_grad sparse;
} test_layer;

peer_layer_config test_config(int d_model, int n_experts, int heads, int topk, int d_key,
                              bool shared_keys, peer_query_norm norm, peer_activation activation);
/* "D=16 N=64 h=2 k=4 dk=8 per-head batch gelu", for messages. Owned by the caller. */
char *test_config_describe(const peer_layer_config *cfg);

/* Validates cfg (failing the test with the engine's message), allocates everything and fills
 * the parameters from peer_layer_params_init, then gives the biases, the norm affine and the
 * running statistics random values so that no term of the forward is trivially 0 or 1. */
void test_layer_init(test_layer *layer, const peer_layer_config *cfg, int max_tokens,
                     uint64_t seed);
void test_layer_free(test_layer *layer);
/* Dense gradients and the sparse gradient back to zero. */
void test_layer_zero_grads(test_layer *layer);

/* n bytes of words drawn from words (n_words) with seed, so that a model has something to
 * learn; g_free it. */
uint8_t *test_word_text(const char *const *words, size_t n_words, uint64_t seed, size_t n);
/* A corpus of such a text, bytes long, drawn with TEST_SEED; corpus_free it. */
void test_word_corpus(corpus *c, const char *const *words, size_t n_words, size_t bytes,
                      int seq_len);

/* n normal(0, std) floats, g_free them. */
float *test_random_floats(peer_rng *rng, size_t n, float std);
/* Copies of n floats, g_free them. */
float *test_copy_floats(const float *src, size_t n);

/* A sub-key: side 0 is C (row a), side 1 is C' (column b); (dk/2) floats. */
const float *test_subkey(const peer_layer_params *params, const peer_layer_config *cfg, int group,
                         int side, int index);
/* q · [C[a]; C'[b]] over the whole key in double, q (dk). */
double test_expert_score(const peer_layer_params *params, const peer_layer_config *cfg, int head,
                         const float *q, int expert);
/* Σ |q_i·key_i|: the scale of the rounding error of a float score. */
double test_expert_score_scale(const peer_layer_params *params, const peer_layer_config *cfg,
                               int head, const float *q, int expert);

/* The activation and its derivative in double, GELU in its tanh form. */
double test_activation(peer_activation act, double x);
double test_activation_derivative(peer_activation act, double x);

/* query (BT, HK) = inp · Wqᵀ + b in double. */
void test_reference_query(double *query, const float *inp, const peer_layer_params *params,
                          const peer_layer_config *cfg, int BT);
/* normed (BT, HK) from query (BT, HK), as the model contract defines each norm; in training,
 * batch-norm uses the biased batch variance, in evaluation the running statistics. */
void test_reference_norm(double *normed, const double *query, const peer_layer_params *params,
                         const peer_layer_config *cfg, int BT, peer_mode mode);

/* |actual - expected| <= atol + rtol·|expected|, or the test fails naming what was compared. */
#define test_assert_close(actual, expected, atol, rtol, ...)                                    \
    test_check_close((actual), (expected), (atol), (rtol), __FILE__, __LINE__, G_STRFUNC,       \
                     __VA_ARGS__)
void test_check_close(double actual, double expected, double atol, double rtol, const char *file,
                      int line, const char *func, const char *format, ...) G_GNUC_PRINTF(8, 9);

/* Fails the test with a formatted message. */
#define test_fail(...) test_fail_at(__FILE__, __LINE__, G_STRFUNC, __VA_ARGS__)
void test_fail_at(const char *file, int line, const char *func, const char *format, ...)
    G_GNUC_PRINTF(4, 5);

/* Whether a tensor's gradient lives in the dense arena: present, not a buffer, not a table. */
bool test_tensor_has_dense_grad(const peer_layer_config *cfg, peer_layer_tensor tensor);
