"""Untrusted files: checkpoints and model files are read with the restricted unpickler, so a crafted pickle
cannot run code through `fastprune train --resume / --init-from` or `fastprune compact`; reading one needs
an explicit opt-in, which warns. CLI errors are one line with exit status 2 (--debug: the traceback)."""

from pathlib import Path

import pytest
import torch

from fastprune.cli import main
from fastprune.serialization import UntrustedFileError, load_torch_file
from fastprune.training import load_checkpoint


class Payload:
    """Unpickling this creates a file: the stand-in for any command a crafted checkpoint could run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture
def crafted(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": "fastprune-checkpoint/1", "model": {}, "config": {}, "x": Payload(marker)}, path)
    return path, marker


def test_library_refuses_a_crafted_pickle(crafted):
    path, marker = crafted
    with pytest.raises(UntrustedFileError, match=r"could run code when loaded .*GLOBAL.*--trust-checkpoint"):
        load_checkpoint(path)
    with pytest.raises(UntrustedFileError):
        load_torch_file(path, what="model")
    assert not marker.exists()


@pytest.mark.parametrize(
    "command",
    [
        ["train", "--resume", "{path}"],
        ["train", "--init-from", "{path}", "--epochs", "1", "--max-batches", "1", "--out", "{out}"],
        ["compact", "{path}", "-o", "{out}/small.pt"],
    ],
)
def test_cli_refuses_a_crafted_pickle_in_one_line(crafted, tmp_path, capsys, command):
    path, marker = crafted
    args = [a.format(path=path, out=tmp_path / "out") for a in command]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"fastprune {command[0]}: error:" in err and "--trust-checkpoint" in err
    assert not marker.exists()


def test_trusting_a_file_is_explicit_and_warns(crafted):
    path, marker = crafted
    with pytest.warns(UserWarning, match="can run code"):
        state = load_checkpoint(path, trust=True)
    assert marker.exists() and state["format"] == "fastprune-checkpoint/1"  # the opt-in did unpickle it


def test_fastprune_files_load_safely_and_bad_files_are_named(tmp_path):
    from fastprune.training import save_atomic

    save_atomic({"model": {"w": torch.ones(2)}, "config": {"arch": "resnet20"}, "counts": [1, 2.5, None]},
                tmp_path / "ok.pt")  # fmt: skip
    assert torch.equal(load_checkpoint(tmp_path / "ok.pt")["model"]["w"], torch.ones(2))
    (tmp_path / "torn.pt").write_bytes((tmp_path / "ok.pt").read_bytes()[:40])
    with pytest.raises(ValueError, match="torn.pt is not a readable torch file"):
        load_checkpoint(tmp_path / "torn.pt")
    with pytest.raises(FileNotFoundError, match="checkpoint: no file at"):
        load_checkpoint(tmp_path / "missing.pt")


def test_debug_shows_the_traceback(crafted, tmp_path):
    path, _ = crafted
    with pytest.raises(UntrustedFileError):
        main(["--debug", "compact", str(path), "-o", str(tmp_path / "small.pt")])
