/* The transformer's plain ops (LayerNorm, causal attention, embeddings, cross-entropy): each
 * forward against a double-precision reference, each backward against central finite differences
 * of loss = Σ out·R (so dout = R), and every result bit-identical with 1, 2 and 3 threads.
 * Gradient buffers start from random values, so the checks also show that backwards add. */
#include <math.h>
#include <string.h>

#include "attention.h"
#include "cross-entropy.h"
#include "embedding.h"
#include "layernorm.h"
#include "test-util.h"
#include "thread-pool.h"

/* Step and tolerance of the finite differences of the smooth ops. The forwards run in float32:
 * with ~100 outputs of size ~1 the loss carries a rounding noise of ~1e-6, which (L+ - L-)/2ε
 * turns into ~5e-5 at ε = 1e-2; the central difference's truncation error ε²/6·f''' stays near
 * 1e-4 for the O(1) inputs used here. A wrong term shows up at the scale of the gradient itself
 * (0.1 to 1), far above 2e-3 + 1e-2 relative. */
#define FD_EPS 1e-2f
#define FD_ATOL 2e-3
#define FD_RTOL 1e-2

typedef double (*loss_fn)(void *ctx);

static double dot_double(const float *a, const float *b, size_t n)
{
    double sum = 0.0;
    for (size_t i = 0; i < n; i++)
        sum += (double)a[i] * (double)b[i];
    return sum;
}

/* Compares grad with the central difference of loss at every stride-th element of param,
 * dividing by the step actually taken after float rounding. */
static void check_gradient(const char *what, float *param, const float *grad, size_t n,
                           size_t stride, float eps, double atol, double rtol, loss_fn loss,
                           void *ctx)
{
    for (size_t i = 0; i < n; i += stride) {
        float saved = param[i];
        param[i] = saved + eps;
        double up = param[i];
        double loss_up = loss(ctx);
        param[i] = saved - eps;
        double down = param[i];
        double loss_down = loss(ctx);
        param[i] = saved;
        test_assert_close(grad[i], (loss_up - loss_down) / (up - down), atol, rtol, "%s[%zu]",
                          what, i);
    }
}

/* after - before: what a backward added to a gradient buffer that held `before`. */
static float *added(const float *after, const float *before, size_t n)
{
    float *out = g_new(float, MAX(n, 1));
    for (size_t i = 0; i < n; i++)
        out[i] = after[i] - before[i];
    return out;
}

static thread_pool *pool_new_or_fail(int n_threads)
{
    peer_error err = { { 0 } };
    thread_pool *pool = thread_pool_new(n_threads, &err);
    if (!pool)
        g_error("thread_pool_new(%d): %s", n_threads, err.message);
    return pool;
}

/* n_threads 0 names the run without a pool. */
static void assert_same_bits(const char *what, int n_threads, const void *a, const void *b,
                             size_t bytes)
{
    if (memcmp(a, b, bytes) != 0)
        test_fail("%s differs between 1 thread and %d (0: no pool)", what, n_threads);
}

/* ---- LayerNorm ---- */

typedef struct {
    int BT, C;
    float *inp, *weight, *bias; /* (BT, C), (C), (C) */
    float *out, *mean, *rstd;   /* (BT, C), (BT), (BT) */
    const float *R;             /* (BT, C) */
} layernorm_case;

static double layernorm_loss(void *data)
{
    layernorm_case *lc = data;
    layernorm_forward(lc->out, lc->mean, lc->rstd, lc->inp, lc->weight, lc->bias, lc->BT, lc->C,
                      NULL);
    return dot_double(lc->out, lc->R, (size_t)lc->BT * lc->C);
}

static void layernorm_case_init(layernorm_case *lc, peer_rng *rng, int BT, int C)
{
    lc->BT = BT;
    lc->C = C;
    size_t n = (size_t)BT * C;
    lc->inp = test_random_floats(rng, n, 1.0f);
    /* an offset per row, so that subtracting the mean matters */
    for (int t = 0; t < BT; t++)
        for (int i = 0; i < C; i++)
            lc->inp[(size_t)t * C + i] += 0.5f * (float)(t - BT / 2);
    lc->weight = test_random_floats(rng, C, 0.3f);
    for (int i = 0; i < C; i++)
        lc->weight[i] += 1.0f;
    lc->bias = test_random_floats(rng, C, 0.2f);
    lc->out = g_new(float, n);
    lc->mean = g_new(float, BT);
    lc->rstd = g_new(float, BT);
    lc->R = test_random_floats(rng, n, 1.0f);
}

static void layernorm_case_free(layernorm_case *lc)
{
    g_free(lc->inp);
    g_free(lc->weight);
    g_free(lc->bias);
    g_free(lc->out);
    g_free(lc->mean);
    g_free(lc->rstd);
    g_free((float *)lc->R);
}

static void test_layernorm_forward(void)
{
    peer_rng rng;
    peer_rng_seed(&rng, TEST_SEED);
    layernorm_case lc;
    layernorm_case_init(&lc, &rng, 37, 70);
    layernorm_forward(lc.out, lc.mean, lc.rstd, lc.inp, lc.weight, lc.bias, lc.BT, lc.C, NULL);
    for (int t = 0; t < lc.BT; t++) {
        const float *x = lc.inp + (size_t)t * lc.C;
        double mean = 0.0, var = 0.0;
        for (int i = 0; i < lc.C; i++)
            mean += x[i];
        mean /= lc.C;
        for (int i = 0; i < lc.C; i++)
            var += (x[i] - mean) * (x[i] - mean);
        var /= lc.C;
        double rstd = 1.0 / sqrt(var + LAYERNORM_EPS);
        /* float sums over 70 values: relative errors of a few 1e-7 */
        test_assert_close(lc.mean[t], mean, 1e-5, 1e-5, "mean[%d]", t);
        test_assert_close(lc.rstd[t], rstd, 0.0, 1e-5, "rstd[%d]", t);
        for (int i = 0; i < lc.C; i++) {
            double expected = (x[i] - mean) * rstd * lc.weight[i] + lc.bias[i];
            test_assert_close(lc.out[(size_t)t * lc.C + i], expected, 1e-5, 1e-5,
                              "out[%d, %d]", t, i);
        }
    }
    layernorm_case_free(&lc);
}

static void test_layernorm_gradients(void)
{
    peer_rng rng;
    peer_rng_seed(&rng, TEST_SEED + 1);
    layernorm_case lc;
    layernorm_case_init(&lc, &rng, 5, 7);
    size_t n = (size_t)lc.BT * lc.C;
    float *dinp0 = test_random_floats(&rng, n, 1.0f);
    float *dweight0 = test_random_floats(&rng, lc.C, 1.0f);
    float *dbias0 = test_random_floats(&rng, lc.C, 1.0f);
    float *dinp = test_copy_floats(dinp0, n);
    float *dweight = test_copy_floats(dweight0, lc.C);
    float *dbias = test_copy_floats(dbias0, lc.C);

    layernorm_loss(&lc);
    layernorm_backward(dinp, dweight, dbias, lc.R, lc.inp, lc.weight, lc.mean, lc.rstd, lc.BT,
                       lc.C, NULL);
    float *ginp = added(dinp, dinp0, n);
    float *gweight = added(dweight, dweight0, lc.C);
    float *gbias = added(dbias, dbias0, lc.C);

    check_gradient("dinp", lc.inp, ginp, n, 1, FD_EPS, FD_ATOL, FD_RTOL, layernorm_loss, &lc);
    check_gradient("dweight", lc.weight, gweight, lc.C, 1, FD_EPS, FD_ATOL, FD_RTOL,
                   layernorm_loss, &lc);
    check_gradient("dbias", lc.bias, gbias, lc.C, 1, FD_EPS, FD_ATOL, FD_RTOL, layernorm_loss,
                   &lc);

    g_free(ginp);
    g_free(gweight);
    g_free(gbias);
    g_free(dinp);
    g_free(dweight);
    g_free(dbias);
    g_free(dinp0);
    g_free(dweight0);
    g_free(dbias0);
    layernorm_case_free(&lc);
}

/* ---- Attention ---- */

typedef struct {
    int B, T, C, NH;
    float *inp;            /* (B, T, 3C) */
    float *out;            /* (B, T, C) */
    float *preatt, *att;   /* (B, NH, T, T) */
    const float *R;        /* (B, T, C) */
} attention_case;

static double attention_loss(void *data)
{
    attention_case *ac = data;
    attention_forward(ac->out, ac->preatt, ac->att, ac->inp, ac->B, ac->T, ac->C, ac->NH, NULL);
    return dot_double(ac->out, ac->R, (size_t)ac->B * ac->T * ac->C);
}

static void attention_case_init(attention_case *ac, peer_rng *rng, int B, int T, int C, int NH)
{
    ac->B = B;
    ac->T = T;
    ac->C = C;
    ac->NH = NH;
    ac->inp = test_random_floats(rng, (size_t)B * T * 3 * C, 1.0f);
    ac->out = g_new(float, (size_t)B * T * C);
    ac->preatt = g_new(float, (size_t)B * NH * T * T);
    ac->att = g_new(float, (size_t)B * NH * T * T);
    ac->R = test_random_floats(rng, (size_t)B * T * C, 1.0f);
}

static void attention_case_free(attention_case *ac)
{
    g_free(ac->inp);
    g_free(ac->out);
    g_free(ac->preatt);
    g_free(ac->att);
    g_free((float *)ac->R);
}

/* The textbook O(T²) causal attention in double. */
static void reference_attention(double *out, const float *inp, int B, int T, int C, int NH)
{
    int hs = C / NH, C3 = 3 * C;
    double scale = 1.0 / sqrt((double)hs);
    double *w = g_new(double, T);
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            for (int t = 0; t < T; t++) {
                const float *q = inp + ((size_t)b * T + t) * C3 + (size_t)h * hs;
                double maxval = -INFINITY, sum = 0.0;
                for (int t2 = 0; t2 <= t; t2++) {
                    const float *k = inp + ((size_t)b * T + t2) * C3 + C + (size_t)h * hs;
                    double s = 0.0;
                    for (int i = 0; i < hs; i++)
                        s += (double)q[i] * (double)k[i];
                    w[t2] = s * scale;
                    maxval = fmax(maxval, w[t2]);
                }
                for (int t2 = 0; t2 <= t; t2++) {
                    w[t2] = exp(w[t2] - maxval);
                    sum += w[t2];
                }
                double *o = out + ((size_t)b * T + t) * C + (size_t)h * hs;
                for (int i = 0; i < hs; i++)
                    o[i] = 0.0;
                for (int t2 = 0; t2 <= t; t2++) {
                    const float *v = inp + ((size_t)b * T + t2) * C3 + 2 * C + (size_t)h * hs;
                    for (int i = 0; i < hs; i++)
                        o[i] += w[t2] / sum * v[i];
                }
            }
        }
    }
    g_free(w);
}

static void test_attention_forward(void)
{
    peer_rng rng;
    peer_rng_seed(&rng, TEST_SEED + 2);
    /* T = 70 crosses the engine's 64-row blocks */
    attention_case ac;
    attention_case_init(&ac, &rng, 2, 70, 12, 3);
    size_t n = (size_t)ac.B * ac.T * ac.C;
    double *expected = g_new(double, n);
    attention_loss(&ac);
    reference_attention(expected, ac.inp, ac.B, ac.T, ac.C, ac.NH);
    /* outputs are convex mixtures of O(1) values: float rounding stays near 1e-6 */
    for (size_t i = 0; i < n; i++)
        test_assert_close(ac.out[i], expected[i], 1e-5, 1e-4, "out[%zu]", i);
    /* each causal row of att is a distribution */
    for (int bh = 0; bh < ac.B * ac.NH; bh++) {
        for (int t = 0; t < ac.T; t++) {
            const float *a = ac.att + ((size_t)bh * ac.T + t) * ac.T;
            double sum = 0.0;
            for (int t2 = 0; t2 <= t; t2++)
                sum += a[t2];
            test_assert_close(sum, 1.0, 1e-5, 0.0, "Σ att[%d, %d, :]", bh, t);
        }
    }
    g_free(expected);
    attention_case_free(&ac);
}

static void test_attention_causal(void)
{
    peer_rng rng;
    peer_rng_seed(&rng, TEST_SEED + 3);
    attention_case ac;
    attention_case_init(&ac, &rng, 1, 70, 12, 3);
    int T = ac.T, C = ac.C;
    float *base = g_new(float, (size_t)T * C);
    attention_loss(&ac);
    memcpy(base, ac.out, (size_t)T * C * sizeof(float));
    /* a later token inside the same 64-row block as earlier ones, one in the next block, and the
     * first token of the next block */
    const int later[] = { 30, 64, 66, 69 };
    for (size_t l = 0; l < G_N_ELEMENTS(later); l++) {
        int tl = later[l];
        float *row = ac.inp + (size_t)tl * 3 * C;
        float *saved = test_copy_floats(row, 3 * (size_t)C);
        for (int i = 0; i < 3 * C; i++)
            row[i] += 1.0f + 0.5f * (float)i;
        attention_loss(&ac);
        if (memcmp(ac.out, base, (size_t)tl * C * sizeof(float)) != 0)
            test_fail("changing token %d changed an earlier output", tl);
        if (memcmp(ac.out + (size_t)tl * C, base + (size_t)tl * C, (size_t)C * sizeof(float)) == 0)
            test_fail("changing token %d left its own output unchanged", tl);
        memcpy(row, saved, 3 * (size_t)C * sizeof(float));
        g_free(saved);
    }
    g_free(base);
    attention_case_free(&ac);
}

static void attention_gradient_case(int B, int T, int C, int NH, size_t stride, uint64_t seed)
{
    peer_rng rng;
    peer_rng_seed(&rng, seed);
    attention_case ac;
    attention_case_init(&ac, &rng, B, T, C, NH);
    size_t n = (size_t)B * T * 3 * C, tt = (size_t)B * NH * T * T;
    float *dinp0 = test_random_floats(&rng, n, 1.0f);
    float *dinp = test_copy_floats(dinp0, n);
    float *dpreatt = g_new(float, tt);
    float *datt = g_new(float, tt);
    attention_loss(&ac);
    attention_backward(dinp, dpreatt, datt, ac.R, ac.inp, ac.att, B, T, C, NH, NULL);
    float *grad = added(dinp, dinp0, n);
    check_gradient("dinp", ac.inp, grad, n, stride, FD_EPS, FD_ATOL, FD_RTOL, attention_loss,
                   &ac);
    g_free(grad);
    g_free(dinp);
    g_free(dinp0);
    g_free(dpreatt);
    g_free(datt);
    attention_case_free(&ac);
}

static void test_attention_gradients(void)
{
    /* every element of a small case, then a sample of one that crosses the 64-row blocks */
    attention_gradient_case(2, 5, 8, 2, 1, TEST_SEED + 4);
    attention_gradient_case(1, 70, 8, 2, 7, TEST_SEED + 5);
}

/* ---- Embeddings ---- */

typedef struct {
    int B, T, T_max, C;
    uint8_t *tokens;           /* (B, T) */
    float *tok_emb, *pos_emb;  /* (256, C), (T_max, C) */
    float *out;                /* (B, T, C) */
    const float *R;            /* (B, T, C) */
} embedding_case;

#define VOCAB 256

static double embedding_loss(void *data)
{
    embedding_case *ec = data;
    embedding_forward(ec->out, ec->tokens, ec->tok_emb, ec->pos_emb, ec->B, ec->T, ec->C, NULL);
    return dot_double(ec->out, ec->R, (size_t)ec->B * ec->T * ec->C);
}

static void embedding_case_init(embedding_case *ec, peer_rng *rng, int B, int T, int T_max, int C)
{
    ec->B = B;
    ec->T = T;
    ec->T_max = T_max;
    ec->C = C;
    /* a few bytes only, so that rows repeat and their gradients must sum */
    static const uint8_t alphabet[] = { 0, 1, 2, 'e', ' ', 200, 255 };
    ec->tokens = g_new(uint8_t, (size_t)B * T);
    for (int i = 0; i < B * T; i++)
        ec->tokens[i] = alphabet[peer_rng_next(rng) % G_N_ELEMENTS(alphabet)];
    ec->tok_emb = test_random_floats(rng, (size_t)VOCAB * C, 1.0f);
    ec->pos_emb = test_random_floats(rng, (size_t)T_max * C, 1.0f);
    ec->out = g_new(float, (size_t)B * T * C);
    ec->R = test_random_floats(rng, (size_t)B * T * C, 1.0f);
}

static void embedding_case_free(embedding_case *ec)
{
    g_free(ec->tokens);
    g_free(ec->tok_emb);
    g_free(ec->pos_emb);
    g_free(ec->out);
    g_free((float *)ec->R);
}

static void test_embedding(void)
{
    peer_rng rng;
    peer_rng_seed(&rng, TEST_SEED + 6);
    embedding_case ec;
    embedding_case_init(&ec, &rng, 2, 6, 8, 5);
    int C = ec.C;
    size_t ntok = (size_t)VOCAB * C, npos = (size_t)ec.T_max * C;

    embedding_loss(&ec);
    for (int b = 0; b < ec.B; b++)
        for (int t = 0; t < ec.T; t++)
            for (int c = 0; c < C; c++) {
                size_t i = (size_t)b * ec.T + t;
                float expected = ec.tok_emb[(size_t)ec.tokens[i] * C + c] +
                                 ec.pos_emb[(size_t)t * C + c];
                g_assert_cmpfloat(ec.out[i * C + c], ==, expected);
            }

    float *dtok0 = test_random_floats(&rng, ntok, 1.0f);
    float *dpos0 = test_random_floats(&rng, npos, 1.0f);
    float *dtok = test_copy_floats(dtok0, ntok);
    float *dpos = test_copy_floats(dpos0, npos);
    embedding_backward(dtok, dpos, ec.R, ec.tokens, ec.B, ec.T, C, NULL);
    float *gtok = added(dtok, dtok0, ntok);
    float *gpos = added(dpos, dpos0, npos);

    /* The loss is linear in both tables, so the central difference is exact up to the float
     * rounding of out = tok + pos and of the += into random starting values: ~1e-6 here. Rows
     * of bytes that never occur and positions past T get exactly nothing. */
    check_gradient("dtok_emb", ec.tok_emb, gtok, ntok, 1, 0.5f, 1e-5, 1e-5, embedding_loss, &ec);
    check_gradient("dpos_emb", ec.pos_emb, gpos, npos, 1, 0.5f, 1e-5, 1e-5, embedding_loss, &ec);
    for (size_t i = (size_t)ec.T * C; i < npos; i++)
        g_assert_cmpfloat(dpos[i], ==, dpos0[i]);
    for (int v = 0; v < VOCAB; v++) {
        bool seen = false;
        for (int i = 0; i < ec.B * ec.T; i++)
            seen = seen || ec.tokens[i] == v;
        if (!seen)
            g_assert_cmpmem(dtok + (size_t)v * C, C * sizeof(float), dtok0 + (size_t)v * C,
                            C * sizeof(float));
    }

    g_free(gtok);
    g_free(gpos);
    g_free(dtok);
    g_free(dpos);
    g_free(dtok0);
    g_free(dpos0);
    embedding_case_free(&ec);
}

/* ---- Cross-entropy ---- */

typedef struct {
    int BT, V;
    float *logits;    /* (BT, V) */
    uint8_t *targets; /* (BT) */
    float *probs;     /* (BT, V) */
    float *losses;    /* (BT) */
} cross_entropy_case;

static double cross_entropy_loss(void *data)
{
    cross_entropy_case *cc = data;
    return cross_entropy_forward(cc->probs, cc->losses, cc->logits, cc->targets, cc->BT, cc->V,
                                 NULL);
}

static void cross_entropy_case_init(cross_entropy_case *cc, peer_rng *rng, int BT, int V,
                                    float std)
{
    cc->BT = BT;
    cc->V = V;
    cc->logits = test_random_floats(rng, (size_t)BT * V, std);
    cc->targets = g_new(uint8_t, BT);
    for (int t = 0; t < BT; t++)
        cc->targets[t] = (uint8_t)(peer_rng_next(rng) % (uint64_t)V);
    cc->probs = g_new(float, (size_t)BT * V);
    cc->losses = g_new(float, BT);
}

static void cross_entropy_case_free(cross_entropy_case *cc)
{
    g_free(cc->logits);
    g_free(cc->targets);
    g_free(cc->probs);
    g_free(cc->losses);
}

static void test_cross_entropy_forward(void)
{
    peer_rng rng;
    peer_rng_seed(&rng, TEST_SEED + 7);
    cross_entropy_case cc;
    cross_entropy_case_init(&cc, &rng, 13, 256, 3.0f);
    int V = cc.V;
    double mean = cross_entropy_loss(&cc);
    double expected_mean = 0.0;
    for (int t = 0; t < cc.BT; t++) {
        const float *z = cc.logits + (size_t)t * V;
        double maxval = -INFINITY, sum = 0.0, psum = 0.0;
        for (int i = 0; i < V; i++)
            maxval = fmax(maxval, z[i]);
        for (int i = 0; i < V; i++)
            sum += exp(z[i] - maxval);
        for (int i = 0; i < V; i++) {
            double p = exp(z[i] - maxval) / sum;
            /* float softmax over 256 terms: relative errors of ~1e-6 */
            test_assert_close(cc.probs[(size_t)t * V + i], p, 1e-8, 1e-5, "probs[%d, %d]", t, i);
            psum += cc.probs[(size_t)t * V + i];
        }
        test_assert_close(psum, 1.0, 1e-5, 0.0, "Σ probs[%d]", t);
        double loss = log(sum) - (z[cc.targets[t]] - maxval);
        test_assert_close(cc.losses[t], loss, 1e-5, 1e-5, "losses[%d]", t);
        expected_mean += cc.losses[t];
    }
    /* the mean of the float losses, summed in double */
    test_assert_close(mean, expected_mean / cc.BT, 0.0, 1e-12, "mean loss");

    /* a target whose probability underflows float: the loss stays finite and right */
    memset(cc.logits, 0, (size_t)V * sizeof(float));
    cc.logits[cc.targets[0]] = -200.0f;
    cross_entropy_loss(&cc);
    g_assert_cmpfloat(cc.probs[cc.targets[0]], ==, 0.0f);
    test_assert_close(cc.losses[0], 200.0 + log((double)(V - 1)), 0.0, 1e-6,
                      "loss of an underflowing target");
    cross_entropy_case_free(&cc);
}

static void test_cross_entropy_gradients(void)
{
    peer_rng rng;
    peer_rng_seed(&rng, TEST_SEED + 8);
    cross_entropy_case cc;
    cross_entropy_case_init(&cc, &rng, 4, 9, 2.0f);
    size_t n = (size_t)cc.BT * cc.V;
    float *dlogits0 = test_random_floats(&rng, n, 1.0f);
    float *dlogits = test_copy_floats(dlogits0, n);
    cross_entropy_loss(&cc);
    cross_entropy_backward(dlogits, cc.probs, cc.targets, cc.BT, cc.V, 1.0f / cc.BT, NULL);
    float *grad = added(dlogits, dlogits0, n);
    check_gradient("dlogits", cc.logits, grad, n, 1, FD_EPS, FD_ATOL, FD_RTOL,
                   cross_entropy_loss, &cc);
    g_free(grad);
    g_free(dlogits);
    g_free(dlogits0);
    cross_entropy_case_free(&cc);
}

/* ---- Threads ---- */

/* Every op at sizes that leave short last blocks, with no pool and with 1, 2 and 3 threads:
 * every output and every gradient bit-identical. Gradients start from the same random values. */
typedef struct {
    float *ln_out, *ln_mean, *ln_rstd, *ln_dinp, *ln_dweight, *ln_dbias;
    float *att_out, *att_preatt, *att_att, *att_dinp;
    float *emb_out, *emb_dtok, *emb_dpos;
    double ce_mean;
    float *ce_probs, *ce_losses, *ce_dlogits;
} ops_result;

enum {
    LN_BT = 100, LN_C = 150,
    ATT_B = 2, ATT_T = 130, ATT_C = 24, ATT_NH = 3,
    EMB_B = 3, EMB_T = 50, EMB_TMAX = 64, EMB_C = 70,
    CE_BT = 100, CE_V = 256,
};

static void run_ops(ops_result *res, thread_pool *pool)
{
    peer_rng rng;
    peer_rng_seed(&rng, TEST_SEED + 9);

    layernorm_case lc;
    layernorm_case_init(&lc, &rng, LN_BT, LN_C);
    size_t n = (size_t)LN_BT * LN_C;
    res->ln_dinp = test_random_floats(&rng, n, 1.0f);
    res->ln_dweight = test_random_floats(&rng, LN_C, 1.0f);
    res->ln_dbias = test_random_floats(&rng, LN_C, 1.0f);
    layernorm_forward(lc.out, lc.mean, lc.rstd, lc.inp, lc.weight, lc.bias, LN_BT, LN_C, pool);
    layernorm_backward(res->ln_dinp, res->ln_dweight, res->ln_dbias, lc.R, lc.inp, lc.weight,
                       lc.mean, lc.rstd, LN_BT, LN_C, pool);
    res->ln_out = test_copy_floats(lc.out, n);
    res->ln_mean = test_copy_floats(lc.mean, LN_BT);
    res->ln_rstd = test_copy_floats(lc.rstd, LN_BT);
    layernorm_case_free(&lc);

    attention_case ac;
    attention_case_init(&ac, &rng, ATT_B, ATT_T, ATT_C, ATT_NH);
    size_t tt = (size_t)ATT_B * ATT_NH * ATT_T * ATT_T;
    res->att_dinp = test_random_floats(&rng, (size_t)ATT_B * ATT_T * 3 * ATT_C, 1.0f);
    float *dpreatt = g_new(float, tt), *datt = g_new(float, tt);
    attention_forward(ac.out, ac.preatt, ac.att, ac.inp, ATT_B, ATT_T, ATT_C, ATT_NH, pool);
    attention_backward(res->att_dinp, dpreatt, datt, ac.R, ac.inp, ac.att, ATT_B, ATT_T, ATT_C,
                       ATT_NH, pool);
    res->att_out = test_copy_floats(ac.out, (size_t)ATT_B * ATT_T * ATT_C);
    res->att_preatt = test_copy_floats(ac.preatt, tt);
    res->att_att = test_copy_floats(ac.att, tt);
    g_free(dpreatt);
    g_free(datt);
    attention_case_free(&ac);

    embedding_case ec;
    embedding_case_init(&ec, &rng, EMB_B, EMB_T, EMB_TMAX, EMB_C);
    res->emb_dtok = test_random_floats(&rng, (size_t)VOCAB * EMB_C, 1.0f);
    res->emb_dpos = test_random_floats(&rng, (size_t)EMB_TMAX * EMB_C, 1.0f);
    embedding_forward(ec.out, ec.tokens, ec.tok_emb, ec.pos_emb, EMB_B, EMB_T, EMB_C, pool);
    embedding_backward(res->emb_dtok, res->emb_dpos, ec.R, ec.tokens, EMB_B, EMB_T, EMB_C, pool);
    res->emb_out = test_copy_floats(ec.out, (size_t)EMB_B * EMB_T * EMB_C);
    embedding_case_free(&ec);

    cross_entropy_case cc;
    cross_entropy_case_init(&cc, &rng, CE_BT, CE_V, 3.0f);
    res->ce_dlogits = test_random_floats(&rng, (size_t)CE_BT * CE_V, 1.0f);
    res->ce_mean = cross_entropy_forward(cc.probs, cc.losses, cc.logits, cc.targets, CE_BT, CE_V,
                                         pool);
    cross_entropy_backward(res->ce_dlogits, cc.probs, cc.targets, CE_BT, CE_V, 1.0f / CE_BT,
                           pool);
    res->ce_probs = test_copy_floats(cc.probs, (size_t)CE_BT * CE_V);
    res->ce_losses = test_copy_floats(cc.losses, CE_BT);
    cross_entropy_case_free(&cc);
}

static void ops_result_free(ops_result *res)
{
    g_free(res->ln_out);
    g_free(res->ln_mean);
    g_free(res->ln_rstd);
    g_free(res->ln_dinp);
    g_free(res->ln_dweight);
    g_free(res->ln_dbias);
    g_free(res->att_out);
    g_free(res->att_preatt);
    g_free(res->att_att);
    g_free(res->att_dinp);
    g_free(res->emb_out);
    g_free(res->emb_dtok);
    g_free(res->emb_dpos);
    g_free(res->ce_probs);
    g_free(res->ce_losses);
    g_free(res->ce_dlogits);
}

static void compare_ops(const ops_result *a, const ops_result *b, int n_threads)
{
    size_t f = sizeof(float);
    size_t tt = (size_t)ATT_B * ATT_NH * ATT_T * ATT_T;
    assert_same_bits("layernorm out", n_threads, a->ln_out, b->ln_out, (size_t)LN_BT * LN_C * f);
    assert_same_bits("layernorm mean", n_threads, a->ln_mean, b->ln_mean, LN_BT * f);
    assert_same_bits("layernorm rstd", n_threads, a->ln_rstd, b->ln_rstd, LN_BT * f);
    assert_same_bits("layernorm dinp", n_threads, a->ln_dinp, b->ln_dinp,
                     (size_t)LN_BT * LN_C * f);
    assert_same_bits("layernorm dweight", n_threads, a->ln_dweight, b->ln_dweight, LN_C * f);
    assert_same_bits("layernorm dbias", n_threads, a->ln_dbias, b->ln_dbias, LN_C * f);
    assert_same_bits("attention out", n_threads, a->att_out, b->att_out,
                     (size_t)ATT_B * ATT_T * ATT_C * f);
    assert_same_bits("attention preatt", n_threads, a->att_preatt, b->att_preatt, tt * f);
    assert_same_bits("attention att", n_threads, a->att_att, b->att_att, tt * f);
    assert_same_bits("attention dinp", n_threads, a->att_dinp, b->att_dinp,
                     (size_t)ATT_B * ATT_T * 3 * ATT_C * f);
    assert_same_bits("embedding out", n_threads, a->emb_out, b->emb_out,
                     (size_t)EMB_B * EMB_T * EMB_C * f);
    assert_same_bits("embedding dtok_emb", n_threads, a->emb_dtok, b->emb_dtok,
                     (size_t)VOCAB * EMB_C * f);
    assert_same_bits("embedding dpos_emb", n_threads, a->emb_dpos, b->emb_dpos,
                     (size_t)EMB_TMAX * EMB_C * f);
    assert_same_bits("cross-entropy mean", n_threads, &a->ce_mean, &b->ce_mean, sizeof(double));
    assert_same_bits("cross-entropy probs", n_threads, a->ce_probs, b->ce_probs,
                     (size_t)CE_BT * CE_V * f);
    assert_same_bits("cross-entropy losses", n_threads, a->ce_losses, b->ce_losses, CE_BT * f);
    assert_same_bits("cross-entropy dlogits", n_threads, a->ce_dlogits, b->ce_dlogits,
                     (size_t)CE_BT * CE_V * f);
}

static void test_threads_identical(void)
{
    /* the pools exist before any run, so OpenBLAS is pinned to one thread for all of them */
    thread_pool *pools[3];
    for (int i = 0; i < 3; i++)
        pools[i] = pool_new_or_fail(i + 1);
    ops_result reference;
    run_ops(&reference, pools[0]);
    ops_result other;
    run_ops(&other, NULL);
    compare_ops(&reference, &other, 0);
    ops_result_free(&other);
    for (int i = 1; i < 3; i++) {
        run_ops(&other, pools[i]);
        compare_ops(&reference, &other, i + 1);
        ops_result_free(&other);
    }
    ops_result_free(&reference);
    for (int i = 0; i < 3; i++)
        thread_pool_free(pools[i]);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/transformer-ops/layernorm/forward", test_layernorm_forward);
    g_test_add_func("/transformer-ops/layernorm/gradients", test_layernorm_gradients);
    g_test_add_func("/transformer-ops/attention/forward", test_attention_forward);
    g_test_add_func("/transformer-ops/attention/causal", test_attention_causal);
    g_test_add_func("/transformer-ops/attention/gradients", test_attention_gradients);
    g_test_add_func("/transformer-ops/embedding/forward-and-gradients", test_embedding);
    g_test_add_func("/transformer-ops/cross-entropy/forward", test_cross_entropy_forward);
    g_test_add_func("/transformer-ops/cross-entropy/gradients", test_cross_entropy_gradients);
    g_test_add_func("/transformer-ops/threads-identical", test_threads_identical);
    return g_test_run();
}
