"""Public ops. Each is also a torch.library custom op in the "fastprune" namespace
(torch.ops.fastprune.<op>, packed form) with a fake implementation, so it works under torch.compile."""

from fastprune.ops._ragged import METRICS
from fastprune.ops.gm_scores import gm_scores
from fastprune.ops.pairwise_distances import pairwise_distances

__all__ = ["METRICS", "gm_scores", "pairwise_distances"]
