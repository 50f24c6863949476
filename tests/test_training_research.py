"""Training for research: config.json, --threads, per-epoch lines without bars, --finetune-lr's schedule
(exact on resume), the metrics' columns, and `fastprune evaluate`."""

from __future__ import annotations

import argparse
import csv
import json
import warnings

import pytest
import torch
from conftest import TINY_TRAIN, die_while_writing_epoch

from fastprune.cli import main
from fastprune.pruning.flops import count_flops
from fastprune.training import TrainConfig, load_checkpoint, save_atomic, train
from fastprune.training import loop as training_loop
from fastprune.training import threads as training_threads
from fastprune.training.cli import add_arguments, config_from_args
from fastprune.training.metrics import EpochMetrics, pruned_shares

TINY = TINY_TRAIN
TINY_ARGS = ["--batch-size", "16", "--max-batches", "2"]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_finetune_lr_schedule_and_resume_in_the_middle_of_fine_tuning(tmp_path, monkeypatch):
    config = dict(
        method="kernel", epochs=2, finetune_epochs=4, finetune_lr=0.01, kernel_threshold=0.05, **TINY
    )
    straight = train(TrainConfig(out_dir=str(tmp_path / "straight"), **config))
    # Main schedule (Adam 1e-3, x0.1 at epochs 1 and 2), then the fine-tuning one: 0.01, x0.1 at 50%, 75%.
    assert [m.lr for m in straight.metrics] == pytest.approx([1e-3, 1e-4, 1e-2, 1e-2, 1e-3, 1e-4])
    assert [m.phase for m in straight.metrics] == ["train"] * 2 + ["finetune"] * 4

    die_while_writing_epoch(monkeypatch, 4)  # killed in the second fine-tuning epoch
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(out_dir=str(tmp_path / "cut"), **config))
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "cut")["epochs_done"] == 3
    (tmp_path / "cut" / "config.json").unlink()
    resumed = train(resume=tmp_path / "cut")

    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    for name, mask in straight.kernel_masks.items():
        assert torch.equal(mask, resumed.kernel_masks[name]), name
    assert [m.lr for m in resumed.metrics] == [m.lr for m in straight.metrics]
    assert [m.test_loss for m in resumed.metrics] == [m.test_loss for m in straight.metrics]
    assert straight.final_test_acc == resumed.final_test_acc
    # config.json: the resolved config, written again on resume
    saved = json.loads((tmp_path / "cut" / "config.json").read_text())
    assert (
        saved == resumed.config.to_dict() and saved["optimizer"] == "adam" and saved["milestones"] == [1, 2]
    )
    assert TrainConfig.from_dict(saved).resolved() == resumed.config
    assert not [p for p in (tmp_path / "cut").iterdir() if p.name.startswith(".")]  # no temporaries


@pytest.mark.parametrize(
    "finetune_epochs, milestones", [(1, [1]), (2, [1, 2]), (3, [2]), (4, [2, 3]), (10, [5, 8])]
)
def test_finetune_milestones(finetune_epochs, milestones):
    config = TrainConfig(epochs=5, finetune_epochs=finetune_epochs, finetune_lr=0.5, gamma=0.1).resolved()
    assert config.finetune_milestones() == milestones
    lrs = [config.finetune_lr_at(e) for e in range(5 + finetune_epochs)]
    assert lrs[:5] == [None] * 5
    assert lrs[5:] == pytest.approx(
        [0.5 * 0.1 ** sum(j >= m for m in milestones) for j in range(finetune_epochs)]
    )


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(finetune_lr=0.01), "finetune_lr: .* finetune_epochs >= 1"),
        (dict(finetune_lr=-1.0, finetune_epochs=1), "finetune_lr: expected a learning rate > 0"),
        (dict(threads=0), "threads: expected an integer >= 1"),
    ],
)
def test_bad_research_options(change, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**change).resolved()


def test_cli_options_reach_the_config():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--finetune-epochs", "3", "--finetune-lr", "0.02", "--threads", "3", "--quiet"])
    config = config_from_args(args)
    assert (config.finetune_lr, config.threads, config.quiet, config.progress) == (0.02, 3, True, True)
    assert config_from_args(parser.parse_args([])).threads is None


def test_threads_for_the_run_then_put_back(tmp_path, monkeypatch):
    from fastprune import _native

    torch.set_num_threads(2)
    seen = []
    real = training_loop._train_epoch

    def spy(*args):
        seen.append((torch.get_num_threads(), _native.native().build_info()["openmp_max_threads"]))
        return real(*args)

    monkeypatch.setattr(training_loop, "_train_epoch", spy)
    result = train(TrainConfig(epochs=1, threads=1, out_dir=str(tmp_path), **TINY))
    assert seen == [(1, 1)]  # torch and fastprune's OpenMP kernels
    assert torch.get_num_threads() == 2 and result.config.threads == 1
    assert json.loads((tmp_path / "config.json").read_text())["threads"] == 1


def test_threads_warn_when_the_kernels_do_not_follow(monkeypatch):
    monkeypatch.setattr(training_threads, "_native_threads", lambda: 7)
    monkeypatch.setattr(training_threads, "_openmp_runtimes", lambda: [])
    with pytest.warns(UserWarning, match="threads: torch uses 1 threads, fastprune's CPU kernels 7"):
        training_threads.set_threads(1)


def test_one_line_per_epoch_without_bars_and_quiet_prints_nothing(tmp_path, capsys):
    assert (
        main(["train", "--epochs", "2", *TINY_ARGS, "--no-progress", "--out-dir", str(tmp_path / "a")]) == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" [")[0] for line in lines[:2]] == ["epoch 1/2", "epoch 2/2"]
    assert "before pruning" in lines[1] and "MACs" in lines[1] and lines[2].startswith("final test accuracy")
    assert main(["train", "--epochs", "1", *TINY_ARGS, "--quiet", "--out-dir", str(tmp_path / "b")]) == 0
    assert capsys.readouterr().out == ""


def _csv(path) -> tuple[list[str], list[dict]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames), list(reader)


def test_metrics_columns(tmp_path):
    config = TrainConfig(epochs=3, prune_every=2, candidates=["l1", "fpgm"], out_dir=str(tmp_path), **TINY)
    result = train(config)
    header, rows = _csv(tmp_path / "metrics.csv")
    assert "pruned_share" not in header and header[-3:] == [
        "scoring_seconds",
        "final_prune_seconds",
        "epoch_seconds",
    ]
    assert header[header.index("criterion") + 1 : header.index("criterion") + 3] == [
        "attribute_l1",
        "attribute_fpgm",
    ]
    assert json.loads((tmp_path / "metrics.json").read_text())[0].keys() == set(header)
    m1, m2, m3 = result.metrics
    # lr used during each epoch: 0.1, x0.2 after epochs 1 and 2
    assert [m.lr for m in result.metrics] == pytest.approx([0.1, 0.02, 0.004])
    # epoch 1: no pruning step
    assert (m1.test_acc_before_prune, m1.criterion, m1.attributes, m1.pruned_filters) == (None, None, {}, 0.0)
    assert rows[0]["test_acc_before_prune"] == rows[0]["attribute_l1"] == rows[0]["criterion"] == ""
    dense = count_flops(_dense(), (3, 32, 32))
    assert (m1.macs, m1.params) == (dense.macs, dense.params)
    # epoch 2: an MFP step; both candidates' attributes, the chosen one the lower
    assert set(m2.attributes) == {"l1", "fpgm"} and m2.criterion == min(m2.attributes, key=m2.attributes.get)
    assert float(rows[1]["attribute_fpgm"]) == m2.attributes["fpgm"] and m2.test_acc_before_prune is not None
    assert m2.scoring_seconds > 0 and m2.final_prune_seconds == 0
    assert m2.pruned_filters == pytest.approx(result.pruner.pruned_share()) and m2.macs < dense.macs
    # epoch 3: the final prune only (no step: 3 is not a multiple of 2)
    assert m3.criterion is None and m3.scoring_seconds == 0 and m3.final_prune_seconds > 0
    assert m3.test_acc_before_prune is not None and m3.test_acc == result.final_test_acc
    final = count_flops(result.model, (3, 32, 32))
    assert (m3.macs, m3.params) == (final.macs, final.params) and m3.macs < m2.macs  # BN zeroed too
    assert m3.pruned_kernels > 0
    line = m2.summary(3)
    assert line.startswith("epoch 2/3 [train] lr 0.02 ") and "criterion" in line and "before pruning" in line


def _dense():
    from fastprune import models

    return models.create("resnet20", num_classes=10)


def test_pruned_shares_definition():
    conv = torch.nn.Conv2d(2, 4, 3)
    model = torch.nn.Sequential(conv)
    with torch.no_grad():
        conv.weight[1] = 0  # a filter all zero: pruned, and its 2 kernels
        conv.weight[2, 0] = 0  # one kernel zero
    assert pruned_shares(model, {}) == (1 / 4, 3 / 8)
    filters = torch.tensor([True, True, True, False])
    assert pruned_shares(model, {"0": filters}) == (2 / 4, 5 / 8)
    kernels = torch.ones(4, 2, dtype=torch.bool)
    kernels[3, 1] = False
    assert pruned_shares(model, {"0": kernels}) == (1 / 4, 4 / 8)


def test_old_metrics_rows_are_read_on_resume(tmp_path, monkeypatch):
    old = dict(epoch=1, phase="train", lr=0.1, train_loss=2.0, train_acc=0.2, test_loss=2.1, test_acc=0.1,
               pruned_share=0.4, criterion="fpgm", scoring_seconds=0.01, epoch_seconds=1.0)  # fmt: skip
    assert EpochMetrics.from_dict(old).pruned_filters == 0.4
    assert EpochMetrics.from_dict(old, "kernel").pruned_kernels == 0.4
    assert EpochMetrics.from_dict({**old, "attribute_l1": 1.5, "attribute_l2": None}).attributes == {
        "l1": 1.5
    }

    die_while_writing_epoch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(epochs=2, out_dir=str(tmp_path), **TINY))
    monkeypatch.undo()
    state = load_checkpoint(tmp_path)
    state.pop("format")
    state["metrics"] = [{**old, "train_loss": m["train_loss"]} for m in state["metrics"]]  # as written before
    save_atomic(state, tmp_path / "checkpoint.pt")
    resumed = train(resume=tmp_path)
    assert [m.pruned_filters for m in resumed.metrics][0] == 0.4
    header, rows = _csv(tmp_path / "metrics.csv")
    assert "pruned_share" not in header and rows[0]["macs"] == "" and rows[1]["macs"] != ""


# --- fastprune evaluate ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny finished filter run."""
    out = tmp_path_factory.mktemp("evaluate") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return out, train(TrainConfig(epochs=2, out_dir=str(out), **TINY))
    finally:
        torch.set_num_threads(threads)


def _evaluate(capsys, *args) -> tuple[int, str, str]:
    status = main(["evaluate", *map(str, args)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_evaluate_a_run_folder_model_and_checkpoint(run, capsys):
    out, result = run
    status, text, _ = _evaluate(capsys, out, "--max-batches", "2", "--json")
    assert status == 0
    got = json.loads(text)
    assert got["file"] == str(out / "model.pt") and got["dataset"] == "digits" and got["images"] == 32
    assert got["accuracy"] == result.final_test_acc  # the same 2 batches of 16 the run evaluated
    assert got["pruned_filters"] == pytest.approx(result.pruner.pruned_share()) and got["pruned_kernels"] > 0
    report = count_flops(result.model, (3, 32, 32))
    assert (got["macs"], got["params"], got["dense_macs"]) == (report.macs, report.params, report.dense_macs)
    assert (
        got["pruned_filters"] == result.metrics[-1].pruned_filters and got["macs"] == result.metrics[-1].macs
    )

    status, text, _ = _evaluate(capsys, out / "checkpoint.pt", "--max-batches", "1", "--batch-size", "8")
    assert status == 0
    head, *rows = text.splitlines()
    assert (
        head
        == f"{out / 'checkpoint.pt'}: resnet20 on the digits test set (8 images, checkpoint after epoch 2)"
    )
    names = [row.split("  ")[1] for row in rows]
    assert names == ["accuracy", "loss", "MACs / sample", "parameters", "pruned filters", "pruned kernels"]


def test_evaluate_finds_the_data_set_beside_or_asks_for_it(run, tmp_path, capsys):
    out, _ = run
    state = load_checkpoint(out / "model.pt")
    del state["config"], state["format"]  # a model.pt of an older version
    (tmp_path / "run").mkdir()
    save_atomic(state, tmp_path / "run" / "model.pt")
    (tmp_path / "run" / "config.json").write_text((out / "config.json").read_text())
    assert _evaluate(capsys, tmp_path / "run", "--max-batches", "1")[0] == 0
    (tmp_path / "run" / "config.json").unlink()
    status, _, err = _evaluate(capsys, tmp_path / "run", "--max-batches", "1")
    assert status == 2 and err.count("\n") == 1 and "pass --dataset" in err
    assert _evaluate(capsys, tmp_path / "run", "--max-batches", "1", "--dataset", "digits")[0] == 0


def test_evaluate_user_mistakes_are_one_line(run, tmp_path, capsys):
    out, _ = run
    (tmp_path / "empty").mkdir()
    torch.save(torch.zeros(1), tmp_path / "foreign.pt")
    state = torch.load(out / "model.pt", weights_only=False)
    state["extra"] = argparse.Namespace(a=1)  # an object the safe loader refuses
    torch.save(state, tmp_path / "unsafe.pt")
    for args, message in [
        ((tmp_path / "missing",), "evaluate: no file or folder at"),
        ((tmp_path / "empty",), "holds neither model.pt nor checkpoint.pt"),
        ((tmp_path / "foreign.pt",), "was not written by fastprune"),
        ((tmp_path / "unsafe.pt",), "--trust-checkpoint"),
        ((out, "--dataset", "cifar10"), "cifar10"),
        ((out, "--max-batches", "0"), "--max-batches: expected an integer >= 1"),
    ]:
        status, text, err = _evaluate(capsys, *args)
        assert status == 2 and text == "", args
        assert err.startswith("fastprune evaluate: error: ") and err.count("\n") == 1 and message in err, err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert _evaluate(capsys, tmp_path / "unsafe.pt", "--max-batches", "1", "--trust-checkpoint")[0] == 0
