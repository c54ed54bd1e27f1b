// Blocks of 8-bit state on the CPU, per ISA (included by csrc/cpu/optim_step_isa.cpp, built
// once per FK_ISA): decode a block of codes, and encode a block of float32 states (new absmax,
// then each value's code), with the results of quant8.h's scalar functions: AVX-512 decodes
// with byte lookups (VBMI; a gather otherwise) and encodes arithmetically with an exact
// fallback per lane; AVX2 runs quant8_magnitude per lane with gathers; the scalar ISA runs
// quant8.h itself. _C.quant8_mismatches compares them over the floats in [-1, 1].
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include "fusekit/math/quant8.h"

namespace fusekit::cpu::FK_ISA {

// Tables of decade d: slope, offset and first code as quant8_magnitude computes them.
template <bool kSigned> struct DecadeTables {
  alignas(64) float slope[16];
  alignas(64) float offset[16];
  alignas(64) int32_t first[16];
  DecadeTables() {
    for (int d = 0; d < 16; ++d) {
      const int dd = d < 7 ? d : 6;  // lanes only ever hold 0..6
      slope[d] = DynMap<kSigned>::slope(dd);
      offset[d] = DynMap<kSigned>::offset(dd);
      first[d] = DynMap<kSigned>::first(dd);
    }
  }
};

template <bool kSigned> const DecadeTables<kSigned>& decade_tables() {
  static const DecadeTables<kSigned> t;
  return t;
}

#if defined(__AVX512F__)
constexpr int kLanes = 16;

// The AVX-512 encoder does not look bounds up (gathers cost ~30 cycles each here). It
// computes the candidate code from the decade's linear map: x' = s * (1/absmax) (a
// multiply), u = x' slope_d - offset_d + first_d, code = floor(u), or the previous decade's
// last code below the decade's first midpoint (u_low), or 255 above the last one (u_top).
// The midpoints inside a decade lie within 7e-6 of integers of u, and u is computed within
// ~5e-5, so every lane whose u is within kNear of an integer, u_low or u_top is recomputed
// exactly with quant8.h (IEEE division, midpoint lookup, ties to even): about 0.3% of them.
constexpr float kNear = 1.0f / 1024;

template <bool kSigned> struct FastTables {
  alignas(64) int32_t dlo[32];   // by binade: the decade at its bottom...
  alignas(64) float dthr[32];    // ...and the power of ten inside it that starts the next (or inf)
  alignas(64) float slope[16], off[16], ulow[16], utop[16];  // by decade, in u (first_d added)
  alignas(64) int32_t below[16];  // code under u_low: the previous decade's last (or the zero code)
  FastTables() {
    using M = DynMap<kSigned>;
    const float th[6] = {1e-6f, 1e-5f, 1e-4f, 1e-3f, 1e-2f, 1e-1f};
    for (int e = 0; e < 32; ++e) {  // binade [2^(e-31), 2^(e-30)): exponent field 96 + e
      const double lo = std::ldexp(1.0, e - 31), hi = std::ldexp(1.0, e - 30);
      dlo[e] = 0;
      dthr[e] = INFINITY;
      for (float t : th) {
        if (t <= lo) ++dlo[e];
        else if (t < hi) dthr[e] = t;
      }
    }
    for (int d = 0; d < 16; ++d) {
      const int dd = d < 7 ? d : 6;
      slope[d] = M::slope(dd);
      off[d] = M::offset(dd) - static_cast<float>(M::first(dd));
      ulow[d] = static_cast<float>(static_cast<double>(M::bound()[M::first(dd)]) * slope[d] - off[d]);
      utop[d] = dd == 6 ? static_cast<float>(static_cast<double>(M::bound()[255]) * slope[d] - off[d]) : INFINITY;
      below[d] = M::first(dd) - 1;
    }
  }
};

template <bool kSigned> const FastTables<kSigned>& fast_tables() {
  static const FastTables<kSigned> t;
  return t;
}

// The tables in registers, loaded once per block.
template <bool kSigned> struct FastRegs {
  __m512i dlo0, dlo1, below;
  __m512 dthr0, dthr1, slope, off, ulow, utop;
  explicit FastRegs(const FastTables<kSigned>& t)
      : dlo0(_mm512_load_si512(t.dlo)), dlo1(_mm512_load_si512(t.dlo + 16)), below(_mm512_load_si512(t.below)),
        dthr0(_mm512_load_ps(t.dthr)), dthr1(_mm512_load_ps(t.dthr + 16)), slope(_mm512_load_ps(t.slope)),
        off(_mm512_load_ps(t.off)), ulow(_mm512_load_ps(t.ulow)), utop(_mm512_load_ps(t.utop)) {}
};

// Codes of 16 lanes of x' (signed map keeping the sign, or unsigned); `exact` gets the lanes
// to recompute.
template <bool kSigned> inline __m512i codes_of(const FastRegs<kSigned>& t, __m512 x, __mmask16& exact) {
  const __m512 one = _mm512_set1_ps(1.0f);
  __m512 a = kSigned ? _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(0x7fffffff))) : x;
  a = _mm512_min_ps(a, one);                         // NaN -> 1 (vminps returns its second operand)
  a = _mm512_max_ps(a, _mm512_set1_ps(0x1p-31f));    // below the first midpoint all the same; keeps
  const __m512i e = _mm512_srli_epi32(_mm512_castps_si512(a), 23);  // the exponent in 96..127
  __m512i d = _mm512_permutex2var_epi32(t.dlo0, e, t.dlo1);
  const __m512 th = _mm512_permutex2var_ps(t.dthr0, e, t.dthr1);
  const __m512i ones = _mm512_set1_epi32(1);
  d = _mm512_mask_add_epi32(d, _mm512_cmp_ps_mask(a, th, _CMP_GE_OQ), d, ones);
  const __m512 u = _mm512_sub_ps(_mm512_mul_ps(a, _mm512_permutexvar_ps(d, t.slope)), _mm512_permutexvar_ps(d, t.off));
  const __m512 ul = _mm512_permutexvar_ps(d, t.ulow);
  const __m512 ut = _mm512_permutexvar_ps(d, t.utop);
  const __m512 fl = _mm512_roundscale_ps(u, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  const __mmask16 low = _mm512_cmp_ps_mask(u, ul, _CMP_LT_OQ), top = _mm512_cmp_ps_mask(u, ut, _CMP_GT_OQ);
  __m512i code = _mm512_mask_mov_epi32(_mm512_cvttps_epi32(fl), low, _mm512_permutexvar_epi32(d, t.below));
  code = _mm512_min_epi32(_mm512_mask_add_epi32(code, top, code, ones), _mm512_set1_epi32(255));
  const __m512 frac = _mm512_sub_ps(u, fl), near = _mm512_set1_ps(kNear);
  const __m512 abs_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
  exact = static_cast<__mmask16>(
      ((_mm512_cmp_ps_mask(frac, near, _CMP_LT_OQ) | _mm512_cmp_ps_mask(frac, _mm512_sub_ps(one, near), _CMP_GT_OQ)) &
       ~top) |  // no midpoint above u_top but 1.0's
      _mm512_cmp_ps_mask(_mm512_and_ps(_mm512_sub_ps(u, ul), abs_mask), near, _CMP_LT_OQ) |
      _mm512_cmp_ps_mask(_mm512_and_ps(_mm512_sub_ps(u, ut), abs_mask), near, _CMP_LT_OQ));
  if constexpr (kSigned) {  // quant8_keep_sign: a set sign bit takes the mirror code, never the zero code
    const __m512i m = _mm512_max_epi32(_mm512_min_epi32(code, _mm512_set1_epi32(254)), _mm512_set1_epi32(128));
    const __mmask16 neg = _mm512_cmp_epi32_mask(_mm512_castps_si512(x), _mm512_setzero_si512(), _MM_CMPINT_LT);
    code = _mm512_mask_sub_epi32(code, neg, _mm512_set1_epi32(254), m);
  }
  return code;
}

inline __mmask16 tail_mask(int64_t left) { return left >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << left) - 1); }

// bitsandbytes' maps as 4 byte planes of 256 entries each, for 64-lane byte lookups (VBMI),
// and the order to put 64 codes in so that interleaving the planes yields floats in order.
template <bool kSigned> struct BytePlanes {
  alignas(64) uint8_t plane[4][256];
  alignas(64) uint8_t order[64];
  BytePlanes() {
    const float* map = DynMap<kSigned>::code();
    for (int j = 0; j < 256; ++j) {
      uint32_t u;
      std::memcpy(&u, &map[j], 4);
      for (int b = 0; b < 4; ++b) plane[b][j] = static_cast<uint8_t>(u >> (8 * b));
    }
    // The interleave (unpack bytes, then words, within 128-bit lanes) sends input byte j to
    // float position pos[j]; the code for float k must therefore sit at the j with pos[j] = k.
    for (int j = 0; j < 64; ++j) {
      const int lane = j / 16, k = j % 16, word_hi = k / 8, within = k % 8;
      const int pos = 16 * (2 * word_hi + within / 4) + 4 * lane + within % 4;
      order[j] = static_cast<uint8_t>(pos);
    }
  }
};

template <bool kSigned> const BytePlanes<kSigned>& byte_planes() {
  static const BytePlanes<kSigned> t;
  return t;
}

template <bool kSigned>
__attribute__((target("avx512vbmi"))) void dequant_vbmi(const uint8_t* q, float absmax, int64_t n, float* out) {
  const BytePlanes<kSigned>& t = byte_planes<kSigned>();
  __m512i T[4][4];
  for (int b = 0; b < 4; ++b)
    for (int k = 0; k < 4; ++k) T[b][k] = _mm512_load_si512(t.plane[b] + 64 * k);
  const __m512i order = _mm512_load_si512(t.order);
  const __m512 a = _mm512_set1_ps(absmax);
  for (int64_t i = 0; i < n; i += 64) {
    const int64_t left = n - i;
    const __mmask64 m = left >= 64 ? ~0ULL : ((1ULL << left) - 1);
    const __m512i c = _mm512_permutexvar_epi8(order, _mm512_maskz_loadu_epi8(m, q + i));
    const __mmask64 hi = _mm512_movepi8_mask(c);  // codes 128..255
    __m512i P[4];
    for (int b = 0; b < 4; ++b)
      P[b] = _mm512_mask_blend_epi8(hi, _mm512_permutex2var_epi8(T[b][0], c, T[b][1]),
                                    _mm512_permutex2var_epi8(T[b][2], c, T[b][3]));
    const __m512i A = _mm512_unpacklo_epi8(P[0], P[1]), B = _mm512_unpackhi_epi8(P[0], P[1]);
    const __m512i C = _mm512_unpacklo_epi8(P[2], P[3]), D = _mm512_unpackhi_epi8(P[2], P[3]);
    const __m512i W[4] = {_mm512_unpacklo_epi16(A, C), _mm512_unpackhi_epi16(A, C), _mm512_unpacklo_epi16(B, D),
                          _mm512_unpackhi_epi16(B, D)};
    for (int w = 0; w < 4; ++w) {
      const auto mw = static_cast<__mmask16>(m >> (16 * w));
      if (mw) _mm512_mask_storeu_ps(out + i + 16 * w, mw, _mm512_mul_ps(_mm512_castsi512_ps(W[w]), a));
    }
  }
}

inline bool has_vbmi() {
  static const bool yes = __builtin_cpu_supports("avx512vbmi");
  return yes;
}

template <bool kSigned> inline void dequant_block(const uint8_t* q, float absmax, int64_t n, float* out) {
  if (has_vbmi()) return dequant_vbmi<kSigned>(q, absmax, n, out);
  const __m512 a = _mm512_set1_ps(absmax);
  const float* map = DynMap<kSigned>::code();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    const __m512i idx = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, q + i));
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(_mm512_i32gather_ps(idx, map, 4), a));
  }
}

template <bool kSigned> inline float encode_block(const float* s, int64_t n, uint8_t* codes) {
  __m512 acc = _mm512_setzero_ps();
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff);
  for (int64_t i = 0; i < n; i += 16) {
    const __m512 v = _mm512_maskz_loadu_ps(tail_mask(n - i), s + i);
    acc = _mm512_max_ps(_mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), abs_mask)), acc);  // NaN: acc
  }
  alignas(64) float lanes[16];  // (_mm512_reduce_max_ps trips GCC 12's -Wuninitialized)
  _mm512_store_ps(lanes, acc);
  float absmax = 0.f;
  for (float v : lanes) absmax = v > absmax ? v : absmax;
  const __m512 inv = _mm512_set1_ps(1.0f / absmax);
  const FastRegs<kSigned> regs(fast_tables<kSigned>());
  const auto fix = [&](int64_t i, unsigned lanes) {  // the exact rule, for the lanes codes_of flags
    for (; lanes != 0; lanes &= lanes - 1) {
      const int k = __builtin_ctz(lanes);
      const float x = s[i + k] / absmax;  // an IEEE division: a code flips at a midpoint otherwise
      codes[i + k] = kSigned ? quant8_keep_sign(x) : quant8<false>(x);
    }
  };
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {  // two vectors at a time: their dependency chains overlap
    __mmask16 e0, e1;
    const __m512i c0 = codes_of<kSigned>(regs, _mm512_mul_ps(_mm512_loadu_ps(s + i), inv), e0);
    const __m512i c1 = codes_of<kSigned>(regs, _mm512_mul_ps(_mm512_loadu_ps(s + i + 16), inv), e1);
    _mm512_mask_cvtepi32_storeu_epi8(codes + i, 0xFFFF, c0);
    _mm512_mask_cvtepi32_storeu_epi8(codes + i + 16, 0xFFFF, c1);
    if (__builtin_expect((e0 | e1) != 0, 0)) {
      fix(i, e0);
      fix(i + 16, e1);
    }
  }
  for (; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    __mmask16 exact;
    _mm512_mask_cvtepi32_storeu_epi8(codes + i, m,
                                     codes_of<kSigned>(regs, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, s + i), inv), exact));
    fix(i, exact & m);
  }
  return absmax;
}

#elif defined(__AVX2__)
constexpr int kLanes = 8;

template <bool kSigned> inline __m256i magnitude(__m256 a) {
  using M = DynMap<kSigned>;
  const DecadeTables<kSigned>& t = decade_tables<kSigned>();
  const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
  a = _mm256_blendv_ps(one, a, _mm256_cmp_ps(a, one, _CMP_LT_OQ));  // a < 1 ? a : 1 (NaN -> 1)
  a = _mm256_blendv_ps(zero, a, _mm256_cmp_ps(a, zero, _CMP_GT_OQ));
  __m256i d = _mm256_setzero_si256();
  for (float th : {1e-6f, 1e-5f, 1e-4f, 1e-3f, 1e-2f, 1e-1f})  // a true compare is -1
    d = _mm256_sub_epi32(d, _mm256_castps_si256(_mm256_cmp_ps(a, _mm256_set1_ps(th), _CMP_GE_OQ)));
  const __m256 slope = _mm256_permutevar8x32_ps(_mm256_load_ps(t.slope), d);
  const __m256 offset = _mm256_permutevar8x32_ps(_mm256_load_ps(t.offset), d);
  const __m256 u = _mm256_sub_ps(_mm256_mul_ps(a, slope), offset);
  __m256i i = _mm256_add_epi32(
      _mm256_permutevar8x32_epi32(_mm256_load_si256(reinterpret_cast<const __m256i*>(t.first)), d),
      _mm256_sub_epi32(_mm256_cvttps_epi32(_mm256_add_ps(u, _mm256_set1_ps(2.0f))), _mm256_set1_epi32(2)));
  i = _mm256_min_epi32(_mm256_max_epi32(i, _mm256_set1_epi32(M::kZero)), _mm256_set1_epi32(255));
  const float* b = M::bound();
  const __m256i ones = _mm256_set1_epi32(1);
  const __m256 lo = _mm256_i32gather_ps(b, i, 4);
  const __m256 hi = _mm256_i32gather_ps(b, _mm256_add_epi32(i, ones), 4);
  const __m256i odd = _mm256_cmpeq_epi32(_mm256_and_si256(i, ones), ones);
  const auto as_i = [](__m256 m) { return _mm256_castps_si256(m); };
  i = _mm256_sub_epi32(i, as_i(_mm256_cmp_ps(a, hi, _CMP_GT_OQ)));
  i = _mm256_add_epi32(i, as_i(_mm256_cmp_ps(a, lo, _CMP_LT_OQ)));
  i = _mm256_sub_epi32(i, _mm256_and_si256(odd, as_i(_mm256_cmp_ps(a, hi, _CMP_EQ_OQ))));
  i = _mm256_add_epi32(i, _mm256_and_si256(odd, as_i(_mm256_cmp_ps(a, lo, _CMP_EQ_OQ))));
  return i;
}

template <bool kSigned> inline __m256i codes_of(__m256 x) {
  if constexpr (kSigned) {
    const __m256i xi = _mm256_castps_si256(x);
    const __m256i i = magnitude<true>(_mm256_castsi256_ps(_mm256_and_si256(xi, _mm256_set1_epi32(0x7fffffff))));
    const __m256i m = _mm256_max_epi32(_mm256_min_epi32(i, _mm256_set1_epi32(254)), _mm256_set1_epi32(128));
    const __m256i neg = _mm256_srai_epi32(xi, 31);  // sign bit set: -1
    return _mm256_blendv_epi8(i, _mm256_sub_epi32(_mm256_set1_epi32(254), m), neg);
  } else {
    return magnitude<false>(x);
  }
}

inline void store_codes(uint8_t* out, __m256i c) {
  const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(out), _mm_packus_epi16(w, w));
}

template <bool kSigned> inline void dequant_block(const uint8_t* q, float absmax, int64_t n, float* out) {
  const __m256 a = _mm256_set1_ps(absmax);
  const float* map = DynMap<kSigned>::code();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + i)));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_i32gather_ps(map, idx, 4), a));
  }
  for (; i < n; ++i) out[i] = dequant8<kSigned>(q[i], absmax);
}

template <bool kSigned> inline float encode_block(const float* s, int64_t n, uint8_t* codes) {
  __m256 acc = _mm256_setzero_ps();
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) acc = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(s + i), abs_mask), acc);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, acc);
  float absmax = 0.f;
  for (float v : lanes) absmax = v > absmax ? v : absmax;
  for (; i < n; ++i) {
    const float v = s[i] < 0.f ? -s[i] : s[i];
    absmax = v > absmax ? v : absmax;
  }
  const __m256 a = _mm256_set1_ps(absmax);
  for (i = 0; i + 8 <= n; i += 8) store_codes(codes + i, codes_of<kSigned>(_mm256_div_ps(_mm256_loadu_ps(s + i), a)));
  for (; i < n; ++i) codes[i] = kSigned ? quant8_keep_sign(s[i] / absmax) : quant8<false>(s[i] / absmax);
  return absmax;
}

#else
constexpr int kLanes = 1;

template <bool kSigned> inline void dequant_block(const uint8_t* q, float absmax, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = dequant8<kSigned>(q[i], absmax);
}

// New absmax of a block (NaN left out, as fmaxf does) and each value's code of s / absmax.
template <bool kSigned> inline float encode_block(const float* s, int64_t n, uint8_t* codes) {
  float a = 0.f;
  for (int64_t i = 0; i < n; ++i) {
    const float v = s[i] < 0.f ? -s[i] : s[i];
    a = v > a ? v : a;
  }
  for (int64_t i = 0; i < n; ++i) {
    const float x = s[i] / a;  // an IEEE division: a code flips at a midpoint otherwise
    codes[i] = kSigned ? quant8_keep_sign(x) : quant8<false>(x);
  }
  return a;
}
#endif

}  // namespace fusekit::cpu::FK_ISA
