// Dtype codes shared with Python (_backend.py) and the float16 / bfloat16 storage types
// with float conversions that round to nearest even, bit-identical to torch's c10::Half
// and c10::BFloat16 on the host and to the CUDA intrinsics on the device.
#pragma once
#include <cstdint>
#include <cstring>

#include "fusekit/macros.h"

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

namespace fusekit {

enum class DType : int32_t { Float32 = 0, Float64 = 1, Float16 = 2, BFloat16 = 3 };

inline int64_t dtype_size(DType d) {
  switch (d) {
    case DType::Float32: return 4;
    case DType::Float64: return 8;
    default: return 2;
  }
}

struct Half { uint16_t bits; };
struct BFloat16 { uint16_t bits; };

FK_HOST_DEVICE uint32_t f32_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u; std::memcpy(&u, &f, 4); return u;
#endif
}
FK_HOST_DEVICE float f32_from_bits(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f; std::memcpy(&f, &u, 4); return f;
#endif
}

// Branch-free IEEE half <-> float (the FP16 library's algorithm, as used by c10), so the
// CPU loops vectorize.
FK_HOST_DEVICE float half_to_float(Half h) {
#if defined(__CUDA_ARCH__)
  return __half2float(__ushort_as_half(h.bits));
#else
  const uint32_t w = static_cast<uint32_t>(h.bits) << 16;
  const uint32_t sign = w & 0x80000000u;
  const uint32_t two_w = w + w;
  const float normalized = f32_from_bits((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
  const float denormalized = f32_from_bits((two_w >> 17) | (126u << 23)) - 0.5f;
  const uint32_t r = sign | (two_w < (1u << 27) ? f32_bits(denormalized) : f32_bits(normalized));
  return f32_from_bits(r);
#endif
}
FK_HOST_DEVICE Half float_to_half(float f) {
#if defined(__CUDA_ARCH__)
  return Half{__half_as_ushort(__float2half_rn(f))};
#else
  float base = (__builtin_fabsf(f) * 0x1.0p+112f) * 0x1.0p-110f;
  const uint32_t w = f32_bits(f);
  const uint32_t shl1_w = w + w;
  const uint32_t sign = w & 0x80000000u;
  uint32_t bias = shl1_w & 0xFF000000u;
  bias = bias < 0x71000000u ? 0x71000000u : bias;
  base = f32_from_bits((bias >> 1) + 0x07800000u) + base;
  const uint32_t bits = f32_bits(base);
  const uint32_t nonsign = ((bits >> 13) & 0x00007C00u) + (bits & 0x00000FFFu);
  return Half{static_cast<uint16_t>((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign))};
#endif
}
FK_HOST_DEVICE float bf16_to_float(BFloat16 b) { return f32_from_bits(static_cast<uint32_t>(b.bits) << 16); }
FK_HOST_DEVICE BFloat16 float_to_bf16(float f) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  // One cvt.rn.bf16.f32: the same rounding; only a NaN's payload differs (0x7FFF).
  return BFloat16{__bfloat16_as_ushort(__float2bfloat16_rn(f))};
#else
  const uint32_t u = f32_bits(f);
  if (f != f) return BFloat16{0x7FC0};
  const uint32_t rounded = u + 0x7FFFu + ((u >> 16) & 1u);
  return BFloat16{static_cast<uint16_t>(rounded >> 16)};
#endif
}

// Storage type S is read and written through its compute type: float for the half types
// and float32, double for float64.
template <class S> struct Compute { using type = S; };
template <> struct Compute<Half> { using type = float; };
template <> struct Compute<BFloat16> { using type = float; };
template <class S> using compute_t = typename Compute<S>::type;

FK_HOST_DEVICE float to_compute(float x) { return x; }
FK_HOST_DEVICE double to_compute(double x) { return x; }
FK_HOST_DEVICE float to_compute(Half x) { return half_to_float(x); }
FK_HOST_DEVICE float to_compute(BFloat16 x) { return bf16_to_float(x); }

template <class S> FK_HOST_DEVICE S from_compute(compute_t<S> x);
template <> FK_HOST_DEVICE float from_compute<float>(float x) { return x; }
template <> FK_HOST_DEVICE double from_compute<double>(double x) { return x; }
template <> FK_HOST_DEVICE Half from_compute<Half>(float x) { return float_to_half(x); }
template <> FK_HOST_DEVICE BFloat16 from_compute<BFloat16>(float x) { return float_to_bf16(x); }

// Element access through the compute type. The half types are read and written as
// uint16_t so the CPU loops vectorize (GCC does not vectorize loads of the wrapper struct).
template <class S> FK_HOST_DEVICE compute_t<S> load(const S* p, int64_t i) { return to_compute(p[i]); }
template <> FK_HOST_DEVICE float load<Half>(const Half* p, int64_t i) {
  return half_to_float(Half{reinterpret_cast<const uint16_t*>(p)[i]});
}
template <> FK_HOST_DEVICE float load<BFloat16>(const BFloat16* p, int64_t i) {
  return bf16_to_float(BFloat16{reinterpret_cast<const uint16_t*>(p)[i]});
}
template <class S> FK_HOST_DEVICE void store(S* p, int64_t i, compute_t<S> x) { p[i] = from_compute<S>(x); }
template <> FK_HOST_DEVICE void store<Half>(Half* p, int64_t i, float x) {
  reinterpret_cast<uint16_t*>(p)[i] = float_to_half(x).bits;
}
template <> FK_HOST_DEVICE void store<BFloat16>(BFloat16* p, int64_t i, float x) {
  reinterpret_cast<uint16_t*>(p)[i] = float_to_bf16(x).bits;
}

// Calls f(S{}) with the storage type for a dtype code.
template <class F> decltype(auto) dispatch_dtype(DType d, F&& f) {
  switch (d) {
    case DType::Float64: return f(double{});
    case DType::Float16: return f(Half{});
    case DType::BFloat16: return f(BFloat16{});
    default: return f(float{});
  }
}

}  // namespace fusekit
