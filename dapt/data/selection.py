"""Data-efficient training: sub-select a fraction of the training set before training.

``DATASET.SELECTION_RATIO`` < 1 keeps that fraction of every class (class-balanced, as the official
DAPT release runs DeepCore with ``balance=True``), chosen by ``DATASET.SELECTION_METHOD``:

- ``Uniform`` (alias ``Random``): class-balanced random choice without replacement, numpy's legacy
  generator seeded with ``SEED`` and drawn class by class: the official indices, bit for bit.
- ``GraNd``: the largest norms of the last-layer gradient embedding ``[g, g (x) e]`` (DeepCore), where
  ``g = softmax(logits) - onehot(y)`` is the per-sample gradient of the cross-entropy with respect to
  the logits and ``e`` the normalised image feature (the classifier's input: the logits are
  ``scale * e @ T^T``).
- ``Entropy`` / ``Margin`` / ``LeastConfidence``: the most uncertain samples (lowest negative
  entropy / top-1 minus top-2 probability / top-1 probability). ``Uncertainty`` means ``Margin``,
  the official default.
- ``Submodular``: greedy maximisation of the graph-cut function
  ``f(S) = lam * sum_{i in V, j in S} s_ij - sum_{i, j in S} s_ij`` with ``lam = 1`` and
  ``s = 0.5 + 0.5 cos`` of the gradient embeddings (DeepCore's GraphCut with cosine similarity).
- ``Glister``: greedy selection by the Taylor-approximated gain ``grad_i . mean validation gradient``,
  with the validation gradients recomputed after every pick at the last-layer parameters moved by
  ``-eta * mean gradient of the picked samples`` (``eta = OPTIM_SELECTION.LR``); validation samples
  of the same class (the training samples of the class when the dataset has no validation split).
- ``Cal`` (contextual diversity): for each sample the mean symmetric KL divergence
  ``0.5 KL(p_i||p_j) + 0.5 KL(p_j||p_i)`` between its predicted class distribution and those of its
  10 nearest neighbours (Euclidean, image features, same class); the lowest scores are kept, as in
  the official and DeepCore code.

Scores come from the trainer's model (``dapt.engine.selection.select_training_data``): the prompted model as built (zero
epochs of ``OPTIM_SELECTION``, the default: the zero-shot / initial prompts), or after
``OPTIM_SELECTION.MAX_EPOCH`` epochs of the method's own loss on the full training set. Images are read
with the test transform in batches of ``DATASET.SELECTION_BATCH_SIZE``. The selection is written to
``<OUTPUT_DIR>/selection.json`` (indices into the training list and their image paths) and reused
when the run is resumed with the same settings.

Deviations from the official code (its maths is kept; its defects are not):

1. Only the method's class logits are scored: the official DAPT model appends background columns,
   which break ``view(batch, num_classes)`` in GraNd / Glister / Submodular.
2. Per-sample gradients (sum-reduced cross-entropy, as DeepCore): the official code differentiates
   the *batch-mean* loss, which scales every gradient by 1 / batch size and the last, smaller
   batch differently.
3. Gradient embeddings are never materialised (``N x C x (E + 1)`` floats: tens of GB on Food-101);
   norms, cosine similarities and dot products are computed from ``g`` and ``e`` exactly
   (``<[g1, g1 e1], [g2, g2 e2]> = (g1 . g2)(1 + e1 . e2)``).
4. Glister updates the validation gradients after every pick (GLISTER's greedy step); the
   official balanced branch passes no update, so its gain is static and its stochastic greedy
   (sample size ``round(-ln 0.9 * n / budget)``, i.e. 1 for ratios above ~0.1) is a random choice.
   The greedy here is exact (deterministic), not stochastic.
5. GraphCut's marginal gain includes the ``-s_xx`` term of the set function (omitted upstream: it is
   not constant when a gradient's norm is below ~1e-3, e.g. confidently correct samples).
6. Cal reads each sample's own probabilities: the official balanced branch concatenates them class
   by class but indexes them by dataset index (wrong unless the list is sorted by class). Its kNN
   uses ``0.5 * image feature + 0.5 * label text feature``; within one class the text part is a
   constant shift, so the neighbours equal those of the image features used here. A sample is
   never its own neighbour (upstream assumes it sorts first); a class with ``n`` samples uses
   ``min(10, n - 1)`` neighbours.
7. LeastConfidence ranks by the top-1 *probability* (upstream: the top-1 logit); Entropy is exact
   (upstream adds 1e-6 inside the log).
8. Every class keeps at least one sample (``max(1, round(ratio * n_c))``; upstream can drop a class
   when ``ratio * n_c < 0.5``).
9. No ``checkpoints/<dataset>_<seed>.pth`` is written (upstream always saves there and fails when the
   folder is missing), and the pre-trained selection model does not leak into training: the
   learnable state is restored after scoring, so training starts from the same prompts as without
   selection (upstream keeps training the pre-trained prompts).
"""
from __future__ import annotations

import logging
from typing import Dict, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

UNCERTAINTY = ("Entropy", "Margin", "LeastConfidence")
METHODS = ("Uniform", "Random", "GraNd", "Uncertainty") + UNCERTAINTY + ("Submodular", "Glister", "Cal")
SCORED = tuple(m for m in METHODS if m not in ("Uniform", "Random"))
SELECTION_FILE = "selection.json"
CAL_NEIGHBORS = 10
GRAPHCUT_LAMBDA = 1.0
COS_EPS = 1e-6  # DeepCore's cosine denominator epsilon


def check_method(name: str) -> str:
    """The canonical method name; an unknown one is an error naming the key and the choices."""
    if name not in METHODS:
        raise ValueError(f"DATASET.SELECTION_METHOD '{name}' is not a selection method; "
                         f"use one of {', '.join(METHODS)}")
    return {"Random": "Uniform", "Uncertainty": "Margin"}.get(name, name)


def class_budget(n: int, ratio: float) -> int:
    """Samples kept from a class of ``n``: Python's ``round(ratio * n)`` (upstream), at least 1."""
    return min(n, max(1, round(ratio * n))) if n else 0


def class_indices(labels: np.ndarray):
    """[(class, indices of that class in dataset order)] for every class present, in class order."""
    labels = np.asarray(labels)
    return [(int(c), np.flatnonzero(labels == c)) for c in np.unique(labels)]


# ------------------------------------------------------------------------------------ scores
def loss_gradients(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample gradient of the cross-entropy with respect to the logits: softmax - onehot (float64:
    ``p - 1`` cancels for confident samples)."""
    p = torch.softmax(logits.double(), dim=1)
    return p - F.one_hot(labels.long(), p.shape[1]).to(p.dtype)


def gradient_embedding(logits: torch.Tensor, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """DeepCore's last-layer gradient embedding ``[g, (g outer e).flatten()]`` (N, C + C*E), materialised.
    For small inputs (tests, inspection); the selection methods use the factored forms."""
    g = loss_gradients(logits, labels)
    e = embeddings.double()
    return torch.cat([g, (g[:, :, None] * e[:, None, :]).flatten(1)], dim=1)


def grand_scores(logits: torch.Tensor, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """GraNd: ``|| [g, g e] || = |g| sqrt(1 + |e|^2)``."""
    g = loss_gradients(logits, labels)
    return g.norm(dim=1) * torch.sqrt(1.0 + embeddings.double().pow(2).sum(dim=1))


def uncertainty_scores(logits: torch.Tensor, kind: str) -> torch.Tensor:
    """Lower = more uncertain: negative entropy, top-1 minus top-2 probability, or top-1 probability."""
    p = torch.softmax(logits.double(), dim=1)
    if kind == "Entropy":
        return torch.special.xlogy(p, p).sum(dim=1)
    if kind == "Margin":
        top = p.topk(min(2, p.shape[1]), dim=1).values
        return top[:, 0] - (top[:, 1] if top.shape[1] > 1 else 0.0)
    if kind == "LeastConfidence":
        return p.max(dim=1).values
    raise ValueError(f"unknown uncertainty '{kind}'; use one of {', '.join(UNCERTAINTY)}")


def gradient_cosine_kernel(logits: torch.Tensor, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``0.5 + 0.5 * cos`` between the gradient embeddings of all pairs (N, N), DeepCore's ``cossim_np``."""
    g = loss_gradients(logits, labels).double()
    e = embeddings.double()
    dot = (g @ g.t()) * (1.0 + e @ e.t())
    norm = g.norm(dim=1) * torch.sqrt(1.0 + e.pow(2).sum(dim=1))
    return 0.5 + 0.5 * dot / (norm[:, None] * norm[None, :] + COS_EPS)


def graphcut_greedy(sim: torch.Tensor, budget: int, lam: float = GRAPHCUT_LAMBDA) -> np.ndarray:
    """Greedy maximiser of ``f(S) = lam * sum_{i in V, j in S} s_ij - sum_{i, j in S} s_ij``; the
    picks in order. Marginal gain of x: ``lam * sum_i s_ix - 2 sum_{j in S} s_jx - s_xx``."""
    sim = sim.double()
    n = sim.shape[0]
    gain = lam * sim.sum(dim=0) - sim.diagonal()
    taken = torch.zeros(n, dtype=torch.bool)
    picks = []
    for _ in range(budget):
        x = int(torch.where(taken, torch.full_like(gain, -float("inf")), gain).argmax())
        picks.append(x)
        taken[x] = True
        gain = gain - 2.0 * sim[x]
    return np.asarray(picks, dtype=np.int64)


def glister_greedy(train_logits: torch.Tensor, train_emb: torch.Tensor, train_labels: torch.Tensor,
                   val_logits: torch.Tensor, val_emb: torch.Tensor, val_labels: torch.Tensor, budget: int,
                   eta: float) -> np.ndarray:
    """GLISTER's greedy with the last-layer Taylor approximation; the picks in order.

    The last layer is linear in (b, W): ``logits = b + e W^T``; a sample's gradient is ``(g, g e^T)``.
    gain(i) = ``g_i . mean_v g_v + g_i^T (mean_v g_v e_v^T) e_i``; after a pick, the validation logits
    become ``logits_v - eta * mean_S g - eta * e_v (mean_S g e^T)^T`` and their gradients are recomputed.
    """
    g = loss_gradients(train_logits, train_labels).double()
    e = train_emb.double()
    v_logits, v_e = val_logits.double(), val_emb.double()
    n = g.shape[0]
    taken = torch.zeros(n, dtype=torch.bool)
    picks = []
    sum_b = torch.zeros(g.shape[1], dtype=torch.float64)
    sum_w = torch.zeros(g.shape[1], e.shape[1], dtype=torch.float64)
    cur = v_logits
    for _ in range(budget):
        gv = loss_gradients(cur, val_labels).double()
        mean_b = gv.mean(dim=0)
        mean_w = gv.t() @ v_e / gv.shape[0]  # (C, E)
        gain = g @ mean_b + ((g @ mean_w) * e).sum(dim=1)
        x = int(torch.where(taken, torch.full_like(gain, -float("inf")), gain).argmax())
        picks.append(x)
        taken[x] = True
        sum_b += g[x]
        sum_w += g[x][:, None] * e[x][None, :]
        k = len(picks)
        cur = v_logits - eta * (sum_b / k)[None, :] - eta * v_e @ (sum_w / k).t()
    return np.asarray(picks, dtype=np.int64)


def cal_scores(embeddings: torch.Tensor, logits: torch.Tensor, neighbors: int = CAL_NEIGHBORS) -> torch.Tensor:
    """Mean symmetric KL between each sample's class distribution and its k nearest neighbours'
    (Euclidean distance of ``embeddings``; the sample itself excluded; k = min(neighbors, n - 1))."""
    n = embeddings.shape[0]
    k = min(neighbors, n - 1)
    if k <= 0:
        return torch.zeros(n, dtype=torch.float64)
    x = embeddings.double()
    dist = torch.cdist(x, x)
    dist.fill_diagonal_(float("inf"))
    knn = torch.from_numpy(np.argsort(dist.numpy(), axis=1, kind="stable")[:, :k])
    logp = torch.log_softmax(logits.double(), dim=1)
    p = logp.exp()
    pi, pj = p[:, None, :], p[knn]
    li, lj = logp[:, None, :], logp[knn]
    sym = (0.5 * pi * (li - lj) + 0.5 * pj * (lj - li)).sum(dim=2)
    return sym.mean(dim=1)


# ------------------------------------------------------------------------------------ selection
def _lowest(scores: np.ndarray, budget: int) -> np.ndarray:
    return np.argsort(scores, kind="stable")[:budget]


def _highest(scores: np.ndarray, budget: int) -> np.ndarray:
    return np.argsort(-scores, kind="stable")[:budget]


def select(method: str, labels: Sequence[int], ratio: float, seed: int = 0,
           logits: Optional[torch.Tensor] = None, embeddings: Optional[torch.Tensor] = None,
           val: Optional[Dict[str, torch.Tensor]] = None, eta: float = 0.0035) -> np.ndarray:
    """Indices of the selected training samples, class by class (class order), class-balanced.

    ``logits`` (N, C) and ``embeddings`` (N, E, normalised image features) of the training samples
    are needed by every method but Uniform; Glister also takes ``val`` = {"logits", "embeddings",
    "labels"} of the validation samples (None: the training samples are used)."""
    method = check_method(method)
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"DATASET.SELECTION_RATIO {ratio} must be in (0, 1]")
    labels = np.asarray(labels, dtype=np.int64)
    groups = class_indices(labels)
    if method == "Uniform":
        rng = np.random.RandomState(max(int(seed), 0))
        return np.concatenate([rng.choice(idx, class_budget(len(idx), ratio), replace=False) for _, idx in groups]
                              ).astype(np.int64)
    if logits is None or embeddings is None:
        raise ValueError(f"selection method {method} needs the model's logits and image features")
    logits, embeddings = logits.detach().cpu().float(), embeddings.detach().cpu().float()
    y = torch.from_numpy(labels)
    if val is not None:
        val_labels = np.asarray(val["labels"], dtype=np.int64)
    out = []
    for c, idx in groups:
        b = class_budget(len(idx), ratio)
        ti = torch.from_numpy(idx)
        lg, em, yc = logits[ti], embeddings[ti], y[ti]
        if method == "GraNd":
            local = _highest(grand_scores(lg, em, yc).numpy(), b)
        elif method in UNCERTAINTY:
            local = _lowest(uncertainty_scores(lg, method).numpy(), b)
        elif method == "Cal":
            local = _lowest(cal_scores(em, lg).numpy(), b)
        elif method == "Submodular":
            local = np.sort(graphcut_greedy(gradient_cosine_kernel(lg, em, yc), b))
        else:  # Glister
            vi = (torch.from_numpy(np.flatnonzero(val_labels == c)) if val is not None
                  else torch.empty(0, dtype=torch.long))
            if len(vi):
                vl, ve, vy = val["logits"].cpu()[vi], val["embeddings"].cpu()[vi], torch.from_numpy(val_labels)[vi]
            else:
                vl, ve, vy = lg, em, yc
            local = np.sort(glister_greedy(lg, em, yc, vl, ve, vy, b, eta))
        out.append(idx[local])
    return np.concatenate(out).astype(np.int64)
