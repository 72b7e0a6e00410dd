/*
 * CUDA kernels for spinmesh behind the plain C N-API: device buffers, cuBLAS sgemm and the
 * element-wise kernels of src/kernels.ts. src/cuda.ts maps typed arrays to device addresses
 * and validates every shape; the functions here take device addresses as numbers and trust
 * them, so nothing but src/cuda.ts should call this addon.
 *
 * cuBLAS is opened at run time (dlopen) rather than linked, because the machines that build
 * this addon have nvcc and the CUDA runtime but not cuBLAS; only the five functions used are
 * declared. The runtime is linked statically, so the addon loads where no driver is installed
 * and probe() reports why no device answers instead of the loader failing.
 *
 * Everything runs on one stream in issue order: kernels and sgemm return before the device is
 * done, and only download(), the scalar reductions and packColumns' flag wait for it.
 */
#define NAPI_VERSION 8
#include <node_api.h>

#include <cuda_runtime.h>
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Bumped whenever the JS-visible function signatures change; src/cuda.ts checks it. */
#define SPINMESH_CUDA_ABI_VERSION 1

enum { UNIT_BERNOULLI = 0, UNIT_ISING = 1, UNIT_GAUSSIAN = 2 };

/* ------------------------------------------------------------------------------------------ */
/* cuBLAS, opened at run time. Values from cublas_api.h (stable since CUDA 11).                */

typedef void *cublasHandle_t;
typedef int cublasStatus_t;
enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };
enum { CUBLAS_DEFAULT_MATH = 0, CUBLAS_TF32_TENSOR_OP_MATH = 3 };

typedef cublasStatus_t (*cublasCreate_t)(cublasHandle_t *);
typedef cublasStatus_t (*cublasDestroy_t)(cublasHandle_t);
typedef cublasStatus_t (*cublasSetStream_t)(cublasHandle_t, cudaStream_t);
typedef cublasStatus_t (*cublasSetMathMode_t)(cublasHandle_t, int);
typedef cublasStatus_t (*cublasSgemm_t)(cublasHandle_t, int, int, int, int, int, const float *,
                                        const float *, int, const float *, int, const float *,
                                        float *, int);

static struct {
  void *lib;
  char lib_name[64];
  cublasCreate_t create;
  cublasDestroy_t destroy;
  cublasSetStream_t set_stream;
  cublasSetMathMode_t set_math_mode;
  cublasSgemm_t sgemm;
  cublasHandle_t handle;
  cudaStream_t stream;
  int ready;
  int tf32;
  /* Device scratch for reductions: partial sums, then the result and packColumns' flag. */
  double *partials;
  double *result;
  int *flag;
  char device_name[256];
} g;

#define RED_BLOCKS 256
#define RED_THREADS 256

/* ------------------------------------------------------------------------------------------ */
/* Device code.                                                                                */

__device__ __forceinline__ void philox(uint32_t &x0, uint32_t &x1, uint32_t &x2, uint32_t &x3,
                                       uint32_t k0, uint32_t k1) {
#pragma unroll
  for (int r = 0; r < 10; r++) {
    const uint32_t hi0 = __umulhi(0xD2511F53u, x0), lo0 = 0xD2511F53u * x0;
    const uint32_t hi1 = __umulhi(0xCD9E8D57u, x2), lo1 = 0xCD9E8D57u * x2;
    const uint32_t y0 = hi1 ^ x1 ^ k0, y2 = hi0 ^ x3 ^ k1;
    x0 = y0;
    x1 = lo1;
    x2 = y2;
    x3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
}

__device__ __forceinline__ float word_to_uniform(uint32_t w) { return (float)(w >> 8) * 0x1p-24f; }

__device__ __forceinline__ float sigmoid_f(float a) { return 1.0f / (1.0f + expf(-a)); }

/* One thread per element of a rows x n block: the counter of element (r, j) is (unit_off + j,
 * chain_off + r, step, stream), exactly as in the CPU kernels, so draws do not depend on the
 * launch shape. Each thread reads its field before writing, so mean/out may be field itself. */
__global__ void k_sample_units(int type, int rows, int n, const float *field, int64_t ld,
                               const float *bias, float beta, float inv_sqrt_beta, float *mean,
                               float *out, uint32_t k0, uint32_t k1, uint32_t unit_off,
                               uint32_t chain_off, uint32_t step, uint32_t stream) {
  const int64_t total = (int64_t)rows * n;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total;
       e += (int64_t)gridDim.x * blockDim.x) {
    const int r = (int)(e / n), j = (int)(e % n);
    const int64_t at = (int64_t)r * ld + j;
    const float s = field[at] + bias[j];
    float m, o = 0.0f;
    uint32_t x0 = unit_off + (uint32_t)j, x1 = chain_off + (uint32_t)r, x2 = step, x3 = stream;
    if (out) philox(x0, x1, x2, x3, k0, k1);
    if (type == UNIT_BERNOULLI) {
      const float p = sigmoid_f(beta * s);
      m = p;
      o = word_to_uniform(x0) < p ? 1.0f : 0.0f;
    } else if (type == UNIT_ISING) {
      m = tanhf(beta * s);
      o = word_to_uniform(x0) < sigmoid_f(2.0f * (beta * s)) ? 1.0f : -1.0f;
    } else {
      m = s;
      const float u1 = (float)((x0 >> 8) + 1u) * 0x1p-24f;
      const float u2 = word_to_uniform(x1);
      const float z = sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
      o = s + z * inv_sqrt_beta;
    }
    if (mean) mean[at] = m;
    if (out) out[at] = o;
  }
}

__global__ void k_uniform(float *out, int64_t count, int n, uint32_t k0, uint32_t k1,
                          uint32_t unit_off, uint32_t chain_off, uint32_t step, uint32_t stream) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count;
       i += (int64_t)gridDim.x * blockDim.x) {
    uint32_t x0 = unit_off + (uint32_t)(i % n), x1 = chain_off + (uint32_t)(i / n), x2 = step,
             x3 = stream;
    philox(x0, x1, x2, x3, k0, k1);
    out[i] = word_to_uniform(x0);
  }
}

/* Block-wide sum of one double per thread (blockDim.x == RED_THREADS); thread 0 gets it. */
__device__ double block_sum(double v) {
  __shared__ double sh[RED_THREADS];
  sh[threadIdx.x] = v;
  __syncthreads();
  for (int s = RED_THREADS / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
    __syncthreads();
  }
  const double r = sh[0];
  __syncthreads();
  return r;
}

/* One block per row; the sum in double in a fixed order, so it does not vary from run to run. */
__global__ void k_log_partition_rows(int type, int rows, int n, const float *x, int64_t ld,
                                     const float *bias, float beta, float *out, int accumulate) {
  const int r = blockIdx.x;
  const float *xr = x + (int64_t)r * ld;
  double acc = 0.0;
  for (int j = threadIdx.x; j < n; j += blockDim.x) {
    const float a = beta * (bias ? xr[j] + bias[j] : xr[j]);
    if (type == UNIT_BERNOULLI)
      acc += (double)(fmaxf(a, 0.0f) + log1pf(expf(-fabsf(a))));
    else if (type == UNIT_ISING)
      acc += (double)(fabsf(a) + log1pf(expf(-2.0f * fabsf(a))));
    else
      acc += (double)a * (double)a * (0.5 / (double)beta);
  }
  const double s = block_sum(acc);
  if (threadIdx.x == 0) out[r] = accumulate ? (float)((double)out[r] + s) : (float)s;
}

__global__ void k_axpby(int64_t n, float alpha, const float *x, float beta, float *y) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    y[i] = beta == 0.0f ? alpha * x[i] : alpha * x[i] + beta * y[i];
}

/* C = beta * C over an m x n block (sgemm with k = 0 or alpha = 0: A and B are not read). */
__global__ void k_scale(int m, int n, float *c, int64_t ldc, float beta) {
  const int64_t total = (int64_t)m * n;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total;
       e += (int64_t)gridDim.x * blockDim.x) {
    float *p = c + (e / n) * ldc + e % n;
    *p = beta == 0.0f ? 0.0f : beta * *p;
  }
}

/* One thread per column, rows in order: the same double sum as the CPU kernels. */
__global__ void k_col_sums(int rows, int n, const float *x, int64_t ld, double alpha,
                           double beta, float *out) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= n) return;
  double acc = 0.0;
  for (int r = 0; r < rows; r++) acc += (double)x[(int64_t)r * ld + j];
  out[j] = beta == 0.0 ? (float)(alpha * acc) : (float)(alpha * acc + beta * (double)out[j]);
}

__global__ void k_shift_scale_rows(int rows, int n, float *x, int64_t ld, const float *offset,
                                   float scale) {
  const int64_t total = (int64_t)rows * n;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total;
       e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t j = e % n;
    float *p = x + (e / n) * ld + j;
    *p = offset ? scale * (*p - offset[j]) : scale * *p;
  }
}

/* Partial sums of x*y (y null: x*x) per block, then k_finish adds them in a fixed order. */
__global__ void k_dot_partials(int64_t n, const float *x, const float *y, double *partials) {
  double acc = 0.0;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    acc += (double)x[i] * (double)(y ? y[i] : x[i]);
  const double s = block_sum(acc);
  if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

__global__ void k_finish(const double *partials, int count, double *result) {
  double acc = 0.0;
  for (int i = threadIdx.x; i < count; i += blockDim.x) acc += partials[i];
  const double s = block_sum(acc);
  if (threadIdx.x == 0) *result = s;
}

__global__ void k_pack_spins(int64_t n, const float *x, uint8_t *out) {
  const int64_t bytes = (n + 7) / 8;
  for (int64_t b = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; b < bytes;
       b += (int64_t)gridDim.x * blockDim.x) {
    unsigned v = 0;
    for (int l = 0; l < 8 && 8 * b + l < n; l++) v |= (unsigned)(x[8 * b + l] > 0.0f) << l;
    out[b] = (uint8_t)v;
  }
}

__global__ void k_unpack_spins(int64_t n, const uint8_t *packed, float off, float *x) {
  const float span = 1.0f - off;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    x[i] = off + span * (float)((packed[i >> 3] >> (i & 7)) & 1u);
}

/* One thread per (column, word): 32 rows of one column into one word. Threads of a warp take
 * neighbouring columns, so each row's read is coalesced. odd and flag are only ever set to 1. */
__global__ void k_pack_columns(int64_t rows, int64_t n, const float *x, int64_t ld,
                               uint32_t *out, uint8_t *odd, int *flag) {
  const int64_t words = (rows + 31) / 32;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < words * n;
       e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t i = e % n, w = e / n;
    uint32_t bits = 0;
    int o = 0;
    for (int b = 0; b < 32 && 32 * w + b < rows; b++) {
      const float v = x[(32 * w + b) * ld + i];
      o |= (v != 0.0f) & (v != 1.0f);
      bits |= (v == 1.0f) ? 1u << b : 0u;
    }
    out[i * words + w] = bits;
    if (o) {
      odd[i] = 1;
      *flag = 1;
    }
  }
}

/* One thread per output element; each counts its own two units' bits, so the value does not
 * depend on the tiling. Explicit _rn operations keep the compiler from fusing the double
 * expression, which is the CPU kernel's expression rounded once to float. */
__global__ void k_bit_correlation(int64_t m, int64_t w, int64_t R, int64_t C, const uint32_t *xp,
                                  const uint32_t *xn, const uint32_t *yp, const uint32_t *yn,
                                  const float *mu, const float *lam, const uint8_t *oddx,
                                  const uint8_t *oddy, float *out, int64_t ld) {
  const int64_t wr = (R + 31) / 32, wc = (C + 31) / 32;
  const double ir = R > 0 ? 1.0 / (double)R : 0.0, ic = C > 0 ? 1.0 / (double)C : 0.0;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < m * w;
       e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t i = e / w, j = e % w;
    if ((oddx && oddx[i]) || (oddy && oddy[j])) continue;
    const uint32_t *ap = xp + i * wr, *an = xn + i * wc, *bp = yp + j * wr, *bn = yn + j * wc;
    int64_t cp = 0, cn = 0, px = 0, nx = 0, py = 0, ny = 0;
    for (int64_t k = 0; k < wr; k++) {
      cp += __popc(ap[k] & bp[k]);
      px += __popc(ap[k]);
      py += __popc(bp[k]);
    }
    for (int64_t k = 0; k < wc; k++) {
      cn += __popc(an[k] & bn[k]);
      nx += __popc(an[k]);
      ny += __popc(bn[k]);
    }
    const double sx = __dsub_rn(__dmul_rn((double)px, ir), __dmul_rn((double)nx, ic));
    const double sy = __dsub_rn(__dmul_rn((double)py, ir), __dmul_rn((double)ny, ic));
    const double mi = mu ? (double)mu[i] : 0.0, lj = lam ? (double)lam[j] : 0.0;
    double v = __dsub_rn(__dmul_rn((double)cp, ir), __dmul_rn((double)cn, ic));
    v = __dsub_rn(v, __dmul_rn(lj, sx));
    v = __dsub_rn(v, __dmul_rn(mi, sy));
    out[i * ld + j] = (float)v;
  }
}

__global__ void k_philox(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                         uint32_t k1, uint32_t *out) {
  philox(c0, c1, c2, c3, k0, k1);
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

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

static void fail(Call *c, const char *what) {
  if (c->failed) return;
  c->failed = 1;
  char msg[320];
  snprintf(msg, sizeof msg, "spinmesh_cuda.%s: %s", c->fn, what);
  napi_throw_error(c->env, NULL, msg);
}

/* A CUDA error as a JS Error naming the call and the runtime's error name and message. */
static int cuda_ok(Call *c, cudaError_t e, const char *what) {
  if (e == cudaSuccess) return 1;
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s (%s)", what, cudaGetErrorName(e), cudaGetErrorString(e));
  fail(c, msg);
  return 0;
}

static int begin(Call *c, napi_env env, napi_callback_info info, const char *fn, size_t want) {
  c->env = env;
  c->fn = fn;
  c->failed = 0;
  c->argc = MAX_ARGS;
  if (napi_get_cb_info(env, info, &c->argc, c->argv, NULL, NULL) != napi_ok) {
    fail(c, "cannot read arguments");
    return 0;
  }
  if (c->argc < want) {
    fail(c, "too few arguments");
    return 0;
  }
  return 1;
}

static int need_ready(Call *c) {
  if (!g.ready) fail(c, "not initialised: call init() first");
  return !c->failed;
}

static double arg_num(Call *c, size_t i) {
  double v = 0;
  if (c->failed) return 0;
  if (napi_get_value_double(c->env, c->argv[i], &v) != napi_ok) fail(c, "expected a number");
  return v;
}

static int64_t arg_i64(Call *c, size_t i) {
  const double v = arg_num(c, i);
  if (c->failed) return 0;
  if (!(v >= 0 && v <= 9007199254740991.0) || v != floor(v)) {
    fail(c, "expected a non-negative integer");
    return 0;
  }
  return (int64_t)v;
}

/* A device address (0: none) as src/cuda.ts passes it. */
template <typename T> static T *arg_ptr(Call *c, size_t i) {
  return (T *)(uintptr_t)arg_i64(c, i);
}

static uint32_t arg_u32(Call *c, size_t i) {
  uint32_t v = 0;
  if (c->failed) return 0;
  if (napi_get_value_uint32(c->env, c->argv[i], &v) != napi_ok) fail(c, "expected a number");
  return v;
}

static int arg_bool(Call *c, size_t i) {
  bool v = false;
  if (c->failed) return 0;
  if (napi_get_value_bool(c->env, c->argv[i], &v) != napi_ok) fail(c, "expected a boolean");
  return v ? 1 : 0;
}

static void *arg_host(Call *c, size_t i, size_t *bytes) {
  *bytes = 0;
  if (c->failed) return NULL;
  bool is_ta = false;
  napi_typedarray_type type;
  size_t len = 0;
  void *data = NULL;
  if (napi_is_typedarray(c->env, c->argv[i], &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(c->env, c->argv[i], &type, &len, &data, NULL, NULL) != napi_ok) {
    fail(c, "expected a typed array");
    return NULL;
  }
  const size_t el = type == napi_float32_array || type == napi_uint32_array ? 4
                    : type == napi_uint8_array                              ? 1
                                                                            : 0;
  if (el == 0) fail(c, "expected a Float32Array, Uint32Array or Uint8Array");
  *bytes = len * el;
  return data;
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

static void set_str(napi_env env, napi_value obj, const char *k, const char *v) {
  napi_value s;
  napi_create_string_utf8(env, v, NAPI_AUTO_LENGTH, &s);
  napi_set_named_property(env, obj, k, s);
}

static void set_num(napi_env env, napi_value obj, const char *k, double v) {
  napi_set_named_property(env, obj, k, make_number(env, v));
}

/* Grid for a grid-stride loop over `total` items. */
static unsigned grid_for(int64_t total) {
  int64_t b = (total + 255) / 256;
  if (b < 1) b = 1;
  return (unsigned)(b > 65535 ? 65535 : b);
}

static int launched(Call *c) { return cuda_ok(c, cudaGetLastError(), "kernel launch"); }

/* probe() -> { ok, devices, name, reason, runtimeVersion, driverVersion }. Never throws for
 * want of a device or driver: that is an answer, not an error. */
static napi_value js_probe(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value r;
  napi_create_object(env, &r);
  int count = 0, rt = 0, drv = 0;
  cudaRuntimeGetVersion(&rt);
  cudaDriverGetVersion(&drv);
  const cudaError_t e = cudaGetDeviceCount(&count);
  char reason[256] = "";
  char name[256] = "";
  if (e != cudaSuccess) {
    snprintf(reason, sizeof reason, "%s: %s", cudaGetErrorName(e), cudaGetErrorString(e));
    count = 0;
  } else if (count == 0) {
    snprintf(reason, sizeof reason, "the CUDA runtime sees no device");
  } else {
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, 0) == cudaSuccess)
      snprintf(name, sizeof name, "%s (sm_%d%d, %.1f GiB)", p.name, p.major, p.minor,
               (double)p.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
  }
  napi_value ok;
  napi_get_boolean(env, count > 0, &ok);
  napi_set_named_property(env, r, "ok", ok);
  set_num(env, r, "devices", count);
  set_str(env, r, "name", name);
  set_str(env, r, "reason", reason);
  set_num(env, r, "runtimeVersion", rt);
  set_num(env, r, "driverVersion", drv);
  return r;
}

/* Where cuBLAS may be: the loader's path first, then the usual CUDA installations. */
static void *open_cublas(char *which, size_t cap, char *why, size_t why_cap) {
  static const char *names[] = {"libcublas.so.13", "libcublas.so.12", "libcublas.so"};
  static const char *dirs[] = {"", "/usr/local/cuda/lib64/", "/usr/local/cuda/targets/x86_64-linux/lib/"};
  const char *home = getenv("CUDA_HOME");
  char path[512];
  why[0] = 0;
  for (int d = -1; d < (int)(sizeof dirs / sizeof dirs[0]); d++) {
    for (size_t n = 0; n < sizeof names / sizeof names[0]; n++) {
      if (d < 0) {
        if (!home || !*home) break;
        snprintf(path, sizeof path, "%s/lib64/%s", home, names[n]);
      } else {
        snprintf(path, sizeof path, "%s%s", dirs[d], names[n]);
      }
      void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
      if (h) {
        snprintf(which, cap, "%s", path);
        return h;
      }
    }
  }
  snprintf(why, why_cap, "cuBLAS not found (tried libcublas.so.13, .12 and libcublas.so on the "
                         "loader path, CUDA_HOME/lib64 and /usr/local/cuda/lib64)");
  return NULL;
}

/* init(tf32) -> description. Selects device 0 of those CUDA_VISIBLE_DEVICES leaves, opens
 * cuBLAS and creates the stream and handle; a second call only changes the math mode. */
static napi_value js_init(napi_env env, napi_callback_info info) {
  Call c;
  if (!begin(&c, env, info, "init", 1)) return NULL;
  const int tf32 = arg_bool(&c, 0);
  if (c.failed) return NULL;
  if (!g.ready) {
    int count = 0;
    if (!cuda_ok(&c, cudaGetDeviceCount(&count), "no device")) return NULL;
    if (count == 0) {
      fail(&c, "no device: the CUDA runtime sees none");
      return NULL;
    }
    if (!cuda_ok(&c, cudaSetDevice(0), "cudaSetDevice")) return NULL;
    cudaDeviceProp p;
    if (!cuda_ok(&c, cudaGetDeviceProperties(&p, 0), "cudaGetDeviceProperties")) return NULL;
    snprintf(g.device_name, sizeof g.device_name, "%s, sm_%d%d", p.name, p.major, p.minor);
    char why[256];
    if (!g.lib) g.lib = open_cublas(g.lib_name, sizeof g.lib_name, why, sizeof why);
    if (!g.lib) {
      fail(&c, why);
      return NULL;
    }
    g.create = (cublasCreate_t)dlsym(g.lib, "cublasCreate_v2");
    g.destroy = (cublasDestroy_t)dlsym(g.lib, "cublasDestroy_v2");
    g.set_stream = (cublasSetStream_t)dlsym(g.lib, "cublasSetStream_v2");
    g.set_math_mode = (cublasSetMathMode_t)dlsym(g.lib, "cublasSetMathMode");
    g.sgemm = (cublasSgemm_t)dlsym(g.lib, "cublasSgemm_v2");
    if (!g.create || !g.destroy || !g.set_stream || !g.set_math_mode || !g.sgemm) {
      fail(&c, "cuBLAS lacks one of cublasCreate_v2, cublasDestroy_v2, cublasSetStream_v2, "
               "cublasSetMathMode, cublasSgemm_v2");
      return NULL;
    }
    if (!cuda_ok(&c, cudaStreamCreateWithFlags(&g.stream, cudaStreamNonBlocking),
                 "cudaStreamCreate"))
      return NULL;
    int st = g.create(&g.handle);
    if (st != 0) {
      char m[64];
      snprintf(m, sizeof m, "cublasCreate_v2 failed with status %d", st);
      fail(&c, m);
      return NULL;
    }
    g.set_stream(g.handle, g.stream);
    if (!cuda_ok(&c, cudaMalloc((void **)&g.partials, sizeof(double) * (RED_BLOCKS + 1)),
                 "cudaMalloc") ||
        !cuda_ok(&c, cudaMalloc((void **)&g.flag, sizeof(int)), "cudaMalloc"))
      return NULL;
    g.result = g.partials + RED_BLOCKS;
    g.ready = 1;
  }
  int st = g.set_math_mode(g.handle, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH);
  if (st != 0) {
    fail(&c, "cublasSetMathMode failed");
    return NULL;
  }
  g.tf32 = tf32;
  char d[512];
  snprintf(d, sizeof d, "%s; %s; %s", g.device_name, g.lib_name,
           tf32 ? "TF32 tensor-core sgemm" : "fp32 sgemm");
  napi_value s;
  napi_create_string_utf8(env, d, NAPI_AUTO_LENGTH, &s);
  return s;
}

/* malloc(bytes) -> device address of zeroed memory. */
static napi_value js_malloc(napi_env env, napi_callback_info info) {
  Call c;
  if (!begin(&c, env, info, "malloc", 1) || !need_ready(&c)) return NULL;
  const int64_t bytes = arg_i64(&c, 0);
  if (c.failed) return NULL;
  void *p = NULL;
  if (!cuda_ok(&c, cudaMalloc(&p, bytes > 0 ? (size_t)bytes : 4), "cudaMalloc")) return NULL;
  if (!cuda_ok(&c, cudaMemsetAsync(p, 0, bytes > 0 ? (size_t)bytes : 4, g.stream),
               "cudaMemset"))
    return NULL;
  return make_number(env, (double)(uintptr_t)p);
}

/* free(ptr): waits for the stream first, since kernels in flight may still use the memory. */
static napi_value js_free(napi_env env, napi_callback_info info) {
  Call c;
  if (!begin(&c, env, info, "free", 1) || !need_ready(&c)) return NULL;
  void *p = arg_ptr<void>(&c, 0);
  if (c.failed) return NULL;
  cudaStreamSynchronize(g.stream);
  if (!cuda_ok(&c, cudaFree(p), "cudaFree")) return NULL;
  return undefined(env);
}

/* upload(ptr, host): the typed array's bytes to ptr. Pageable source: the runtime has staged
 * it before returning, so JS may write the array again at once. */
static napi_value js_upload(napi_env env, napi_callback_info info) {
  Call c;
  if (!begin(&c, env, info, "upload", 2) || !need_ready(&c)) return NULL;
  void *p = arg_ptr<void>(&c, 0);
  size_t bytes;
  void *h = arg_host(&c, 1, &bytes);
  if (c.failed) return NULL;
  if (bytes == 0) return undefined(env);
  if (!cuda_ok(&c, cudaMemcpyAsync(p, h, bytes, cudaMemcpyHostToDevice, g.stream), "upload"))
    return NULL;
  return undefined(env);
}

/* download(ptr, host): waits for the stream, then the bytes at ptr into the typed array. */
static napi_value js_download(napi_env env, napi_callback_info info) {
  Call c;
  if (!begin(&c, env, info, "download", 2) || !need_ready(&c)) return NULL;
  void *p = arg_ptr<void>(&c, 0);
  size_t bytes;
  void *h = arg_host(&c, 1, &bytes);
  if (c.failed) return NULL;
  if (bytes == 0) return undefined(env);
  if (!cuda_ok(&c, cudaMemcpyAsync(h, p, bytes, cudaMemcpyDeviceToHost, g.stream), "download") ||
      !cuda_ok(&c, cudaStreamSynchronize(g.stream), "download"))
    return NULL;
  return undefined(env);
}

static napi_value js_sync(napi_env env, napi_callback_info info) {
  Call c;
  if (!begin(&c, env, info, "sync", 0) || !need_ready(&c)) return NULL;
  if (!cuda_ok(&c, cudaStreamSynchronize(g.stream), "cudaStreamSynchronize")) return NULL;
  return undefined(env);
}

/* sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc), row-major, as
 * column-major C^T = op(B)^T op(A)^T: the same memory, with A and B swapped. */
static napi_value js_sgemm(napi_env env, napi_callback_info info) {
  Call c;
  if (!begin(&c, env, info, "sgemm", 13) || !need_ready(&c)) return NULL;
  const int ta = arg_bool(&c, 0), tb = arg_bool(&c, 1);
  const int m = (int)arg_i64(&c, 2), n = (int)arg_i64(&c, 3), k = (int)arg_i64(&c, 4);
  const float alpha = (float)arg_num(&c, 5);
  const float *a = arg_ptr<float>(&c, 6);
  const int lda = (int)arg_i64(&c, 7);
  const float *b = arg_ptr<float>(&c, 8);
  const int ldb = (int)arg_i64(&c, 9);
  const float beta = (float)arg_num(&c, 10);
  float *cc = arg_ptr<float>(&c, 11);
  const int ldc = (int)arg_i64(&c, 12);
  if (c.failed) return NULL;
  if (m == 0 || n == 0) return undefined(env);
  if (k == 0 || alpha == 0.0f) {
    k_scale<<<grid_for((int64_t)m * n), 256, 0, g.stream>>>(m, n, cc, ldc, beta);
    return launched(&c) ? undefined(env) : NULL;
  }
  const int st = g.sgemm(g.handle, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                         n, m, k, &alpha, b, ldb < 1 ? 1 : ldb, a, lda < 1 ? 1 : lda, &beta, cc,
                         ldc < 1 ? 1 : ldc);
  if (st != 0) {
    char msg[64];
    snprintf(msg, sizeof msg, "cublasSgemm_v2 failed with status %d", st);
    fail(&c, msg);
    return NULL;
  }
  return undefined(env);
}

/* sampleUnits(type, rows, n, field, ld, bias, beta, mean|0, out|0, seedLo, seedHi, unitOffset,
 *             chainOffset, step, stream) */
static napi_value js_sample_units(napi_env env, napi_callback_info info) {
  Call c;
  if (!begin(&c, env, info, "sampleUnits", 15) || !need_ready(&c)) return NULL;
  const int type = (int)arg_i64(&c, 0), rows = (int)arg_i64(&c, 1), n = (int)arg_i64(&c, 2);
  const float *field = arg_ptr<float>(&c, 3);
  const int64_t ld = arg_i64(&c, 4);
  const float *bias = arg_ptr<float>(&c, 5);
  const double beta = arg_num(&c, 6);
  float *mean = arg_ptr<float>(&c, 7), *out = arg_ptr<float>(&c, 8);
  const uint32_t k0 = arg_u32(&c, 9), k1 = arg_u32(&c, 10), uo = arg_u32(&c, 11),
                 co = arg_u32(&c, 12), step = arg_u32(&c, 13), stream = arg_u32(&c, 14);
  if (c.failed) return NULL;
  if ((int64_t)rows * n == 0 || (!mean && !out)) return undefined(env);
  /* The CPU kernels compute 1/sqrt(beta) in double and round it once; so does this. */
  const float isb = (float)(1.0 / sqrt(beta));
  k_sample_units<<<grid_for((int64_t)rows * n), 256, 0, g.stream>>>(
      type, rows, n, field, ld, bias, (float)beta, isb, mean, out, k0, k1, uo, co, step, stream);
  return launched(&c) ? undefined(env) : NULL;
}

/* uniform(out, count, n, seedLo, seedHi, unitOffset, chainOffset, step, stream) */
static napi_value js_uniform(napi_env env, napi_callback_info info) {
  Call c;
  if (!begin(&c, env, info, "uniform", 9) || !need_ready(&c)) return NULL;
  float *out = arg_ptr<float>(&c, 0);
  const int64_t count = arg_i64(&c, 1);
  const int n = (int)arg_i64(&c, 2);
  const uint32_t k0 = arg_u32(&c, 3), k1 = arg_u32(&c, 4), uo = arg_u32(&c, 5),
                 co = arg_u32(&c, 6), step = arg_u32(&c, 7), stream = arg_u32(&c, 8);
  if (c.failed) return NULL;
  if (count == 0) return undefined(env);
  k_uniform<<<grid_for(count), 256, 0, g.stream>>>(out, count, n, k0, k1, uo, co, step, stream);
  return launched(&c) ? undefined(env) : NULL;
}

/* logPartitionRows(type, rows, n, x, ld, bias|0, beta, out, accumulate) */
static napi_value js_log_partition_rows(napi_env env, napi_callback_info info) {
  Call c;
  if (!begin(&c, env, info, "logPartitionRows", 9) || !need_ready(&c)) return NULL;
  const int type = (int)arg_i64(&c, 0), rows = (int)arg_i64(&c, 1), n = (int)arg_i64(&c, 2);
  const float *x = arg_ptr<float>(&c, 3);
  const int64_t ld = arg_i64(&c, 4);
  const float *bias = arg_ptr<float>(&c, 5);
  const float beta = (float)arg_num(&c, 6);
  float *out = arg_ptr<float>(&c, 7);
  const int acc = arg_bool(&c, 8);
  if (c.failed) return NULL;
  if (rows == 0) return undefined(env);
  k_log_partition_rows<<<rows, RED_THREADS, 0, g.stream>>>(type, rows, n, x, ld, bias, beta, out,
                                                           acc);
  return launched(&c) ? undefined(env) : NULL;
}

/* axpby(n, alpha, x, beta, y) */
static napi_value js_axpby(napi_env env, napi_callback_info info) {
  Call c;
  if (!begin(&c, env, info, "axpby", 5) || !need_ready(&c)) return NULL;
  const int64_t n = arg_i64(&c, 0);
  const float alpha = (float)arg_num(&c, 1);
  const float *x = arg_ptr<float>(&c, 2);
  const float beta = (float)arg_num(&c, 3);
  float *y = arg_ptr<float>(&c, 4);
  if (c.failed) return NULL;
  if (n == 0) return undefined(env);
  k_axpby<<<grid_for(n), 256, 0, g.stream>>>(n, alpha, x, beta, y);
  return launched(&c) ? undefined(env) : NULL;
}

/* colSums(rows, n, x, ld, alpha, beta, out) */
static napi_value js_col_sums(napi_env env, napi_callback_info info) {
  Call c;
  if (!begin(&c, env, info, "colSums", 7) || !need_ready(&c)) return NULL;
  const int rows = (int)arg_i64(&c, 0), n = (int)arg_i64(&c, 1);
  const float *x = arg_ptr<float>(&c, 2);
  const int64_t ld = arg_i64(&c, 3);
  const double alpha = arg_num(&c, 4), beta = arg_num(&c, 5);
  float *out = arg_ptr<float>(&c, 6);
  if (c.failed) return NULL;
  if (n == 0) return undefined(env);
  k_col_sums<<<(n + 127) / 128, 128, 0, g.stream>>>(rows, n, x, ld, alpha, beta, out);
  return launched(&c) ? undefined(env) : NULL;
}

/* shiftScaleRows(rows, n, x, ld, offset|0, scale) */
static napi_value js_shift_scale_rows(napi_env env, napi_callback_info info) {
  Call c;
  if (!begin(&c, env, info, "shiftScaleRows", 6) || !need_ready(&c)) return NULL;
  const int rows = (int)arg_i64(&c, 0), n = (int)arg_i64(&c, 1);
  float *x = arg_ptr<float>(&c, 2);
  const int64_t ld = arg_i64(&c, 3);
  const float *offset = arg_ptr<float>(&c, 4);
  const float scale = (float)arg_num(&c, 5);
  if (c.failed) return NULL;
  if ((int64_t)rows * n == 0) return undefined(env);
  k_shift_scale_rows<<<grid_for((int64_t)rows * n), 256, 0, g.stream>>>(rows, n, x, ld, offset,
                                                                        scale);
  return launched(&c) ? undefined(env) : NULL;
}

/* copyBlock(rows, n, src, srcLd, dst, dstLd): addresses already include the offsets. */
static napi_value js_copy_block(napi_env env, napi_callback_info info) {
  Call c;
  if (!begin(&c, env, info, "copyBlock", 6) || !need_ready(&c)) return NULL;
  const int64_t rows = arg_i64(&c, 0), n = arg_i64(&c, 1);
  const float *src = arg_ptr<float>(&c, 2);
  const int64_t sld = arg_i64(&c, 3);
  float *dst = arg_ptr<float>(&c, 4);
  const int64_t dld = arg_i64(&c, 5);
  if (c.failed) return NULL;
  if (rows == 0 || n == 0) return undefined(env);
  if (!cuda_ok(&c,
               cudaMemcpy2DAsync(dst, (size_t)dld * 4, src, (size_t)sld * 4, (size_t)n * 4,
                                 (size_t)rows, cudaMemcpyDeviceToDevice, g.stream),
               "copyBlock"))
    return NULL;
  return undefined(env);
}

static napi_value reduce(Call *c, int64_t n, const float *x, const float *y) {
  if (n == 0) return make_number(c->env, 0);
  int64_t blocks = (n + RED_THREADS - 1) / RED_THREADS;
  if (blocks > RED_BLOCKS) blocks = RED_BLOCKS;
  k_dot_partials<<<(unsigned)blocks, RED_THREADS, 0, g.stream>>>(n, x, y, g.partials);
  if (!launched(c)) return NULL;
  k_finish<<<1, RED_THREADS, 0, g.stream>>>(g.partials, (int)blocks, g.result);
  if (!launched(c)) return NULL;
  double r = 0;
  if (!cuda_ok(c, cudaMemcpyAsync(&r, g.result, sizeof r, cudaMemcpyDeviceToHost, g.stream),
               "reduce") ||
      !cuda_ok(c, cudaStreamSynchronize(g.stream), "reduce"))
    return NULL;
  return make_number(c->env, r);
}

/* sumSquares(n, x) -> number */
static napi_value js_sum_squares(napi_env env, napi_callback_info info) {
  Call c;
  if (!begin(&c, env, info, "sumSquares", 2) || !need_ready(&c)) return NULL;
  const int64_t n = arg_i64(&c, 0);
  const float *x = arg_ptr<float>(&c, 1);
  if (c.failed) return NULL;
  return reduce(&c, n, x, NULL);
}

/* dot(n, x, y) -> number */
static napi_value js_dot(napi_env env, napi_callback_info info) {
  Call c;
  if (!begin(&c, env, info, "dot", 3) || !need_ready(&c)) return NULL;
  const int64_t n = arg_i64(&c, 0);
  const float *x = arg_ptr<float>(&c, 1), *y = arg_ptr<float>(&c, 2);
  if (c.failed) return NULL;
  return reduce(&c, n, x, y);
}

/* packSpins(n, x, out) */
static napi_value js_pack_spins(napi_env env, napi_callback_info info) {
  Call c;
  if (!begin(&c, env, info, "packSpins", 3) || !need_ready(&c)) return NULL;
  const int64_t n = arg_i64(&c, 0);
  const float *x = arg_ptr<float>(&c, 1);
  uint8_t *out = arg_ptr<uint8_t>(&c, 2);
  if (c.failed) return NULL;
  if (n == 0) return undefined(env);
  k_pack_spins<<<grid_for((n + 7) / 8), 256, 0, g.stream>>>(n, x, out);
  return launched(&c) ? undefined(env) : NULL;
}

/* unpackSpins(n, packed, off, x) */
static napi_value js_unpack_spins(napi_env env, napi_callback_info info) {
  Call c;
  if (!begin(&c, env, info, "unpackSpins", 4) || !need_ready(&c)) return NULL;
  const int64_t n = arg_i64(&c, 0);
  const uint8_t *packed = arg_ptr<uint8_t>(&c, 1);
  const float off = (float)arg_num(&c, 2);
  float *x = arg_ptr<float>(&c, 3);
  if (c.failed) return NULL;
  if (n == 0) return undefined(env);
  k_unpack_spins<<<grid_for(n), 256, 0, g.stream>>>(n, packed, off, x);
  return launched(&c) ? undefined(env) : NULL;
}

/* packColumns(rows, n, x, ld, out, odd) -> whether no value was odd (waits for the device). */
static napi_value js_pack_columns(napi_env env, napi_callback_info info) {
  Call c;
  if (!begin(&c, env, info, "packColumns", 6) || !need_ready(&c)) return NULL;
  const int64_t rows = arg_i64(&c, 0), n = arg_i64(&c, 1);
  const float *x = arg_ptr<float>(&c, 2);
  const int64_t ld = arg_i64(&c, 3);
  uint32_t *out = arg_ptr<uint32_t>(&c, 4);
  uint8_t *odd = arg_ptr<uint8_t>(&c, 5);
  if (c.failed) return NULL;
  int flag = 0;
  if (rows > 0 && n > 0) {
    if (!cuda_ok(&c, cudaMemsetAsync(g.flag, 0, sizeof(int), g.stream), "packColumns"))
      return NULL;
    k_pack_columns<<<grid_for(n * ((rows + 31) / 32)), 256, 0, g.stream>>>(rows, n, x, ld, out,
                                                                          odd, g.flag);
    if (!launched(&c) ||
        !cuda_ok(&c, cudaMemcpyAsync(&flag, g.flag, sizeof flag, cudaMemcpyDeviceToHost, g.stream),
                 "packColumns") ||
        !cuda_ok(&c, cudaStreamSynchronize(g.stream), "packColumns"))
      return NULL;
  }
  napi_value b;
  napi_get_boolean(env, flag == 0, &b);
  return b;
}

/* bitCorrelation(m, w, R, C, xPos, xNeg, yPos, yNeg, mu|0, lam|0, oddX|0, oddY|0, out, ld) */
static napi_value js_bit_correlation(napi_env env, napi_callback_info info) {
  Call c;
  if (!begin(&c, env, info, "bitCorrelation", 14) || !need_ready(&c)) return NULL;
  const int64_t m = arg_i64(&c, 0), w = arg_i64(&c, 1), R = arg_i64(&c, 2), C = arg_i64(&c, 3);
  const uint32_t *xp = arg_ptr<uint32_t>(&c, 4), *xn = arg_ptr<uint32_t>(&c, 5),
                 *yp = arg_ptr<uint32_t>(&c, 6), *yn = arg_ptr<uint32_t>(&c, 7);
  const float *mu = arg_ptr<float>(&c, 8), *lam = arg_ptr<float>(&c, 9);
  const uint8_t *ox = arg_ptr<uint8_t>(&c, 10), *oy = arg_ptr<uint8_t>(&c, 11);
  float *out = arg_ptr<float>(&c, 12);
  const int64_t ld = arg_i64(&c, 13);
  if (c.failed) return NULL;
  if (m == 0 || w == 0) return undefined(env);
  k_bit_correlation<<<grid_for(m * w), 256, 0, g.stream>>>(m, w, R, C, xp, xn, yp, yn, mu, lam,
                                                           ox, oy, out, ld);
  return launched(&c) ? undefined(env) : NULL;
}

/* philox(c0, c1, c2, c3, k0, k1, out: Uint32Array(4)), computed on the device: lets tests pin
 * the device generator to the known-answer vectors. */
static napi_value js_philox(napi_env env, napi_callback_info info) {
  Call c;
  if (!begin(&c, env, info, "philox", 7) || !need_ready(&c)) return NULL;
  uint32_t w[6];
  for (int i = 0; i < 6; i++) w[i] = arg_u32(&c, (size_t)i);
  size_t bytes;
  void *h = arg_host(&c, 6, &bytes);
  if (!c.failed && bytes < 16) fail(&c, "out must hold 4 words");
  if (c.failed) return NULL;
  uint32_t *d = (uint32_t *)g.partials; /* 32 bytes of scratch is plenty */
  k_philox<<<1, 1, 0, g.stream>>>(w[0], w[1], w[2], w[3], w[4], w[5], d);
  if (!launched(&c) ||
      !cuda_ok(&c, cudaMemcpyAsync(h, d, 16, cudaMemcpyDeviceToHost, g.stream), "philox") ||
      !cuda_ok(&c, cudaStreamSynchronize(g.stream), "philox"))
    return NULL;
  return undefined(env);
}

NAPI_MODULE_INIT() {
  static const struct {
    const char *name;
    napi_callback cb;
  } fns[] = {
      {"probe", js_probe},
      {"init", js_init},
      {"malloc", js_malloc},
      {"free", js_free},
      {"upload", js_upload},
      {"download", js_download},
      {"sync", js_sync},
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
      {"unpackSpins", js_unpack_spins},
      {"packColumns", js_pack_columns},
      {"bitCorrelation", js_bit_correlation},
      {"philox", js_philox},
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value fn;
    if (napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].cb, NULL, &fn) != napi_ok ||
        napi_set_named_property(env, exports, fns[i].name, fn) != napi_ok)
      return NULL;
  }
  napi_value abi;
  napi_create_int32(env, SPINMESH_CUDA_ABI_VERSION, &abi);
  napi_set_named_property(env, exports, "abiVersion", abi);
  return exports;
}
