// Exact row-wise top-k of float32 rows for XLA's CPU backend (an XLA FFI handler).
//
// Same result as `jax.lax.top_k`: values in descending order under IEEE total order (NaN above
// +inf, +0 above -0) and ties broken towards the lower index. Floats are compared as int32 keys
// (a monotone bit map). Per row: the maxima of 32-element blocks (vector code) give a lower
// bound t of the k-th value, and only the elements >= t of the blocks that reach t go through
// the scalar best-k insertion. XLA's own CPU top_k calls a comparator per element (~2.8 ns an
// element plus heap work at k = 20).
//
// Built and loaded by metafusion_jax/metrics/native_topk.py; not part of the Python package
// build (compiled on first use, cached per source hash).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// Monotone map of float bits to int32 under IEEE total order.
inline int32_t Key(float v) {
  int32_t b;
  std::memcpy(&b, &v, sizeof(b));
  return b ^ ((b >> 31) & 0x7fffffff);
}

// keys/ids: the best m so far, keys descending; inserts (key, id) below every equal key.
inline void Insert(int32_t* keys, int32_t* ids, int64_t m, int32_t key, int32_t id) {
  int64_t p = m;
  while (p > 0 && keys[p - 1] < key) {
    keys[p] = keys[p - 1];
    ids[p] = ids[p - 1];
    --p;
  }
  keys[p] = key;
  ids[p] = id;
}

typedef int32_t V8 __attribute__((vector_size(32)));  // GCC vector extension: 8 x int32
constexpr int64_t kBlock = 32;

// block_max[b] = the largest key of x[32 b .. 32 b + 31] (8-lane vector code on any x86-64;
// AVX2 where the CPU has it).
__attribute__((target_clones("avx2", "default")))
void BlockMaxima(const float* x, int64_t n_blocks, int32_t* block_max) {
  for (int64_t blk = 0; blk < n_blocks; ++blk) {
    const float* p = x + blk * kBlock;
    V8 best;
    std::memcpy(&best, p, sizeof(best));
    best ^= (best >> 31) & 0x7fffffff;
    for (int v = 1; v < kBlock / 8; ++v) {
      V8 b;
      std::memcpy(&b, p + 8 * v, sizeof(b));
      b ^= (b >> 31) & 0x7fffffff;
      best = b > best ? b : best;
    }
    int32_t out = best[0];
    for (int i = 1; i < 8; ++i) out = best[i] > out ? best[i] : out;
    block_max[blk] = out;
  }
}

// Bit j set iff key(x[j]) >= t, j < 32 (vector compares; the lanes' bits OR-ed in a 3-step tree).
__attribute__((target_clones("avx2", "default")))
uint32_t LanesAtLeast(const float* x, int32_t t) {
  const V8 weight = {1, 2, 4, 8, 16, 32, 64, 128};
  V8 bits = {};
  for (int v = 0; v < kBlock / 8; ++v) {
    V8 b;
    std::memcpy(&b, x + 8 * v, sizeof(b));
    b ^= (b >> 31) & 0x7fffffff;
    bits |= (b >= t) & (weight << (8 * v));
  }
  bits |= __builtin_shufflevector(bits, bits, 4, 5, 6, 7, 0, 1, 2, 3);
  bits |= __builtin_shufflevector(bits, bits, 2, 3, 0, 1, 6, 7, 4, 5);
  bits |= __builtin_shufflevector(bits, bits, 1, 0, 3, 2, 5, 4, 7, 6);
  return static_cast<uint32_t>(bits[0]);
}

// Offers (key, id) to the best-m list (keys/ids, m <= k, keys descending, ties in id order).
inline void Offer(int32_t* keys, int32_t* ids, int64_t& m, int64_t k, int32_t key, int64_t id) {
  if (m < k) {
    Insert(keys, ids, m++, key, static_cast<int32_t>(id));
  } else if (key > keys[k - 1]) {
    Insert(keys, ids, k - 1, key, static_cast<int32_t>(id));
  }
}

// Top k of one row into (keys, ids). Pass 1: the maxima of the row's 32-element blocks and the
// k-th largest of them, t: at least k elements are >= t, so nothing below t is in
// the top k. Pass 2: the elements >= t of the blocks whose maximum is >= t, offered to the best-k
// list in index order (so equal keys keep the lower index first).
void RowTopK(const float* x, int64_t n, int64_t k, int32_t* keys, int32_t* ids, int32_t* block_max,
             int32_t* scratch, int32_t* cand) {
  const int64_t n_blocks = n / kBlock;
  const bool prune = n_blocks >= k;
  int32_t t = INT32_MIN;
  if (prune) {
    BlockMaxima(x, n_blocks, block_max);
    // A cheap lower bound first: the smallest of the maxima of k groups of blocks (k distinct
    // elements reach it). Only the block maxima >= it go through the exact best-k selection.
    int32_t bound = INT32_MAX;
    for (int64_t g = 0; g < k; ++g) {
      int32_t group = INT32_MIN;
      for (int64_t b = g * n_blocks / k; b < (g + 1) * n_blocks / k; ++b) {
        group = block_max[b] > group ? block_max[b] : group;
      }
      bound = group < bound ? group : bound;
    }
    int64_t c = 0;  // ids of the blocks whose maximum reaches the bound, branch-free
    for (int64_t b = 0; b < n_blocks; ++b) {
      cand[c] = static_cast<int32_t>(b);
      c += block_max[b] >= bound;
    }
    int64_t m = 0;  // the k largest block maxima: keys in scratch[0, k), ids in [k, 2 k)
    for (int64_t i = 0; i < c; ++i) Offer(scratch, scratch + k, m, k, block_max[cand[i]], cand[i]);
    t = scratch[k - 1];
  }
  int64_t m = 0;
  for (int64_t b = 0; b < n_blocks; ++b) {
    if (prune && block_max[b] < t) continue;
    // the block's elements >= t, in index order (set bits, lowest first)
    for (uint32_t lanes = LanesAtLeast(x + b * kBlock, t); lanes; lanes &= lanes - 1) {
      const int64_t j = b * kBlock + __builtin_ctz(lanes);
      Offer(keys, ids, m, k, Key(x[j]), j);
    }
  }
  for (int64_t j = n_blocks * kBlock; j < n; ++j) {
    const int32_t key = Key(x[j]);
    if (key >= t) Offer(keys, ids, m, k, key, j);
  }
}

ffi::Error TopKImpl(ffi::Buffer<ffi::F32> x, int64_t k, ffi::ResultBuffer<ffi::F32> values,
                    ffi::ResultBuffer<ffi::S32> indices) {
  const auto dims = x.dimensions();
  if (dims.size() < 1) return ffi::Error::InvalidArgument("top_k: input must have rank >= 1");
  const int64_t n = dims.back();
  if (k < 1 || k > n) return ffi::Error::InvalidArgument("top_k: need 1 <= k <= last dim");
  if (n > INT32_MAX) return ffi::Error::InvalidArgument("top_k: last dim above int32 range");
  const int64_t rows = static_cast<int64_t>(x.element_count()) / n;
  const float* in = x.typed_data();
  float* out_v = values->typed_data();
  int32_t* out_i = indices->typed_data();
  const int64_t n_blocks = n / kBlock;
  std::vector<int32_t> work(k + n_blocks + 2 * k + std::max(n_blocks, kBlock));
  int32_t* keys = work.data();
  int32_t* block_max = keys + k;
  int32_t* scratch = block_max + n_blocks;  // 2 k: the best k block maxima and their ids
  int32_t* cand = scratch + 2 * k;
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = in + r * n;
    int32_t* ids = out_i + r * k;
    RowTopK(row, n, k, keys, ids, block_max, scratch, cand);
    for (int64_t j = 0; j < k; ++j) out_v[r * k + j] = row[ids[j]];
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(MetafusionTopKF32, TopKImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("k")
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>());
