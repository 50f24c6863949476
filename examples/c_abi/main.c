/* Scores two small layers through the fastprune C ABI, checks the results against distances computed
 * here by hand, and checks that bad arguments come back as status codes with messages.
 * Exit status 0 and "all checks passed" on success. */
#include <fastprune/fastprune.h>
#include <math.h>
#include <stdio.h>

static int failures = 0;

static void check(int ok, const char* what) {
  if (!ok) {
    printf("FAILED: %s\n", what);
    ++failures;
  }
}

static void expect_status(fp_status got, fp_status want, const char* what) {
  if (got != want) {
    printf("FAILED: %s: got %s (%s), expected %s\n", what, fp_status_name(got), fp_last_error(),
           fp_status_name(want));
    ++failures;
  } else if (got != FP_OK) {
    printf("ok: %s -> %s: %s\n", what, fp_status_name(got), fp_last_error());
  }
}

/* Layer 0: three filters of 2 weights; layer 1: two filters of 3 weights. */
static const float kData[] = {0.f, 0.f, 3.f, 4.f, 6.f, 8.f, /* layer 1 */ 1.f, 2.f, 2.f, 0.f, 0.f, 0.f};
static const int64_t kRows[] = {3, 2};
static const int64_t kDims[] = {2, 3};

int main(void) {
  const fp_exec cpu = {FP_DEVICE_CPU, NULL};
  fp_ragged_batch batch = {kData, NULL, 2, kRows, kDims};
  printf("fastprune %s, ABI %d, CUDA compiled %d\n", fp_version(), fp_abi_version(), fp_cuda_compiled());
  printf("CPU kernels %s (built: %s): %s\n", fp_cpu_capability(), fp_cpu_capabilities_built(),
         fp_cpu_capability_reason());

  /* l2 distances: layer 0 rows (0,0), (3,4), (6,8) are 5 and 10 apart; layer 1 rows are 3 apart. */
  float dist[3 * 3 + 2 * 2];
  expect_status(fp_pairwise_distances(&batch, FP_METRIC_L2, cpu, dist), FP_OK, "pairwise l2");
  const float expected_dist[] = {0, 5, 10, 5, 0, 5, 10, 5, 0, 0, 3, 3, 0};
  for (int i = 0; i < 13; ++i) check(fabsf(dist[i] - expected_dist[i]) <= 1e-5f, "pairwise l2 value");

  /* gm scores with filter 1 of layer 0 pruned: g0 = d(0,2) = 10, g2 = 10, g1 = +inf; layer 1: 3, 3. */
  float scores[5];
  const uint8_t keep[] = {1, 0, 1, 1, 1};
  expect_status(fp_gm_scores(&batch, FP_METRIC_L2, keep, cpu, scores), FP_OK, "gm_scores masked");
  check(fabsf(scores[0] - 10.f) <= 1e-5f && isinf(scores[1]) && fabsf(scores[2] - 10.f) <= 1e-5f,
        "gm_scores layer 0");
  check(fabsf(scores[3] - 3.f) <= 1e-5f && fabsf(scores[4] - 3.f) <= 1e-5f, "gm_scores layer 1");

  /* The same layers as one pointer each (no packing copy): the same results. */
  const float* layer_rows[] = {kData, kData + 6};
  fp_ragged_batch per_layer = {NULL, layer_rows, 2, kRows, kDims};
  float dist_per_layer[13];
  expect_status(fp_pairwise_distances(&per_layer, FP_METRIC_L2, cpu, dist_per_layer), FP_OK, "layer_data");
  for (int i = 0; i < 13; ++i) check(dist_per_layer[i] == dist[i], "layer_data gives the packed results");

  /* Bad arguments: a status and a message, never a crash. */
  fp_ragged_batch both = {kData, layer_rows, 2, kRows, kDims};
  expect_status(fp_gm_scores(&both, FP_METRIC_L2, NULL, cpu, scores), FP_ERR_INVALID_ARGUMENT,
                "data and layer_data");
  expect_status(fp_gm_scores(NULL, FP_METRIC_L2, NULL, cpu, scores), FP_ERR_INVALID_ARGUMENT, "null batch");
  expect_status(fp_gm_scores(&batch, FP_METRIC_L2, NULL, cpu, NULL), FP_ERR_INVALID_ARGUMENT, "null output");
  fp_ragged_batch no_data = {NULL, NULL, 2, kRows, kDims};
  expect_status(fp_gm_scores(&no_data, FP_METRIC_L2, NULL, cpu, scores), FP_ERR_INVALID_ARGUMENT,
                "null data");
  fp_ragged_batch no_sizes = {kData, NULL, 2, NULL, kDims};
  expect_status(fp_gm_scores(&no_sizes, FP_METRIC_L2, NULL, cpu, scores), FP_ERR_INVALID_ARGUMENT,
                "null sizes");
  const int64_t negative_rows[] = {3, -2};
  fp_ragged_batch negative = {kData, NULL, 2, negative_rows, kDims};
  expect_status(fp_gm_scores(&negative, FP_METRIC_L2, NULL, cpu, scores), FP_ERR_INVALID_ARGUMENT,
                "negative rows");
  const int64_t zero_dims[] = {2, 0};
  fp_ragged_batch zero = {kData, NULL, 2, kRows, zero_dims};
  expect_status(fp_pairwise_distances(&zero, FP_METRIC_L2, cpu, dist), FP_ERR_INVALID_ARGUMENT, "zero dims");
  fp_ragged_batch no_layers = {kData, NULL, -1, kRows, kDims};
  expect_status(fp_gm_scores(&no_layers, FP_METRIC_L2, NULL, cpu, scores), FP_ERR_INVALID_ARGUMENT,
                "negative layers");
  expect_status(fp_gm_scores(&batch, (fp_metric)7, NULL, cpu, scores), FP_ERR_INVALID_ARGUMENT,
                "unknown metric");
  const fp_exec bogus = {(fp_device)5, NULL};
  expect_status(fp_gm_scores(&batch, FP_METRIC_L2, NULL, bogus, scores), FP_ERR_INVALID_ARGUMENT,
                "unknown device");
  const float with_nan[] = {0.f, 0.f, 3.f, NAN, 6.f, 8.f, 1.f, 2.f, 2.f, 0.f, 0.f, 0.f};
  fp_ragged_batch nan_batch = {with_nan, NULL, 2, kRows, kDims};
  expect_status(fp_gm_scores(&nan_batch, FP_METRIC_L2, NULL, cpu, scores), FP_ERR_NONFINITE, "NaN weight");

  /* Small-matrix spectral ops: a rotation by 90 degrees has eigenvalues +-i, det 1, singular values 1. */
  const float rotation[] = {0.f, -1.f, 1.f, 0.f};
  float eig[4], sv[2], det;
  expect_status(fp_small_eigvals(rotation, 1, 2, cpu, eig), FP_OK, "small_eigvals");
  check(eig[0] == 0.f && eig[1] == 1.f && eig[2] == 0.f && eig[3] == -1.f, "eigenvalues +i, -i");
  expect_status(fp_small_svdvals(rotation, 1, 2, cpu, sv), FP_OK, "small_svdvals");
  check(fabsf(sv[0] - 1.f) <= 1e-6f && fabsf(sv[1] - 1.f) <= 1e-6f, "singular values 1, 1");
  expect_status(fp_small_det(rotation, 1, 2, cpu, &det), FP_OK, "small_det");
  check(fabsf(det - 1.f) <= 1e-6f, "det 1");
  expect_status(fp_small_eigvals(rotation, 1, 8, cpu, eig), FP_ERR_INVALID_ARGUMENT, "n = 8");
  expect_status(fp_small_det(rotation, -1, 2, cpu, &det), FP_ERR_INVALID_ARGUMENT, "negative count");
  expect_status(fp_small_det(NULL, 1, 2, cpu, &det), FP_ERR_INVALID_ARGUMENT, "null matrices");
  /* kernel_scores: one layer of two 2x2 kernels (O = 1, I = 2); spectral norm of the rotation is 1. */
  const int64_t kernel_rows[] = {2}, kernel_dims[] = {4}, bad_dims[] = {5};
  const float two_kernels[] = {0.f, -1.f, 1.f, 0.f, 2.f, 0.f, 0.f, 2.f};
  fp_ragged_batch kernels = {two_kernels, NULL, 1, kernel_rows, kernel_dims};
  float norms[2];
  expect_status(fp_kernel_scores(&kernels, FP_CRITERION_SPECTRAL_NORM, cpu, norms), FP_OK, "kernel_scores");
  check(fabsf(norms[0] - 1.f) <= 1e-6f && fabsf(norms[1] - 2.f) <= 1e-6f, "kernel spectral norms 1, 2");
  check(fp_kernel_criterion_power(FP_CRITERION_DET_GRAM, 3) == 6, "det_gram threshold power 2k");
  expect_status(fp_kernel_scores(&kernels, (fp_kernel_criterion)9, cpu, norms), FP_ERR_INVALID_ARGUMENT,
                "unknown criterion");
  fp_ragged_batch not_square = {two_kernels, NULL, 1, kernel_rows, bad_dims};
  expect_status(fp_kernel_scores(&not_square, FP_CRITERION_DET, cpu, norms), FP_ERR_INVALID_ARGUMENT,
                "kernel of 5 weights");

  /* CUDA: unavailable without a build or a device, with the reason; never a crash. */
  if (fp_cuda_device_check() != FP_OK) {
    const fp_exec gpu = {FP_DEVICE_CUDA, NULL};
    expect_status(fp_gm_scores(&batch, FP_METRIC_L2, NULL, gpu, scores), FP_ERR_UNAVAILABLE,
                  "cuda without a device");
  }

  if (failures) {
    printf("%d checks failed\n", failures);
    return 1;
  }
  printf("all checks passed\n");
  return 0;
}
