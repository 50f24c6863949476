"""The report of a comparison: PNG plots (matplotlib, Agg backend) and report.md, written atomically.

Plots (skipped, with a note in the report, when matplotlib is not installed):

* ``pruned_share_vs_threshold.png``: kernel pruned share vs threshold (log x), one line per kernel
  criterion: the sweep when there is one, else the threshold-mode settings;
* ``accuracy_vs_pruned_share.png``: test accuracy after pruning (and after fine-tuning, dashed) vs the
  pruned share of every setting (filters for filter criteria, kernels for kernel criteria);
* ``kept_per_layer.png``: kept share per conv layer, one line per criterion, at the first rate (filter
  criteria) and the first mode and threshold (kernel criteria).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from fastprune.research.comparison import finite
from fastprune.serialization import replace_atomically

Rows = list[dict[str, Any]]


def setting_name(row: dict[str, Any]) -> str:
    """'filter l1 @ 0.3', 'kernel det threshold 0.0001', 'input network'."""
    if row["kind"] == "none":
        return "input network"
    if row["kind"] == "filter":
        return f"filter {row['criterion']} @ {row['param']:g}"
    return f"kernel {row['criterion']} {row['mode']} {row['param']:g}"


def _percent(value: Any) -> str:
    return f"{value:.1%}" if finite(value) else "-"


def table(rows: Rows) -> list[list[str]]:
    """Header + one row of strings per setting (sweep rows left out)."""
    tuned = any(finite(r.get("acc_finetuned")) for r in rows)
    head = ["setting", "pruned", "params", "MACs", "kernel-skip MACs", "accuracy"] + (["fine-tuned"] * tuned)
    lines = [head]
    for r in rows:
        if r["kind"] == "sweep":
            continue
        line = [
            setting_name(r), _percent(r["pruned_share"]),
            f"{r['params']:,} (-{r['params_removed']:.1%})", f"{r['macs']:,} (-{r['macs_removed']:.1%})",
            f"{r['kernel_macs']:,} (-{r['kernel_macs_removed']:.1%})", _percent(r["acc_after"]),
        ]  # fmt: skip
        lines.append(line + ([_percent(r.get("acc_finetuned"))] if tuned else []))
    return lines


def text_table(rows: Rows) -> str:
    """The table as aligned plain text (the command's output)."""
    lines = table(rows)
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths)))
        for line in lines
    )


def _figure(out: Path, name: str, draw: Callable[[Any], None], size=(7, 4)) -> Optional[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=size)
    try:
        draw(ax)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        replace_atomically(out / name, lambda f: fig.savefig(f, format="png", dpi=110))
    finally:
        plt.close(fig)
    return name


def _by_criterion(rows: Rows, kind: str) -> dict[str, Rows]:
    groups: dict[str, Rows] = {}
    for r in rows:
        if r["kind"] == kind:
            groups.setdefault(r["criterion"], []).append(r)
    return groups


def plots(out: Path, rows: Rows) -> list[str]:
    """Writes the PNGs under `out`; returns their file names (none without matplotlib)."""
    names: list[Optional[str]] = []
    sweep = _by_criterion(rows, "sweep") or _by_criterion(
        [r for r in rows if r.get("mode") == "threshold"], "kernel"
    )
    if sweep:

        def draw_sweep(ax) -> None:
            for name, group in sweep.items():
                group = sorted(group, key=lambda r: r["param"])
                ax.plot(
                    [r["param"] for r in group], [r["pruned_share"] for r in group], marker=".", label=name
                )
            ax.set(xscale="log", xlabel="threshold t (kept iff c(K) >= t^p)", ylabel="kernels pruned (share)",
                   title="Kernel pruned share vs threshold", ylim=(-0.02, 1.02))  # fmt: skip
            ax.legend(fontsize=7)

        names.append(_figure(out, "pruned_share_vs_threshold.png", draw_sweep))
    settings = [r for r in rows if r["kind"] in ("filter", "kernel")]
    if settings:

        def draw_accuracy(ax) -> None:
            base = next(r for r in rows if r["kind"] == "none")
            ax.axhline(base["acc_after"], color="gray", linestyle=":", label="input network")
            for kind, marker in (("filter", "o"), ("kernel", "s")):
                for name, group in _by_criterion(settings, kind).items():
                    group = sorted(group, key=lambda r: r["pruned_share"])
                    x = [r["pruned_share"] for r in group]
                    (line,) = ax.plot(
                        x, [r["acc_after"] for r in group], marker=marker, label=f"{kind} {name}"
                    )
                    tuned = [r.get("acc_finetuned") for r in group]
                    if all(finite(t) for t in tuned):
                        ax.plot(
                            x, tuned, marker=marker, linestyle="--", color=line.get_color(), fillstyle="none"
                        )
            ax.set(xlabel="pruned share (filters or kernels)", ylabel="test accuracy",
                   title="Accuracy after pruning (dashed: fine-tuned)")  # fmt: skip
            ax.legend(fontsize=6, ncol=2)

        names.append(_figure(out, "accuracy_vs_pruned_share.png", draw_accuracy, size=(8, 5)))
        first = {
            kind: next((r for r in settings if r["kind"] == kind), None) for kind in ("filter", "kernel")
        }
        key = {kind: (r["mode"], r["param"]) for kind, r in first.items() if r is not None}
        chosen = [r for r in settings if (r["mode"], r["param"]) == key[r["kind"]]]

        def draw_layers(ax) -> None:
            layers = list(dict.fromkeys(name for r in chosen for name in r["layers"]))
            index = {name: i for i, name in enumerate(layers)}
            for r in chosen:
                xs = [index[name] for name in r["layers"]]
                style = "-" if r["kind"] == "filter" else "--"
                ax.plot(xs, list(r["layers"].values()), style, marker=".", label=setting_name(r))
            ax.set_xticks(range(len(layers)), layers, rotation=90, fontsize=6)
            ax.set(ylabel="kept share", title="Kept share per layer (solid: filters, dashed: kernels)")
            ax.legend(fontsize=6, ncol=2)

        names.append(_figure(out, "kept_per_layer.png", draw_layers, size=(9, 5)))
    return [n for n in names if n]


def write_report(out: Path, rows: Rows, facts: dict[str, Any]) -> Path:
    """PNGs and report.md under `out`; returns the report's path."""
    out = Path(out)
    images = plots(out, rows)
    base = next(r for r in rows if r["kind"] == "none")
    lines = [
        f"# Pruning criteria compared: {facts.get('arch')} on {facts.get('dataset')}",
        "",
        f"Input: `{facts.get('path') or 'a model object'}`; test accuracy {base['acc_after']:.2%} on "
        f"{facts.get('test_images')} test images, {base['params']:,} parameters, {base['macs']:,} MACs per "
        f"sample (input {tuple(facts.get('input_shape', ()))}), device {facts.get('device')}, seed "
        f"{facts.get('seed')}.",
        "",
        "Every setting starts from the same trained weights. Filter settings: the criterion's "
        "floor(N x rate) weakest filters of each selected conv are zeroed with their BatchNorm scale and "
        "shift (the training loop's final prune); kernel settings: KernelPruner zeroes the kernels its "
        "mode drops. `pruned` is the pruned share of filters (filter settings) or kernels (kernel "
        "settings); params and MACs per sample by `count_flops` (a compacted network of the surviving "
        "widths); kernel-skip MACs count only nonzero kernels of live filters on live channels (what a "
        "kernel-skipping conv would do); shares removed are relative to the input network.",
    ]
    if facts.get("finetune_epochs"):
        lines += [
            "",
            f"Fine-tuned: {facts['finetune_epochs']} epoch(s) of a minimal SGD loop (Nesterov 0.9, weight "
            f"decay 5e-4, lr {facts.get('finetune_lr')}), masks held, the same batches for every setting.",
        ]
    cells = table(rows)
    lines += ["", "| " + " | ".join(cells[0]) + " |", "|---" + "|---:" * (len(cells[0]) - 1) + "|"]
    lines += ["| " + " | ".join(line) + " |" for line in cells[1:]]
    for name in images:
        lines += ["", f"![{Path(name).stem}]({name})"]
    if not images:
        lines += ["", "(no plots: they need matplotlib)"]
    text = "\n".join(lines) + "\n"
    return replace_atomically(out / "report.md", lambda f: f.write(text.encode()))


def histogram_plot(out: Path, histogram: Rows, threshold: float) -> Optional[str]:
    """kernel_magnitudes.png: kernels per decade of spectral norm and of mean |w| (log x; exact zeros
    drawn at the left edge), the threshold marked. Returns the file name (None without matplotlib)."""
    decades = [r for r in histogram if r["high"] > 0 and r["low"] > 0 and r["high"] != float("inf")]

    def draw(ax) -> None:
        for key, start, width in (("spectral_norm", 1.25, 1.6), ("mean_abs", 3.5, 4.0)):  # a decade's halves
            ax.bar([r["low"] * start for r in decades], [r[key] for r in decades],
                   width=[r["low"] * width for r in decades], align="edge", label=key)  # fmt: skip
        zeros = histogram[0]
        if zeros["spectral_norm"] or zeros["mean_abs"]:
            ax.annotate(f"exactly 0: {zeros['spectral_norm']:,}", (0.01, 0.95), xycoords="axes fraction")
        ax.axvline(threshold, color="red", linestyle="--", label=f"t = {threshold:g}")
        ax.set(xscale="log", xlabel="kernel magnitude (decades)", ylabel="kernels",
               title="Kernel magnitudes of the trained network")  # fmt: skip
        ax.legend(fontsize=7)

    return _figure(out, "kernel_magnitudes.png", draw)


def seeds_plot(out: Path, name: str, groups: dict[str, list[float]], title: str) -> Optional[str]:
    """A PNG of one dot per seed and the mean ± std per group (e.g. 'scratch l2'); None without matplotlib."""
    import statistics

    def draw(ax) -> None:
        for i, values in enumerate(groups.values()):
            ax.plot([i] * len(values), values, "o", color="gray", alpha=0.6)
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            ax.errorbar([i + 0.15], [statistics.fmean(values)], yerr=[std], fmt="s", capsize=4, color="C0")
        ax.set_xticks(range(len(groups)), list(groups), rotation=30, fontsize=7)
        ax.set(ylabel="test accuracy", title=title)

    return _figure(out, name, draw, size=(8, 4.5))
