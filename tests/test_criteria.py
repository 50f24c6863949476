"""Filter criteria (l1, l2, fpgm, fpgm_he, fpgm_mix) and the criterion registry.

Every reference is float64 NumPy/SciPy written from the definitions in PRUNING.md §2 and the docstrings
of fastprune.criteria.filter_criteria, never by calling fastprune.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from torch import nn

import fastprune.criteria as criteria
from fastprune.criteria import Criterion, filter_norms, get, names, register
from fastprune.criteria import registry as registry_module
from fastprune.pruning import SoftFilterPruner

BACKENDS = ["cpu", "torch"] + (["triton"] if importlib.util.find_spec("triton") is not None else [])
RTOL = 1e-5


# ---- float64 references -------------------------------------------------------------------------------


def rows64(w: torch.Tensor) -> np.ndarray:
    return w.detach().reshape(w.shape[0], -1).double().numpy()


def ref_distance_matrix(x: np.ndarray, metric: str) -> np.ndarray:
    scipy_metric = {"l2": "euclidean", "l1": "cityblock", "cosine": "cosine"}[metric]
    d = cdist(x, x, scipy_metric)
    np.fill_diagonal(d, 0.0)
    return d


def ref_fpgm(x: np.ndarray, metric: str, alive: np.ndarray | None = None) -> np.ndarray:
    """g_j = sum over (alive) j' of d(F_j, F_j'); dead rows -inf."""
    if alive is None:
        return ref_distance_matrix(x, metric).sum(axis=1)
    out = np.full(len(x), -np.inf)
    live = np.flatnonzero(alive)
    out[live] = ref_distance_matrix(x[live], metric).sum(axis=1)
    return out


def ref_order_to_ranks(order: list[int]) -> np.ndarray:
    ranks = np.empty(len(order))
    ranks[np.asarray(order, dtype=int)] = np.arange(len(order))
    return ranks


def ref_get_filter_similar_order(x: np.ndarray, norm_rate: float) -> list[int]:
    """The pruning order of the authors' get_filter_similar: int(N*norm_rate) smallest-l2 filters
    first, then the remaining ("norm survivors") by their Euclidean distance sums among themselves."""
    n = len(x)
    norm = np.sqrt((x**2).sum(axis=1))
    count = min(int(n * norm_rate), n - 1)
    by_norm = np.argsort(norm, kind="stable")
    small, large = list(by_norm[:count]), np.sort(by_norm[count:])
    similar = cdist(x[large], x[large], "euclidean")
    similar_sum = np.abs(similar).sum(axis=0)
    return small + [int(large[i]) for i in np.argsort(similar_sum, kind="stable")]


def ref_fpgm_mix_order(x: np.ndarray, num_pruned: int, norm_share: float, metric: str) -> list[int]:
    n = len(x)
    count = min(round(norm_share * num_pruned), n - 1)
    norm = np.sqrt((x**2).sum(axis=1))
    by_norm = np.argsort(norm, kind="stable")
    first, rest = list(by_norm[:count]), np.sort(by_norm[count:])
    sums = ref_distance_matrix(x[rest], metric).sum(axis=1)
    return first + [int(rest[i]) for i in np.argsort(sums, kind="stable")]


def assert_rel(got: torch.Tensor, expected: np.ndarray, rtol: float = RTOL, what: str = "") -> None:
    g = got.detach().double().numpy()
    assert g.shape == expected.shape, what
    finite = np.isfinite(expected)
    assert np.array_equal(np.isfinite(g), finite) and np.array_equal(g[~finite], expected[~finite]), what
    err = np.abs(g[finite] - expected[finite])
    assert np.all(err <= rtol * np.abs(expected[finite]) + 1e-12), f"{what}: max err {err.max():.3e}"


def ragged_layers(seed: int, tiny: bool = False) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    shapes = (
        [(5, 2, 3, 3), (8, 3, 1, 1), (3, 4, 3, 3)] if tiny else [(7, 3, 3, 3), (16, 7, 3, 3), (4, 5, 1, 1)]
    )
    return [torch.randn(s, generator=gen) for s in shapes]


# ---- norms ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,p", [("l1", 1), ("l2", 2)])
def test_norm_criteria_match_float64(name, p):
    layers = ragged_layers(1)
    scores = get(name)(layers)
    assert len(scores) == len(layers)
    for w, s in zip(layers, scores):
        x = rows64(w)
        expected = np.abs(x).sum(axis=1) if p == 1 else np.sqrt((x**2).sum(axis=1))
        assert_rel(s, expected, what=name)


def test_filter_norms_one_call_matches_per_layer():
    layers = ragged_layers(2)
    for p in (1, 2):
        together = filter_norms(layers, p)
        for w, s in zip(layers, together):
            alone = filter_norms([w], p)[0]
            torch.testing.assert_close(s, alone, rtol=1e-6, atol=0)
            assert_rel(s, np.linalg.norm(rows64(w), ord=p, axis=1), what=f"p={p}")
    with pytest.raises(ValueError, match="p"):
        filter_norms(layers, 3)


# ---- fpgm ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric", ["l2", "l1", "cosine"])
def test_fpgm_matches_cdist(metric, backend):
    layers = ragged_layers(3, tiny=backend == "triton")
    scores = Criterion("fpgm", metric=metric)(layers, backend=backend)
    for w, s in zip(layers, scores):
        assert_rel(s, ref_fpgm(rows64(w), metric), what=f"fpgm {metric} {backend}")


def test_fpgm_default_metric_is_l2():
    layers = ragged_layers(4)
    for w, s in zip(layers, get("fpgm")(layers)):
        assert_rel(s, ref_fpgm(rows64(w), "l2"))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric", ["l2", "l1", "cosine"])
def test_fpgm_mask_aware_excludes_zero_rows(metric, backend):
    layers = ragged_layers(5, tiny=True)
    layers[0][[1, 3]] = 0.0
    layers[1][[0, 2, 7]] = 0.0
    scores = Criterion("fpgm", metric=metric, mask_aware=True)(layers, backend=backend)
    plain = Criterion("fpgm", metric=metric)(layers, backend=backend)
    for w, s, p in zip(layers, scores, plain):
        x = rows64(w)
        alive = np.any(x != 0, axis=1)
        expected = ref_fpgm(x, metric, alive)
        assert_rel(s, expected, what=f"mask-aware {metric} {backend}")
        assert np.all(np.isneginf(s.numpy()[~alive]))
        # the zero rows really did count in the plain scores (else the test proves nothing)
        if not alive.all():
            assert not np.allclose(p.double().numpy()[alive], expected[alive], rtol=1e-3)


# ---- fpgm_he / fpgm_mix (orderings) ---------------------------------------------------------------------


@pytest.mark.parametrize("norm_rate", [0.0, 0.3, 0.5, 1.0])
def test_fpgm_he_order_matches_authors_get_filter_similar(norm_rate):
    layers = ragged_layers(6)
    ranks = Criterion("fpgm_he", norm_rate=norm_rate)(layers)
    for w, r in zip(layers, ranks):
        expected = ref_order_to_ranks(ref_get_filter_similar_order(rows64(w), norm_rate))
        np.testing.assert_array_equal(r.numpy(), expected)
    if norm_rate == 0.0:  # no norm prefilter: the same order as plain Euclidean fpgm
        for w, r in zip(layers, ranks):
            np.testing.assert_array_equal(
                r.numpy(), ref_order_to_ranks(np.argsort(ref_fpgm(rows64(w), "l2")))
            )


def test_fpgm_he_norm_prefilter_changes_the_order():
    # A filter that is small (by l2) but far from the others: fpgm ranks it last, fpgm_he(norm_rate>0) first.
    gen = torch.Generator().manual_seed(7)
    w = torch.randn(6, 4, generator=gen) + 5.0
    w[2] = torch.tensor([-0.5, 0.1, 0.2, -0.1])
    ranks = Criterion("fpgm_he", norm_rate=0.2)([w])[0]
    assert ranks[2].item() == 0.0
    assert get("fpgm")([w])[0].argmax().item() == 2


@pytest.mark.parametrize("norm_share,num_pruned", [(0.25, 4), (0.5, 3), (0.0, 5), (1.0, 3), (0.4, 7)])
@pytest.mark.parametrize("metric", ["l2", "l1", "cosine"])
def test_fpgm_mix_order(norm_share, num_pruned, metric):
    layers = ragged_layers(8)
    counts = [min(num_pruned, w.shape[0] - 1) for w in layers]
    ranks = Criterion("fpgm_mix", norm_share=norm_share, metric=metric)(layers, num_pruned=counts)
    for w, r, n in zip(layers, ranks, counts):
        expected = ref_order_to_ranks(ref_fpgm_mix_order(rows64(w), n, norm_share, metric))
        np.testing.assert_array_equal(r.numpy(), expected)


def test_orderings_break_ties_by_index():
    w = torch.ones(5, 3)  # every norm and every distance sum ties
    for crit in (Criterion("fpgm_he", norm_rate=0.4), Criterion("fpgm_mix", norm_share=0.5)):
        r = crit([w], num_pruned=[2])[0]
        np.testing.assert_array_equal(r.numpy(), np.arange(5.0))


# ---- registry ------------------------------------------------------------------------------------------


@pytest.fixture
def scratch_registry(monkeypatch):
    """A copy of the registry, so user registrations don't leak into other tests."""
    monkeypatch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))
    return registry_module._REGISTRY


def test_names_and_get_with_options():
    assert {"l1", "l2", "fpgm", "fpgm_he", "fpgm_mix"} <= set(names())
    assert names() == sorted(names())
    c = get("fpgm", metric="cosine")
    assert isinstance(c, Criterion) and c.name == "fpgm" and c.options == {"metric": "cosine"}
    assert get(c) is c
    with pytest.raises(ValueError, match="options"):
        get(c, metric="l1")
    with pytest.raises(TypeError, match="criterion"):
        get(3)
    layers = ragged_layers(9)
    for w, s in zip(layers, c(layers)):
        assert_rel(s, ref_fpgm(rows64(w), "cosine"))


def test_label():
    assert get("l2").label == "l2"
    assert get("fpgm", metric="l1").label == "fpgm(metric=l1)"
    assert get("fpgm_mix", norm_share=0.5, metric="cosine").label == "fpgm_mix(metric=cosine, norm_share=0.5)"
    assert "fpgm(metric=l1)" in repr(get("fpgm", metric="l1"))


def test_register_user_criterion_and_use_in_pruner(scratch_registry):
    calls = []

    @register("neg_l1_test")
    def neg_l1(weights, *, num_pruned, masks, scale=1.0):
        calls.append(list(num_pruned))
        return [-scale * w.abs().flatten(1).sum(1) for w in weights]

    assert "neg_l1_test" in names()
    c = get("neg_l1_test", scale=2.0)
    w = torch.randn(6, 2, 3, 3, generator=torch.Generator().manual_seed(10))
    assert_rel(c([w])[0], -2.0 * np.abs(rows64(w)).sum(axis=1))
    assert c.label == "neg_l1_test(scale=2.0)"

    torch.manual_seed(11)
    model = nn.Sequential(nn.Conv2d(2, 6, 3), nn.ReLU(), nn.Conv2d(6, 4, 3))
    before = [rows64(m.weight).copy() for m in (model[0], model[2])]
    pruner = SoftFilterPruner(model, criterion="neg_l1_test", rate=0.5)
    pruner.step()
    assert calls[-1] == [3, 2]
    for conv, x in zip((model[0], model[2]), before):
        expected_pruned = set(np.argsort(-np.abs(x).sum(axis=1), kind="stable")[: conv.out_channels // 2])
        pruned = set(np.flatnonzero(~pruner.masks["0" if conv is model[0] else "2"].numpy()))
        assert pruned == expected_pruned  # the largest-l1 filters, by the user's (negated) score


def test_register_duplicate_and_bad_name(scratch_registry):
    with pytest.raises(ValueError, match="already registered"):
        register("l1")(lambda weights, *, num_pruned, masks: weights)
    with pytest.raises(ValueError, match="name"):
        register("")

    def replacement(weights, *, num_pruned, masks):
        return [torch.zeros(w.shape[0]) for w in weights]

    register("l1", overwrite=True)(replacement)
    assert torch.equal(get("l1")([torch.randn(3, 2)])[0], torch.zeros(3))


def test_unknown_criterion_names_the_valid_ones():
    with pytest.raises(ValueError, match="criterion") as info:
        get("l3")
    for valid in ("l1", "l2", "fpgm", "fpgm_he", "fpgm_mix"):
        assert repr(valid) in str(info.value)
    assert "'l3'" in str(info.value)


def test_bad_options():
    w = [torch.randn(4, 3)]
    with pytest.raises(ValueError, match="metric"):
        Criterion("fpgm", metric="hamming")(w)
    with pytest.raises(ValueError, match="metric"):
        Criterion("fpgm_mix", metric="euclid")(w, num_pruned=[1])
    for bad in (-0.1, 1.5, "half", None):
        with pytest.raises(ValueError, match="norm_share"):
            Criterion("fpgm_mix", norm_share=bad)(w, num_pruned=[1])
        with pytest.raises(ValueError, match="norm_rate"):
            Criterion("fpgm_he", norm_rate=bad)(w)


def test_wrong_shapes_from_a_criterion_are_runtime_errors():
    w = [torch.randn(4, 3), torch.randn(5, 3)]

    def transposed(weights, *, num_pruned, masks):
        return [torch.zeros(1, x.shape[0]) for x in weights]

    def too_few(weights, *, num_pruned, masks):
        return [torch.zeros(weights[0].shape[0])]

    with pytest.raises(RuntimeError, match="transposed"):
        Criterion(transposed)(w)

    def as_numpy(weights, *, num_pruned, masks):
        return [np.zeros(x.shape[0]) for x in weights]

    with pytest.raises(RuntimeError, match="too_few"):
        Criterion(too_few)(w)
    with pytest.raises(RuntimeError, match="as_numpy"):
        Criterion(as_numpy)(w)


def test_call_argument_errors():
    c = get("l2")
    with pytest.raises(ValueError, match="weights"):
        c([])
    with pytest.raises(ValueError, match="num_pruned"):
        c([torch.randn(3, 2), torch.randn(3, 2)], num_pruned=[1])


def test_backend_reaches_fpgm_and_bound_backend_wins():
    c = Criterion("fpgm", backend="torch")
    assert not c._takes_backend
    layers = ragged_layers(12, tiny=True)
    for w, s in zip(layers, c(layers, backend="no-such-backend")):
        assert_rel(s, ref_fpgm(rows64(w), "l2"))
    with pytest.raises(ValueError, match="backend"):
        Criterion("fpgm")(layers, backend="no-such-backend")


def test_public_exports():
    assert criteria.DISTANCE_METRICS == ("l2", "l1", "cosine")
