"""Ops whose output shape depends on input values. They run on the host, on concrete numpy data,
between two compiled segments of the graph (a graph break), or fold when their inputs are static."""

from __future__ import annotations

import numpy as np

from ..registry import op


@op("NonZero", 9, host=True)
def NonZero(X):
    return np.array(np.nonzero(np.asarray(X)), dtype=np.int64).reshape(np.ndim(X), -1)


@op("Compress", 9, host=True)
def Compress(input, condition, *, axis=None):
    return np.compress(np.asarray(condition, bool), np.asarray(input), axis=axis)


@op("Unique", 11, host=True)
def Unique(X, *, axis=None, sorted=1):
    X = np.asarray(X)
    values, first, inverse, counts = np.unique(X, return_index=True, return_inverse=True, return_counts=True, axis=axis)
    if not sorted:  # order of first occurrence
        order = np.argsort(first, kind="stable")
        values = np.take(values, order, axis=0 if axis is None else axis)
        first, counts = first[order], counts[order]
        inverse = np.argsort(order)[inverse]
    as_int64 = lambda a: np.asarray(a, np.int64).reshape(-1)  # noqa: E731
    return values, as_int64(first), as_int64(inverse), as_int64(counts)
