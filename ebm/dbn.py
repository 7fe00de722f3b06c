"""Deep belief nets (Hinton, Osindero & Teh 2006): a top-level RBM over the two highest layers, with
directed sigmoid belief layers below it, and untied recognition weights for inference.

Layers v = h_0, h_1, ..., h_L (binary). The generative model is

    p(v, h_1, ..., h_L) = p_top(h_{L-1}, h_L) prod_{l=1}^{L-1} p(h_{l-1} | h_l),
    p(h_{l-1} | h_l) = prod_i sigma((G_l h_l + g_{l-1})_i)^[h_{l-1,i}] (1 - ...)^[1 - h_{l-1,i}],

with p_top an RBM (``top_rbm``: blocks ``x`` = h_{L-1}, ``h`` = h_L, and, for a joint model of
images and labels, a softmax block ``y`` of the label joined to ``h``). Inference uses separate
recognition weights, q(h_l | h_{l-1}) = prod_j Bernoulli(sigma((R_l^T h_{l-1} + r_l)_j)), so

    log p(v) >= E_q[log p_top(h_{L-1}) + sum_l log p(h_{l-1} | h_l) - sum_l log q(h_l | h_{l-1})],

the variational bound that ``estimators.dbn_log_likelihood`` estimates (Salakhutdinov & Murray
2008), log Z of the top RBM from AIS. ``pretrain_dbn`` trains the stack greedily (RBM l on samples
of the layer below; G_l = R_l = W_l); ``up_down`` fine-tunes it as a generative model by the
contrastive wake-sleep (up-down) algorithm.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn
from tqdm.auto import tqdm

from ebm.checkpoint import (
    load_checkpoint,
    load_optimizer_tensors,
    optimizer_tensors,
    save_checkpoint,
)
from ebm.factors import Bias, Dense
from ebm.graph import Graph
from ebm.model import EnergyModel
from ebm.training import History, fit
from ebm.units import Bernoulli, Categorical

__all__ = ["DBN", "load_dbn", "pretrain_dbn", "top_rbm", "up_down"]

_SPEC_KEY = "boltzkit.dbn"


def top_rbm(
    n_below: int, n_top: int, labels: int | None = None, init_scale: float = 0.01
) -> EnergyModel:
    """The top-level RBM of a DBN: E(x, h) = -x^T W h - b.x - c.h over binary blocks ``x``
    (n_below units, visible) and ``h`` (n_top); with ``labels`` = k, a visible softmax block ``y``
    (``Categorical(1, k)``, one-hot) adds -y^T U h - d.y. Weights N(0, init_scale^2)."""
    g = Graph()
    g.add_block("x", Bernoulli(n_below), visible=True)
    if labels is not None:
        g.add_block("y", Categorical(1, labels), visible=True)
    g.add_block("h", Bernoulli(n_top))
    factors = [Dense("x", "h", init_scale=init_scale, name="w"), Bias("x"), Bias("h")]
    if labels is not None:
        factors += [Dense("y", "h", init_scale=init_scale, name="u"), Bias("y")]
    g.add_factor(*factors)
    return EnergyModel(g)


def _check_layers(layers) -> list[int]:
    sizes = list(layers)
    if len(sizes) < 2:
        raise ValueError(f"a DBN needs a visible layer and at least one hidden layer, got {sizes}")
    for i, n in enumerate(sizes):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"layer {i}: size must be an int >= 1, got {n!r}")
    return sizes


class DBN(nn.Module):
    """A deep belief net with binary layers ``layers`` = [n_v, n_1, ..., n_L] (module docstring).

    ``top`` is the top-level RBM (``top_rbm(n_{L-1}, n_L, labels)``); for l = 1 .. L-1,
    ``generative[l-1]`` holds G_l (n_{l-1}, n_l) and g_{l-1} (n_{l-1}), ``recognition[l-1]`` holds
    R_l (n_{l-1}, n_l) and r_l (n_l). With two layers the DBN is its top RBM. Weights start
    N(0, init_scale^2), biases at zero; ``pretrain_dbn`` sets them.
    """

    def __init__(self, layers: Sequence[int], labels: int | None = None, init_scale: float = 0.01):
        super().__init__()
        self.sizes = _check_layers(layers)
        if labels is not None and (
            isinstance(labels, bool) or not isinstance(labels, int) or labels < 2
        ):
            raise ValueError(f"labels must be an int >= 2 (the number of classes), got {labels!r}")
        self.labels = labels
        self.top = top_rbm(self.sizes[-2], self.sizes[-1], labels, init_scale)
        pairs = list(zip(self.sizes[:-2], self.sizes[1:-1], strict=True))  # (n_{l-1}, n_l)
        self.generative = nn.ModuleList(_Layer(a, b, a, init_scale) for a, b in pairs)
        self.recognition = nn.ModuleList(_Layer(a, b, b, init_scale) for a, b in pairs)

    def spec(self) -> dict:
        """The constructor's arguments as JSON-able values (saved with the parameters)."""
        return {"layers": list(self.sizes), "labels": self.labels}

    def save(self, path: str | Path) -> Path:
        """Write the DBN to ``path``: its tensors (safetensors) and ``spec()`` (metadata), no
        pickle; ``load_dbn`` reads it back."""
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(tensors, str(path), metadata={_SPEC_KEY: json.dumps(self.spec())})
        return Path(path)

    @property
    def depth(self) -> int:
        """The number of directed layers, L - 1."""
        return len(self.generative)

    # --- data ----------------------------------------------------------------------------------
    def check_data(self, data) -> Tensor:
        """``data`` as a tensor of the DBN's dtype and device, shape (n, n_v), values in [0, 1]
        (binary images, or probabilities); ValueError otherwise."""
        v = torch.as_tensor(data)
        ref = next(self.parameters())
        if v.dim() != 2 or v.shape[1] != self.sizes[0]:
            raise ValueError(f"data must have shape (n, {self.sizes[0]}), got {tuple(v.shape)}")
        if not bool(((v >= 0) & (v <= 1)).all()):
            raise ValueError("data must be binary (or probabilities in [0, 1])")
        return v.to(device=ref.device, dtype=ref.dtype)

    def label_block(self, labels, n: int) -> Tensor | None:
        """Integer class labels (n,) as the top RBM's label block, one-hot (n, 1, k); None for a
        DBN without labels (which refuses labels, as a DBN with labels refuses none)."""
        if self.labels is None:
            if labels is not None:
                raise ValueError(
                    "labels given, but the DBN has no label block (DBN(..., labels=k))"
                )
            return None
        if labels is None:
            raise ValueError(
                f"this DBN models labels: pass labels (integers 0 .. {self.labels - 1})"
            )
        labels = torch.as_tensor(labels)
        if labels.shape != (n,) or labels.is_floating_point():
            raise ValueError(f"labels must be {n} integers, got shape {tuple(labels.shape)}")
        if int(labels.min()) < 0 or int(labels.max()) >= self.labels:
            raise ValueError(f"labels must lie in 0 .. {self.labels - 1}")
        ref = next(self.parameters())
        return F.one_hot(labels.long(), self.labels).to(ref).reshape(n, 1, self.labels)

    # --- the directed layers -----------------------------------------------------------------
    def recognition_probs(self, level: int, below: Tensor) -> Tensor:
        """q(h_level = 1 | h_{level-1}) = sigma(R^T h_{level-1} + r), level in 1 .. L-1."""
        layer = self.recognition[level - 1]
        return torch.sigmoid(below @ layer.weight + layer.bias)

    def generative_probs(self, level: int, above: Tensor) -> Tensor:
        """p(h_{level-1} = 1 | h_level) = sigma(G h_level + g), level in 1 .. L-1."""
        layer = self.generative[level - 1]
        return torch.sigmoid(above @ layer.weight.T + layer.bias)

    def up(self, v: Tensor, generator: torch.Generator | None = None, sample: bool = True):
        """The bottom-up pass [v, h_1, ..., h_{L-1}] through the recognition weights: each layer a
        draw from q (``sample``) or its probabilities (then each next layer sees probabilities)."""
        out = [v]
        for level in range(1, self.depth + 1):
            p = self.recognition_probs(level, out[-1])
            out.append(_bernoulli(p, generator) if sample else p)
        return out

    def down(self, x: Tensor, generator: torch.Generator | None = None, sample: bool = True):
        """The top-down pass from h_{L-1} = x through the generative weights: [v, h_1, ...,
        h_{L-1}], each layer a draw (``sample``; the visible layer is then still given as its
        probabilities, the usual picture of a sample) or its probabilities."""
        out = [x]
        for level in range(self.depth, 0, -1):
            p = self.generative_probs(level, out[0])
            out.insert(0, _bernoulli(p, generator) if sample and level > 1 else p)
        return out

    def log_q(self, layers: Sequence[Tensor]) -> Tensor:
        """sum_l log q(h_l | h_{l-1}) of the states [v, h_1, ..., h_{L-1}] (one per row)."""
        total = layers[0].new_zeros(layers[0].shape[0])
        for level in range(1, self.depth + 1):
            layer = self.recognition[level - 1]
            logits = layers[level - 1] @ layer.weight + layer.bias
            total = total + _bernoulli_log_prob(logits, layers[level])
        return total

    def log_p_directed(self, layers: Sequence[Tensor]) -> Tensor:
        """sum_l log p(h_{l-1} | h_l) of the states [v, h_1, ..., h_{L-1}] (one per row)."""
        total = layers[0].new_zeros(layers[0].shape[0])
        for level in range(1, self.depth + 1):
            layer = self.generative[level - 1]
            logits = layers[level] @ layer.weight.T + layer.bias
            total = total + _bernoulli_log_prob(logits, layers[level - 1])
        return total

    # --- the top RBM ---------------------------------------------------------------------------
    def top_free_energy(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """F(x) = -log sum_{y, h} exp(-E_top(x, y, h)) (h summed out in closed form, the k labels
        enumerated); with ``y`` given (one-hot rows, shape (batch, k) or (batch, 1, k)), F(x, y)."""
        if self.labels is None:
            if y is not None:
                raise ValueError("this DBN has no label block")
            return self.top.free_energy({"x": x}, sum_out=["h"])
        if y is not None:
            return self.top.free_energy({"x": x, "y": y.reshape(-1, 1, self.labels)}, ["h"])
        return -torch.logsumexp(-self.label_free_energies(x), 1)

    def label_free_energies(self, x: Tensor) -> Tensor:
        """F(x, y) for every label y: shape (batch, k)."""
        if self.labels is None:
            raise ValueError("this DBN has no label block")
        k = self.labels
        eye = torch.eye(k, device=x.device, dtype=x.dtype)
        rows = x.repeat_interleave(k, 0)
        ys = eye.repeat(x.shape[0], 1).reshape(-1, 1, k)
        return self.top.free_energy({"x": rows, "y": ys}, sum_out=["h"]).reshape(-1, k)

    def classify(self, v: Tensor) -> Tensor:
        """The generative classifier of Hinton et al. (2006): h_{L-1} from the deterministic up
        pass (probabilities), then the label whose free energy F(h_{L-1}, y) is lowest. Returns
        log p(y | h_{L-1}) = -F(x, y) - logsumexp_y' (-F(x, y')), shape (batch, k)."""
        with torch.no_grad():
            x = self.up(v, sample=False)[-1]
            return torch.log_softmax(-self.label_free_energies(x), 1)

    def denoise(self, v: Tensor, labels=None, sweeps: int = 10, keep: float = 0.5) -> Tensor:
        """Images cleaned by blending bottom-up evidence with the top RBM's knowledge of digits
        (and, given ``labels``, of the digit it is told). x_up is the deterministic up-pass of
        ``v`` (the probabilities of h_{L-1}); then ``sweeps`` times, in mean field,

            mu_h = sigma(W^T x + U^T y + c),   x = keep x_up + (1 - keep) sigma(W mu_h + b),

        with y the one-hot ``labels`` (integer classes, clamped) or, without them, updated as
        softmax(U mu_h + d); the result is the top-down pass of x in probabilities, p(v = 1 |
        ...) per pixel (n, n_v). ``keep`` in [0, 1] weighs the image against the model: 1 gives
        the plain up-down reconstruction, 0 lets the top RBM forget the image."""
        if not 0.0 <= keep <= 1.0:
            raise ValueError(f"keep must lie in [0, 1], got {keep!r}")
        with torch.no_grad():
            v = self.check_data(v)
            x_up = self.up(v, sample=False)[-1]
            state = {"x": x_up}
            if self.labels is not None:
                given = self.label_block(labels, v.shape[0]) if labels is not None else None
                uniform = torch.full_like(x_up[:, :1], 1 / self.labels).expand(-1, self.labels)
                state["y"] = given if given is not None else uniform.reshape(-1, 1, self.labels)
            elif labels is not None:
                raise ValueError("labels given, but the DBN has no label block")
            top, units = self.top, self.top.units
            for _ in range(sweeps):
                state["h"] = units["h"].mean(top.natural("h", top.with_placeholders(state, ["h"])))
                x_top = units["x"].mean(top.natural("x", state))
                if self.labels is not None and labels is None:
                    state["y"] = units["y"].mean(top.natural("y", state))
                state["x"] = keep * x_up + (1 - keep) * x_top
            if self.depth == 0:
                return state["x"]
            return self.down(state["x"], sample=False)[0]

    def top_gibbs(
        self,
        state: dict[str, Tensor],
        sweeps: int,
        generator: torch.Generator | None = None,
        clamp_labels: bool = False,
    ) -> dict[str, Tensor]:
        """``sweeps`` block Gibbs sweeps of the top RBM from ``state`` (h, then x and y; y kept
        as it is with ``clamp_labels``); returns a new state."""
        state = dict(state)
        visible = ["x"] + (["y"] if self.labels is not None and not clamp_labels else [])
        for _ in range(sweeps):
            state["h"] = _draw(self.top, "h", state, generator)
            for b in visible:
                state[b] = self.top.sample_block(b, state, generator)
        return state

    def sample(
        self,
        num: int,
        sweeps: int = 1000,
        generator: torch.Generator | None = None,
        labels: Tensor | None = None,
    ) -> Tensor:
        """Ancestral samples: ``sweeps`` Gibbs sweeps in the top RBM from random states (with
        ``labels``, integer classes one per sample, the label block clamped to them), then one
        top-down pass; returns the visible probabilities p(v | h_1) of each sample (num, n_v).
        Approximate to the extent that the top-level chain has not mixed."""
        with torch.no_grad():
            ref = next(self.parameters())
            x = (torch.rand(num, self.sizes[-2], generator=generator) < 0.5).to(ref)
            state = {"x": x}
            if self.labels is not None:
                y = (
                    labels
                    if labels is not None
                    else torch.randint(self.labels, (num,), generator=generator)
                )
                state["y"] = F.one_hot(y.long(), self.labels).to(ref).reshape(num, 1, -1)
            state = self.top_gibbs(state, sweeps, generator, clamp_labels=labels is not None)
            if self.depth == 0:  # the DBN is its top RBM: the visible layer's probabilities
                return torch.sigmoid(self.top.natural("x", state))
            return self.down(state["x"], generator)[0]


class _Layer(nn.Module):
    """A directed layer's weight (n_below, n_above) and bias (``bias_size``)."""

    def __init__(self, n_below: int, n_above: int, bias_size: int, init_scale: float):
        super().__init__()
        self.weight = nn.Parameter(init_scale * torch.randn(n_below, n_above))
        self.bias = nn.Parameter(torch.zeros(bias_size))


def load_dbn(path: str | Path) -> DBN:
    """A DBN written by ``DBN.save``. Runs no code from the file; the sizes its metadata claims
    are checked against the shapes of the tensors it holds before anything is built, and a file
    whose tensors do not make exactly that DBN is refused (ValueError)."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            meta = fh.metadata() or {}
            if _SPEC_KEY not in meta:
                raise ValueError(f"{path} is not a DBN written by DBN.save")
            spec = json.loads(meta[_SPEC_KEY])
            shapes = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
            layers, labels = spec.get("layers"), spec.get("labels")
            expected = _expected_shapes(layers, labels)
            if shapes != expected:
                raise ValueError(f"{path}: its tensors do not make the DBN its metadata names")
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except SafetensorError as err:
        raise ValueError(f"{path}: not a readable safetensors file ({err})") from err
    dbn = DBN(layers, labels=labels)
    dtype = next(iter(tensors.values())).dtype
    dbn.to(dtype).load_state_dict(tensors)
    return dbn


def _expected_shapes(layers, labels) -> dict[str, tuple[int, ...]]:
    """The state_dict shapes of DBN(layers, labels), computed without building it."""
    sizes = _check_layers(layers)
    if labels is not None and (isinstance(labels, bool) or not isinstance(labels, int)):
        raise ValueError(f"labels must be an int, got {labels!r}")
    n_x, n_h = sizes[-2], sizes[-1]
    out = {
        "top.factors.w.weight": (n_x, n_h),
        "top.factors.bias_x.bias": (n_x,),
        "top.factors.bias_h.bias": (n_h,),
    }
    if labels is not None:
        out["top.factors.u.weight"] = (labels, n_h)
        out["top.factors.bias_y.bias"] = (1, labels)
    for i, (a, b) in enumerate(zip(sizes[:-2], sizes[1:-1], strict=True)):
        out[f"generative.{i}.weight"] = (a, b)
        out[f"generative.{i}.bias"] = (a,)
        out[f"recognition.{i}.weight"] = (a, b)
        out[f"recognition.{i}.bias"] = (b,)
    return out


def _draw(model: EnergyModel, block: str, state: dict, generator) -> Tensor:
    """A draw of ``block`` given the rest of ``state`` (which need not hold the block yet)."""
    return model.sample_block(block, model.with_placeholders(state, [block]), generator)


def _bernoulli(p: Tensor, generator) -> Tensor:
    return (torch.rand(p.shape, generator=generator, device=p.device, dtype=p.dtype) < p).to(
        p.dtype
    )


def _bernoulli_log_prob(logits: Tensor, x: Tensor) -> Tensor:
    """sum_i log Bernoulli(x_i; sigma(logit_i)), per row."""
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)


def pretrain_dbn(
    dbn: DBN,
    data,
    sampler: Callable[[], object],
    epochs: int | Sequence[int] = 10,
    labels=None,
    generator: torch.Generator | None = None,
    progress: bool = True,
    checkpoint: str | Path | None = None,
    **fit_options,
) -> list[History]:
    """Greedy layer-wise training (Hinton, Osindero & Teh 2006): RBM l (``top_rbm(n_{l-1},
    n_l)``) is trained by ``fit(rbm, x_{l-1}, sampler(), epochs_l, **fit_options)`` with x_0 the
    data and x_l a binary draw of p(h_l | x_{l-1}) under RBM l; its weights W_l become both the
    generative G_l (with RBM l's visible bias as g_{l-1}) and the recognition R_l (with its hidden
    bias as r_l). The top RBM is trained last on x_{L-1} (and the one-hot ``labels``, integers,
    when the DBN has a label block). Each added layer cannot lower the variational bound on
    log p(v) when the new RBM starts from the transposed weights below it (Hinton et al.); this
    pretraining starts each RBM afresh, as is usual. ``epochs``: one count, or one per RBM.
    Returns the histories, bottom first.

    ``checkpoint``: a path prefix; RBM l's ``fit`` checkpoints to ``{checkpoint}.layer{l}`` and
    the top RBM's to ``{checkpoint}.top``, so an interrupted run called again with the same
    prefix resumes in the RBM it stopped in (finished RBMs are replayed from their checkpoints,
    generator state included, at no training cost). An interrupted RBM stops the pretraining."""
    v = dbn.check_data(data)
    per_layer = [epochs] * (dbn.depth + 1) if isinstance(epochs, int) else list(epochs)
    if len(per_layer) != dbn.depth + 1:
        raise ValueError(f"epochs: one count, or {dbn.depth + 1} (one per RBM), got {epochs!r}")
    y = dbn.label_block(labels, v.shape[0])
    histories, x = [], v
    for level in range(1, dbn.depth + 1):
        rbm = top_rbm(dbn.sizes[level - 1], dbn.sizes[level]).to(device=v.device, dtype=v.dtype)
        histories.append(
            fit(
                rbm,
                {"x": x},
                sampler(),
                epochs=per_layer[level - 1],
                generator=generator,
                progress=progress,
                checkpoint=None if checkpoint is None else f"{checkpoint}.layer{level}",
                **fit_options,
            )
        )
        if histories[-1].interrupted:
            return histories
        with torch.no_grad():
            w = rbm.factors["w"].weight
            dbn.generative[level - 1].weight.copy_(w)
            dbn.generative[level - 1].bias.copy_(rbm.factors["bias_x"].bias)
            dbn.recognition[level - 1].weight.copy_(w)
            dbn.recognition[level - 1].bias.copy_(rbm.factors["bias_h"].bias)
            x = _bernoulli(dbn.recognition_probs(level, x), generator)
    top_data = {"x": x} if y is None else {"x": x, "y": y}
    histories.append(
        fit(
            dbn.top,
            top_data,
            sampler(),
            epochs=per_layer[-1],
            generator=generator,
            progress=progress,
            checkpoint=None if checkpoint is None else f"{checkpoint}.top",
            **fit_options,
        )
    )
    return histories


def up_down(
    dbn: DBN,
    data,
    labels=None,
    epochs: int = 10,
    batch_size: int = 100,
    lr: float = 0.001,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    top_sweeps: int = 3,
    generator: torch.Generator | None = None,
    progress: bool = True,
    checkpoint: str | Path | None = None,
) -> History:
    """Fine-tune ``dbn`` as a generative model by the contrastive wake-sleep (up-down) algorithm
    of Hinton, Osindero & Teh (2006). Per mini-batch:

    - wake: a stochastic bottom-up pass through the recognition weights (h_l ~ q(h_l | h_{l-1}));
      the generative weights descend -log p(h_{l-1}^wake | h_l^wake) (the delta rule
      (h_{l-1} - p(h_{l-1} = 1 | h_l)) h_l^T);
    - top: CD-``top_sweeps`` in the top RBM from the wake state of h_{L-1} (and the labels,
      clamped in the positive phase, free in the negative one), on the free energy with h_L
      summed out: the loss F(x^wake, y) - F(x^neg, y^neg);
    - sleep: a stochastic top-down pass from the negative h_{L-1} through the generative
      weights (the visible layer as probabilities); the recognition weights descend
      -log q(h_l^sleep | h_{l-1}^sleep).

    All three updates in one SGD step with ``momentum`` and ``weight_decay`` at rate ``lr``.
    Returns a ``History`` with, per epoch, the mean wake, sleep and top losses (the first two
    are the negative log-probabilities of the predicted layers, bits of the bound's terms).

    ``checkpoint``: a file written (atomically, safetensors) after every epoch: the DBN's
    parameters, the momentum, ``generator``'s state (required then) and the history. Called again
    with the same file, arguments and data, ``up_down`` resumes after the last epoch it holds, so
    an interruption loses at most the epoch under way."""
    v = dbn.check_data(data)
    n = v.shape[0]
    y = dbn.label_block(labels, n)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
    optimizer = torch.optim.SGD(
        dbn.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
    )
    history = History()
    if checkpoint is not None and generator is None:
        raise ValueError("a checkpointed up_down needs a generator (its state is saved)")
    first = 1
    if checkpoint is not None and Path(checkpoint).exists():
        first = _resume(checkpoint, dbn, optimizer, generator, history, n) + 1
    bar = tqdm(range(first, epochs + 1), desc="up-down", unit="epoch", disable=not progress)
    for epoch in bar:
        start, sums, batches = time.perf_counter(), {"wake": 0.0, "sleep": 0.0, "top": 0.0}, 0
        order = torch.randperm(n, generator=generator)
        for lo in range(0, n, batch_size):
            index = order[lo : lo + batch_size]
            terms = _up_down_terms(
                dbn, v[index], None if y is None else y[index], top_sweeps, generator
            )
            optimizer.zero_grad()
            sum(terms.values()).backward()
            optimizer.step()
            for key, value in terms.items():
                sums[key] += float(value.detach())
            batches += 1
        record = {key: value / batches for key, value in sums.items()}
        record.update(epoch=epoch, seconds=time.perf_counter() - start)
        history.records.append(record)
        bar.set_postfix(wake=f"{record['wake']:.2f}", sleep=f"{record['sleep']:.2f}")
        if checkpoint is not None:
            _checkpoint(checkpoint, dbn, optimizer, generator, history, n)
    return history


def _checkpoint(path, dbn: DBN, optimizer, generator, history: History, n: int) -> None:
    tensors = {f"model.{k}": v for k, v in dbn.state_dict().items()}
    tensors.update(optimizer_tensors(optimizer))
    tensors["rng"] = generator.get_state()
    meta = {"kind": "up_down", "spec": dbn.spec(), "examples": n, "records": history.records}
    save_checkpoint(path, tensors, meta)


def _resume(path, dbn: DBN, optimizer, generator, history: History, n: int) -> int:
    """Load an up-down checkpoint into the arguments; returns the last epoch it holds."""
    tensors, meta = load_checkpoint(path)
    if meta.get("kind") != "up_down" or meta.get("spec") != dbn.spec():
        raise ValueError(
            f"{path} is not an up-down checkpoint of this DBN; delete it or pass another"
        )
    if meta.get("examples") != n:
        raise ValueError(f"{path} was made with {meta.get('examples')} examples, not {n}")
    dbn.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    load_optimizer_tensors(optimizer, tensors)
    generator.set_state(tensors["rng"])
    history.records = list(meta["records"])
    return len(history.records)


def _up_down_terms(dbn: DBN, v: Tensor, y: Tensor | None, top_sweeps: int, generator):
    """The three losses of one up-down step on the mini-batch (v, y) (module docstring)."""
    with torch.no_grad():
        wake = dbn.up(v, generator)
        positive = {"x": wake[-1]} if y is None else {"x": wake[-1], "y": y}
        state = dict(positive)
        state["h"] = _draw(dbn.top, "h", state, generator)
        free = ["x"] + (["y"] if y is not None else [])
        if top_sweeps:  # CD-k: the visible blocks, then k - 1 sweeps of h and them
            for b in free:
                state[b] = dbn.top.sample_block(b, state, generator)
            state = dbn.top_gibbs(state, top_sweeps - 1, generator)
        negative = {b: state[b] for b in free}
        sleep = dbn.down(state["x"], generator)
    top = dbn.top.free_energy(positive, ["h"]).mean() - dbn.top.free_energy(negative, ["h"]).mean()
    zero = v.new_zeros(())
    wake_loss = -dbn.log_p_directed(wake).mean() if dbn.depth else zero
    sleep_loss = -dbn.log_q(sleep).mean() if dbn.depth else zero
    return {"wake": wake_loss, "sleep": sleep_loss, "top": top}
