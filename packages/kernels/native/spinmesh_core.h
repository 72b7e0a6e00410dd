/*
 * The compute kernels of spinmesh_kernels.c, free of N-API so they can be benchmarked and
 * inspected (-fopt-info-vec) on their own. Included once, by spinmesh_kernels.c.
 *
 * The selects (a ? b : c) in the math helpers become vector blends only with
 * -fno-trapping-math (binding.gyp passes it); without it GCC keeps them as branches and the
 * loops stay scalar.
 */
#ifndef SPINMESH_CORE_H
#define SPINMESH_CORE_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Units per block in the element-wise kernels: small enough for stack scratch and L1. */
#define BLK 64

enum { UNIT_BERNOULLI = 0, UNIT_ISING = 1, UNIT_GAUSSIAN = 2 };

/* ------------------------------------------------------------------------------------------ */
/* Philox4x32-10 (Random123), one lane per unit so the loops vectorize across units.          */

#define PH_M0 0xD2511F53u
#define PH_M1 0xCD9E8D57u
#define PH_W0 0x9E3779B9u
#define PH_W1 0xBB67AE85u

#define PHILOX_ROUNDS(x0, x1, x2, x3, k0, k1)                                                  \
  do {                                                                                       \
    uint32_t kk0_ = (k0), kk1_ = (k1);                                                       \
    _Pragma("GCC unroll 10") for (int r_ = 0; r_ < 10; r_++) {                               \
      uint64_t p0_ = (uint64_t)PH_M0 * (x0);                                                 \
      uint64_t p1_ = (uint64_t)PH_M1 * (x2);                                                 \
      uint32_t y0_ = (uint32_t)(p1_ >> 32) ^ (x1) ^ kk0_;                                    \
      uint32_t y2_ = (uint32_t)(p0_ >> 32) ^ (x3) ^ kk1_;                                    \
      (x1) = (uint32_t)p1_;                                                                  \
      (x3) = (uint32_t)p0_;                                                                  \
      (x0) = y0_;                                                                            \
      (x2) = y2_;                                                                            \
      kk0_ += PH_W0;                                                                         \
      kk1_ += PH_W1;                                                                         \
    }                                                                                        \
  } while (0)

/*
 * The block functions below write words for counters (c0 + i, c1, c2, c3), i < count, rounded
 * up to a whole vector: w0/w1 must hold BLK words and count <= BLK.
 *
 * The SIMD versions keep each 32-bit lane in a 64-bit lane so one vpmuludq gives the full
 * 32x32->64 product (GCC's own vectorization of the scalar loop uses zero-extension plus
 * vpmullq, about twice the work). The upper halves of the lanes carry garbage that
 * vpmuludq ignores and the final narrowing drops.
 */
#if defined(__AVX512F__)
#include <immintrin.h>
#define PHILOX_LANES 8
typedef __m512i ph_vec;
#define PH_SET1(v) _mm512_set1_epi64((long long)(v))
#define PH_IOTA() _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0)
#define PH_ADD(a, b) _mm512_add_epi64((a), (b))
#define PH_MUL(a, b) _mm512_mul_epu32((a), (b))
#define PH_HI(a) _mm512_srli_epi64((a), 32)
#define PH_XOR3(a, b, c) _mm512_ternarylogic_epi64((a), (b), (c), 0x96)
#define PH_STORE_LO32(p, v) _mm256_storeu_si256((__m256i *)(void *)(p), _mm512_cvtepi64_epi32(v))
#elif defined(__AVX2__)
#include <immintrin.h>
#define PHILOX_LANES 4
typedef __m256i ph_vec;
#define PH_SET1(v) _mm256_set1_epi64x((long long)(v))
#define PH_IOTA() _mm256_set_epi64x(3, 2, 1, 0)
#define PH_ADD(a, b) _mm256_add_epi64((a), (b))
#define PH_MUL(a, b) _mm256_mul_epu32((a), (b))
#define PH_HI(a) _mm256_srli_epi64((a), 32)
#define PH_XOR3(a, b, c) _mm256_xor_si256(_mm256_xor_si256((a), (b)), (c))
/* Gather the low halves of the four 64-bit lanes into 128 bits. */
#define PH_STORE_LO32(p, v)                                                                      \
  _mm_storeu_si128((__m128i *)(void *)(p),                                                       \
                   _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(                           \
                       (v), _mm256_set_epi32(7, 5, 3, 1, 6, 4, 2, 0))))
#endif

#ifdef PHILOX_LANES
_Static_assert(BLK % (2 * PHILOX_LANES) == 0, "BLK must be a multiple of two vectors");

/* Two vectors per iteration: independent chains hide the multiply latency. */
static void philox_block_simd(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                              uint32_t k1, int count, uint32_t *restrict w0,
                              uint32_t *restrict w1) {
  const ph_vec m0 = PH_SET1(PH_M0), m1 = PH_SET1(PH_M1);
  ph_vec key0[10], key1[10];
  for (int r = 0; r < 10; r++) {
    key0[r] = PH_SET1((uint32_t)(k0 + (uint32_t)r * PH_W0));
    key1[r] = PH_SET1((uint32_t)(k1 + (uint32_t)r * PH_W1));
  }
  const ph_vec iota = PH_IOTA();
  for (int i = 0; i < count; i += 2 * PHILOX_LANES) {
    ph_vec a0 = PH_ADD(PH_SET1(c0 + (uint32_t)i), iota);
    ph_vec b0 = PH_ADD(PH_SET1(c0 + (uint32_t)(i + PHILOX_LANES)), iota);
    ph_vec a1 = PH_SET1(c1), a2 = PH_SET1(c2), a3 = PH_SET1(c3);
    ph_vec b1 = a1, b2 = a2, b3 = a3;
#pragma GCC unroll 10
    for (int r = 0; r < 10; r++) {
      const ph_vec pa0 = PH_MUL(a0, m0), pa1 = PH_MUL(a2, m1);
      const ph_vec pb0 = PH_MUL(b0, m0), pb1 = PH_MUL(b2, m1);
      a0 = PH_XOR3(PH_HI(pa1), a1, key0[r]);
      a2 = PH_XOR3(PH_HI(pa0), a3, key1[r]);
      a1 = pa1;
      a3 = pa0;
      b0 = PH_XOR3(PH_HI(pb1), b1, key0[r]);
      b2 = PH_XOR3(PH_HI(pb0), b3, key1[r]);
      b1 = pb1;
      b3 = pb0;
    }
    PH_STORE_LO32(w0 + i, a0);
    PH_STORE_LO32(w0 + i + PHILOX_LANES, b0);
    if (w1) {
      PH_STORE_LO32(w1 + i, a1);
      PH_STORE_LO32(w1 + i + PHILOX_LANES, b1);
    }
  }
}
#endif

/* Portable version of the block functions: what any C compiler gets. */
__attribute__((unused)) static void philox_block_scalar(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                                uint32_t k1, int count, uint32_t *restrict w0,
                                uint32_t *restrict w1) {
  for (int i = 0; i < count; i++) {
    uint32_t x0 = c0 + (uint32_t)i, x1 = c1, x2 = c2, x3 = c3;
    PHILOX_ROUNDS(x0, x1, x2, x3, k0, k1);
    w0[i] = x0;
    if (w1) w1[i] = x1;
  }
}

static inline void philox_w0_block(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                   uint32_t k0, uint32_t k1, int count, uint32_t *restrict w0) {
#ifdef PHILOX_LANES
  philox_block_simd(c0, c1, c2, c3, k0, k1, count, w0, NULL);
#else
  philox_block_scalar(c0, c1, c2, c3, k0, k1, count, w0, NULL);
#endif
}

static inline void philox_w01_block(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                    uint32_t k0, uint32_t k1, int count, uint32_t *restrict w0,
                                    uint32_t *restrict w1) {
#ifdef PHILOX_LANES
  philox_block_simd(c0, c1, c2, c3, k0, k1, count, w0, w1);
#else
  philox_block_scalar(c0, c1, c2, c3, k0, k1, count, w0, w1);
#endif
}

static inline float word_to_uniform(uint32_t w) { return (float)(w >> 8) * 0x1p-24f; }

/* ------------------------------------------------------------------------------------------ */
/* Vectorizable float math (Cephes polynomials).                                              */

static inline float bits_to_float(uint32_t b) {
  float f;
  memcpy(&f, &b, sizeof f);
  return f;
}

static inline uint32_t float_to_bits(float f) {
  uint32_t b;
  memcpy(&b, &f, sizeof b);
  return b;
}

/*
 * e^x, clamped to [e^-87, e^88] so the 2^n scale stays a normal float; NaN propagates.
 * n = round(x / ln 2) comes from the bits of x*log2(e) + 1.5*2^23, which avoids a float->int
 * conversion of a possibly-NaN value.
 */
static inline float exp_f(float x) {
  const float magic = 12582912.0f;
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  float t = x * 1.44269504088896341f + magic;
  int32_t n = (int32_t)(float_to_bits(t) - float_to_bits(magic));
  float fx = t - magic;
  float r = x - fx * 0.693359375f;
  r = r - fx * -2.12194440e-4f;
  float z = r * r;
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * z + r + 1.0f;
  return y * bits_to_float((uint32_t)(n + 127) << 23);
}

/* log(m * 2^e) for m in [sqrt(1/2), sqrt(2)), given as x = m - 1 (Cephes logf). */
static inline float log_core_f(float x, float e) {
  float z = x * x;
  float p = 7.0376836292e-2f;
  p = p * x - 1.1514610310e-1f;
  p = p * x + 1.1676998740e-1f;
  p = p * x - 1.2420140846e-1f;
  p = p * x + 1.4249322787e-1f;
  p = p * x - 1.6668057665e-1f;
  p = p * x + 2.0000714765e-1f;
  p = p * x - 2.4999993993e-1f;
  p = p * x + 3.3333331174e-1f;
  float l = p * x * z;
  l = l + e * -2.12194440e-4f;
  l = l - 0.5f * z;
  l = x + l;
  return l + e * 0.693359375f;
}

/* log(u) for a positive normal float u. */
static inline float log_f(float u) {
  uint32_t b = float_to_bits(u);
  int32_t ei = (int32_t)(b >> 23) - 127;
  float m = bits_to_float((b & 0x7fffffu) | 0x3f800000u);
  int big = m > 1.41421356237f;
  float e = (float)(big ? ei + 1 : ei);
  return log_core_f(big ? 0.5f * m - 1.0f : m - 1.0f, e);
}

/* log(1 + y) for y in [0, 1]; the y / (w - 1) factor recovers the bits lost in w = 1 + y. */
static inline float log1p_unit_f(float y) {
  float w = 1.0f + y;
  int big = w > 1.41421356237f;
  float l = log_core_f(big ? 0.5f * w - 1.0f : w - 1.0f, big ? 1.0f : 0.0f);
  float d = w - 1.0f;
  return d == 0.0f ? y : l * (y / d);
}

/*
 * cos(2 pi t) for t in [0, 1) on the 2^-24 grid: t - q/4 is exact, so the only rounding
 * before the Cephes sin/cos polynomials on [-pi/4, pi/4] is the multiplication by 2 pi.
 */
static inline float cos_2pi_f(float t) {
  const float magic = 12582912.0f;
  float qt = 4.0f * t + magic;
  int32_t q = (int32_t)(float_to_bits(qt) - float_to_bits(magic));
  float r = t - (qt - magic) * 0.25f;
  float x = r * 6.28318530717958647692f;
  float z = x * x;
  float s = -1.9515295891e-4f;
  s = s * z + 8.3321608736e-3f;
  s = s * z - 1.6666654611e-1f;
  s = s * z * x + x;
  float c = 2.443315711809948e-5f;
  c = c * z - 1.388731625493765e-3f;
  c = c * z + 4.166664568298827e-2f;
  c = c * z * z - 0.5f * z + 1.0f;
  float v = (q & 1) ? s : c;
  return ((q + 1) & 2) ? -v : v;
}

static inline float sigmoid_f(float a) { return 1.0f / (1.0f + exp_f(-a)); }

static inline float tanh_f(float x) {
  float z = fabsf(x);
  float big = 1.0f - 2.0f / (exp_f(2.0f * z) + 1.0f);
  float s = z * z;
  float p = -5.70498872745e-3f;
  p = p * s + 2.06390887954e-2f;
  p = p * s - 5.37397155531e-2f;
  p = p * s + 1.33314422036e-1f;
  p = p * s - 3.33332819422e-1f;
  float small = p * s * z + z;
  float t = z > 0.625f ? big : small;
  return copysignf(t, x);
}

/* log(1 + e^a), stable for both signs. */
static inline float softplus_f(float a) {
  float m = a > 0.0f ? a : 0.0f;
  return m + log1p_unit_f(exp_f(-fabsf(a)));
}

/* log(2 cosh a) = |a| + log1p(e^(-2|a|)). */
static inline float log2cosh_f(float a) {
  float z = fabsf(a);
  return z + log1p_unit_f(exp_f(-2.0f * z));
}

/* ------------------------------------------------------------------------------------------ */
/* Kernels (no N-API types below this line until the bindings).                               */

static void sample_units(int type, int rows, int n, const float *field, int64_t ld,
                         const float *bias, float beta, float *mean, float *out, uint32_t k0,
                         uint32_t k1, uint32_t unit_off, uint32_t chain_off, uint32_t step,
                         uint32_t stream) {
  float sv[BLK], pv[BLK];
  uint32_t w0[BLK], w1[BLK];
  const float inv_sqrt_beta = (float)(1.0 / sqrt((double)beta));
  for (int r = 0; r < rows; r++) {
    const float *f = field + (int64_t)r * ld;
    float *mrow = mean ? mean + (int64_t)r * ld : NULL;
    float *orow = out ? out + (int64_t)r * ld : NULL;
    const uint32_t chain = chain_off + (uint32_t)r;
    for (int j0 = 0; j0 < n; j0 += BLK) {
      const int cnt = n - j0 < BLK ? n - j0 : BLK;
      const uint32_t unit = unit_off + (uint32_t)j0;
      /* Read the whole block first: mean or out may be field itself. */
      for (int j = 0; j < cnt; j++) sv[j] = f[j0 + j] + bias[j0 + j];
      switch (type) {
        case UNIT_BERNOULLI:
          for (int j = 0; j < cnt; j++) pv[j] = sigmoid_f(beta * sv[j]);
          if (mrow)
            for (int j = 0; j < cnt; j++) mrow[j0 + j] = pv[j];
          if (orow) {
            philox_w0_block(unit, chain, step, stream, k0, k1, cnt, w0);
            for (int j = 0; j < cnt; j++)
              orow[j0 + j] = word_to_uniform(w0[j]) < pv[j] ? 1.0f : 0.0f;
          }
          break;
        case UNIT_ISING:
          if (mrow)
            for (int j = 0; j < cnt; j++) mrow[j0 + j] = tanh_f(beta * sv[j]);
          if (orow) {
            for (int j = 0; j < cnt; j++) pv[j] = sigmoid_f(2.0f * (beta * sv[j]));
            philox_w0_block(unit, chain, step, stream, k0, k1, cnt, w0);
            for (int j = 0; j < cnt; j++)
              orow[j0 + j] = word_to_uniform(w0[j]) < pv[j] ? 1.0f : -1.0f;
          }
          break;
        default: /* UNIT_GAUSSIAN */
          if (mrow)
            for (int j = 0; j < cnt; j++) mrow[j0 + j] = sv[j];
          if (orow) {
            philox_w01_block(unit, chain, step, stream, k0, k1, cnt, w0, w1);
            for (int j = 0; j < cnt; j++) {
              const float u1 = (float)((w0[j] >> 8) + 1u) * 0x1p-24f;
              const float u2 = word_to_uniform(w1[j]);
              const float z = sqrtf(-2.0f * log_f(u1)) * cos_2pi_f(u2);
              orow[j0 + j] = sv[j] + z * inv_sqrt_beta;
            }
          }
          break;
      }
    }
  }
}

static void uniform_fill(float *out, int64_t count, int64_t n, uint32_t k0, uint32_t k1,
                         uint32_t unit_off, uint32_t chain_off, uint32_t step, uint32_t stream) {
  uint32_t w0[BLK];
  int64_t i = 0;
  for (uint32_t chain = chain_off; i < count; chain++) {
    for (int64_t j0 = 0; j0 < n && i < count; j0 += BLK) {
      int64_t left = count - i, span = n - j0;
      int cnt = (int)(span < BLK ? span : BLK);
      if (left < cnt) cnt = (int)left;
      philox_w0_block(unit_off + (uint32_t)j0, chain, step, stream, k0, k1, cnt, w0);
      for (int j = 0; j < cnt; j++) out[i + j] = word_to_uniform(w0[j]);
      i += cnt;
    }
  }
}

/* Sum of a block of doubles with 8 partial sums: vectorizes without reassociation freedom. */
static inline double sum8(const double *acc) {
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

static void log_partition_rows(int type, int rows, int n, const float *x, int64_t ld,
                               const float *bias, float beta, float *out, int accumulate) {
  float gv[BLK];
  for (int r = 0; r < rows; r++) {
    const float *xr = x + (int64_t)r * ld;
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int j0 = 0; j0 < n; j0 += BLK) {
      const int cnt = n - j0 < BLK ? n - j0 : BLK;
      if (bias)
        for (int j = 0; j < cnt; j++) gv[j] = beta * (xr[j0 + j] + bias[j0 + j]);
      else
        for (int j = 0; j < cnt; j++) gv[j] = beta * xr[j0 + j];
      switch (type) {
        case UNIT_BERNOULLI:
          for (int j = 0; j < cnt; j++) gv[j] = softplus_f(gv[j]);
          break;
        case UNIT_ISING:
          for (int j = 0; j < cnt; j++) gv[j] = log2cosh_f(gv[j]);
          break;
        default:
          break;
      }
      if (type == UNIT_GAUSSIAN) {
        const double inv2b = 0.5 / (double)beta;
        for (int j = 0; j < cnt; j++) acc[j & 7] += (double)gv[j] * (double)gv[j] * inv2b;
      } else {
        for (int j = 0; j < cnt; j++) acc[j & 7] += (double)gv[j];
      }
    }
    const double s = sum8(acc);
    out[r] = accumulate ? (float)((double)out[r] + s) : (float)s;
  }
}

static void axpby(int64_t n, float alpha, const float *x, float beta, float *y) {
  if (beta == 0.0f) {
    for (int64_t i = 0; i < n; i++) y[i] = alpha * x[i];
  } else {
    for (int64_t i = 0; i < n; i++) y[i] = alpha * x[i] + beta * y[i];
  }
}

#define COL_BLK 256

static void col_sums(int rows, int n, const float *x, int64_t ld, double alpha, double beta,
                     float *out) {
  double acc[COL_BLK];
  for (int j0 = 0; j0 < n; j0 += COL_BLK) {
    const int cnt = n - j0 < COL_BLK ? n - j0 : COL_BLK;
    for (int j = 0; j < cnt; j++) acc[j] = 0.0;
    for (int r = 0; r < rows; r++) {
      const float *xr = x + (int64_t)r * ld + j0;
      for (int j = 0; j < cnt; j++) acc[j] += (double)xr[j];
    }
    if (beta == 0.0)
      for (int j = 0; j < cnt; j++) out[j0 + j] = (float)(alpha * acc[j]);
    else
      for (int j = 0; j < cnt; j++)
        out[j0 + j] = (float)(alpha * acc[j] + beta * (double)out[j0 + j]);
  }
}

static void shift_scale_rows(int rows, int n, float *x, int64_t ld, const float *offset,
                             float scale) {
  for (int r = 0; r < rows; r++) {
    float *xr = x + (int64_t)r * ld;
    if (offset)
      for (int j = 0; j < n; j++) xr[j] = scale * (xr[j] - offset[j]);
    else
      for (int j = 0; j < n; j++) xr[j] = scale * xr[j];
  }
}

static double sum_squares(int64_t n, const float *x) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; l++) acc[l] += (double)x[i + l] * (double)x[i + l];
  for (; i < n; i++) acc[0] += (double)x[i] * (double)x[i];
  return sum8(acc);
}

static double dot(int64_t n, const float *x, const float *y) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; l++) acc[l] += (double)x[i + l] * (double)y[i + l];
  for (; i < n; i++) acc[0] += (double)x[i] * (double)y[i];
  return sum8(acc);
}

static void pack_spins(int64_t n, const float *x, uint8_t *out) {
  int64_t full = n / 8;
  for (int64_t b = 0; b < full; b++) {
    const float *xb = x + 8 * b;
    unsigned v = 0;
    for (int l = 0; l < 8; l++) v |= (unsigned)(xb[l] > 0.0f) << l;
    out[b] = (uint8_t)v;
  }
  if (n % 8) {
    unsigned v = 0;
    for (int64_t i = 8 * full; i < n; i++) v |= (unsigned)(x[i] > 0.0f) << (i - 8 * full);
    out[full] = (uint8_t)v;
  }
}

/* Branch-free, a byte at a time, so the inner loop vectorises: off + (1 - off) * bit is exactly
 * 1 or off for off in {0, -1}. */
static void unpack_spins(int64_t n, const uint8_t *packed, float off, float *x) {
  const float span = 1.0f - off;
  const int64_t whole = n >> 3;
  for (int64_t b = 0; b < whole; b++) {
    const uint32_t v = packed[b];
    float *o = x + (b << 3);
    for (int k = 0; k < 8; k++) o[k] = off + span * (float)((v >> k) & 1u);
  }
  for (int64_t i = whole << 3; i < n; i++)
    x[i] = off + span * (float)((packed[i >> 3] >> (i & 7)) & 1u);
}

/* Column bits of a {0,1} matrix: bit r % 32 of out[i * words + r / 32] is x[r * ld + i] == 1
 * for r < rows, i < n (words = ceil(rows / 32); the spare high bits are 0). odd[i] is set to 1
 * (never cleared) for a column with a value other than 0 and 1. Returns 1 if none was. */
static int pack_columns(int64_t rows, int64_t n, const float *x, int64_t ld, uint32_t *out,
                        uint8_t *odd) {
  const int64_t words = (rows + 31) / 32;
  memset(out, 0, sizeof(uint32_t) * (size_t)(n * words));
  int any = 0;
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = x + r * ld;
    const int64_t w = r >> 5;
    const uint32_t bit = 1u << (r & 31);
    for (int64_t i = 0; i < n; i++) {
      const float v = xr[i];
      const int o = (v != 0.0f) & (v != 1.0f);
      odd[i] |= (uint8_t)o;
      any |= o;
      out[i * words + w] |= (v == 1.0f) ? bit : 0u;
    }
  }
  return !any;
}

static inline int64_t popcount_words(const uint32_t *a, int64_t words) {
  int64_t s = 0;
  for (int64_t k = 0; k < words; k++) s += __builtin_popcount(a[k]);
  return s;
}

/* The centred correlation of two {0,1} layers over R positive and C negative rows, from their
 * column bits (pack_columns of each phase): out[i * ld + j] =
 *   sum_r a_r (x_ri - mu_i)(y_rj - lam_j),  a_r = 1/R on positive rows and -1/C on negative ones
 * = n11pos/R - n11neg/C - lam_j sx_i - mu_i sy_j  (sum_r a_r = 0), with sx_i = npos(x_i)/R -
 * nneg(x_i)/C and sy_j alike, in double, rounded once. mu and lam may be NULL (no centring).
 * Each element depends only on its own units' bits, so any tiling gives the same values. An
 * element whose x unit is odd (oddx[i], when given) or whose y unit is (oddy[j]) is left as it
 * is. The y bits are first laid out word by word (yt[k * w + j]) so that the count over j
 * vectorizes. Returns 0 if its scratch memory cannot be allocated. */
static int bit_correlation(int64_t m, int64_t w, int64_t R, int64_t C, const uint32_t *xp,
                           const uint32_t *xn, const uint32_t *yp, const uint32_t *yn,
                           const float *mu, const float *lam, const uint8_t *oddx,
                           const uint8_t *oddy, float *out, int64_t ld) {
  const int64_t wr = (R + 31) / 32, wc = (C + 31) / 32;
  const double ir = R > 0 ? 1.0 / (double)R : 0.0, ic = C > 0 ? 1.0 / (double)C : 0.0;
  if (m == 0 || w == 0) return 1;
  uint32_t *yt = (uint32_t *)malloc(sizeof(uint32_t) * (size_t)((wr + wc) * w + 1));
  double *sy = (double *)malloc(sizeof(double) * (size_t)w);
  if (!yt || !sy) {
    free(yt);
    free(sy);
    return 0;
  }
  for (int64_t j = 0; j < w; j++) {
    for (int64_t k = 0; k < wr; k++) yt[k * w + j] = yp[j * wr + k];
    for (int64_t k = 0; k < wc; k++) yt[(wr + k) * w + j] = yn[j * wc + k];
    sy[j] = (double)popcount_words(yp + j * wr, wr) * ir -
            (double)popcount_words(yn + j * wc, wc) * ic;
  }
  uint32_t cp[BLK], cn[BLK];
  for (int64_t i = 0; i < m; i++) {
    if (oddx && oddx[i]) continue;
    const uint32_t *ap = xp + i * wr, *an = xn + i * wc;
    const double sx = (double)popcount_words(ap, wr) * ir - (double)popcount_words(an, wc) * ic;
    const double mi = mu ? (double)mu[i] : 0.0;
    for (int64_t j0 = 0; j0 < w; j0 += BLK) {
      const int64_t jn = w - j0 < BLK ? w - j0 : BLK;
      for (int64_t j = 0; j < jn; j++) cp[j] = cn[j] = 0;
      for (int64_t k = 0; k < wr; k++) {
        const uint32_t a = ap[k];
        const uint32_t *yk = yt + k * w + j0;
        for (int64_t j = 0; j < jn; j++) cp[j] += (uint32_t)__builtin_popcount(a & yk[j]);
      }
      for (int64_t k = 0; k < wc; k++) {
        const uint32_t a = an[k];
        const uint32_t *yk = yt + (wr + k) * w + j0;
        for (int64_t j = 0; j < jn; j++) cn[j] += (uint32_t)__builtin_popcount(a & yk[j]);
      }
      float *o = out + i * ld + j0;
      for (int64_t j = 0; j < jn; j++) {
        if (oddy && oddy[j0 + j]) continue;
        const double lj = lam ? (double)lam[j0 + j] : 0.0;
        o[j] = (float)((double)cp[j] * ir - (double)cn[j] * ic - lj * sx - mi * sy[j0 + j]);
      }
    }
  }
  free(yt);
  free(sy);
  return 1;
}

#endif
