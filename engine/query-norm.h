/* The query norms of the PEER layer. Internal to the engine. */
#pragma once

#include "peer-layer.h"

/* out (BT, F) from inp (BT, F). mean, rstd (F): the statistics used, batch ones in training
 * (biased variance; the running ones are updated with the unbiased variance), the running ones
 * in evaluation. */
void batch_norm_forward(float *out, float *mean, float *rstd, const float *inp,
                        const float *weight, const float *bias, float *running_mean,
                        float *running_var, int BT, int F, peer_mode mode, thread_pool *pool);

/* dinp (BT, F) = gradient of inp (may alias dout), dweight (F) +=, dbias (F) +=. */
void batch_norm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                         const float *inp, const float *mean, const float *rstd,
                         const float *weight, int BT, int F, peer_mode mode, thread_pool *pool);

/* Per token and head over dk, then an affine per feature: inp, out (BT, h·dk); mean, rstd
 * (BT, h). */
void head_norm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                       const float *bias, int BT, int heads, int d_key, thread_pool *pool);

/* dinp (BT, h·dk) = gradient of inp (may alias dout), dweight, dbias (h·dk) +=. */
void head_norm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *mean, const float *rstd,
                        const float *weight, int BT, int heads, int d_key, thread_pool *pool);
