"""Modules that run pruned networks on fastprune's kernels: MaskedConv2d, convert() and restore()."""

from fastprune.nn.masked_conv import MaskedConv2d, convert, restore

__all__ = ["MaskedConv2d", "convert", "restore"]
