// SIMD vectors for the per-ISA CPU kernels: GCC vector extensions of the ISA's width, with
// intrinsics where GCC would otherwise build a vector lane by lane (broadcasts, masked
// loads). Included only by *_isa.cpp files, so everything lives in the ISA's namespace.
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace fusekit::cpu::FK_ISA {

#if defined(__AVX512F__)
constexpr int kVB = 64;
#elif defined(__AVX2__)
constexpr int kVB = 32;
#else
constexpr int kVB = 16;
#endif
typedef float vf __attribute__((vector_size(kVB)));
typedef double vd __attribute__((vector_size(kVB)));
template <class A> struct VecOf;
template <> struct VecOf<float> { using type = vf; };
template <> struct VecOf<double> { using type = vd; };
template <class A> using Vec = typename VecOf<A>::type;
template <class A> constexpr int kW = kVB / static_cast<int>(sizeof(A));

inline vf fmadd(vf a, vf b, vf c) {
#if defined(__AVX512F__)
  return _mm512_fmadd_ps(a, b, c);
#elif defined(__FMA__)
  return _mm256_fmadd_ps(a, b, c);
#else
  return a * b + c;
#endif
}
inline vd fmadd(vd a, vd b, vd c) {
#if defined(__AVX512F__)
  return _mm512_fmadd_pd(a, b, c);
#elif defined(__FMA__)
  return _mm256_fmadd_pd(a, b, c);
#else
  return a * b + c;
#endif
}
template <class A> inline Vec<A> loadv(const A* p) {
  Vec<A> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class A> inline void storev(A* p, Vec<A> v) { std::memcpy(p, &v, sizeof v); }
// Broadcast by intrinsic: GCC builds a generic vector from a scalar lane by lane.
inline vf splat(float x) {
#if defined(__AVX512F__)
  return _mm512_set1_ps(x);
#elif defined(__AVX2__)
  return _mm256_set1_ps(x);
#elif defined(__SSE2__)
  return _mm_set1_ps(x);
#else
  return vf{} + x;
#endif
}
inline vd splat(double x) {
#if defined(__AVX512F__)
  return _mm512_set1_pd(x);
#elif defined(__AVX2__)
  return _mm256_set1_pd(x);
#elif defined(__SSE2__)
  return _mm_set1_pd(x);
#else
  return vd{} + x;
#endif
}

// Keeps v in a register: stops GCC from folding a load reused by several FMAs into each of
// them as a memory operand (one load per FMA instead of one per vector).
template <class V> inline void in_register(V& v) {
#if defined(__x86_64__)
  asm("" : "+v"(v));
#else
  (void)v;
#endif
}

// Lanes [lo, hi) of a vector, for load_lanes.
template <class A> struct Lanes {
#if defined(__AVX512F__)
  uint32_t bits;
#elif defined(__AVX2__)
  __m256i m;
#else
  int lo, hi;
#endif
};

template <class A> inline Lanes<A> make_lanes(int lo, int hi) {
#if defined(__AVX512F__)
  const uint32_t upto_hi = hi >= 32 ? ~0u : (1u << hi) - 1, below_lo = lo <= 0 ? 0u : (1u << lo) - 1;
  return {hi > lo ? upto_hi & ~below_lo : 0u};
#elif defined(__AVX2__)
  alignas(32) int64_t q[4];
  alignas(32) int32_t d[8];
  for (int i = 0; i < 8; ++i) d[i] = i >= lo && i < hi ? -1 : 0;
  for (int i = 0; i < 4; ++i) q[i] = i >= lo && i < hi ? -1 : 0;
  Lanes<A> l;
  std::memcpy(&l.m, sizeof(A) == 4 ? static_cast<const void*>(d) : static_cast<const void*>(q), 32);
  return l;
#else
  return {lo, hi};
#endif
}

// p[lane] for the mask's lanes, 0 elsewhere. The other lanes' memory is never touched
// (masked loads suppress faults), so p may point before or past the row it reads.
inline vf load_lanes(const float* p, const Lanes<float>& l) {
#if defined(__AVX512F__)
  return _mm512_maskz_loadu_ps(static_cast<__mmask16>(l.bits), p);
#elif defined(__AVX2__)
  return _mm256_maskload_ps(p, l.m);
#else
  vf v{};
  for (int i = l.lo; i < l.hi; ++i) v[i] = p[i];
  return v;
#endif
}
inline vd load_lanes(const double* p, const Lanes<double>& l) {
#if defined(__AVX512F__)
  return _mm512_maskz_loadu_pd(static_cast<__mmask8>(l.bits), p);
#elif defined(__AVX2__)
  return _mm256_maskload_pd(p, l.m);
#else
  vd v{};
  for (int i = l.lo; i < l.hi; ++i) v[i] = p[i];
  return v;
#endif
}

// Stores the mask's lanes of v to p; memory under the other lanes is not touched.
inline void store_lanes(float* p, vf v, const Lanes<float>& l) {
#if defined(__AVX512F__)
  _mm512_mask_storeu_ps(p, static_cast<__mmask16>(l.bits), v);
#elif defined(__AVX2__)
  _mm256_maskstore_ps(p, l.m, v);
#else
  for (int i = l.lo; i < l.hi; ++i) p[i] = v[i];
#endif
}
inline void store_lanes(double* p, vd v, const Lanes<double>& l) {
#if defined(__AVX512F__)
  _mm512_mask_storeu_pd(p, static_cast<__mmask8>(l.bits), v);
#elif defined(__AVX2__)
  _mm256_maskstore_pd(p, l.m, v);
#else
  for (int i = l.lo; i < l.hi; ++i) p[i] = v[i];
#endif
}

// Sum of the lanes in a fixed pairwise order (halves added lane by lane).
template <class A> inline A hsum(Vec<A> v) {
  A t[kW<A>];
  std::memcpy(t, &v, sizeof v);
  for (int w = kW<A> / 2; w > 0; w /= 2)
    for (int i = 0; i < w; ++i) t[i] = t[i] + t[i + w];
  return t[0];
}

}  // namespace fusekit::cpu::FK_ISA
