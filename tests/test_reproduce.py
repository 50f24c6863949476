"""`fastprune reproduce kernel|filter` (issue 18 item 2): the protocols end to end at --scale tiny, their
statistics against NumPy, their verdicts, reuse of completed runs and refusal of foreign folders."""

from __future__ import annotations

import csv
import json
import math
import os

import numpy as np
import pytest
import torch

from fastprune.cli import main
from fastprune.research import filter_protocol, kernel_protocol
from fastprune.research.runs import run_or_reuse
from fastprune.training.config import TrainConfig
from fastprune.training.saved_model import load_saved_model
from tests.conftest import TINY_TRAIN, die_while_writing_epoch

pytestmark = pytest.mark.usefixtures("one_thread")


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def kernel_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce") / "kernel"
    assert main(["reproduce", "kernel", "--scale", "tiny", "--out", str(out), "--quiet"]) == 0
    return out


def _spectral_norms_float64(model) -> np.ndarray:
    weights = [m.weight.detach().double().numpy() for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    return np.concatenate([np.linalg.svd(w, compute_uv=False)[..., 0].ravel() for w in weights])


def test_kernel_protocol_tiny_writes_a_consistent_report(kernel_run):
    for name in ("report.md", "summary.json", "histogram.csv", "compare/results.csv", "compare/sweep.csv"):
        assert (kernel_run / name).is_file(), name
    summary = json.loads((kernel_run / "summary.json").read_text())
    settings, verdict = summary["settings"], summary["verdict"]
    assert settings["scale"] == "tiny" and settings["steps"] == 4 and settings["epochs"] == 2
    # The training run used the authors' recipe: Adam 1e-3, L1 1e-4, no weight decay, x0.1 decays.
    config = json.loads((kernel_run / "train" / "config.json").read_text())
    assert (
        config["optimizer"],
        config["lr"],
        config["l1_penalty"],
        config["weight_decay"],
        config["gamma"],
    ) == ("adam", 1e-3, 1e-4, 0.0, 0.1)
    # The verdict's pruned share at t = 1e-4 equals an independent float64 count over the trained weights.
    model = load_saved_model(kernel_run / "train")[0]
    norms = _spectral_norms_float64(model)
    assert verdict["pruned_share"] == pytest.approx(float(np.mean(norms < 1e-4)), abs=1e-9)
    for t, share in verdict["plateau_shares"].items():
        assert share == pytest.approx(float(np.mean(norms < float(t))), abs=1e-9)
    sweep = [r for r in _csv(kernel_run / "compare" / "sweep.csv") if r["criterion"] == "spectral_norm"]
    assert len(sweep) == 7 and float(sweep[-1]["param"]) == 1.0
    assert float(sweep[-1]["pruned_share"]) > 0.5  # t = 1 prunes most kernels of a barely trained net
    for r in sweep:  # kept iff sigma_max >= t
        assert float(r["pruned_share"]) == pytest.approx(float(np.mean(norms < float(r["param"]))), abs=1e-9)
    assert verdict["reproduced"] == (verdict["pruned_share"] >= 0.5 and verdict["accuracy_kept"] >= 0.98)
    # 4 steps cannot form the plateau: the report must say so, not claim it.
    assert not verdict["plateau_formed"] and not verdict["reproduced"]
    assert "NOT REPRODUCED" in (kernel_run / "report.md").read_text()
    # The histogram counts every kernel once, in the decade NumPy puts it.
    rows = _csv(kernel_run / "histogram.csv")
    assert sum(int(r["spectral_norm"]) for r in rows) == norms.size
    assert sum(int(r["mean_abs"]) for r in rows) == norms.size
    for r in rows[1:]:
        low, high = float(r["low"]), float(r["high"])
        expected = int(np.sum((norms > 0) & (norms >= low) & (norms < high)))
        assert int(r["spectral_norm"]) == expected, (low, high)
    # Every criterion at the four thresholds, and the sweep, in the compare folder.
    results = _csv(kernel_run / "compare" / "results.csv")
    kernel_rows = [r for r in results if r["kind"] == "kernel"]
    assert len(kernel_rows) == 8 * 4
    assert {float(r["param"]) for r in kernel_rows} == set(kernel_protocol.THRESHOLDS)


def test_kernel_protocol_rerun_reuses_the_training_run(kernel_run, capsys):
    model_file = kernel_run / "train" / "model.pt"
    stamp = os.stat(model_file).st_mtime_ns
    assert main(["reproduce", "kernel", "--scale", "tiny", "--out", str(kernel_run)]) == 0
    assert os.stat(model_file).st_mtime_ns == stamp
    assert "reused the complete run" in capsys.readouterr().out


def _synthetic_compare_rows(shares: dict[float, float], before: float, after: float) -> list[dict]:
    rows = []
    for name in ("spectral_norm", "weight"):
        for t in kernel_protocol.THRESHOLDS:
            rows.append({"kind": "kernel", "mode": "threshold", "criterion": name, "param": t,
                         "pruned_share": shares[t], "acc_before": before, "acc_after": after,
                         "kernel_macs_removed": shares[t]})  # fmt: skip
    return rows


@pytest.mark.parametrize(
    "shares, after, reproduced, plateau",
    [
        ({1e-6: 0.80, 1e-5: 0.81, 1e-4: 0.82, 1e-3: 0.83}, 0.975, True, True),  # the paper's picture
        ({1e-6: 0.80, 1e-5: 0.81, 1e-4: 0.82, 1e-3: 0.83}, 0.90, False, True),  # too much accuracy lost
        ({1e-6: 0.00, 1e-5: 0.01, 1e-4: 0.30, 1e-3: 0.70}, 0.99, False, False),  # no plateau, small share
        ({1e-6: 0.00, 1e-5: 0.00, 1e-4: 0.00, 1e-3: 0.00}, 0.99, False, False),  # nothing pruned: no plateau
    ],
)
def test_kernel_verdict(shares, after, reproduced, plateau):
    verdict = kernel_protocol.verdict(_synthetic_compare_rows(shares, 0.99, after))
    assert verdict["reproduced"] is reproduced and verdict["plateau_formed"] is plateau
    assert verdict["accuracy_kept"] == pytest.approx(after / 0.99)
    assert ("NOT REPRODUCED" in kernel_protocol.conclusion(verdict)) is (not reproduced)


def test_kernel_resolve_scales_in_steps_not_epochs():
    small = kernel_protocol.resolve("small")
    assert small.steps_per_epoch == math.ceil(1438 / 128)
    assert small.epochs == math.ceil(kernel_protocol.SMALL_STEPS / small.steps_per_epoch)
    assert small.milestones == sorted({round(f * small.epochs) for f in (0.4, 0.6, 0.8, 0.9)})
    assert kernel_protocol.resolve("small", steps=120).epochs == 10
    paper = kernel_protocol.resolve("paper")
    assert (paper.arch, paper.epochs) == ("resnet56", 200)
    with pytest.raises(ValueError, match="scale"):
        kernel_protocol.resolve("huge")
    with pytest.raises(ValueError, match="steps"):
        kernel_protocol.resolve("small", steps=0)


def test_paired_statistics_against_numpy():
    a, b = [0.95, 0.97, 0.96, 0.99], [0.94, 0.95, 0.96, 0.97]
    p = filter_protocol.paired(a, b)
    diffs = np.array(a) - np.array(b)
    half = 3.182 * diffs.std(ddof=1) / math.sqrt(4)  # t(0.975, df 3)
    assert p["mean_diff"] == pytest.approx(diffs.mean())
    assert p["std_diff"] == pytest.approx(diffs.std(ddof=1))
    assert (p["ci_low"], p["ci_high"]) == pytest.approx((diffs.mean() - half, diffs.mean() + half))
    assert (p["wins"], p["ties"], p["losses"]) == (3, 1, 0)
    assert p["resolved"] == (p["ci_low"] > 0)
    assert filter_protocol.paired([1.0, 1.0, 1.0], [0.5, 0.5, 0.5])["resolved"]  # no spread, all wins
    assert not filter_protocol.paired([0.9, 0.8, 0.85], [0.8, 0.9, 0.85])["resolved"]
    assert (
        filter_protocol.t95(3) == 3.182
        and filter_protocol.t95(11) == 2.228
        and filter_protocol.t95(99) == 1.96
    )


def test_filter_resolve_scales():
    small = filter_protocol.resolve("small")
    assert (small.epochs, small.prune_every, small.pretrained_epochs, small.pretrained_prune_every) == (
        20,
        5,
        4,
        2,
    )
    assert (
        (small.finetune_epochs, small.scratch_mode) == (4, "hard")
        and small.seeds == [0, 1, 2]
        and small.criteria == ["l1", "l2", "fpgm", "mfp"]
    )
    # FPGM's released CIFAR scripts: a soft step after every epoch, no fine-tuning
    paper = filter_protocol.resolve("paper")
    settings = (paper.arch, paper.epochs, paper.prune_every, paper.pretrained_epochs, paper.finetune_epochs)
    assert settings == ("resnet56", 200, 1, 200, 0) and paper.scratch_mode == "soft"
    assert filter_protocol.resolve("small", epochs=3).prune_every == 3  # never more than the run's epochs


def test_filter_resolve_refuses_bad_settings():
    with pytest.raises(ValueError, match="seeds"):
        filter_protocol.resolve("tiny", seeds=[0])
    with pytest.raises(ValueError, match="seeds"):
        filter_protocol.resolve("tiny", seeds=[1, 1, 2])
    with pytest.raises(ValueError, match="criteria"):
        filter_protocol.resolve("tiny", criteria=["l1", "taylor"])
    with pytest.raises(ValueError, match="rate"):
        filter_protocol.resolve("tiny", rate=1.0)
    with pytest.raises(ValueError, match="epochs"):
        filter_protocol.resolve("tiny", epochs=0)


@pytest.fixture(scope="module")
def filter_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce") / "filter"
    argv = [
        "reproduce",
        "filter",
        "--scale",
        "tiny",
        "--seeds",
        "0",
        "1",
        "--criteria",
        "l1",
        "fpgm",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(argv) == 0
    return out


def test_filter_protocol_tiny_statistics_match_its_runs(filter_run):
    results = _csv(filter_run / "results.csv")
    # per seed: the baseline, then l1 and fpgm from scratch and from the baseline
    assert [(r["setting"], r["criterion"], r["seed"]) for r in results] == [
        (setting, name, str(seed))
        for seed in (0, 1)
        for setting, name in [("baseline", "none"), ("scratch", "l1"), ("scratch", "fpgm"),
                              ("pretrained", "l1"), ("pretrained", "fpgm")]
    ]  # fmt: skip
    for r in results:  # each row's accuracy is what its run saved
        saved = torch.load(filter_run / f"seed{r['seed']}" / (
            "baseline" if r["setting"] == "baseline" else f"{r['setting']}-{r['criterion']}") / "model.pt",
            weights_only=False)  # fmt: skip
        assert float(r["test_acc"]) == pytest.approx(saved["final_test_acc"])
        if r["setting"] != "baseline":
            assert float(r["pruned_filters"]) > 0.3  # 40% of every conv's filters (floor per layer)
            folder = filter_run / f"seed{r['seed']}" / f"{r['setting']}-{r['criterion']}"
            metrics = json.loads((folder / "metrics.json").read_text())
            config = json.loads((folder / "config.json").read_text())
            (final,) = [m for m in metrics if m["epoch"] == config["epochs"]]  # the final prune's epoch
            assert float(r["test_acc_before_final_prune"]) == pytest.approx(final["test_acc_before_prune"])
            assert float(r["test_acc_after_final_prune"]) == pytest.approx(final["test_acc"])
            assert metrics[-1]["phase"] == "finetune"  # then fine-tuned, masks held
            assert config["mode"] == ("hard" if r["setting"] == "scratch" else "soft")
    config = json.loads((filter_run / "seed1" / "pretrained-fpgm" / "config.json").read_text())
    assert (
        config["init_from"].endswith(os.path.join("seed1", "baseline", "model.pt")) and config["lr"] == 0.01
    )
    assert (config["finetune_epochs"], config["finetune_lr"]) == (1, filter_protocol.FINETUNE_LR)
    summary = json.loads((filter_run / "summary.json").read_text())
    for row in summary["summary"]:
        values = [float(r["test_acc"]) for r in results
                  if r["setting"] == row["setting"] and r["criterion"] == row["criterion"]]  # fmt: skip
        assert row["mean"] == pytest.approx(np.mean(values)) and row["std"] == pytest.approx(
            np.std(values, ddof=1)
        )
    (pair,) = [p for p in summary["paired"] if p["setting"] == "scratch"]
    acc = {(r["criterion"], r["seed"]): float(r["test_acc"]) for r in results if r["setting"] == "scratch"}
    diffs = [acc[("l1", s)] - acc[("fpgm", s)] for s in ("0", "1")]
    assert (pair["a"], pair["b"]) == ("l1", "fpgm") and pair["mean_diff"] == pytest.approx(np.mean(diffs))
    report = (filter_run / "report.md").read_text()
    assert "| scratch | l1 - fpgm |" in report and "test images" in report
    for name in ("summary.csv", "paired.csv"):
        assert (filter_run / name).is_file()


def test_filter_protocol_refuses_a_folder_of_other_settings(filter_run, capsys):
    stamp = os.stat(filter_run / "seed0" / "baseline" / "model.pt").st_mtime_ns
    argv = ["reproduce", "filter", "--scale", "tiny", "--seeds", "0", "1", "--criteria", "l1", "fpgm",
            "--rate", "0.3", "--out", str(filter_run)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert (
        len(err.splitlines()) == 1 and "another configuration" in err and "rate: 0.4 there, 0.3 here" in err
    )
    assert os.stat(filter_run / "seed0" / "baseline" / "model.pt").st_mtime_ns == stamp  # nothing retrained


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["reproduce", "kernel", "--seeds", "1", "2"], "--seeds"),
        (["reproduce", "kernel", "--rate", "0.3"], "--rate"),
        (["reproduce", "filter", "--steps", "10"], "--steps"),
        (["reproduce", "filter", "--seed", "3"], "--seed"),
    ],
)
def test_options_of_the_other_protocol_are_refused(argv, flag, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert flag in err and "Traceback" not in err


def test_run_or_reuse_resumes_an_interrupted_run(tmp_path, monkeypatch):
    config = TrainConfig(method="none", epochs=2, out_dir=str(tmp_path / "run"), quiet=True, **TINY_TRAIN)
    die_while_writing_epoch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        run_or_reuse(config)
    monkeypatch.undo()
    assert not (tmp_path / "run" / "model.pt").exists()
    outcome = run_or_reuse(config)
    assert not outcome.reused and len(outcome.metrics) == 2 and (tmp_path / "run" / "model.pt").is_file()
    again = run_or_reuse(config)
    assert again.reused and again.final_test_acc == outcome.final_test_acc
