/* A hand-written CPU backward of one CF layer (K = 1), the yardstick of
 * benchmarks/backward_floor.py: how fast can this arithmetic go on this CPU?
 *
 * The same math as cf2neuro.nn.functional._backward_kernel (sigmoid shape,
 * detached reset), written for the vectorizer: blocks of BLOCK neurons, the
 * membrane u recomputed per block from x and the saved spikes n (no
 * division), the two bumps of a signed neuron sharing one division, and an
 * exp polynomial (Cephes expf, ~1 ulp) that vectorizes without -ffast-math.
 * Compile with -DSIGNED=0|1 -DNEED_ALPHA=0|1.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK 512
#define MAX_T 64

static inline float exp_nonpositive(float x) {
    x = x < -50.0f ? -50.0f : x; /* the bump is < 2e-22 there; no denormals */
    float n = floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500E-4f;
    p = p * r + 1.3981999507E-3f;
    p = p * r + 8.3334519073E-3f;
    p = p * r + 4.1665795894E-2f;
    p = p * r + 1.6666665459E-1f;
    p = p * r + 5.0000001201E-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* gx = dL/dx; galpha[t] = dL/dalpha_t (when NEED_ALPHA). */
void cf_backward(const float *x, const float *spikes, const float *gout, const float *alpha,
                 float theta, float beta, int64_t T, int64_t N, float *gx, double *galpha,
                 int nthreads) {
    double total[MAX_T] = {0};
#pragma omp parallel num_threads(nthreads)
    {
        double part[MAX_T] = {0};
        float *ub = malloc(sizeof(float) * T * BLOCK);
        float v[BLOCK], gv[BLOCK];
#pragma omp for schedule(static)
        for (int64_t b0 = 0; b0 < N; b0 += BLOCK) {
            int64_t m = N - b0 < BLOCK ? N - b0 : BLOCK;
            memset(v, 0, sizeof v);
            memset(gv, 0, sizeof gv);
            for (int64_t t = 0; t < T; t++) {
                const float *restrict xt = x + t * N + b0, *restrict nt = spikes + t * N + b0;
                float *restrict ut = ub + t * BLOCK;
#pragma omp simd
                for (int64_t i = 0; i < m; i++) {
                    float u = beta * v[i] + xt[i];
                    ut[i] = u;
                    v[i] = u - nt[i] * theta;
                }
            }
            for (int64_t t = T - 1; t >= 0; t--) {
                const float a = alpha[t];
                const float *restrict ut = ub + t * BLOCK, *restrict go = gout + t * N + b0;
                float *restrict gxt = gx + t * N + b0;
                float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
                for (int64_t i = 0; i < m; i++) {
                    float d1 = ut[i] - theta, e1 = exp_nonpositive(-fabsf(a * d1));
                    float q1 = (1.0f + e1) * (1.0f + e1);
#if SIGNED
                    float d2 = -ut[i] - theta, e2 = exp_nonpositive(-fabsf(a * d2));
                    float q2 = (1.0f + e2) * (1.0f + e2);
                    float r = 1.0f / (q1 * q2);
                    float b1 = e1 * q2 * r, b2 = e2 * q1 * r;
                    float s = a * (b1 + b2), da = d1 * b1 - d2 * b2;
#else
                    float b1 = e1 / q1;
                    float s = a * b1, da = d1 * b1;
#endif
                    float gu = go[i] * s + gv[i];
                    gxt[i] = gu;
                    gv[i] = beta * gu;
#if NEED_ALPHA
                    acc += go[i] * da;
#else
                    (void)da;
#endif
                }
                part[t] += acc;
            }
        }
        free(ub);
#pragma omp critical
        for (int64_t t = 0; t < T; t++) total[t] += part[t];
    }
    for (int64_t t = 0; t < T; t++) galpha[t] = total[t];
}
