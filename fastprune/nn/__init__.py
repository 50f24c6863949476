"""Modules that run pruned networks on fastprune's kernels: MaskedConv2d and convert()."""

from fastprune.nn.masked_conv import MaskedConv2d, convert

__all__ = ["MaskedConv2d", "convert"]
