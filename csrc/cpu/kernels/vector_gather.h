// A precomputed gather, out[p] = src[index(p)] (0 where index(p) < 0) for p < n: how the blocked
// convolution stages padded and shifted rows (conv2d_blocked_plan.h) and pitched output gradients
// (conv2d_blocked_backward.cpp). Those rows are short (16 floats on a 16 x 16 map, plus one padding
// column), so a copy per row cost more than the row's data: ~3 us of a ~27 us image of ResNet-56 stage 2
// (2-core Zen 4), a tenth of the forward. With AVX-512 each vector of 16 outputs is two masked loads of the
// 32-float window its sources lie in and one vpermt2ps, ~1 us for the same image; sources up to 64 floats
// apart (the Winograd tiles of several rows, conv2d_winograd.cpp) take four loads, two vpermt2ps and a
// blend; vectors reading consecutive sources (a row cut by padding, most of a stride-1 staging) one masked
// load (kernel-level 90% forward on ResNet-56, in-process A/B: 1.4-4% faster). Vectors whose sources
// spread wider read each source by its index. With AVX2 (no AVX-512): contiguous vectors are two masked
// loads, the others are taken 8 lanes at a time by masked loads and vpermps within 32 floats, else by a
// masked gather (see Half); the scalar copy, a compare and a store per lane, had taken most of the Winograd
// input transform on avx2. Without either, every vector is read by its indices.
#ifndef FASTPRUNE_CPU_VECTOR_GATHER_H
#define FASTPRUNE_CPU_VECTOR_GATHER_H

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "cpu/kernels/capability.h"

namespace fp {
namespace cpu {
inline namespace FP_CAP {

class VectorGather {
 public:
  static constexpr int64_t kLanes = 16;

  // index(p) for 0 <= p < n: a source offset, or negative for a zero.
  template <class Index>
  VectorGather(int64_t n, Index&& index) : n_(n) {
    identity_ = true;
    for (int64_t v = 0; v * kLanes < n; ++v) {
      int64_t lane[kLanes], lo = INT64_MAX, hi = -1;
      for (int64_t l = 0; l < kLanes; ++l) {
        lane[l] = v * kLanes + l < n ? index(v * kLanes + l) : -1;
        identity_ = identity_ && (v * kLanes + l >= n || lane[l] == v * kLanes + l);
        if (lane[l] >= 0) lo = std::min(lo, lane[l]), hi = std::max(hi, lane[l]);
      }
      Step s{};
      s.scattered = -1;
#ifdef __AVX512F__
      const bool window = hi - lo < 4 * kLanes;  // also when no lane reads (hi < lo)
#elif defined(__AVX2__)
      const bool window = true;  // AVX2: the contiguous test below; other vectors go to halves_
#else
      const bool window = false;
#endif
      // Contiguous: every lane read takes the source float `base + lane` (a row, maybe cut by padding).
      int64_t shift = INT64_MIN;
      bool contiguous = window && hi >= 0;
      for (int64_t l = 0; l < kLanes && contiguous; ++l)
        if (lane[l] >= 0) {
          if (shift == INT64_MIN) shift = lane[l] - l;
          contiguous = lane[l] - l == shift;
        }
#if defined(__AVX2__) && !defined(__AVX512F__)
      contiguous = contiguous || hi < 0;  // a vector of padding alone: a load of no lane
      if (contiguous) {
        s.base = hi < 0 ? 0 : shift;
        s.contiguous = true;
        for (int64_t l = 0; l < kLanes; ++l)
          if (lane[l] >= 0) s.lanes |= static_cast<uint16_t>(1u << l);
      } else {
        s.scattered = static_cast<int64_t>(halves_.size());
        for (int64_t h = 0; h < 2; ++h) halves_.push_back(Half(lane + 8 * h));
      }
#else
      if (window) {
        s.base = hi < 0 ? 0 : lo;
        for (int64_t l = 0; l < kLanes; ++l)
          if (lane[l] >= 0) {
            s.idx[l] = static_cast<uint8_t>(lane[l] - lo);
            s.lanes |= static_cast<uint16_t>(1u << l);
            s.upper |= static_cast<uint16_t>(lane[l] - lo >= 2 * kLanes ? 1u << l : 0u);
            s.loads |= uint64_t{1} << (lane[l] - lo);
          }
        if (contiguous) s.base = shift, s.contiguous = true;
      } else {
        s.scattered = static_cast<int64_t>(scattered_.size());
        scattered_.insert(scattered_.end(), lane, lane + kLanes);
      }
#endif
      steps_.push_back(s);
    }
  }

  // out[0, n) from src; src is read only at the indices given.
  void operator()(const float* src, float* out) const {
    if (identity_) {
      std::memcpy(out, src, static_cast<size_t>(n_) * sizeof(float));
      return;
    }
    for (size_t v = 0; v < steps_.size(); ++v) {
      const Step& s = steps_[v];
      float* o = out + static_cast<int64_t>(v) * kLanes;
      const int64_t count = std::min<int64_t>(kLanes, n_ - static_cast<int64_t>(v) * kLanes);
#if defined(__AVX2__) && !defined(__AVX512F__)
      // AVX2: each half of the 16 outputs is a masked load (contiguous sources) or a masked gather.
      const __m256i lane_bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
      const __m256i lane_index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
      for (int64_t h = 0; h < 2; ++h) {
        __m256 r;
        if (s.contiguous) {
          const __m256i bits = _mm256_set1_epi32(static_cast<int>((s.lanes >> (8 * h)) & 0xFF));
          const __m256i read = _mm256_cmpeq_epi32(_mm256_and_si256(bits, lane_bit), lane_bit);
          // base may lie before src (a row's leading padding lanes): the address is formed as an integer
          const auto* row = reinterpret_cast<const float*>(
              reinterpret_cast<std::uintptr_t>(src) + (s.base + 8 * h) * static_cast<int64_t>(sizeof(float)));
          r = _mm256_maskload_ps(row, read);
        } else {
          r = halves_[static_cast<size_t>(s.scattered + h)].gather(src, lane_bit);
        }
        if (count >= 8 * (h + 1)) {
          _mm256_storeu_ps(o + 8 * h, r);
        } else if (count > 8 * h) {
          const __m256i keep =
              _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count - 8 * h)), lane_index);
          _mm256_maskstore_ps(o + 8 * h, keep, r);
        }
      }
      continue;
#endif
      if (s.scattered >= 0) {
        const int64_t* lane = scattered_.data() + s.scattered;
        for (int64_t l = 0; l < count; ++l) o[l] = lane[l] >= 0 ? src[lane[l]] : 0.0f;
        continue;
      }
#ifdef __AVX512F__
      if (s.contiguous) {  // one masked load (lanes not read are neither touched nor kept: zero)
        // base may lie before src (a row's leading padding lanes): the address is formed as an integer
        const auto* row = reinterpret_cast<const float*>(reinterpret_cast<std::uintptr_t>(src) +
                                                         s.base * static_cast<int64_t>(sizeof(float)));
        const __m512 r = _mm512_maskz_loadu_ps(static_cast<__mmask16>(s.lanes), row);
        if (count == kLanes)
          _mm512_storeu_ps(o, r);
        else
          _mm512_mask_storeu_ps(o, static_cast<__mmask16>((1u << count) - 1), r);
        continue;
      }
      const float* w = src + s.base;  // masked loads: floats outside the lanes used are never touched
      const __m512 a = _mm512_maskz_loadu_ps(static_cast<__mmask16>(s.loads), w);
      const __m512 b = _mm512_maskz_loadu_ps(static_cast<__mmask16>(s.loads >> 16), w + kLanes);
      // vpermt2ps reads the low 5 bits of each index: 32 + i picks float i of the upper pair as well
      const __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s.idx)));
      __m512 r = _mm512_maskz_permutex2var_ps(s.lanes, a, idx, b);
      if (s.upper) {
        const __m512 c = _mm512_maskz_loadu_ps(static_cast<__mmask16>(s.loads >> 32), w + 2 * kLanes);
        const __m512 d = _mm512_maskz_loadu_ps(static_cast<__mmask16>(s.loads >> 48), w + 3 * kLanes);
        r = _mm512_mask_blend_ps(s.upper, r, _mm512_permutex2var_ps(c, idx, d));
      }
      if (count == kLanes)
        _mm512_storeu_ps(o, r);
      else
        _mm512_mask_storeu_ps(o, static_cast<__mmask16>((1u << count) - 1), r);
#endif
    }
  }

 private:
  struct Step {
    int64_t base;         // window start in src (contiguous: the source of lane 0, maybe before src)
    int64_t scattered;    // >= 0: the vector's 16 indices start at scattered_[scattered] (AVX2: halves_)
    uint64_t loads;       // window floats read (bit i: base + i)
    uint16_t lanes;       // output lanes read from the window (the others are zero)
    uint16_t upper;       // lanes whose float lies in the window's upper 32
    uint8_t idx[kLanes];  // each lane's float in the window
    bool contiguous;      // lane l reads src[base + l]: one masked load
  };
  int64_t n_;
  bool identity_;
  std::vector<Step> steps_;
  std::vector<int64_t> scattered_;
#if defined(__AVX2__) && !defined(__AVX512F__)
  // AVX2: 8 lanes of a vector whose sources are not consecutive. Sources within 32 floats (the stride-2
  // columns of Winograd tile rows, several short rows of a small map) are masked loads of the window's
  // 8-float pieces, a vpermps each and blends on the index bits; wider ones a masked gather (vgatherdps,
  // microcoded and slow on AMD cores: it had taken most of the Winograd input transform on avx2).
  struct Half {
    int64_t base = 0;    // window: the first float of the window
    int32_t idx[8];      // window: the lane's float in the window (0..31); else its source (-1: zero)
    uint32_t loads = 0;  // window: the floats read (bit i: base + i)
    uint8_t lanes = 0;   // lanes read
    int pieces = 0;      // window: 8-float pieces it spans (1 to 4); 0: a gather

    explicit Half(const int64_t* lane) {
      int64_t lo = INT64_MAX, hi = -1;
      for (int l = 0; l < 8; ++l)
        if (lane[l] >= 0) lo = std::min(lo, lane[l]), hi = std::max(hi, lane[l]);
      const bool window = hi - lo < 32;  // also when no lane reads
      base = hi < 0 ? 0 : lo;
      pieces = !window ? 0 : hi < 0 ? 1 : static_cast<int>((hi - lo) / 8 + 1);
      for (int l = 0; l < 8; ++l) {
        idx[l] = static_cast<int32_t>(lane[l] < 0 ? -1 : window ? lane[l] - lo : lane[l]);
        if (lane[l] >= 0) {
          lanes |= static_cast<uint8_t>(1u << l);
          if (window) loads |= 1u << (lane[l] - lo);
        }
      }
    }

    __m256 gather(const float* src, __m256i lane_bit) const {
      const __m256i index = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(idx));
      const __m256i read = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(lanes), lane_bit), lane_bit);
      if (pieces == 0)
        return _mm256_mask_i32gather_ps(_mm256_setzero_ps(), src, index, _mm256_castsi256_ps(read), 4);
      const float* w = src + base;  // masked loads: floats outside the ones read are never touched
      const auto piece = [&](int p) {
        const __m256i bits = _mm256_set1_epi32(static_cast<int>((loads >> (8 * p)) & 0xFF));
        const __m256i mask = _mm256_cmpeq_epi32(_mm256_and_si256(bits, lane_bit), lane_bit);
        return _mm256_permutevar8x32_ps(_mm256_maskload_ps(w + 8 * p, mask), index);
      };
      // blendv selects by the sign bit: index bit 3 picks the odd piece, bit 4 the upper pair
      const __m256 bit3 = _mm256_castsi256_ps(_mm256_slli_epi32(index, 28));
      __m256 r = pieces == 1 ? piece(0) : _mm256_blendv_ps(piece(0), piece(1), bit3);
      if (pieces > 2) {
        const __m256 upper = pieces == 3 ? piece(2) : _mm256_blendv_ps(piece(2), piece(3), bit3);
        r = _mm256_blendv_ps(r, upper, _mm256_castsi256_ps(_mm256_slli_epi32(index, 27)));
      }
      return _mm256_and_ps(r, _mm256_castsi256_ps(read));
    }
  };
  std::vector<Half> halves_;  // two per vector that is neither contiguous nor all padding
#endif
};

}  // namespace FP_CAP
}  // namespace cpu
}  // namespace fp

#endif  // FASTPRUNE_CPU_VECTOR_GATHER_H
