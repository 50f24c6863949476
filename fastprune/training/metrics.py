"""Per-epoch metrics, written as CSV and JSON after every epoch."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Optional, Sequence

from fastprune.serialization import replace_atomically


@dataclass
class EpochMetrics:
    epoch: int
    phase: str  # "train" or "finetune"
    lr: float
    train_loss: float
    train_acc: float
    test_loss: float = 0.0
    test_acc: float = 0.0
    pruned_share: float = 0.0  # pruned filters (or kernels) / total, selected layers
    criterion: Optional[str] = None  # criterion applied at this epoch's pruning step (None: no step)
    scoring_seconds: float = 0.0
    epoch_seconds: float = 0.0

    def summary(self, total_epochs: int) -> str:
        step = f" criterion {self.criterion} ({1e3 * self.scoring_seconds:.1f} ms)" if self.criterion else ""
        return (
            f"epoch {self.epoch}/{total_epochs} [{self.phase}] loss {self.train_loss:.3f} "
            f"acc {self.train_acc:.3f} | test loss {self.test_loss:.3f} acc {self.test_acc:.3f} | "
            f"pruned {100 * self.pruned_share:.1f}%{step} | {self.epoch_seconds:.1f} s"
        )


def write_metrics(metrics: Sequence[EpochMetrics], out_dir: Path) -> None:
    """metrics.csv and metrics.json in out_dir, each replaced atomically (temporary file, fsync,
    os.replace): a reader or a killed run never sees a half-written row."""
    out_dir = Path(out_dir)
    rows = [asdict(m) for m in metrics]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=[f.name for f in fields(EpochMetrics)])
    writer.writeheader()
    writer.writerows(rows)
    csv_bytes = text.getvalue().encode()
    replace_atomically(out_dir / "metrics.csv", lambda f: f.write(csv_bytes))
    json_bytes = json.dumps(rows, indent=1).encode()
    replace_atomically(out_dir / "metrics.json", lambda f: f.write(json_bytes))
