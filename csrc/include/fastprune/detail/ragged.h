// Host-side description of a ragged batch of layers (see fastprune.h), shared by the CPU and CUDA
// implementations so both compute the same offsets.
#ifndef FASTPRUNE_DETAIL_RAGGED_H
#define FASTPRUNE_DETAIL_RAGGED_H

#include <stdint.h>

#include <vector>

namespace fp {
namespace detail {

struct LayerSpan {
  int64_t rows;           // N_l
  int64_t dims;           // D_l
  int64_t data_offset;    // first float of the layer in the packed filters
  int64_t row_offset;     // first row of the layer (offset into masks and gm scores)
  int64_t matrix_offset;  // first float of the layer's N_l x N_l block in pairwise output
};

// Sizes must already be validated (>= 1 each).
inline std::vector<LayerSpan> layer_spans(int64_t num_layers, const int64_t* num_rows,
                                          const int64_t* row_dims) {
  std::vector<LayerSpan> spans(static_cast<size_t>(num_layers));
  int64_t data = 0, row = 0, matrix = 0;
  for (int64_t l = 0; l < num_layers; ++l) {
    spans[l] = LayerSpan{num_rows[l], row_dims[l], data, row, matrix};
    data += num_rows[l] * row_dims[l];
    row += num_rows[l];
    matrix += num_rows[l] * num_rows[l];
  }
  return spans;
}

}  // namespace detail
}  // namespace fp

#endif  // FASTPRUNE_DETAIL_RAGGED_H
