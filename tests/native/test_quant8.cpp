// Checks fusekit/math/quant8.h without the extension build:
//   g++ -std=c++17 -O2 -I csrc/include tests/native/test_quant8.cpp -o /tmp/test_quant8 && /tmp/test_quant8
// (`/tmp/test_quant8 quick` skips check 1, which takes about a minute.)
// 1. every float32 in [-1, 1] (both maps, quant8 and quant8_keep_sign) against the midpoint
//    rule, walked in order so the expected code costs O(1) per value;
// 2. a dense sample and 10^7 random values against a brute-force scan of all 256 entries
//    (exact distances in double; the two rules differ only at a float32 midpoint that is not
//    the exact midpoint, where both neighbours are within half an ulp of equally near);
// 3. dequant8 = table entry * absmax, and the maps' structure;
// 4. nanoseconds per element of quant8, of a binary search over the midpoints (as
//    bitsandbytes' CUDA kernels do) and of the brute-force scan, in the same run.
// Exit status 0 when every check passes.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "fusekit/math/quant8.h"

using fusekit::DynMap;
using fusekit::quant8;
using fusekit::quant8_keep_sign;

static int g_failures = 0;

static float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

static void fail(const char* what, float x, int got, int want) {
  if (++g_failures <= 20)
    std::printf("FAIL %s: x=%a (%.9g) got %d want %d\n", what, x, x, got, want);
}

// Midpoint rule by a walk: as |x| grows, the expected code moves monotonically through the
// bounds. kind: 0 quant8<signed>, 1 quant8_keep_sign, 2 quant8<unsigned>.
template <bool kSigned> static long long walk(int kind, bool negative) {
  const float* b = DynMap<kSigned>::bound();
  int j = DynMap<kSigned>::kZero;  // b[j] < x <= b[j+1] (positive) / b[j] <= x < b[j+1] (negative)
  long long n = 0;
  const uint32_t sign = negative ? 0x80000000u : 0u;
  for (uint32_t m = 0; m <= 0x3F800000u; ++m, ++n) {  // |x| from 0 to 1.0, all patterns
    const float x = from_bits(sign | m);
    int want;
    if (!negative) {
      while (x > b[j + 1]) ++j;
      want = (x == b[j + 1] && (j & 1)) ? j + 1 : j;
    } else {
      while (x < b[j]) --j;
      want = (x == b[j] && (j & 1)) ? j - 1 : j;
      if (kind == 1 && want == DynMap<true>::kZero) want = DynMap<true>::kZero - 1;
    }
    const int got = kind == 1 ? quant8_keep_sign(x) : quant8<kSigned>(x);
    if (got != want) fail(kind == 0 ? "walk signed" : kind == 1 ? "walk keep_sign" : "walk unsigned", x, got, want);
  }
  return n;
}

// Exact nearest entry by distance; equal distances go to the even code.
template <bool kSigned> static int brute_nearest(float x) {
  const float* c = DynMap<kSigned>::code();
  int best = 0;
  double bd = std::fabs(static_cast<double>(x) - c[0]);
  for (int j = 1; j < 256; ++j) {
    const double d = std::fabs(static_cast<double>(x) - c[j]);
    if (d < bd || (d == bd && (j & 1) == 0)) best = j, bd = d;
  }
  return best;
}

template <bool kSigned> static bool at_inexact_midpoint(float x) {
  const float* c = DynMap<kSigned>::code();
  for (int j = 0; j < 255; ++j) {
    const float fm = (c[j] + c[j + 1]) * 0.5f;
    if (x == fm && static_cast<double>(fm) != (static_cast<double>(c[j]) + c[j + 1]) / 2) return true;
  }
  return false;
}

template <bool kSigned> static long long brute_check(const std::vector<float>& xs, int* at_midpoint) {
  long long n = 0;
  for (float x : xs) {
    if (!kSigned && x < 0) continue;
    const int got = quant8<kSigned>(x), want = brute_nearest<kSigned>(x);
    if (got != want) {
      if (at_inexact_midpoint<kSigned>(x) && std::abs(got - want) == 1) ++*at_midpoint;
      else fail(kSigned ? "brute signed" : "brute unsigned", x, got, want);
    }
    ++n;
  }
  return n;
}

template <bool kSigned> static void check_tables() {
  const float* c = DynMap<kSigned>::code();
  const float* b = DynMap<kSigned>::bound();
  for (int j = 1; j < 256; ++j) {
    if (!(c[j - 1] < c[j])) fail("map sorted", c[j], j, j - 1);
    if (b[j] != (c[j - 1] + c[j]) * 0.5f) fail("bound", b[j], j, j);
  }
  if (c[DynMap<kSigned>::kZero] != 0.0f || c[255] != 1.0f) fail("zero/one", c[255], 255, 255);
  if (kSigned)
    for (int j = 0; j <= 126; ++j)
      if (c[j] != -c[254 - j]) fail("signed symmetry", c[j], j, 254 - j);
  for (int j = 0; j < 256; ++j) {  // every entry codes to itself; dequant8 scales it
    if (quant8<kSigned>(c[j]) != j) fail("entry round trip", c[j], quant8<kSigned>(c[j]), j);
    const float absmax = 0.37f;
    if (fusekit::dequant8<kSigned>(static_cast<uint8_t>(j), absmax) != c[j] * absmax) fail("dequant8", c[j], j, j);
  }
}

template <class F> static double ns_once(const std::vector<float>& xs, F f, unsigned* sink) {
  const auto t0 = std::chrono::steady_clock::now();
  unsigned acc = 0;
  for (float x : xs) acc += f(x);
  const auto t1 = std::chrono::steady_clock::now();
  *sink += acc;
  return std::chrono::duration<double, std::nano>(t1 - t0).count() / xs.size();
}

static double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// bitsandbytes' approach: a binary search over the 255 midpoints (ties to the even code).
static unsigned binary_search_signed(float x) {
  const float* b = DynMap<true>::bound();
  int j = static_cast<int>(std::lower_bound(b + 1, b + 256, x) - (b + 1));  // midpoints < x
  if (j < 255 && x == b[j + 1] && (j & 1)) ++j;
  return static_cast<unsigned>(j);
}

int main(int argc, char** argv) {
  check_tables<true>();
  check_tables<false>();

  if (!(argc > 1 && std::strcmp(argv[1], "quick") == 0)) {
    const auto t0 = std::chrono::steady_clock::now();
    long long n = walk<true>(0, false) + walk<true>(0, true) + walk<true>(1, true) + walk<false>(2, false);
    const double walk_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("exhaustive: %lld float32 values in [-1, 1] checked (signed +/-, keep_sign -, unsigned +) in %.1f s\n",
                n, walk_s);
  }

  std::vector<float> xs;
  for (int e = -40; e <= 0; ++e)  // dense: 2^14 values per binary octave down to 2^-40, both signs
    for (int k = 0; k < (1 << 14); ++k) {
      const float x = std::ldexp(1.0f + k / 16384.0f, e - 1);
      if (x <= 1.0f) xs.push_back(x), xs.push_back(-x);
    }
  for (int s = 0; s < 2; ++s)
    for (int j = 0; j < 256; ++j) {  // entries, midpoints and their float neighbours
      const float c = DynMap<true>::code()[j], u = DynMap<false>::code()[j];
      for (float v : {c, u, DynMap<true>::bound()[j], DynMap<false>::bound()[j]})
        if (std::isfinite(v))
          for (float w : {v, std::nextafter(v, 2.0f), std::nextafter(v, -2.0f)})
            if (std::fabs(w) <= 1.0f) xs.push_back(s ? -w : w);
    }
  std::mt19937 rng(12345);
  std::uniform_int_distribution<uint32_t> pattern(0, 0x3F800000u);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  const size_t dense = xs.size();
  for (int i = 0; i < 5000000; ++i) xs.push_back(from_bits(pattern(rng) | (i & 1 ? 0x80000000u : 0u)));
  for (int i = 0; i < 5000000; ++i) xs.push_back(uni(rng));
  int mids_s = 0, mids_u = 0;
  const long long nb = brute_check<true>(xs, &mids_s) + brute_check<false>(xs, &mids_u);
  std::printf("brute force: %lld checks (%zu dense + 10^7 random); %d + %d differ from the exact-distance\n"
              "  nearest, all at float32 midpoints that round the exact midpoint (the even code is taken)\n",
              nb, dense, mids_s, mids_u);

  // Timing: the methods alternate within each of 7 rounds (the machine may be shared), medians.
  std::vector<float> timing(xs.end() - 10000000, xs.end());
  std::vector<float> few(timing.begin(), timing.begin() + 200000);
  std::vector<double> q, qu, bs, bf;
  unsigned sink = 0;
  for (int r = 0; r < 7; ++r) {
    q.push_back(ns_once(timing, [](float x) { return unsigned(quant8<true>(x)); }, &sink));
    qu.push_back(ns_once(timing, [](float x) { return unsigned(quant8<false>(std::fabs(x))); }, &sink));
    bs.push_back(ns_once(timing, binary_search_signed, &sink));
    bf.push_back(ns_once(few, [](float x) { return unsigned(brute_nearest<true>(x)); }, &sink));
  }
  std::printf("ns/element, one thread, medians of 7 alternating rounds (min..max), 10^7 values\n"
              "(half uniform bit patterns, half uniform in [-1, 1]; brute force on 2*10^5 of them):\n");
  for (auto& [name, v] : {std::pair<const char*, std::vector<double>&>{"quant8<signed>", q}, {"quant8<unsigned>", qu},
                          {"binary search (signed)", bs}, {"brute force (signed)", bf}})
    std::printf("  %-24s %8.2f  (%.2f..%.2f)\n", name, median(v), *std::min_element(v.begin(), v.end()),
                *std::max_element(v.begin(), v.end()));
  std::printf("  binary search / quant8<signed>: %.2fx   (sink %u)\n", median(bs) / median(q), sink & 1);

  if (g_failures) {
    std::printf("%d FAILURES\n", g_failures);
    return 1;
  }
  std::printf("all quant8 checks passed\n");
  return 0;
}
