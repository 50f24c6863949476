// The tile transforms of Winograd F(2x2, 3x3) (Lavin & Gray, 2016), shared by the forward pass
// (conv2d_winograd.cpp) and the weight gradient (conv2d_winograd_backward.cpp). With
//     B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
//     A^T = [1 1 1 0; 0 1 -1 -1],
// a 2x2 output tile is Y = A^T [U (.) V] A, U = G g G^T, V = B^T d B (d the tile's 4x4 input patch, (.)
// elementwise); so for the weight gradient, with Z = A dY A^T, dU = Z (.) V summed over tiles and
// dg = G^T dU G. Component c = 4 i + k of a 4x4 is its entry (i, k). Internal to the CPU kernels.
#ifndef FASTPRUNE_CPU_WINOGRAD_TRANSFORMS_H
#define FASTPRUNE_CPU_WINOGRAD_TRANSFORMS_H

#include <cstdint>

#include "cpu/kernels/capability.h"
#include "cpu/kernels/conv2d_blocked_plan.h"  // vec

namespace fp {
namespace cpu {
inline namespace FP_CAP {
namespace blocked {

// V = B^T d B of 16 tiles at once (d[r][c]: the patches' float (r, c)); store(c, v) receives component c.
template <class Store>
inline void input_transform(const vec (&d)[4][4], Store&& store) {
  vec w[4][4];  // B^T d: rows combined
  for (int64_t c = 0; c < 4; ++c)
    w[0][c] = d[0][c] - d[2][c], w[1][c] = d[1][c] + d[2][c], w[2][c] = d[2][c] - d[1][c],
    w[3][c] = d[1][c] - d[3][c];
  for (int64_t i = 0; i < 4; ++i) {  // (B^T d) B: columns combined
    store(4 * i + 0, w[i][0] - w[i][2]);
    store(4 * i + 1, w[i][1] + w[i][2]);
    store(4 * i + 2, w[i][2] - w[i][1]);
    store(4 * i + 3, w[i][1] - w[i][3]);
  }
}

// Z = A dY A^T of 16 tiles at once (dy[a][b]: the output gradients' float (a, b)); store(c, v) receives
// component c.
template <class Store>
inline void output_gradient_transform(const vec (&dy)[2][2], Store&& store) {
  vec e[2][4];  // dY A^T: columns combined
  for (int64_t a = 0; a < 2; ++a)
    e[a][0] = dy[a][0], e[a][1] = dy[a][0] + dy[a][1], e[a][2] = dy[a][0] - dy[a][1], e[a][3] = -dy[a][1];
  for (int64_t k = 0; k < 4; ++k) {  // A (dY A^T): rows combined
    store(k, e[0][k]);
    store(4 + k, e[0][k] + e[1][k]);
    store(8 + k, e[0][k] - e[1][k]);
    store(12 + k, -e[1][k]);
  }
}

// U = G g G^T, the 4x4 u (component c at u[c]) from the 3x3 g (row-major).
inline void weight_transform(const float* g, float* u) {
  float gg[4][3];  // G g
  for (int64_t col = 0; col < 3; ++col) {
    const float a = g[col], m = g[3 + col], c = g[6 + col];
    gg[0][col] = a;
    gg[1][col] = 0.5f * (a + m + c);
    gg[2][col] = 0.5f * (a - m + c);
    gg[3][col] = c;
  }
  for (int64_t i = 0; i < 4; ++i) {  // (G g) G^T
    const float a = gg[i][0], m = gg[i][1], c = gg[i][2];
    u[4 * i] = a;
    u[4 * i + 1] = 0.5f * (a + m + c);
    u[4 * i + 2] = 0.5f * (a - m + c);
    u[4 * i + 3] = c;
  }
}

// dg = G^T u G, the 3x3 out from the 4x4 u (component c at u[c * step]).
inline void weight_gradient_transform(const float* u, int64_t step, float* out) {
  float h[4][3];  // u G
  for (int64_t r = 0; r < 4; ++r) {
    const float u0 = u[4 * r * step], u1 = u[(4 * r + 1) * step], u2 = u[(4 * r + 2) * step],
                u3 = u[(4 * r + 3) * step];
    h[r][0] = u0 + 0.5f * (u1 + u2);
    h[r][1] = 0.5f * (u1 - u2);
    h[r][2] = 0.5f * (u1 + u2) + u3;
  }
  for (int64_t b = 0; b < 3; ++b) {  // G^T (u G)
    out[b] = h[0][b] + 0.5f * (h[1][b] + h[2][b]);
    out[3 + b] = 0.5f * (h[1][b] - h[2][b]);
    out[6 + b] = 0.5f * (h[1][b] + h[2][b]) + h[3][b];
  }
}

}  // namespace blocked
}  // namespace FP_CAP
}  // namespace cpu
}  // namespace fp

#endif  // FASTPRUNE_CPU_WINOGRAD_TRANSFORMS_H
