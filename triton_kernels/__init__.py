"""Triton implementations of fastprune's scoring ops (installed as fastprune.triton_kernels).

Imported lazily by the library: importing this package imports triton. The scoring ops take a whole
network as a packed ragged batch (see csrc/include/fastprune/fastprune.h) and run one tile-kernel
launch; the small-matrix ops (eigenvalues, singular values, determinants, kernel criteria, n <= 3) live
in the submodule `small_matrix`.
Set TRITON_INTERPRET=1 before the first import to run the kernels on CPU tensors.
"""

from .gm_scores import gm_scores
from .pairwise_distances import pairwise_distances

__all__ = ["gm_scores", "pairwise_distances"]
