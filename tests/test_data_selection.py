"""Data selection (data-efficient setting): each method on generated logits / features against an
independent numpy re-derivation of its scores, and the class-balanced budgets."""
import numpy as np
import pytest
import torch

from dapt.data import selection as sel

C, E = 4, 5


def make_data(n_per_class=(9, 7, 6, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(n_per_class)])
    perm = np.random.RandomState(seed).permutation(len(labels))  # classes interleaved, not sorted
    labels = labels[perm]
    logits = torch.randn(len(labels), C, generator=g) * 3.0
    emb = torch.nn.functional.normalize(torch.randn(len(labels), E, generator=g), dim=1)
    return labels, logits, emb


def np_softmax(x):
    x = np.asarray(x, dtype=np.float64)
    z = np.exp(x - x.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def np_grad_embedding(logits, emb, labels):
    """[g, g (x) e] with the gradient of the cross-entropy obtained by autograd, per sample."""
    rows = []
    for lg, e, y in zip(logits, emb, labels):
        x = lg.clone().double().requires_grad_(True)
        torch.nn.functional.cross_entropy(x[None], torch.tensor([int(y)])).backward()
        gg = x.grad.numpy()
        rows.append(np.concatenate([gg, np.outer(gg, e.double().numpy()).ravel()]))
    return np.stack(rows)


def budgets(labels, ratio):
    return {int(c): max(1, round(ratio * int((labels == c).sum()))) for c in np.unique(labels)}


def check_balanced(idx, labels, ratio):
    assert len(set(idx.tolist())) == len(idx)
    got = {int(c): int((labels[idx] == c).sum()) for c in np.unique(labels)}
    assert got == budgets(labels, ratio)


@pytest.mark.parametrize("ratio", [0.05, 0.3, 0.5, 1.0])
def test_uniform_is_the_official_class_by_class_draw(ratio):
    labels, _, _ = make_data()
    idx = sel.select("Uniform", labels, ratio, seed=3)
    np.random.seed(3)  # the official Uniform: global numpy seed, np.random.choice per class in class order
    ref = np.concatenate([np.random.choice(np.flatnonzero(labels == c), max(1, round(ratio * (labels == c).sum())),
                                           replace=False) for c in range(C)])
    assert idx.tolist() == ref.tolist()
    check_balanced(idx, labels, ratio)
    assert sel.select("Random", labels, ratio, seed=3).tolist() == idx.tolist()
    assert sel.select("Uniform", labels, ratio, seed=4).tolist() != idx.tolist() or ratio == 1.0


def test_grand_scores_equal_the_norm_of_the_materialised_gradient_embedding():
    labels, logits, emb = make_data()
    ref = np.linalg.norm(np_grad_embedding(logits, emb, labels), axis=1)
    got = sel.grand_scores(logits, emb, torch.from_numpy(labels)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    np.testing.assert_allclose(sel.gradient_embedding(logits, emb, torch.from_numpy(labels)).numpy(),
                               np_grad_embedding(logits, emb, labels), atol=1e-6)
    idx = sel.select("GraNd", labels, 0.5, logits=logits, embeddings=emb)
    check_balanced(idx, labels, 0.5)
    for c in range(C):
        members = np.flatnonzero(labels == c)
        k = budgets(labels, 0.5)[c]
        assert set(idx[labels[idx] == c]) == set(members[np.argsort(-ref[members])[:k]])


@pytest.mark.parametrize("kind", ["Entropy", "Margin", "LeastConfidence"])
def test_uncertainty_keeps_the_most_uncertain(kind):
    labels, logits, emb = make_data()
    p = np_softmax(logits.numpy())
    ref = {"Entropy": np.array([sum(q * np.log(q) for q in row) for row in p]),
           "Margin": np.array([sorted(row)[-1] - sorted(row)[-2] for row in p]),
           "LeastConfidence": p.max(axis=1)}[kind]
    np.testing.assert_allclose(sel.uncertainty_scores(logits, kind).numpy(), ref, rtol=1e-5, atol=1e-7)
    idx = sel.select(kind, labels, 0.5, logits=logits, embeddings=emb)
    check_balanced(idx, labels, 0.5)
    for c in range(C):
        members = np.flatnonzero(labels == c)
        assert set(idx[labels[idx] == c]) == set(members[np.argsort(ref[members])[:budgets(labels, 0.5)[c]]])
    if kind == "Margin":
        assert sel.select("Uncertainty", labels, 0.5, logits=logits, embeddings=emb).tolist() == idx.tolist()


def test_graphcut_greedy_equals_greedy_on_the_set_function():
    labels, logits, emb = make_data()
    G = np_grad_embedding(logits, emb, labels)
    idx = sel.select("Submodular", labels, 0.5, logits=logits, embeddings=emb)
    check_balanced(idx, labels, 0.5)
    for c in range(C):
        members = np.flatnonzero(labels == c)
        X = G[members]
        nrm = np.linalg.norm(X, axis=1)
        S = 0.5 + 0.5 * (X @ X.T) / (np.outer(nrm, nrm) + 1e-6)
        np.testing.assert_allclose(
            sel.gradient_cosine_kernel(logits[members], emb[members], torch.from_numpy(labels[members])).numpy(),
            S, atol=1e-6)

        def f(A):
            A = list(A)
            return S[:, A].sum() - S[np.ix_(A, A)].sum()

        chosen = []
        for _ in range(budgets(labels, 0.5)[c]):
            rest = [x for x in range(len(members)) if x not in chosen]
            chosen.append(max(rest, key=lambda x: (f(chosen + [x]) - f(chosen), -x)))
        assert sorted(idx[labels[idx] == c].tolist()) == sorted(members[chosen].tolist())


def test_glister_greedy_equals_a_loop_with_explicit_parameter_steps():
    labels, logits, emb = make_data()
    vlabels, vlogits, vemb = make_data((3, 2, 0, 4), seed=1)  # class 2 has no validation sample
    eta = 0.7
    idx = sel.select("Glister", labels, 0.4, logits=logits, embeddings=emb,
                     val={"logits": vlogits, "embeddings": vemb, "labels": vlabels}, eta=eta)
    check_balanced(idx, labels, 0.4)
    for c in range(C):
        members = np.flatnonzero(labels == c)
        T = np_grad_embedding(logits[members], emb[members], labels[members])
        if (vlabels == c).any():
            vm = np.flatnonzero(vlabels == c)
            vl, ve, vy = vlogits[vm].double().numpy(), vemb[vm].double().numpy(), vlabels[vm]
        else:
            vl, ve, vy = logits[members].double().numpy(), emb[members].double().numpy(), labels[members]
        chosen, cur = [], vl
        for _ in range(budgets(labels, 0.4)[c]):
            V = np_grad_embedding(torch.from_numpy(cur), torch.from_numpy(ve), vy).mean(axis=0)
            gains = T @ V
            gains[chosen] = -np.inf
            chosen.append(int(np.argmax(gains)))
            step = T[chosen].mean(axis=0)  # the mean gradient of the chosen samples: (db, dW)
            db, dW = step[:C], step[C:].reshape(C, E)
            cur = vl + (-eta * db)[None, :] + ve @ (-eta * dW).T  # logits of the moved linear layer
        assert sorted(idx[labels[idx] == c].tolist()) == sorted(members[chosen].tolist())


def test_cal_scores_equal_a_loop_over_neighbours():
    labels, logits, emb = make_data((12, 3, 1, 8))
    idx = sel.select("Cal", labels, 0.5, logits=logits, embeddings=emb)
    check_balanced(idx, labels, 0.5)
    p = np_softmax(logits.numpy())
    X = emb.double().numpy()
    for c in range(C):
        members = np.flatnonzero(labels == c)
        k = min(10, len(members) - 1)
        ref = []
        for i in members:
            others = [j for j in members if j != i]
            d = [np.sqrt(((X[i] - X[j]) ** 2).sum()) for j in others]
            nn = [others[t] for t in np.argsort(d, kind="stable")[:k]]
            ref.append(np.mean([0.5 * (p[i] * np.log(p[i] / p[j])).sum() + 0.5 * (p[j] * np.log(p[j] / p[i])).sum()
                                for j in nn]) if k > 0 else 0.0)
        ref = np.array(ref)
        got = sel.cal_scores(emb[members], logits[members]).numpy()
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-12)
        keep = members[np.argsort(ref, kind="stable")[:budgets(labels, 0.5)[c]]]
        assert set(idx[labels[idx] == c]) == set(keep)


def test_bad_method_and_ratio_are_one_line_errors():
    labels, logits, emb = make_data()
    with pytest.raises(ValueError, match="DATASET.SELECTION_METHOD 'Herding'.*Uniform"):
        sel.select("Herding", labels, 0.5)
    with pytest.raises(ValueError, match=r"DATASET.SELECTION_RATIO 1.5 must be in \(0, 1\]"):
        sel.select("Uniform", labels, 1.5)
    with pytest.raises(ValueError, match="needs the model's logits"):
        sel.select("GraNd", labels, 0.5)
