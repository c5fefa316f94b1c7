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


@op("TfIdfVectorizer", 9, host=True)
def TfIdfVectorizer(X, *, max_gram_length, max_skip_count, min_gram_length, mode, ngram_counts, ngram_indexes,
                    pool_int64s=None, pool_strings=None, weights=None):
    """Float32 n-gram counts of each row of X ([C] or [B, C], strings or integers) at the n-grams' output slots,
    weighted by `mode`. An n-gram takes every (skip + 1)-th item, for skips 0..max_skip_count; a unigram is
    counted once, whatever the skip."""
    ids = _ngram_slots(pool_strings if pool_strings is not None else [int(v) for v in pool_int64s],
                       ngram_counts, ngram_indexes, min_gram_length, max_gram_length)
    X = np.asarray(X)
    if X.ndim > 2:
        raise ValueError(f"X must have shape [C] or [B, C], got {X.shape}")
    rows = X.reshape(1, -1) if X.ndim < 2 else X
    width = max(ngram_indexes) + 1
    counts = np.zeros((rows.shape[0], width), np.float32)
    for r, row in enumerate(rows):
        items = [_item(v) for v in row]
        for skip in range(max_skip_count + 1):
            step = skip + 1
            smallest = max(min_gram_length, 1 if skip == 0 else 2)
            for start in range(len(items)):
                for size in range(smallest, max_gram_length + 1):
                    last = start + step * (size - 1)
                    if last >= len(items):
                        break
                    slot = ids.get(tuple(items[start:last + 1:step]))
                    if slot is not None:
                        counts[r, slot] += 1
    w = np.asarray(weights if weights else np.ones(width), np.float32)
    if mode == "IDF":
        counts = np.where(counts > 0, w, 0).astype(np.float32)
    elif mode == "TFIDF":
        counts = counts * w
    elif mode != "TF":
        raise ValueError(f"mode must be TF, IDF or TFIDF, got {mode!r}")
    return counts if X.ndim == 2 else counts.reshape(width)


def _item(value):
    if isinstance(value, bytes):
        return value.decode()
    return value if isinstance(value, str) else int(value)


def _ngram_slots(pool, ngram_counts, ngram_indexes, min_gram_length: int, max_gram_length: int) -> dict:
    """{n-gram tuple: output slot} for the pool's n-grams of lengths min..max. ngram_counts[i] is where the
    (i + 1)-grams start in the pool; n-grams are numbered in pool order, lengths outside min..max included."""
    pool = [_item(v) for v in pool]
    bounds = list(ngram_counts) + [len(pool)]
    slots, number = {}, 0
    for size, (start, end) in enumerate(zip(bounds, bounds[1:]), start=1):
        for k in range((end - start) // size):
            if min_gram_length <= size <= max_gram_length:
                slots[tuple(pool[start + k * size: start + (k + 1) * size])] = ngram_indexes[number]
            number += 1
    return slots
