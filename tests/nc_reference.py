"""A straightforward Neural Collapse implementation, written independently of ncood.maths.collapse.

Per-class loops, the full D×D Σ_W, Σ_B's pseudo-inverse from ``eigh`` truncated to the top C−1
eigenpairs, NCC by explicit distances, pairs by double loops. Slow on purpose: the tests compare
the fast code with it, and benchmarks/bench_nc.py times it as the baseline.
"""

from __future__ import annotations

import numpy as np


def reference_nc(train_x, train_y, train_logits, test_x, test_y, test_logits, weight, ood=None):
    c = weight.shape[0]
    x = np.asarray(train_x, np.float64)
    w = np.asarray(weight, np.float64)
    d = x.shape[1]
    means = np.stack([x[train_y == k].mean(axis=0) for k in range(c)])
    mu_g = means.mean(axis=0)
    centred = means - mu_g

    sigma_w = np.zeros((d, d))
    variances = np.zeros(c)
    for k in range(c):
        diff = x[train_y == k] - means[k]
        sigma_w += diff.T @ diff
        variances[k] = np.mean(np.sum(diff**2, axis=1))
    sigma_w /= x.shape[0]
    sigma_b = centred.T @ centred / c

    eigvals, eigvecs = np.linalg.eigh(sigma_b)
    rank = min(c - 1, d)
    top_vals, top_vecs = eigvals[::-1][:rank], eigvecs[:, ::-1][:, :rank]
    pinv = top_vecs @ np.diag(1.0 / top_vals) @ top_vecs.T

    def ncc(features):
        f = np.asarray(features, np.float64)
        dist = np.stack([np.sum((f - means[k]) ** 2, axis=1) for k in range(c)], axis=1)
        return np.argmin(dist, axis=1)

    def cos_pairs(v):
        out = []
        for i in range(c):
            for j in range(i + 1, c):
                out.append(v[i] @ v[j] / (np.linalg.norm(v[i]) * np.linalg.norm(v[j])))
        return np.array(out)

    cdnv_terms = []
    for i in range(c):
        for j in range(i + 1, c):
            gap = np.sum((means[i] - means[j]) ** 2)
            cdnv_terms.append((variances[i] + variances[j]) / (2 * gap))

    norms_m, norms_w = np.linalg.norm(centred, axis=1), np.linalg.norm(w, axis=1)
    cos_m, cos_w = cos_pairs(centred), cos_pairs(w)
    ncc_train, ncc_test = ncc(train_x), ncc(test_x)
    net_train, net_test = np.argmax(train_logits, axis=1), np.argmax(test_logits, axis=1)
    out = {
        "nc1": np.trace(sigma_w @ pinv) / c,
        "nc1_cdnv": np.mean(cdnv_terms),
        "nc1_trace_ratio": np.trace(sigma_w) / np.trace(sigma_b),
        "nc2_equinorm_means": norms_m.std() / norms_m.mean(),
        "nc2_equinorm_weights": norms_w.std() / norms_w.mean(),
        "nc2_equiangular_means": cos_m.std(),
        "nc2_equiangular_weights": cos_w.std(),
        "nc2_maxangle_means": np.mean(np.abs(cos_m + 1 / (c - 1))),
        "nc2_maxangle_weights": np.mean(np.abs(cos_w + 1 / (c - 1))),
        "nc3": np.linalg.norm(w / np.linalg.norm(w) - centred / np.linalg.norm(centred)) ** 2,
        "nc4_train": np.mean(ncc_train != net_train),
        "nc4_test": np.mean(ncc_test != net_test),
        "ncc_agreement_train": np.mean(ncc_train == net_train),
        "ncc_agreement_test": np.mean(ncc_test == net_test),
        "model_acc_train": np.mean(net_train == train_y),
        "model_acc_test": np.mean(net_test == test_y),
        "ncc_acc_train": np.mean(ncc_train == train_y),
        "ncc_acc_test": np.mean(ncc_test == test_y),
    }
    for name, features in (ood or {}).items():
        g = np.asarray(features, np.float64).mean(axis=0)
        cos = [abs(mu @ g) / (np.linalg.norm(mu) * np.linalg.norm(g)) for mu in means]
        out[f"nc5_orthodev/{name}"] = np.mean(cos)
    return out


def reference_from_dump(dump):
    return reference_nc(
        dump.train.features,
        dump.train.labels,
        dump.train.logits,
        dump.test.features,
        dump.test.labels,
        dump.test.logits,
        dump.head.weight,
        {name: split.features for name, split in dump.ood.items()},
    )
