"""The classifier two-sample test (C2ST) as the sbibm benchmark computes it.

Accuracy of a classifier telling the reference posterior's samples ``X`` from an algorithm's ``Y``:
0.5 means indistinguishable (perfect), 1.0 means fully separated. The settings follow sbibm 1.1.0's
``sbibm/metrics/c2st.py`` (read in its wheel; re-implemented here, not copied):

- both sets z-scored with the *reference* samples' mean and standard deviation (``ddof=1``, as
  ``torch.std``);
- scikit-learn's ``MLPClassifier``: two hidden layers of ``10 * dim`` units, ReLU, Adam,
  ``max_iter=10000`` (sbibm 1.1.0's value; sklearn stops earlier once the training loss stalls for
  10 epochs), ``random_state=seed``;
- label 0 for ``X``, 1 for ``Y``; 5-fold ``KFold(shuffle=True, random_state=seed)``; the mean of the
  folds' accuracies. ``seed`` defaults to 1, as in sbibm.

sbibm scores 10,000 samples on each side; :func:`c2st` takes whatever it is given (the benchmark
says how many it used).

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.normal(size=(300, 2)), rng.normal(size=(300, 2))
    >>> 0.4 < c2st(a, b) < 0.6, c2st(a, b + 10.0) > 0.95
    (True, True)
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["c2st"]


def c2st(X, Y, seed: int = 1, n_folds: int = 5, z_score: bool = True, max_iter: int = 10000) -> float:
    """The cross-validated accuracy of an MLP separating ``X`` (reference) from ``Y`` (``[N, D]`` each)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import KFold, cross_val_score
    from sklearn.neural_network import MLPClassifier

    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2 or X.shape[1] != Y.shape[1]:
        raise ValueError(f"c2st needs two [N, D] sample sets of the same D, got {X.shape} and {Y.shape}")
    if z_score:
        mean, std = X.mean(axis=0), X.std(axis=0, ddof=1)
        X, Y = (X - mean) / std, (Y - mean) / std
    dim = X.shape[1]
    clf = MLPClassifier(activation="relu", hidden_layer_sizes=(10 * dim, 10 * dim), max_iter=max_iter,
                        solver="adam", random_state=seed)
    data = np.concatenate([X, Y]).astype(np.float32)
    target = np.concatenate([np.zeros(len(X)), np.ones(len(Y))])
    folds = KFold(n_splits=n_folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(clf, data, target, cv=folds, scoring="accuracy")
    return float(np.mean(scores))
