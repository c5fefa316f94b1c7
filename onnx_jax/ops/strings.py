"""String ops. Strings cannot enter XLA, so these run on the host (numpy object arrays) between
compiled segments, or fold at trace time when their inputs are constants."""

from __future__ import annotations

import re

import numpy as np

from ..registry import op


def _strings(fn, *arrays, otype=object) -> np.ndarray:
    return np.vectorize(fn, otypes=[otype])(*arrays) if all(np.size(a) for a in arrays) else np.empty(
        np.broadcast_shapes(*(np.shape(a) for a in arrays)), otype
    )


@op("StringNormalizer", 10, host=True)
def StringNormalizer(X, *, case_change_action="NONE", is_case_sensitive=0, locale=None, stopwords=None):
    X = np.asarray(X, object)
    row = X.reshape(-1)
    if stopwords:
        stops = set(stopwords) if is_case_sensitive else {w.lower() for w in stopwords}
        row = np.array([w for w in row if (w if is_case_sensitive else w.lower()) not in stops], object)
    change = {"LOWER": str.lower, "UPPER": str.upper}.get(case_change_action)
    if change is not None and row.size:
        row = _strings(change, row)
    if row.size == 0:
        row = np.array([""], object)  # the spec keeps one empty string when every word is removed
    return row.reshape((1, -1) if X.ndim == 2 else (-1,))


@op("StringConcat", 20, host=True)
def StringConcat(X, Y):
    return _strings(lambda a, b: a + b, np.asarray(X, object), np.asarray(Y, object))


@op("StringSplit", 20, host=True)
def StringSplit(X, *, delimiter=None, maxsplit=None):
    X = np.asarray(X, object)
    limit = -1 if maxsplit is None else maxsplit
    parts = [w.split(delimiter or None, limit) for w in X.reshape(-1)]
    width = max((len(p) for p in parts), default=0)
    Y = np.full((len(parts), width), "", object)
    for i, p in enumerate(parts):
        Y[i, : len(p)] = p
    counts = np.array([len(p) for p in parts], np.int64)
    return Y.reshape(X.shape + (width,)), counts.reshape(X.shape)


@op("RegexFullMatch", 20, host=True)
def RegexFullMatch(X, *, pattern=None):
    compiled = re.compile(pattern)
    return _strings(lambda w: compiled.fullmatch(w) is not None, np.asarray(X, object), otype=bool)
