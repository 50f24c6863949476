"""Public ops. Each is also registered with torch.library in the "fastprune" namespace
(torch.ops.fastprune.<op>, on packed arguments) with a fake implementation, so it works under
torch.compile and passes torch.library.opcheck."""

from fastprune.ops._ragged import METRICS
from fastprune.ops.conv2d import conv2d
from fastprune.ops.gm_scores import gm_scores
from fastprune.ops.kernel_scores import CRITERIA, criterion_power, kernel_scores
from fastprune.ops.masked_conv2d import masked_conv2d
from fastprune.ops.pairwise_distances import pairwise_distances
from fastprune.ops.small_det import small_det
from fastprune.ops.small_eigvals import small_eigvals
from fastprune.ops.small_svdvals import small_svdvals

__all__ = [
    "CRITERIA",
    "METRICS",
    "conv2d",
    "criterion_power",
    "gm_scores",
    "kernel_scores",
    "masked_conv2d",
    "pairwise_distances",
    "small_det",
    "small_eigvals",
    "small_svdvals",
]
