/*
 * Native kernels for spinmesh: OpenBLAS sgemm plus fused element-wise kernels, exposed through
 * the plain C N-API. The JS side (src/native.ts) validates shapes and gives the errors users
 * see; the checks here only stop a bad call from touching memory outside a typed array.
 *
 * Built without -ffast-math so that results do not depend on the compiler's freedom to
 * reassociate: the element-wise math in spinmesh_core.h uses its own polynomial
 * exp/log/tanh/cos (Cephes coefficients, about 1 ulp in float) written so that GCC vectorizes
 * them as they stand, and the reductions use a fixed number of partial sums.
 */
#define NAPI_VERSION 8
#include <node_api.h>

#include <cblas.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* Bumped whenever the JS-visible function signatures change; src/native.ts checks it. */
#define SPINMESH_ABI_VERSION 3

#include "spinmesh_core.h"

/* ------------------------------------------------------------------------------------------ */
/* N-API bindings.                                                                             */

#define MAX_ARGS 16

typedef struct {
  napi_env env;
  napi_value argv[MAX_ARGS];
  size_t argc;
  const char *fn;
  int failed;
} Call;

static void fail(Call *c, int range, const char *what) {
  if (c->failed) return;
  c->failed = 1;
  char msg[256];
  snprintf(msg, sizeof msg, "spinmesh_kernels.%s: %s", c->fn, what);
  if (range)
    napi_throw_range_error(c->env, NULL, msg);
  else
    napi_throw_type_error(c->env, NULL, msg);
}

static int begin(Call *c, napi_env env, napi_callback_info info, const char *fn, size_t want) {
  c->env = env;
  c->fn = fn;
  c->failed = 0;
  c->argc = MAX_ARGS;
  if (napi_get_cb_info(env, info, &c->argc, c->argv, NULL, NULL) != napi_ok) {
    fail(c, 0, "cannot read arguments");
    return 0;
  }
  if (c->argc < want) {
    fail(c, 0, "too few arguments");
    return 0;
  }
  return 1;
}

static double arg_num(Call *c, size_t i) {
  double v = 0;
  if (c->failed) return 0;
  if (napi_get_value_double(c->env, c->argv[i], &v) != napi_ok) fail(c, 0, "expected a number");
  return v;
}

/* Non-negative int32 (a dimension or stride). */
static int arg_dim(Call *c, size_t i) {
  double v = arg_num(c, i);
  if (c->failed) return 0;
  if (!(v >= 0 && v <= INT_MAX) || v != floor(v)) {
    fail(c, 1, "dimensions and strides must be integers in [0, 2^31)");
    return 0;
  }
  return (int)v;
}

static uint32_t arg_u32(Call *c, size_t i) {
  uint32_t v = 0;
  if (c->failed) return 0;
  if (napi_get_value_uint32(c->env, c->argv[i], &v) != napi_ok) fail(c, 0, "expected a number");
  return v;
}

static int arg_bool(Call *c, size_t i) {
  bool v = false;
  if (c->failed) return 0;
  if (napi_get_value_bool(c->env, c->argv[i], &v) != napi_ok) fail(c, 0, "expected a boolean");
  return v ? 1 : 0;
}

static int arg_is_null(Call *c, size_t i) {
  napi_valuetype t;
  if (napi_typeof(c->env, c->argv[i], &t) != napi_ok) return 0;
  return t == napi_null || t == napi_undefined;
}

static void *arg_typed(Call *c, size_t i, napi_typedarray_type want, size_t *len, int nullable) {
  *len = 0;
  if (c->failed) return NULL;
  if (nullable && arg_is_null(c, i)) return NULL;
  bool is_ta = false;
  napi_typedarray_type type;
  void *data = NULL;
  if (napi_is_typedarray(c->env, c->argv[i], &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(c->env, c->argv[i], &type, len, &data, NULL, NULL) != napi_ok ||
      type != want) {
    fail(c, 0,
         want == napi_float32_array ? "expected a Float32Array"
         : want == napi_uint8_array ? "expected a Uint8Array"
                                    : "expected a Uint32Array");
    *len = 0;
    return NULL;
  }
  return data;
}

static float *arg_f32(Call *c, size_t i, size_t *len) {
  return (float *)arg_typed(c, i, napi_float32_array, len, 0);
}

static float *arg_f32_or_null(Call *c, size_t i, size_t *len) {
  return (float *)arg_typed(c, i, napi_float32_array, len, 1);
}

/* Elements a rows x cols row-major block with row stride ld spans. */
static int64_t extent(int64_t rows, int64_t cols, int64_t ld) {
  return rows > 0 && cols > 0 ? (rows - 1) * ld + cols : 0;
}

static void need(Call *c, size_t have, int64_t want, const char *what) {
  if (!c->failed && (int64_t)have < want) fail(c, 1, what);
}

static napi_value undefined(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

static napi_value make_number(napi_env env, double v) {
  napi_value r;
  napi_create_double(env, v, &r);
  return r;
}

/* sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) */
static napi_value js_sgemm(napi_env env, napi_callback_info info) {
  Call c;
  if (!begin(&c, env, info, "sgemm", 13)) return NULL;
  int ta = arg_bool(&c, 0), tb = arg_bool(&c, 1);
  int m = arg_dim(&c, 2), n = arg_dim(&c, 3), k = arg_dim(&c, 4);
  float alpha = (float)arg_num(&c, 5);
  size_t la, lb, lc;
  float *a = arg_f32(&c, 6, &la);
  int lda = arg_dim(&c, 7);
  float *b = arg_f32(&c, 8, &lb);
  int ldb = arg_dim(&c, 9);
  float beta = (float)arg_num(&c, 10);
  float *cc = arg_f32(&c, 11, &lc);
  int ldc = arg_dim(&c, 12);
  if (c.failed) return NULL;
  const int ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
  if (lda < ac || ldb < bc || ldc < n) fail(&c, 1, "leading dimension smaller than a row");
  need(&c, lc, extent(m, n, ldc), "c is too small");
  if (m == 0 || n == 0 || c.failed) return c.failed ? NULL : undefined(env);
  if (k == 0 || alpha == 0.0f) {
    /* BLAS would not read a or b here, so they need not be valid. */
    for (int i = 0; i < m; i++) {
      float *row = cc + (int64_t)i * ldc;
      if (beta == 0.0f)
        memset(row, 0, sizeof(float) * (size_t)n);
      else if (beta != 1.0f)
        for (int j = 0; j < n; j++) row[j] *= beta;
    }
    return undefined(env);
  }
  need(&c, la, extent(ar, ac, lda), "a is too small");
  need(&c, lb, extent(br, bc, ldb), "b is too small");
  if (c.failed) return NULL;
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m,
              n, k, alpha, a, lda < 1 ? 1 : lda, b, ldb < 1 ? 1 : ldb, beta, cc, ldc < 1 ? 1 : ldc);
  return undefined(env);
}

/* sampleUnits(type, rows, n, field, ld, bias, beta, mean|null, out|null,
 *             seedLo, seedHi, unitOffset, chainOffset, step, stream) */
static napi_value js_sample_units(napi_env env, napi_callback_info info) {
  Call c;
  if (!begin(&c, env, info, "sampleUnits", 15)) return NULL;
  int type = arg_dim(&c, 0), rows = arg_dim(&c, 1), n = arg_dim(&c, 2);
  size_t lf, lb, lm, lo;
  float *field = arg_f32(&c, 3, &lf);
  int ld = arg_dim(&c, 4);
  float *bias = arg_f32(&c, 5, &lb);
  double beta = arg_num(&c, 6);
  float *mean = arg_f32_or_null(&c, 7, &lm);
  float *out = arg_f32_or_null(&c, 8, &lo);
  uint32_t k0 = arg_u32(&c, 9), k1 = arg_u32(&c, 10), uo = arg_u32(&c, 11),
           co = arg_u32(&c, 12), step = arg_u32(&c, 13), stream = arg_u32(&c, 14);
  if (c.failed) return NULL;
  if (type > UNIT_GAUSSIAN) fail(&c, 1, "unknown unit type");
  if (ld < n) fail(&c, 1, "ld smaller than n");
  const int64_t ext = extent(rows, n, ld);
  need(&c, lf, ext, "field is too small");
  need(&c, lb, n, "bias is too small");
  if (mean) need(&c, lm, ext, "mean is too small");
  if (out) need(&c, lo, ext, "out is too small");
  if (c.failed) return NULL;
  sample_units(type, rows, n, field, ld, bias, (float)beta, mean, out, k0, k1, uo, co, step,
               stream);
  return undefined(env);
}

/* uniform(out, count, n, seedLo, seedHi, unitOffset, chainOffset, step, stream) */
static napi_value js_uniform(napi_env env, napi_callback_info info) {
  Call c;
  if (!begin(&c, env, info, "uniform", 9)) return NULL;
  size_t lo;
  float *out = arg_f32(&c, 0, &lo);
  double count = arg_num(&c, 1);
  int n = arg_dim(&c, 2);
  uint32_t k0 = arg_u32(&c, 3), k1 = arg_u32(&c, 4), uo = arg_u32(&c, 5), co = arg_u32(&c, 6),
           step = arg_u32(&c, 7), stream = arg_u32(&c, 8);
  if (c.failed) return NULL;
  if (!(count >= 0) || count != floor(count) || count > (double)lo)
    fail(&c, 1, "count must be an integer in [0, out.length]");
  if (count > 0 && n == 0) fail(&c, 1, "n must be positive");
  if (c.failed) return NULL;
  uniform_fill(out, (int64_t)count, n, k0, k1, uo, co, step, stream);
  return undefined(env);
}

/* logPartitionRows(type, rows, n, x, ld, bias|null, beta, out, accumulate) */
static napi_value js_log_partition_rows(napi_env env, napi_callback_info info) {
  Call c;
  if (!begin(&c, env, info, "logPartitionRows", 9)) return NULL;
  int type = arg_dim(&c, 0), rows = arg_dim(&c, 1), n = arg_dim(&c, 2);
  size_t lx, lb, lo;
  float *x = arg_f32(&c, 3, &lx);
  int ld = arg_dim(&c, 4);
  float *bias = arg_f32_or_null(&c, 5, &lb);
  double beta = arg_num(&c, 6);
  float *out = arg_f32(&c, 7, &lo);
  int acc = arg_bool(&c, 8);
  if (c.failed) return NULL;
  if (type > UNIT_GAUSSIAN) fail(&c, 1, "unknown unit type");
  if (ld < n) fail(&c, 1, "ld smaller than n");
  need(&c, lx, extent(rows, n, ld), "x is too small");
  if (bias) need(&c, lb, n, "bias is too small");
  need(&c, lo, rows, "out is too small");
  if (c.failed) return NULL;
  log_partition_rows(type, rows, n, x, ld, bias, (float)beta, out, acc);
  return undefined(env);
}

/* axpby(n, alpha, x, beta, y) */
static napi_value js_axpby(napi_env env, napi_callback_info info) {
  Call c;
  if (!begin(&c, env, info, "axpby", 5)) return NULL;
  int n = arg_dim(&c, 0);
  float alpha = (float)arg_num(&c, 1);
  size_t lx, ly;
  float *x = arg_f32(&c, 2, &lx);
  float beta = (float)arg_num(&c, 3);
  float *y = arg_f32(&c, 4, &ly);
  need(&c, lx, n, "x is too small");
  need(&c, ly, n, "y is too small");
  if (c.failed) return NULL;
  axpby(n, alpha, x, beta, y);
  return undefined(env);
}

/* colSums(rows, n, x, ld, alpha, beta, out) */
static napi_value js_col_sums(napi_env env, napi_callback_info info) {
  Call c;
  if (!begin(&c, env, info, "colSums", 7)) return NULL;
  int rows = arg_dim(&c, 0), n = arg_dim(&c, 1);
  size_t lx, lo;
  float *x = arg_f32(&c, 2, &lx);
  int ld = arg_dim(&c, 3);
  double alpha = arg_num(&c, 4), beta = arg_num(&c, 5);
  float *out = arg_f32(&c, 6, &lo);
  if (c.failed) return NULL;
  if (ld < n) fail(&c, 1, "ld smaller than n");
  need(&c, lx, extent(rows, n, ld), "x is too small");
  need(&c, lo, n, "out is too small");
  if (c.failed) return NULL;
  col_sums(rows, n, x, ld, alpha, beta, out);
  return undefined(env);
}

/* shiftScaleRows(rows, n, x, ld, offset|null, scale) */
static napi_value js_shift_scale_rows(napi_env env, napi_callback_info info) {
  Call c;
  if (!begin(&c, env, info, "shiftScaleRows", 6)) return NULL;
  int rows = arg_dim(&c, 0), n = arg_dim(&c, 1);
  size_t lx, lo;
  float *x = arg_f32(&c, 2, &lx);
  int ld = arg_dim(&c, 3);
  float *offset = arg_f32_or_null(&c, 4, &lo);
  float scale = (float)arg_num(&c, 5);
  if (c.failed) return NULL;
  if (ld < n) fail(&c, 1, "ld smaller than n");
  need(&c, lx, extent(rows, n, ld), "x is too small");
  if (offset) need(&c, lo, n, "offset is too small");
  if (c.failed) return NULL;
  shift_scale_rows(rows, n, x, ld, offset, scale);
  return undefined(env);
}

/* copyBlock(rows, n, src, srcOff, srcLd, dst, dstOff, dstLd) */
static napi_value js_copy_block(napi_env env, napi_callback_info info) {
  Call c;
  if (!begin(&c, env, info, "copyBlock", 8)) return NULL;
  int rows = arg_dim(&c, 0), n = arg_dim(&c, 1);
  size_t ls, ld;
  float *src = arg_f32(&c, 2, &ls);
  int so = arg_dim(&c, 3), sld = arg_dim(&c, 4);
  float *dst = arg_f32(&c, 5, &ld);
  int dof = arg_dim(&c, 6), dld = arg_dim(&c, 7);
  if (c.failed) return NULL;
  if (sld < n || dld < n) fail(&c, 1, "ld smaller than n");
  if (rows == 0 || n == 0 || c.failed) return c.failed ? NULL : undefined(env);
  need(&c, ls, (int64_t)so + extent(rows, n, sld), "src is too small");
  need(&c, ld, (int64_t)dof + extent(rows, n, dld), "dst is too small");
  if (c.failed) return NULL;
  const float *s = src + so;
  float *d = dst + dof;
  if (n == sld && n == dld) {
    memmove(d, s, sizeof(float) * (size_t)rows * (size_t)n);
  } else {
    for (int r = 0; r < rows; r++)
      memmove(d + (int64_t)r * dld, s + (int64_t)r * sld, sizeof(float) * (size_t)n);
  }
  return undefined(env);
}

/* sumSquares(n, x) */
static napi_value js_sum_squares(napi_env env, napi_callback_info info) {
  Call c;
  if (!begin(&c, env, info, "sumSquares", 2)) return NULL;
  int n = arg_dim(&c, 0);
  size_t lx;
  float *x = arg_f32(&c, 1, &lx);
  need(&c, lx, n, "x is too small");
  if (c.failed) return NULL;
  return make_number(env, sum_squares(n, x));
}

/* dot(n, x, y) */
static napi_value js_dot(napi_env env, napi_callback_info info) {
  Call c;
  if (!begin(&c, env, info, "dot", 3)) return NULL;
  int n = arg_dim(&c, 0);
  size_t lx, ly;
  float *x = arg_f32(&c, 1, &lx);
  float *y = arg_f32(&c, 2, &ly);
  need(&c, lx, n, "x is too small");
  need(&c, ly, n, "y is too small");
  if (c.failed) return NULL;
  return make_number(env, dot(n, x, y));
}

/* packSpins(n, x, out) */
static napi_value js_pack_spins(napi_env env, napi_callback_info info) {
  Call c;
  if (!begin(&c, env, info, "packSpins", 3)) return NULL;
  int n = arg_dim(&c, 0);
  size_t lx, lo;
  float *x = arg_f32(&c, 1, &lx);
  uint8_t *out = (uint8_t *)arg_typed(&c, 2, napi_uint8_array, &lo, 0);
  need(&c, lx, n, "x is too small");
  need(&c, lo, ((int64_t)n + 7) / 8, "out is too small");
  if (c.failed) return NULL;
  pack_spins(n, x, out);
  return undefined(env);
}

/* unpackSpins(n, packed, off, x) */
static napi_value js_unpack_spins(napi_env env, napi_callback_info info) {
  Call c;
  if (!begin(&c, env, info, "unpackSpins", 4)) return NULL;
  int n = arg_dim(&c, 0);
  size_t lp, lx;
  uint8_t *packed = (uint8_t *)arg_typed(&c, 1, napi_uint8_array, &lp, 0);
  float off = (float)arg_num(&c, 2);
  float *x = arg_f32(&c, 3, &lx);
  need(&c, lp, ((int64_t)n + 7) / 8, "packed is too small");
  need(&c, lx, n, "x is too small");
  if (c.failed) return NULL;
  unpack_spins(n, packed, off, x);
  return undefined(env);
}

/* packColumns(rows, n, x, ld, out: Uint32Array, odd: Uint8Array) -> whether no value was odd */
static napi_value js_pack_columns(napi_env env, napi_callback_info info) {
  Call c;
  if (!begin(&c, env, info, "packColumns", 6)) return NULL;
  int rows = arg_dim(&c, 0), n = arg_dim(&c, 1);
  size_t lx, lo, ld8;
  float *x = arg_f32(&c, 2, &lx);
  int ld = arg_dim(&c, 3);
  uint32_t *out = (uint32_t *)arg_typed(&c, 4, napi_uint32_array, &lo, 0);
  uint8_t *odd = (uint8_t *)arg_typed(&c, 5, napi_uint8_array, &ld8, 0);
  if (c.failed) return NULL;
  if (ld < n) fail(&c, 1, "ld smaller than n");
  need(&c, lx, extent(rows, n, ld), "x is too small");
  need(&c, lo, (int64_t)n * (((int64_t)rows + 31) / 32), "out is too small");
  need(&c, ld8, n, "odd is too small");
  if (c.failed) return NULL;
  napi_value b;
  napi_get_boolean(env, pack_columns(rows, n, x, ld, out, odd) != 0, &b);
  return b;
}

/* bitCorrelation(m, w, R, C, xPos, xNeg, yPos, yNeg, mu|null, lam|null, oddX|null, oddY|null,
 * out, ld) */
static napi_value js_bit_correlation(napi_env env, napi_callback_info info) {
  Call c;
  if (!begin(&c, env, info, "bitCorrelation", 14)) return NULL;
  int m = arg_dim(&c, 0), w = arg_dim(&c, 1), R = arg_dim(&c, 2), C = arg_dim(&c, 3);
  size_t l[4], lmu, llam, lox, loy, lo;
  uint32_t *bits[4];
  for (int k = 0; k < 4; k++)
    bits[k] = (uint32_t *)arg_typed(&c, 4 + k, napi_uint32_array, &l[k], 0);
  float *mu = arg_f32_or_null(&c, 8, &lmu);
  float *lam = arg_f32_or_null(&c, 9, &llam);
  uint8_t *oddx = (uint8_t *)arg_typed(&c, 10, napi_uint8_array, &lox, 1);
  uint8_t *oddy = (uint8_t *)arg_typed(&c, 11, napi_uint8_array, &loy, 1);
  float *out = arg_f32(&c, 12, &lo);
  int ld = arg_dim(&c, 13);
  if (c.failed) return NULL;
  const int64_t wr = ((int64_t)R + 31) / 32, wc = ((int64_t)C + 31) / 32;
  if (ld < w) fail(&c, 1, "ld smaller than w");
  need(&c, l[0], (int64_t)m * wr, "xPos is too small");
  need(&c, l[1], (int64_t)m * wc, "xNeg is too small");
  need(&c, l[2], (int64_t)w * wr, "yPos is too small");
  need(&c, l[3], (int64_t)w * wc, "yNeg is too small");
  if (mu) need(&c, lmu, m, "mu is too small");
  if (lam) need(&c, llam, w, "lam is too small");
  if (oddx) need(&c, lox, m, "oddX is too small");
  if (oddy) need(&c, loy, w, "oddY is too small");
  need(&c, lo, extent(m, w, ld), "out is too small");
  if (c.failed) return NULL;
  if (!bit_correlation(m, w, R, C, bits[0], bits[1], bits[2], bits[3], mu, lam, oddx, oddy, out,
                       ld)) {
    fail(&c, 0, "out of memory");
    return NULL;
  }
  return undefined(env);
}

/* philox(c0, c1, c2, c3, k0, k1, out: Uint32Array(4)): lets tests pin the C generator. */
static napi_value js_philox(napi_env env, napi_callback_info info) {
  Call c;
  if (!begin(&c, env, info, "philox", 7)) return NULL;
  uint32_t x0 = arg_u32(&c, 0), x1 = arg_u32(&c, 1), x2 = arg_u32(&c, 2), x3 = arg_u32(&c, 3);
  uint32_t k0 = arg_u32(&c, 4), k1 = arg_u32(&c, 5);
  size_t lo;
  uint32_t *out = (uint32_t *)arg_typed(&c, 6, napi_uint32_array, &lo, 0);
  need(&c, lo, 4, "out must hold 4 words");
  if (c.failed) return NULL;
  PHILOX_ROUNDS(x0, x1, x2, x3, k0, k1);
  out[0] = x0;
  out[1] = x1;
  out[2] = x2;
  out[3] = x3;
  return undefined(env);
}

static napi_value js_blas_config(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value s;
  const char *cfg = openblas_get_config();
  napi_create_string_utf8(env, cfg ? cfg : "OpenBLAS", NAPI_AUTO_LENGTH, &s);
  return s;
}

static napi_value js_get_threads(napi_env env, napi_callback_info info) {
  (void)info;
  return make_number(env, openblas_get_num_threads());
}

/* setThreads(n): OpenBLAS keeps one process-wide setting. */
static napi_value js_set_threads(napi_env env, napi_callback_info info) {
  Call c;
  if (!begin(&c, env, info, "setThreads", 1)) return NULL;
  int n = arg_dim(&c, 0);
  if (!c.failed && n < 1) fail(&c, 1, "threads must be at least 1");
  if (c.failed) return NULL;
  openblas_set_num_threads(n);
  return undefined(env);
}

NAPI_MODULE_INIT() {
  static const struct {
    const char *name;
    napi_callback cb;
  } fns[] = {
      {"sgemm", js_sgemm},
      {"sampleUnits", js_sample_units},
      {"uniform", js_uniform},
      {"logPartitionRows", js_log_partition_rows},
      {"axpby", js_axpby},
      {"colSums", js_col_sums},
      {"shiftScaleRows", js_shift_scale_rows},
      {"copyBlock", js_copy_block},
      {"sumSquares", js_sum_squares},
      {"dot", js_dot},
      {"packSpins", js_pack_spins},
      {"packColumns", js_pack_columns},
      {"bitCorrelation", js_bit_correlation},
      {"unpackSpins", js_unpack_spins},
      {"philox", js_philox},
      {"blasConfig", js_blas_config},
      {"getThreads", js_get_threads},
      {"setThreads", js_set_threads},
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value fn;
    if (napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].cb, NULL, &fn) != napi_ok ||
        napi_set_named_property(env, exports, fns[i].name, fn) != napi_ok)
      return NULL;
  }
  napi_value abi;
  napi_create_int32(env, SPINMESH_ABI_VERSION, &abi);
  napi_set_named_property(env, exports, "abiVersion", abi);
  return exports;
}
