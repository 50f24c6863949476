"""Adapters to other pruning libraries. Import a submodule explicitly, e.g.
``from fastprune.integrations.torch_pruning import FPGMImportance``; fastprune's core never imports this
package, so the peer libraries stay optional at import time."""
