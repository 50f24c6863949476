"""fastprune.data: the embedded digits, CIFAR-10/100 and Tiny ImageNet readers (on tiny synthetic copies
written here in the real formats), the batched augmentations, the loaders and every error message."""

from __future__ import annotations

import hashlib
import io
import pickle
import struct
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fastprune.data as fd
from fastprune.data import DatasetError, DatasetNotFoundError, transforms
from fastprune.data import digits as digits_mod

# -- digits ----------------------------------------------------------------------------------------------

DIGITS_CLASS_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]  # the UCI/scikit-learn counts


def test_names_and_unknown_name():
    assert fd.names() == ("digits", "cifar10", "cifar100", "tinyimagenet")
    assert fd.load("DIGITS", train=False).name == "digits"
    with pytest.raises(
        ValueError, match="unknown data set 'mnist'; choose one of: digits, cifar10, cifar100"
    ):
        fd.load("mnist")


def test_digits_raw_file_is_the_pinned_one():
    images, labels = digits_mod.read_digits()
    assert images.shape == (1797, 8, 8) and images.dtype == np.uint8
    assert images.min() == 0 and images.max() == 16
    assert np.bincount(labels).tolist() == DIGITS_CLASS_COUNTS
    assert int(images.sum(dtype=np.int64)) == 561718
    digest = hashlib.sha256(images.tobytes() + labels.astype("<i8").tobytes()).hexdigest()
    assert digest == "65e5b4619795efb40c1082f4c350c049e4ad552200d369b6ae99e21eef5e72c5"


def test_digits_sizes_and_stratified_split():
    train, test = fd.load("digits"), fd.load("digits", train=False)
    assert (len(train), len(test)) == (1438, 359)
    assert train.num_classes == test.num_classes == 10
    assert train.input_shape == test.input_shape == (3, 32, 32)
    for n_train, n_test, n in zip(train.class_counts(), test.class_counts(), DIGITS_CLASS_COUNTS):
        assert n_train + n_test == n
        assert int(n_test) == int(np.floor(0.2 * n + 0.5))  # every class split 80/20


def test_digits_split_is_fixed():
    _, labels = digits_mod.read_digits()
    train_idx, test_idx = digits_mod.split_indices(labels)
    assert len(np.intersect1d(train_idx, test_idx)) == 0
    assert np.array_equal(np.sort(np.concatenate([train_idx, test_idx])), np.arange(1797))
    # Pinned: the same split on every machine, NumPy and torch version.
    assert test_idx[:8].tolist() == PINNED_TEST_HEAD
    assert hashlib.sha256(test_idx.astype("<i8").tobytes()).hexdigest() == PINNED_TEST_SHA256
    again, _ = digits_mod.split_indices(labels)[::-1]
    assert np.array_equal(again, test_idx)


PINNED_TEST_HEAD = [3, 7, 13, 19, 36, 38, 43, 48]
PINNED_TEST_SHA256 = "3530be80b9605f4c4adc46d0ee3006a356c16968a8efcc58f24463bc820d5ef9"


def test_digits_data_checksum_and_normalisation():
    train, test = fd.load("digits", augment=False), fd.load("digits", train=False)
    x, y = train.get_batch(range(len(train)))
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape == (1438, 3, 32, 32)
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])  # grey replicated
    # Normalised with the training split's own statistics: mean 0, std 1 per channel.
    torch.testing.assert_close(x.mean((0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.std((0, 2, 3)), torch.ones(3), atol=1e-4, rtol=0)
    xt, _ = test.get_batch(range(len(test)))
    assert abs(float(xt.mean())) < 0.1  # test split: train statistics, so only roughly centred
    # Raw pixels in [0, 1] and bitwise reproducible: pinned checksum of the stored images.
    assert float(train.images.min()) == 0.0 and float(train.images.max()) <= 1.0
    assert hashlib.sha256(train.images.numpy().tobytes()).hexdigest() == PINNED_IMAGES_SHA256
    mean, std = digits_mod.normalization()
    assert mean == pytest.approx((PINNED_MEAN,) * 3, abs=1e-12) and std == pytest.approx(
        (PINNED_STD,) * 3, abs=1e-12
    )


# Exact on every machine: the bilinear weights (1/8, 3/8, 5/8, 7/8) and pixels k/16 are dyadic, so the
# float64 products and sums are exact and the float32 values independent of BLAS and summation order.
PINNED_IMAGES_SHA256 = "680c324ab194d611f35107406a77528b5dfc42f318cef05bbf53181b64318748"
PINNED_MEAN = 0.30577475769297635
PINNED_STD = 0.32407833381072637


def test_digits_upsampling_is_torch_bilinear():
    images, _ = digits_mod.read_digits()
    a = digits_mod.bilinear_matrix(8, 32)
    ours = a @ (images[:5].astype(np.float64) / 16) @ a.T
    ref = F.interpolate(
        torch.from_numpy(images[:5] / 16.0)[:, None], size=32, mode="bilinear", align_corners=False
    )
    np.testing.assert_allclose(ours, ref[:, 0].numpy(), atol=1e-12)
    np.testing.assert_allclose(a.sum(1), 1.0)


def test_digits_items_and_loaders():
    train_loader, test_loader = fd.loaders("digits", batch_size=500, seed=1)
    batches = list(train_loader)
    assert [len(b[1]) for b in batches] == [500, 500, 438]
    x, y = batches[0]
    assert x.shape == (500, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert sorted(torch.cat([b[1] for b in batches]).tolist()) == sorted(train_loader.dataset.labels.tolist())
    # Reproducible given the seed; a different seed shuffles and augments differently.
    again = next(iter(fd.loaders("digits", batch_size=500, seed=1)[0]))
    assert torch.equal(x, again[0]) and torch.equal(y, again[1])
    other = next(iter(fd.loaders("digits", batch_size=500, seed=2)[0]))
    assert not torch.equal(y, other[1])
    # Test loader: file order, no augmentation, the same as indexing the dataset.
    tx, ty = next(iter(test_loader))
    ds = test_loader.dataset
    assert torch.equal(ty, ds.labels[:359]) and torch.equal(tx[3], ds[3][0]) and ds[3][1] == int(ds.labels[3])
    with pytest.raises(IndexError):
        ds[len(ds)]


# -- augmentations ---------------------------------------------------------------------------------------


def _ramp(n=4, c=3, h=8, w=8):
    return torch.arange(1, n * c * h * w + 1, dtype=torch.float32).reshape(n, c, h, w)


def test_crop_keeps_shape_and_pads_with_zeros():
    x = _ramp()
    out = transforms.crop(x, 2, torch.tensor([[0, 0], [2, 2], [4, 4], [0, 4]]))
    assert out.shape == x.shape
    assert torch.equal(out[0, :, :2], torch.zeros(3, 2, 8)) and torch.equal(
        out[0, :, :, :2], torch.zeros(3, 8, 2)
    )
    assert torch.equal(out[0, :, 2:, 2:], x[0, :, :-2, :-2])  # shifted down-right
    assert torch.equal(out[1], x[1])  # centre offset: unchanged
    assert torch.equal(out[2, :, :6, :6], x[2, :, 2:, 2:]) and (out[2, :, 6:] == 0).all()
    assert torch.equal(out[3, :, 2:, :6], x[3, :, :-2, 2:])
    r = transforms.random_crop(x, 3, generator=torch.Generator().manual_seed(0))
    assert r.shape == x.shape
    with pytest.raises(ValueError, match="offsets must lie in"):
        transforms.crop(x, 1, torch.full((4, 2), 3))


def test_random_crop_zero_padding_on_real_batch():
    ds = fd.load("digits", augment=False)
    raw = transforms.to_float(ds.raw(torch.arange(256)))
    out = transforms.random_crop(raw, 4, generator=torch.Generator().manual_seed(0))
    # Every crop is some shift of its image by -4..4 pixels with zeros shifted in.
    for i in range(0, 256, 37):
        assert any(
            torch.equal(out[i], transforms.crop(raw[i : i + 1], 4, torch.tensor([[dy, dx]]))[0])
            for dy in range(9)
            for dx in range(9)
        )


def test_flip_really_flips():
    x = _ramp(n=3)
    out = transforms.hflip(x, torch.tensor([True, False, True]))
    assert torch.equal(out[0, :, :, 0], x[0, :, :, -1]) and torch.equal(out[0], x[0].flip(-1))
    assert torch.equal(out[1], x[1])
    x = _ramp(n=2000, c=1, h=1, w=2)
    flipped = transforms.random_hflip(x, generator=torch.Generator().manual_seed(0))
    frac = (flipped[:, 0, 0, 0] > flipped[:, 0, 0, 1]).float().mean()
    assert 0.45 < frac < 0.55


def test_augmentation_reproducible_with_seed():
    ds = fd.load("digits")
    ds.seed_augmentation(123)
    a, _ = ds.get_batch(range(64))
    b, _ = ds.get_batch(range(64))
    ds.seed_augmentation(123)
    c, _ = ds.get_batch(range(64))
    assert torch.equal(a, c) and not torch.equal(a, b)
    plain = fd.load("digits", augment=False)
    assert not torch.equal(a, plain.get_batch(range(64))[0])


def test_normalize():
    x = torch.ones(2, 3, 4, 4)
    out = transforms.normalize(x, (0.5, 1.0, 0.0), (0.5, 1.0, 2.0))
    assert out[:, 0].eq(1).all() and out[:, 1].eq(0).all() and out[:, 2].eq(0.5).all()
    with pytest.raises(ValueError, match="one mean and std per channel"):
        transforms.normalize(x, (0.0,), (1.0,))
    assert transforms.to_float(torch.tensor([[[[0, 255]]]], dtype=torch.uint8)).tolist() == [[[[0.0, 1.0]]]]


# -- CIFAR -----------------------------------------------------------------------------------------------

CIFAR = {
    "cifar10": (
        "cifar-10-batches-py",
        "cifar-10-python.tar.gz",
        [f"data_batch_{i}" for i in range(1, 6)],
        ["test_batch"],
        b"labels",
        10,
    ),
    "cifar100": ("cifar-100-python", "cifar-100-python.tar.gz", ["train"], ["test"], b"fine_labels", 100),
}


class _Py2Pickler(pickle._Pickler):
    """Writes what Python 2's cPickle wrote for the real CIFAR files: every str as a byte string
    (SHORT_BINSTRING/BINSTRING, read back as bytes with encoding="bytes") and numpy.core globals."""

    def _save_py2_str(self, obj):
        raw = obj if isinstance(obj, bytes) else obj.encode("latin-1")
        n = len(raw)
        head = pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)
        self.write(head + raw)
        self.memoize(obj)

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[bytes] = _save_py2_str
    dispatch[str] = _save_py2_str


def dumps_py2(obj) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def test_py2_pickles_look_like_the_real_files():
    blob = dumps_py2({b"data": np.zeros((1, 3072), np.uint8), b"labels": [3]})
    assert (
        b"cnumpy.core.multiarray\n_reconstruct\n" in blob and b"U\x04data" in blob and b"_codecs" not in blob
    )


def _cifar_batch(rng, n, key, num_classes):
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = rng.integers(0, num_classes, size=n).tolist()  # a list, as in the real files
    return {b"batch_label": b"synthetic", key: labels, b"data": data, b"filenames": [b"x.png"] * n}


def _write_cifar(root: Path, name: str, n_per_file: int = 3, seed: int = 0):
    folder, archive, train_files, test_files, key, k = CIFAR[name]
    rng = np.random.default_rng(seed)
    (root / folder).mkdir(parents=True)
    batches = {}
    for f in train_files + test_files:
        batches[f] = _cifar_batch(rng, n_per_file, key, k)
        (root / folder / f).write_bytes(dumps_py2(batches[f]))
    (root / folder / "readme.html").write_text("<html></html>")
    with tarfile.open(root / archive, "w:gz") as tar:
        tar.add(root / folder, arcname=folder)
    return batches


def _expected(batches, files):
    data = np.concatenate([batches[f][b"data"] for f in files]).reshape(-1, 3, 32, 32)
    key = b"labels" if b"labels" in batches[files[0]] else b"fine_labels"
    return data, np.concatenate([batches[f][key] for f in files])


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
@pytest.mark.parametrize("where", ["folder", "parent", "archive", "archive_parent"])
def test_cifar_loads_every_layout(tmp_path, name, where):
    folder, archive, train_files, test_files, _, k = CIFAR[name]
    batches = _write_cifar(tmp_path / "data", name)
    root = tmp_path / "data"
    if where == "archive_parent":
        (tmp_path / "only").mkdir()
        (root / archive).rename(tmp_path / "only" / archive)
    data_dir = {
        "folder": root / folder,
        "parent": root,
        "archive": root / archive,
        "archive_parent": tmp_path / "only",
    }[where]
    for train, files in ((True, train_files), (False, test_files)):
        ds = fd.load(name.upper(), data_dir=str(data_dir), train=train)
        images, labels = _expected(batches, files)
        assert ds.name == name and ds.num_classes == k and ds.input_shape == (3, 32, 32)
        assert ds.augment is train and len(ds) == len(labels)
        assert ds.images.dtype == torch.uint8 and torch.equal(ds.images, torch.from_numpy(images))
        assert ds.labels.tolist() == labels.tolist()
    x, y = ds[1]
    mean = torch.tensor(ds.mean).view(3, 1, 1)
    std = torch.tensor(ds.std).view(3, 1, 1)
    torch.testing.assert_close(x, (torch.from_numpy(images[1]).float() / 255 - mean) / std)
    assert y == labels[1]


def test_cifar_standard_normalisation_and_channels(tmp_path):
    batches = _write_cifar(tmp_path / "c10", "cifar10")
    ds = fd.load("cifar10", data_dir=tmp_path / "c10", train=False)
    assert ds.mean == pytest.approx((125.3 / 255, 123.0 / 255, 113.9 / 255))
    assert ds.std == pytest.approx((63.0 / 255, 62.1 / 255, 66.7 / 255))
    # A row's first 1024 bytes are the red plane, row-major; the last 1024 the blue one.
    row = batches["test_batch"][b"data"][0]
    assert torch.equal(ds.images[0, 0, 0], torch.from_numpy(row[:32]))
    assert torch.equal(ds.images[0, 1, 0], torch.from_numpy(row[1024:1056]))
    assert int(ds.images[0, 2, 31, 31]) == int(row[3071])
    _write_cifar(tmp_path / "c100", "cifar100")
    ds = fd.load("cifar100", data_dir=tmp_path / "c100", train=False)
    assert ds.mean == pytest.approx((129.3 / 255, 124.1 / 255, 112.4 / 255))
    assert ds.std == pytest.approx((68.2 / 255, 65.4 / 255, 70.4 / 255))


def test_cifar_loaders_and_numpy2_pickles(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / f).write_bytes(pickle.dumps(_cifar_batch(rng, 4, b"labels", 10), protocol=5))
    train_loader, test_loader = fd.loaders("cifar10", data_dir=tmp_path, batch_size=8)
    assert [len(y) for _, y in train_loader] == [8, 8, 4] and [len(y) for _, y in test_loader] == [4]


# -- Tiny ImageNet ---------------------------------------------------------------------------------------


def _write_tiny(root: Path, wnids=("n02", "n01", "n03"), per_class=2, val_per_class=1):
    Image = pytest.importorskip("PIL.Image")
    base = root / "tiny-imagenet-200"
    (base / "val" / "images").mkdir(parents=True)
    (base / "test" / "images").mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    rng = np.random.default_rng(0)
    notes = []
    for j, w in enumerate(wnids):
        (base / "train" / w / "images").mkdir(parents=True)
        (base / "train" / w / f"{w}_boxes.txt").write_text("")
        for i in range(per_class):
            arr = np.full((64, 64, 3), 40 * j + 10 * i, dtype=np.uint8)
            Image.fromarray(arr).save(base / "train" / w / "images" / f"{w}_{i}.JPEG", quality=100)
        for i in range(val_per_class):
            name = f"val_{j * val_per_class + i}.JPEG"
            mode = "L" if j == 0 else "RGB"  # Tiny ImageNet has a few grey images
            arr = rng.integers(0, 256, size=(64, 64) if mode == "L" else (64, 64, 3), dtype=np.uint8)
            Image.fromarray(arr, mode=mode).save(base / "val" / "images" / name)
            notes.append(f"{name}\t{w}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(notes) + "\n")
    return base


@pytest.mark.parametrize("point_at", ["parent", "folder"])
def test_tinyimagenet(tmp_path, point_at):
    base = _write_tiny(tmp_path)
    data_dir = tmp_path if point_at == "parent" else base
    train = fd.load("tinyimagenet", data_dir=data_dir)
    assert train.num_classes == 3 and train.input_shape == (3, 64, 64) and len(train) == 6
    assert train.wnids == ["n01", "n02", "n03"]  # sorted, as ImageFolder
    assert train.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert train.augment and train.padding == 8
    raw = train.raw(torch.arange(6))
    assert raw.shape == (6, 3, 64, 64) and raw.dtype == torch.uint8
    assert abs(int(raw[2].float().mean()) - 0) <= 2  # class n02 is the first in wnids.txt: colour 0
    x, y = train.get_batch([0, 5])
    assert x.shape == (2, 3, 64, 64) and y.tolist() == [0, 2]
    val = fd.load("tinyimagenet", data_dir=data_dir, train=False)
    assert len(val) == 3 and sorted(val.labels.tolist()) == [0, 1, 2] and not val.augment
    assert val[0][0].shape == (3, 64, 64)  # includes the grey image, converted to RGB
    tl, vl = fd.loaders("tinyimagenet", data_dir=data_dir, batch_size=4)
    assert [len(y) for _, y in tl] == [4, 2] and [len(y) for _, y in vl] == [3]


def test_tinyimagenet_without_pillow(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match="needs Pillow, which is not installed: pip install pillow"):
        fd.load("tinyimagenet", data_dir=tmp_path)


# -- errors ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "tinyimagenet"])
def test_missing_data_dir_says_pass_it(name):
    with pytest.raises(DatasetNotFoundError, match=r"pass data_dir= .* or --data-dir"):
        fd.load(name)


def test_cifar_nothing_there(tmp_path):
    (tmp_path / "other.txt").write_text("")
    (tmp_path / "sub").mkdir()
    with pytest.raises(FileNotFoundError) as info:
        fd.load("cifar10", data_dir=tmp_path)
    assert str(info.value) == (
        f"cifar10: expected cifar-10-batches-py/ with data_batch_1..5 and test_batch, or "
        f"cifar-10-python.tar.gz, under {tmp_path}; found: other.txt, sub/"
    )
    with pytest.raises(
        DatasetNotFoundError, match="cifar-100-python/ with train and test, or cifar-100-python"
    ):
        fd.load("cifar100", data_dir=tmp_path)
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        fd.load("cifar10", data_dir=tmp_path / "nope")


def test_cifar_incomplete_folder_and_archive(tmp_path):
    _write_cifar(tmp_path, "cifar10")
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"cifar-10-batches-py lacks data_batch_3; expected"):
        fd.load("cifar10", data_dir=tmp_path)
    assert len(fd.load("cifar10", data_dir=tmp_path, train=False)) == 3  # the test split is complete
    partial = tmp_path / "partial.tar.gz"
    with tarfile.open(partial, "w:gz") as tar:
        tar.add(tmp_path / "cifar-10-batches-py" / "test_batch", arcname="cifar-10-batches-py/test_batch")
    with pytest.raises(
        DatasetNotFoundError, match=r"partial.tar.gz lacks cifar-10-batches-py/data_batch_1, "
    ):
        fd.load("cifar10", data_dir=partial)
    bad = tmp_path / "cifar-10-python.tar.gz"
    bad.write_bytes(b"not a tar")
    with pytest.raises(DatasetError, match="is not a tar archive"):
        fd.load("cifar10", data_dir=bad)


def _tar_with(path: Path, folder: str, files: dict) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in files.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


@pytest.mark.parametrize(
    "batch, message",
    [
        (
            {b"data": np.zeros((2, 3072), np.uint8)},
            r"lacks key b'labels'; expected b'data' and b'labels', found",
        ),
        ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, r"uint8 array of shape \(n, 3072\)"),
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, r"uint8 array of shape \(n, 3072\)"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, r"must hold 2 integer labels"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, r"labels must lie in 0..9, got 0..10"),
        ([1, 2], r"holds a list, expected a dict"),
    ],
)
def test_cifar_malformed_batch(tmp_path, batch, message):
    blob = dumps_py2(batch)
    archive = _tar_with(tmp_path / "c.tar.gz", "cifar-10-batches-py", {"test_batch": blob})
    with pytest.raises(DatasetError, match=message) as info:
        fd.load("cifar10", data_dir=archive, train=False)
    assert "cifar-10-batches-py/test_batch" in str(info.value)
    assert not isinstance(info.value, FileNotFoundError)


def test_cifar_pickle_cannot_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(
        DatasetError, match=r"not a readable CIFAR batch pickle \(refusing to load builtins.print"
    ):
        fd.load("cifar10", data_dir=folder, train=False)


def test_tinyimagenet_errors(tmp_path):
    (tmp_path / "tiny-imagenet-200.zip").write_bytes(b"")
    with pytest.raises(DatasetNotFoundError) as info:
        fd.load("tinyimagenet", data_dir=tmp_path)
    assert str(info.value) == (
        f"tinyimagenet: expected tiny-imagenet-200/ with wnids.txt, train/<wnid>/images/*.JPEG, "
        f"val/images/*.JPEG and val/val_annotations.txt, under {tmp_path}; found: tiny-imagenet-200.zip "
        f"(tiny-imagenet-200.zip is there: extract it first)"
    )
    base = _write_tiny(tmp_path / "t")
    notes = base / "val" / "val_annotations.txt"
    notes.write_text(notes.read_text() + "val_9.JPEG\tn99\t0\t0\t1\t1\n")
    with pytest.raises(
        DatasetError, match=r"val_annotations.txt line 4 is not '<file>\\t<wnid from wnids.txt>"
    ):
        fd.load("tinyimagenet", data_dir=base, train=False)
    notes.write_text("val_missing.JPEG\tn01\t0\t0\t1\t1\n")
    with pytest.raises(DatasetNotFoundError, match=r"line 1 names .*val_missing.JPEG, missing"):
        fd.load("tinyimagenet", data_dir=base, train=False)
    (base / "wnids.txt").write_text("n01\nn02\nn03\nn04\n")
    with pytest.raises(DatasetNotFoundError, match=r"missing .*train/n04/images \(class n04 of wnids.txt\)"):
        fd.load("tinyimagenet", data_dir=base)
    Image = pytest.importorskip("PIL.Image")
    (base / "wnids.txt").write_text("n01\nn02\nn03\n")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(base / "train" / "n01" / "images" / "n01_0.JPEG")
    ds = fd.load("tinyimagenet", data_dir=base)
    with pytest.raises(DatasetError, match=r"n01_0.JPEG is 32x32, expected 64x64"):
        ds[0]
    (base / "train" / "n01" / "images" / "n01_1.JPEG").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match=r"cannot decode .*n01_1.JPEG"):
        ds[1]


def test_loaders_with_workers_are_reproducible():
    def first_epoch(seed):
        train_loader, _ = fd.loaders("digits", batch_size=256, num_workers=2, seed=seed)
        return [b for _, b in zip(range(2), train_loader)]

    a, b, c = first_epoch(5), first_epoch(5), first_epoch(6)
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b))
    assert not torch.equal(a[0][0], c[0][0])


def test_distributed_loaders(tmp_path):
    import torch.distributed as dist

    with pytest.raises(RuntimeError, match=r"needs torch.distributed.init_process_group\(\)"):
        fd.loaders("digits", distributed=True)
    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        train_loader, test_loader = fd.loaders("digits", batch_size=512, distributed=True, seed=3)
        assert type(train_loader.sampler).__name__ == "DistributedSampler"
        assert sum(len(y) for _, y in train_loader) == 1438 and sum(len(y) for _, y in test_loader) == 359
    finally:
        dist.destroy_process_group()
