"""`fastprune compare` / fastprune.research.compare: every criterion on the same trained weights."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from fastprune.cli import main
from fastprune.research import compare, threshold_sweep
from fastprune.research.comparison import load_model

SMALL = dict(max_batches=1, batch_size=16, progress=False)  # one test batch per evaluation


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny inputs on a shared machine: one thread (the results are the same)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A tiny finished run without pruning: ResNet-20 on digits, one epoch of two batches of 16."""
    from fastprune.training import TrainConfig, train

    out = tmp_path_factory.mktemp("compare") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = TrainConfig(arch="resnet20", dataset="digits", epochs=1, batch_size=16, max_batches=2,
                             method="none", progress=False, out_dir=str(out))  # fmt: skip
        train(config)
    finally:
        torch.set_num_threads(threads)
    return out


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_cli_end_to_end(run, tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", str(run), "--filter-criteria", "l1", "fpgm:cosine", "random", "--rates", "0.3", "0.5",
            "--kernel-criteria", "spectral_norm", "det", "--kernel-modes", "threshold", "sorted",
            "--thresholds", "1e-2", "--sweep", "--finetune-epochs", "1", "--max-batches", "1",
            "--batch-size", "16", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "[10/10] kernel det sorted 0.5" in printed and "filter fpgm:cosine @ 0.5" in printed
    rows = _rows(out / "results.csv")
    settings = [(r["kind"], r["criterion"], r["mode"], float(r["param"] or 0)) for r in rows]
    filters = [("filter", c, "hard", rate) for c in ("l1", "fpgm:cosine", "random") for rate in (0.3, 0.5)]
    kernels = [
        ("kernel", c, m, p)
        for m, p in (("threshold", 1e-2), ("sorted", 0.5))
        for c in ("spectral_norm", "det")
    ]
    assert settings == [("none", "none", "", 0.0), *filters, *kernels]
    for r in rows:
        for key in ("pruned_share", "params_removed", "macs_removed", "kernel_macs_removed", "acc_after"):
            assert 0.0 <= float(r[key]) <= 1.0, (r, key)
        assert float(r["kernel_macs"]) <= float(r["macs"])
        assert r["kind"] == "none" or 0.0 <= float(r["acc_finetuned"]) <= 1.0
    by = {(r["criterion"], r["mode"], float(r["param"] or 0)): r for r in rows}
    for criterion in ("l1", "fpgm:cosine", "random"):  # more filters pruned, fewer MACs and parameters
        low, high = by[(criterion, "hard", 0.3)], by[(criterion, "hard", 0.5)]
        assert float(low["pruned_share"]) < float(high["pruned_share"])
        assert int(high["macs"]) < int(low["macs"]) < int(by[("none", "", 0.0)]["macs"])
        assert int(high["params"]) < int(low["params"])
        assert low["kernel_macs"] == low["macs"]  # whole filters: a kernel-skipping conv saves the same
    half = by[("det", "sorted", 0.5)]  # half the kernels of every filter: MACs of skipped kernels only
    assert 0.45 < float(half["pruned_share"]) <= 0.5 and half["macs"] == by[("none", "", 0.0)]["macs"]
    assert 0.4 < float(half["kernel_macs_removed"]) < 0.5
    sweep = _rows(out / "sweep.csv")
    assert {r["criterion"] for r in sweep} == {"spectral_norm", "det"} and len(sweep) == 50
    for criterion in ("spectral_norm", "det"):
        points = [(float(r["param"]), float(r["pruned_share"])) for r in sweep if r["criterion"] == criterion]
        assert points[0][0] == pytest.approx(1e-12) and points[-1][0] == pytest.approx(1.0)
        shares = [share for _, share in sorted(points)]
        assert shares == sorted(shares) and shares[0] < shares[-1]
    report = (out / "report.md").read_text()
    for name in ("pruned_share_vs_threshold.png", "accuracy_vs_pruned_share.png", "kept_per_layer.png"):
        data = (out / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR", name
        assert f"]({name})" in report
    pytest.importorskip("matplotlib").image.imread(out / "kept_per_layer.png")  # decodes
    assert "| filter random @ 0.5 |" in report and not list(out.glob(".*.tmp"))


def test_weights_are_restored_between_settings(run):
    both = compare(run, filter_criteria=["l1", "l2"], rates=[0.5], kernel_criteria=["det", "weight"],
                   thresholds=[0.05], **SMALL)  # fmt: skip
    alone = compare(run, filter_criteria=["l2"], rates=[0.5], kernel_criteria=["weight"], thresholds=[0.05],
                    **SMALL)  # fmt: skip
    first = {r["criterion"]: r for r in both}
    second = {r["criterion"]: r for r in alone}
    for name in ("l2", "weight"):
        a, b = first[name], second[name]
        assert a["masks"].keys() == b["masks"].keys()
        assert all(torch.equal(a["masks"][k], b["masks"][k]) for k in a["masks"])
        assert (a["pruned_share"], a["macs"], a["acc_after"]) == (
            b["pruned_share"],
            b["macs"],
            b["acc_after"],
        )
    # the test means something: run on l1's leftovers, l2 would have kept l1's set
    assert any(
        not torch.equal(first["l1"]["masks"][k], first["l2"]["masks"][k]) for k in first["l1"]["masks"]
    )
    assert first["det"]["pruned_share"] > 0 and second["weight"]["pruned_share"] > 0


def test_module_input_left_unchanged_and_random_control_seeded(run):
    model, _ = load_model(run)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    runs = [
        compare(model, filter_criteria=["random"], rates=[0.5], kernel_criteria=[], seed=seed, **SMALL)
        for seed in (3, 3, 4)
    ]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    masks = [rows[1]["masks"] for rows in runs]
    assert all(torch.equal(masks[0][k], masks[1][k]) for k in masks[0])
    assert any(not torch.equal(masks[0][k], masks[2][k]) for k in masks[0])
    assert runs[0][1]["pruned_share"] == runs[2][1]["pruned_share"] == pytest.approx(0.5, abs=0.01)


def test_threshold_sweep_is_monotone(run):
    model, _ = load_model(run)
    rows = threshold_sweep(model, ["min_eig", "det_gram"], points=9)
    for name in ("min_eig", "det_gram"):
        shares = [r["pruned_share"] for r in rows if r["criterion"] == name]
        assert len(shares) == 9 and shares == sorted(shares) and shares[0] == 0.0 and shares[-1] > 0.5


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing-run"], "no file or folder at missing-run"),
        (["RUN", "--filter-criteria", "magic"], "unknown filter criterion 'magic'"),
        (["RUN", "--kernel-criteria", "magic"], "unknown kernel criterion 'magic'"),
        (["RUN", "--filter-criteria", "fpgm_he:l1"], "unknown filter criterion 'fpgm_he:l1'"),
        (["RUN", "--rates", "1.5"], "rate"),
        (["RUN", "--filter-criteria", "none", "--kernel-criteria", "none"], "nothing to compare"),
    ],
)
def test_bad_input_is_one_line_and_status_2(run, tmp_path, capsys, args, message):
    argv = ["compare", *[str(run) if a == "RUN" else a for a in args], "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fastprune compare: error: ") and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_ctrl_c_keeps_the_settings_done(run, tmp_path, capsys, monkeypatch):
    from fastprune.training import loop

    real, calls = loop.evaluate, []

    def evaluate(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the input network, setting 1, then Ctrl-C in setting 2
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "evaluate", evaluate)
    out = tmp_path / "o"
    argv = ["compare", str(run), "--filter-criteria", "l1", "l2", "--rates", "0.3", "--kernel-criteria",
            "none", "--max-batches", "1", "--batch-size", "16", "--out", str(out)]  # fmt: skip
    assert main(argv) == 130
    err = capsys.readouterr().err.strip()
    assert err.startswith("fastprune compare: interrupted") and len(err.splitlines()) == 1
    assert [r["criterion"] for r in _rows(out / "results.csv")] == ["none", "l1"]
