"""Zero-cost accuracy proxies: score an untrained network from one minibatch, no training.

Each proxy is a function ``(module, batch) -> float`` (``batch`` = (x, y) torch tensors),
higher = more accurate after training, computed as in the papers' code:

- ``synflow`` (Tanaka et al. 2020, as a NAS score by Abdelfattah et al. 2021): a copy of the
  network in float64 with every BN made the identity and every weight replaced by its absolute
  value, one all-ones input image, ``sum(output)`` backpropagated; the score is
  Σ |w · ∂R/∂w| over the Conv and Linear weights, returned as its natural log (monotone).
- ``jacob_cov`` (Mellor et al. 2020, arXiv 2006.04647v1, as scored by Abdelfattah et al.):
  the Jacobian of ``sum(logits)`` w.r.t. each input image, their correlation matrix Σ_J and
  its eigenvalues λ; score −Σ (log(λ + k) + 1 / (λ + k)), k = 1e-5.
- ``naswot`` (Mellor et al., ICML 2021): each image's binary code of which ReLU inputs are
  positive, over every ReLU; the kernel K_H[i, j] = N_A − Hamming(c_i, c_j); score log|K_H|.
- ``grad_norm`` (Abdelfattah et al.): Σ over Conv/Linear layers of ‖∂L/∂W‖₂, L the
  cross-entropy of the batch.
- ``snip`` (Lee et al. 2019, as a NAS score by Abdelfattah et al.): Σ |w · ∂L/∂w| over the
  Conv and Linear weights.
- ``params``: the number of trainable parameters (the baseline every proxy has to beat).

Every network is scored at its initialization, in train mode (BN normalizes with the batch's
statistics), as the papers' code does. A network with no signal (NB201's all-``none`` cell:
the output does not depend on the input) scores ``-inf``; :class:`ProxyAccuracy` reports it as
:data:`WORST`.

``vote`` (Abdelfattah et al. 2021): the majority vote of synflow, jacob_cov and snip on every
pair of networks (``a`` beats ``b`` when at least two of the three rank ``a`` above ``b``).
The paper reports its 0.82 on NB201 CIFAR-10 as the share of pairs of the 15,625 cells whose
vote agrees with the trained accuracies (``notebooks/nasbench201_correlations.ipynb`` of
github.com/SamsungLabs/zero-cost-nas), not as a Spearman ρ. As an estimator the vote needs a
score per network: :class:`ProxyAccuracy` scores a network by the share of a fixed reference
sample of the space it beats by majority vote (a Copeland score), so a score does not depend
on which other networks came in the same batch (a TPE search asks one at a time).

A proxy's value is a rank score in its own units, not a top-1 %: compare it only with the
same proxy's values on networks of the same space, dataset and settings.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from farm.errors import InputError

__all__ = ["PROXIES", "VOTE_OF", "WORST", "FAST_OPTIONS", "ProxyAccuracy", "synflow", "jacob_cov", "naswot",
           "grad_norm", "snip", "params", "compute", "vote_scores", "pairwise_vote_agreement", "proxy_batch",
           "space_builder"]

# The score a network with no signal gets from ProxyAccuracy (a -inf proxy value).
WORST = -1e30
# The proxies the vote combines (Abdelfattah et al. 2021).
VOTE_OF = ("synflow", "jacob_cov", "snip")
# Network options that keep a proxy fast where the space has a cheaper stand-in: NB201 with
# C=8 and one cell per stage instead of 16 and 5, about 6x cheaper. bench/zero_cost.py, 200
# cells, ρ against NB201's CIFAR-10 table, C=8/N=1 vs C=16/N=5: synflow 0.79 vs 0.81,
# jacob_cov 0.81 vs 0.78, naswot 0.86 vs 0.85, vote 0.83 vs 0.86; grad_norm and snip need the
# depth (0.25 and 0.27 vs 0.59 and 0.60): pass options={"C": "16", "N": "5"} for them.
FAST_OPTIONS: dict[str, dict[str, str]] = {"nb201": {"C": "8", "N": "1"}}
_JACOB_K = 1e-5


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise InputError("zero-cost proxies need torch (pip install 'hwfarm[torch]')") from None
    return torch


def _weighted_layers(module: Any) -> list[Any]:
    """The Conv2d and Linear layers (the layers the pruning-at-init scores are summed over)."""
    from torch import nn

    return [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


# ---------------------------------------------------------------------------------- the proxies


def synflow(module: Any, batch: tuple[Any, Any]) -> float:
    """log Σ |w · ∂R/∂w| with R = sum of the outputs of |weights| in float64 on one all-ones
    image, BN disabled (the module itself is left untouched)."""
    torch = _torch()
    import copy

    from torch import nn

    net = copy.deepcopy(module)
    for child in list(net.modules()):
        for cname, c in list(child.named_children()):
            if isinstance(c, nn.modules.batchnorm._BatchNorm):
                setattr(child, cname, nn.Identity())
    net = net.double().train()
    with torch.no_grad():
        for p in net.state_dict().values():
            if p.is_floating_point():
                p.abs_()
    x = torch.ones((1, *batch[0].shape[1:]), dtype=torch.float64)
    net.zero_grad(set_to_none=True)
    torch.sum(net(x)).backward()
    total = 0.0
    with torch.no_grad():
        for m in _weighted_layers(net):
            if m.weight.grad is not None:
                total += float((m.weight * m.weight.grad).abs().sum())
    return math.log(total) if total > 0 and math.isfinite(total) else -math.inf


def _jacob_score(jacob: np.ndarray) -> float:
    if not np.all(np.isfinite(jacob)) or np.any(jacob.std(axis=1) == 0):
        return -math.inf  # an image whose Jacobian is constant: no correlation to speak of
    corr = np.corrcoef(jacob)
    v = np.clip(np.linalg.eigvalsh(corr), 0.0, None)
    return float(-np.sum(np.log(v + _JACOB_K) + 1.0 / (v + _JACOB_K)))


def _naswot_hooks(module: Any, n: int) -> tuple[np.ndarray, list[Any]]:
    from torch import nn

    kernel = np.zeros((n, n), dtype=np.float64)

    def hook(_m: Any, inp: Any, _out: Any) -> None:
        x = inp[0] if isinstance(inp, tuple) else inp
        c = (x.detach().reshape(x.shape[0], -1) > 0).float()
        kernel[...] += (c @ c.T + (1.0 - c) @ (1.0 - c).T).double().numpy()

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, nn.ReLU)]
    return kernel, handles


def _naswot_score(kernel: np.ndarray) -> float:
    sign, logdet = np.linalg.slogdet(kernel)
    return float(logdet) if sign > 0 and np.isfinite(logdet) else -math.inf


def jacob_cov(module: Any, batch: tuple[Any, Any]) -> float:
    """−Σ (log(λ+k) + 1/(λ+k)) over the eigenvalues λ of the input Jacobians' correlation matrix."""
    return compute(module, batch, ("jacob_cov",))["jacob_cov"]


def naswot(module: Any, batch: tuple[Any, Any]) -> float:
    """log|K_H| of the batch's binary ReLU activation codes (Mellor et al. 2021)."""
    return compute(module, batch, ("naswot",))["naswot"]


def grad_norm(module: Any, batch: tuple[Any, Any]) -> float:
    """Σ over Conv/Linear layers of the L2 norm of the cross-entropy gradient of the weights."""
    return compute(module, batch, ("grad_norm",))["grad_norm"]


def snip(module: Any, batch: tuple[Any, Any]) -> float:
    """Σ |w · ∂L/∂w| over the Conv/Linear weights, L the batch's cross-entropy."""
    return compute(module, batch, ("snip",))["snip"]


def params(module: Any, batch: tuple[Any, Any] | None = None) -> float:
    """The number of trainable parameters."""
    return float(sum(p.numel() for p in module.parameters() if p.requires_grad))


PROXIES: dict[str, Callable[[Any, tuple[Any, Any]], float]] = {
    "synflow": synflow, "jacob_cov": jacob_cov, "naswot": naswot, "grad_norm": grad_norm, "snip": snip,
    "params": params,
}


def compute(module: Any, batch: tuple[Any, Any], names: Sequence[str]) -> dict[str, float]:
    """Several proxies of one network, sharing passes: jacob_cov and naswot one forward and
    backward to the input, grad_norm and snip one cross-entropy backward. Each proxy sees the
    network as built (gradients are cleared before and after; weights are not changed)."""
    torch = _torch()
    import torch.nn.functional as F

    unknown = [n for n in names if n not in PROXIES]
    if unknown:
        raise InputError(f"unknown proxy {unknown[0]!r}; known: {', '.join(PROXIES)}, vote")
    x, y = batch
    out: dict[str, float] = {}
    module.train()
    if "synflow" in names:
        out["synflow"] = synflow(module, batch)
    if "params" in names:
        out["params"] = params(module)
    if "jacob_cov" in names or "naswot" in names:
        kernel, handles = _naswot_hooks(module, x.shape[0]) if "naswot" in names else (None, [])
        try:
            module.zero_grad(set_to_none=True)
            xj = x.detach().clone().requires_grad_("jacob_cov" in names)
            with torch.set_grad_enabled("jacob_cov" in names):
                logits = module(xj)
                if "jacob_cov" in names:
                    logits.backward(torch.ones_like(logits))
        finally:
            for h in handles:
                h.remove()
        if "jacob_cov" in names:
            jac = xj.grad
            out["jacob_cov"] = -math.inf if jac is None else _jacob_score(jac.reshape(x.shape[0], -1).double().numpy())
        if kernel is not None:
            out["naswot"] = _naswot_score(kernel)
    if "grad_norm" in names or "snip" in names:
        module.zero_grad(set_to_none=True)
        F.cross_entropy(module(x), y).backward()
        layers = [m for m in _weighted_layers(module) if m.weight.grad is not None]
        with torch.no_grad():
            if "grad_norm" in names:
                out["grad_norm"] = float(sum(float(m.weight.grad.norm()) for m in layers))
            if "snip" in names:
                out["snip"] = float(sum(float((m.weight.grad * m.weight).abs().sum()) for m in layers))
    module.zero_grad(set_to_none=True)
    return {n: out[n] for n in names}


# ---------------------------------------------------------------------------------- the vote


def _beats(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) booleans: row network beats column network by majority vote; ``a``
    and ``b`` are (n, k) proxy values (k proxies; -inf loses to anything finite)."""
    wins = (a[:, None, :] > b[None, :, :]).sum(axis=2)
    return np.asarray(wins >= a.shape[1] / 2.0)


def vote_scores(values: ArrayLike, reference: ArrayLike) -> np.ndarray:
    """The vote as a score: for each row of ``values`` ((n, k) proxy values), the share of
    ``reference``'s rows ((r, k)) it beats by majority vote, plus 1e-3 × its mean share of
    reference values beaten per proxy (breaks ties only; the score stays in [0, 1.001])."""
    values = np.asarray(values, dtype=float)
    reference = np.asarray(reference, dtype=float)
    if reference.shape[0] == 0:
        raise ValueError("the vote needs a non-empty reference sample")
    wins = _beats(values, reference).mean(axis=1)
    per_proxy = (values[:, None, :] > reference[None, :, :]).mean(axis=(1, 2))
    return np.asarray(wins + 1e-3 * per_proxy, dtype=float)


def pairwise_vote_agreement(values: ArrayLike, accuracy: ArrayLike, *, chunk: int = 256) -> float:
    """The paper's figure for the vote: over ordered pairs (i, j), i ≠ j, of distinct
    accuracy, the share where "i beats j by majority vote" matches "acc_i > acc_j" (with one
    proxy, k = 1, it is that proxy's pairwise ranking accuracy, (1 + Kendall τ) / 2)."""
    v = np.asarray(values, dtype=float)
    if v.ndim == 1:
        v = v[:, None]
    acc = np.asarray(accuracy, dtype=float)
    right = total = 0
    for s in range(0, len(acc), chunk):
        d = acc[s:s + chunk, None] - acc[None, :]
        valid = d != 0
        agree = _beats(v[s:s + chunk], v) == (d > 0)
        right += int((agree & valid).sum())
        total += int(valid.sum())
    return right / total if total else float("nan")


# ---------------------------------------------------------------------------------- the estimator


def space_builder(space: str) -> Callable[..., Any]:
    """The torch builder of ``space`` (:mod:`nas.modules`); InputError when it has none."""
    from nas.modules import FAMILIES, SPACE_FAMILIES

    if space not in SPACE_FAMILIES:
        have = ", ".join(sorted(SPACE_FAMILIES)) or "none"
        raise InputError(f"space {space} has no torch builder, so no proxy can score it (spaces with one: {have})")
    mod, _, fn = FAMILIES[space].partition(":")
    try:
        return getattr(importlib.import_module(mod), fn)  # type: ignore[no-any-return]
    except (ImportError, AttributeError):
        raise InputError(f"space {space}: its torch builder {FAMILIES[space]} is not available") from None


def proxy_batch(dataset: str, *, batch_size: int, input_size: int, channels: int = 3, seed: int = 0
                ) -> tuple[Any, Any]:
    """The fixed minibatch a proxy scores with: ``batch_size`` images of ``dataset``'s train
    split (a seeded choice), as (x float32 NCHW, y int64) torch tensors."""
    torch = _torch()
    from nas.data import load_dataset

    if batch_size < 2:
        raise InputError(f"proxy batch size {batch_size}: jacob_cov and naswot need at least 2 images")
    d = load_dataset(dataset, "train", input_size=input_size, channels=channels).take(batch_size, seed=seed)
    return torch.from_numpy(np.ascontiguousarray(d.x)), torch.from_numpy(np.ascontiguousarray(d.y))


@dataclass(frozen=True)
class _Settings:
    proxy: str
    dataset: str
    batch_size: int
    input_size: int
    channels: int
    seed: int
    options: tuple[tuple[str, str], ...] | None
    reference: int


class ProxyAccuracy:
    """A zero-cost proxy as a search's :class:`~nas.objectives.AccuracyEstimator`, for any space
    with a torch builder in :mod:`nas.modules`.

    ``estimate`` returns the proxy's score per architecture — a rank score (higher = expected
    more accurate), not a top-1 %. Deterministic: each network is built with weights seeded by
    ``seed`` and scored on one fixed batch (``batch_size`` images of ``dataset``'s train split
    at ``input_size``, grey repeated to ``channels``). ``options`` go to the space's builder;
    None takes :data:`FAST_OPTIONS` for the space (NB201: C=8, N=1). ``vote`` scores against
    ``reference`` architectures sampled from the space with ``seed`` (see the module's notes).
    ``threads``, when set, is torch's thread count while scoring (restored after): networks
    this small often run fastest on one, and a busy machine punishes more. Scores are cached
    per architecture."""

    def __init__(self, proxy: str = "synflow", *, dataset: str = "mnist_5k", batch_size: int = 64,
                 input_size: int = 32, channels: int = 3, seed: int = 0,
                 options: Mapping[str, str] | None = None, reference: int = 32, threads: int | None = None):
        if proxy not in PROXIES and proxy != "vote":
            raise InputError(f"unknown proxy {proxy!r}; known: {', '.join(PROXIES)}, vote")
        if reference < 1:
            raise InputError(f"vote reference sample {reference}: must be at least 1")
        if threads is not None and threads < 1:
            raise InputError(f"threads {threads}: must be at least 1")
        self.settings = _Settings(proxy, dataset, batch_size, input_size, channels, seed,
                                  None if options is None else tuple(sorted(options.items())), reference)
        self.threads = threads
        self._batch: tuple[Any, Any] | None = None
        self._values: dict[tuple[str, str], dict[str, float]] = {}
        self._reference: dict[str, np.ndarray] = {}
        self.n_built = 0

    @property
    def proxy(self) -> str:
        return self.settings.proxy

    def options_for(self, space: str) -> dict[str, str]:
        o = self.settings.options
        return dict(FAST_OPTIONS.get(space, {})) if o is None else dict(o)

    def batch(self) -> tuple[Any, Any]:
        if self._batch is None:
            s = self.settings
            self._batch = proxy_batch(s.dataset, batch_size=s.batch_size, input_size=s.input_size,
                                      channels=s.channels, seed=s.seed)
        return self._batch

    def build(self, space: str, arch: str) -> Any:
        """The seeded, untrained network of ``arch`` the proxies score."""
        torch = _torch()
        builder = space_builder(space)
        s = self.settings
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s.seed)
            module = builder(arch, self.options_for(space), num_classes=10, in_channels=s.channels,
                             input_size=s.input_size)
        self.n_built += 1
        return module

    def values(self, space: str, archs: Sequence[str], names: Sequence[str]) -> np.ndarray:
        """(len(archs), len(names)) raw proxy values (-inf where a network has no signal)."""
        out = np.empty((len(archs), len(names)), dtype=float)
        for i, a in enumerate(archs):
            got = self._values.setdefault((space, a), {})
            todo = [n for n in names if n not in got]
            if todo:
                got.update(compute(self.build(space, a), self.batch(), todo))
            out[i] = [got[n] for n in names]
        return out

    def reference_values(self, space: str) -> np.ndarray:
        """The vote's reference sample's (r, 3) proxy values (sampled and scored once)."""
        if space not in self._reference:
            from farm.zoo.spaces import get_space

            sp = get_space(space)
            rng = np.random.default_rng(self.settings.seed)
            archs = list(dict.fromkeys(sp.sample(rng) for _ in range(self.settings.reference)))
            self._reference[space] = self.values(space, archs, VOTE_OF)
        return self._reference[space]

    def estimate(self, space: str, archs: Sequence[str]) -> np.ndarray:
        torch = _torch()
        before = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        try:
            if self.proxy == "vote":
                return vote_scores(self.values(space, archs, VOTE_OF), self.reference_values(space))
            v = self.values(space, archs, (self.proxy,))[:, 0]
            return np.where(np.isfinite(v), v, WORST)
        finally:
            torch.set_num_threads(before)
