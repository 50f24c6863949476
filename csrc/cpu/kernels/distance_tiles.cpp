#include "cpu/kernels/distance_tiles.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include <algorithm>

#include "cpu/kernels/capability.h"
#include "cpu/kernels/pair_kernels.h"
#include "fastprune/detail/distance.h"

namespace fp {
namespace cpu {
inline namespace FP_CAP {

using detail::Accumulation;

namespace {

typedef float FloatVec __attribute__((vector_size(kVectorBytes)));
typedef int32_t MaskVec __attribute__((vector_size(kVectorBytes)));

// row[j] <- d^2 = na + nb[j] - 2 row[j] (row holds Gram entries) for j < n, in whole vectors; true when
// some pair needs the direct form (detail::gram_needs_direct, NaN included: the vector loop spells out the
// same predicate, keep the two alike). The scalar loop with a
// branch per pair cost as much as the Gram step on MobileNetV2's 160-320-wide rows.
bool gram_row(float* row, float na, const float* nb, int64_t n) {
  constexpr int kLanes = kFloatLanes;
  MaskVec bad = MaskVec{};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    FloatVec dot, norms;
    memcpy(&dot, row + j, sizeof(dot));
    memcpy(&norms, nb + j, sizeof(norms));
    const FloatVec d2 = na + norms - 2.0f * dot, sum = na + norms;
    bad |= ~(d2 >= detail::kGramTrustFraction * sum) | ~(sum <= detail::kGramMaxSqNorm) |
           ((sum > 0.0f) & (sum < detail::kGramMinSqNorm));
    memcpy(row + j, &d2, sizeof(d2));
  }
  bool any = false;
  for (int l = 0; l < kLanes; ++l) any |= bad[l] != 0;
  for (; j < n; ++j) {
    row[j] = na + nb[j] - 2.0f * row[j];
    any |= detail::gram_needs_direct(row[j], na, nb[j]);
  }
  return any;
}

PairOp difference_op(int metric) {
  return detail::accumulation_of(metric) == Accumulation::kAbs ? PairOp::kAbsDifference
                                                               : PairOp::kSquaredDifference;
}

}  // namespace

fp_status DistanceTiles::prepare(const std::vector<detail::LayerSpan>& spans,
                                 const std::vector<const float*>& layer_rows, int metric,
                                 const uint8_t* keep_mask, std::string& error) {
  metric_ = metric;
  const int64_t num_layers = static_cast<int64_t>(spans.size());
  const int64_t total_rows = spans.back().row_offset + spans.back().rows;
  const bool cosine = detail::metric_normalises_rows(metric);

  // One pass over every weight: finiteness and squared row norms (in double, for the unit scales).
  std::vector<double> original_sq(static_cast<size_t>(total_rows));
  std::vector<int64_t> first_bad_row(static_cast<size_t>(num_layers), -1);
#pragma omp parallel for schedule(dynamic)
  for (int64_t l = 0; l < num_layers; ++l) {
    const detail::LayerSpan& s = spans[l];
    for (int64_t r = 0; r < s.rows; ++r) {
      const double sq = row_sq_norm(layer_rows[l] + r * s.dims, s.dims);
      original_sq[s.row_offset + r] = sq;
      if (!isfinite(sq) && first_bad_row[l] < 0) first_bad_row[l] = r;
    }
  }
  for (int64_t l = 0; l < num_layers; ++l) {
    if (first_bad_row[l] >= 0) {
      error = "filters: layer " + std::to_string(l) + ", filter " + std::to_string(first_bad_row[l]) +
              " contains NaN or Inf (scores of non-finite weights are meaningless; check for divergence)";
      return FP_ERR_NONFINITE;
    }
  }

  // Which rows take part, and where the compacted / unit-scaled copies go.
  layers_.assign(static_cast<size_t>(num_layers), Layer{});
  std::vector<int64_t> float_offsets(static_cast<size_t>(num_layers));
  int64_t prepared_rows = 0, prepared_floats = 0;
  bool drops_rows = false;
  for (int64_t l = 0; l < num_layers; ++l) {
    const detail::LayerSpan& s = spans[l];
    Layer& layer = layers_[l];
    for (int64_t r = 0; r < s.rows; ++r)
      if (!keep_mask || keep_mask[s.row_offset + r]) layer.kept.push_back(r);
    layer.n = static_cast<int64_t>(layer.kept.size());
    layer.d = s.dims;
    layer.first = prepared_rows;
    float_offsets[l] = prepared_floats;
    drops_rows |= layer.n != s.rows;
    prepared_rows += layer.n;
    prepared_floats += layer.n * layer.d;
  }
  if (drops_rows) compacted_.resize(static_cast<size_t>(prepared_floats));
  if (cosine) unit_rows_.resize(static_cast<size_t>(prepared_floats));
  sq_norms_.resize(static_cast<size_t>(prepared_rows));
  scales_.assign(cosine ? static_cast<size_t>(prepared_rows) : 0, 0.0);

#pragma omp parallel for schedule(dynamic)
  for (int64_t l = 0; l < num_layers; ++l) {
    Layer& layer = layers_[l];
    const detail::LayerSpan& s = spans[l];
    float* compacted = drops_rows ? compacted_.data() + float_offsets[l] : nullptr;
    float* unit = cosine ? unit_rows_.data() + float_offsets[l] : nullptr;
    for (int64_t p = 0; p < layer.n; ++p) {
      const float* src = layer_rows[l] + layer.kept[p] * s.dims;
      if (compacted) std::copy(src, src + s.dims, compacted + p * s.dims);
      const double sq = original_sq[s.row_offset + layer.kept[p]];
      if (!cosine) {
        // Clamped into float's normal range, a nonzero row's norm never 0 nor inf: the Gram check then sends
        // the pairs of rows beyond its range to the direct form.
        const double floor = sq > 0.0 ? static_cast<double>(FLT_MIN) : 0.0;
        sq_norms_[layer.first + p] = static_cast<float>(std::clamp(sq, floor, static_cast<double>(FLT_MAX)));
        continue;
      }
      // The Gram step runs on float unit rows; their own norms (not exactly 1) keep d^2 consistent.
      const double scale = detail::unit_scale(sq);
      float* unit_row = unit + p * s.dims;
      for (int64_t k = 0; k < s.dims; ++k) unit_row[k] = static_cast<float>(src[k] * scale);
      scales_[layer.first + p] = scale;
      sq_norms_[layer.first + p] = static_cast<float>(row_sq_norm(unit_row, s.dims));
    }
    layer.originals = compacted ? compacted : layer_rows[l];
    layer.rows = cosine ? unit : layer.originals;
  }
  return FP_OK;
}

float DistanceTiles::direct_distance(const Layer& layer, int64_t i, int64_t j) const {
  const float* a = layer.originals + i * layer.d;
  const float* b = layer.originals + j * layer.d;
  if (!detail::metric_normalises_rows(metric_)) {
    // Differences of near-equal floats are exact (Sterbenz), so near-duplicates lose nothing here; squares
    // summed in double, so rows near float's range limits (why the Gram form was left) do not overflow.
    if (difference_op(metric_) == PairOp::kAbsDifference)
      return detail::finish_distance(metric_, pair_reduce(PairOp::kAbsDifference, a, b, layer.d));
    double acc = 0.0;
    for (int64_t k = 0; k < layer.d; ++k) {
      const double diff = static_cast<double>(a[k]) - b[k];
      acc += diff * diff;
    }
    return static_cast<float>(detail::finish_distance(metric_, acc));
  }
  // Cosine of near-parallel rows: scaling in float would round away the difference, so scale and
  // subtract in double from the original weights.
  const double sa = scales_[layer.first + i], sb = scales_[layer.first + j];
  double acc = 0.0;
  for (int64_t k = 0; k < layer.d; ++k) {
    const double diff = a[k] * sa - b[k] * sb;
    acc += diff * diff;
  }
  return static_cast<float>(detail::finish_pair_distance(metric_, acc, sa == 0.0 || sb == 0.0));
}

void DistanceTiles::compute_tile(const Layer& layer, int64_t i0, int64_t ni, int64_t j0, int64_t nj,
                                 float* out) const {
  const bool diagonal = i0 == j0;
  const float* a = layer.rows + i0 * layer.d;
  const float* b = layer.rows + j0 * layer.d;
  if (detail::accumulation_of(metric_) == Accumulation::kAbs) {
    // l1 has no Gram form: sum |a_k - b_k| directly, which is already the distance.
    pair_tile(PairOp::kAbsDifference, a, ni, b, nj, layer.d, diagonal, out);
  } else {
    pair_tile(PairOp::kDot, a, ni, b, nj, layer.d, diagonal, out);
    const float* sq = sq_norms_.data() + layer.first;
    for (int64_t i = 0; i < ni; ++i) {
      float* row = out + i * nj;
      const float na = sq[i0 + i];
      const float* nb = sq + j0;
      const int64_t j_begin = diagonal ? i + 1 : 0;
      // l2 rows whose pairs all trust the Gram form (the usual case) take sqrt in vector lanes.
      if (!gram_row(row + j_begin, na, nb + j_begin, nj - j_begin) && metric_ == detail::kMetricL2) {
        for (int64_t j = j_begin; j < nj; ++j) row[j] = sqrtf(row[j]);
        continue;
      }
      // A zero row (cosine) has na == 0 or nb == 0 and d2 == the other norm: far above the floor.
      for (int64_t j = j_begin; j < nj; ++j) {
        row[j] = detail::gram_needs_direct(row[j], na, nb[j])
                     ? direct_distance(layer, i0 + i, j0 + j)
                     : detail::finish_pair_distance(metric_, row[j], na == 0.0f || nb[j] == 0.0f);
      }
    }
  }
  if (diagonal) {
    for (int64_t i = 0; i < ni; ++i) {
      out[i * nj + i] = 0.0f;
      for (int64_t j = 0; j < i; ++j) out[i * nj + j] = out[j * nj + i];
    }
  }
}

void DistanceTiles::for_each_tile(const std::function<void(const Tile&)>& consume) const {
  struct Task {
    int64_t layer, i0, j0;
    double cost;
  };
  std::vector<Task> tasks;
  for (int64_t l = 0; l < static_cast<int64_t>(layers_.size()); ++l) {
    const Layer& layer = layers_[l];
    for (int64_t i0 = 0; i0 < layer.n; i0 += kTileRows)
      for (int64_t j0 = i0; j0 < layer.n; j0 += kTileRows)
        tasks.push_back(
            {l, i0, j0,
             (double)std::min(kTileRows, layer.n - i0) * std::min(kTileRows, layer.n - j0) * layer.d});
  }
  // Largest first, so the dynamic schedule ends with small tasks and the threads finish together.
  std::stable_sort(tasks.begin(), tasks.end(), [](const Task& a, const Task& b) { return a.cost > b.cost; });

#pragma omp parallel
  {
    std::vector<float> buffer(static_cast<size_t>(kTileRows * kTileRows));
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < static_cast<int64_t>(tasks.size()); ++t) {
      const Task& task = tasks[t];
      const Layer& layer = layers_[task.layer];
      const int64_t ni = std::min(kTileRows, layer.n - task.i0);
      const int64_t nj = std::min(kTileRows, layer.n - task.j0);
      compute_tile(layer, task.i0, ni, task.j0, nj, buffer.data());
      consume(Tile{task.layer, task.i0, ni, task.j0, nj, buffer.data()});
    }
  }
}

}  // namespace FP_CAP
}  // namespace cpu
}  // namespace fp
