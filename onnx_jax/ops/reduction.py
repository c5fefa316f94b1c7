"""Reductions: Reduce*, ArgMax/ArgMin, CumSum/CumProd, TopK, Det."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..dtypes import is_float
from ..registry import op


def _reduce(fn, data, axes, keepdims: int, noop_with_empty_axes: int):
    """Apply `fn(x, axes, keepdims)` over `axes` (all of them when none are given) and keep the input dtype."""
    if axes is None or len(axes) == 0:
        # Reducing over no axes still applies the op elementwise (ReduceL1 -> Abs), as the reference does.
        axes = () if noop_with_empty_axes else tuple(range(data.ndim))
    axes = tuple(int(a) % data.ndim for a in axes)
    return fn(data, axes, bool(keepdims)).astype(data.dtype)


def _lowest(dtype):
    if dtype == np.bool_:
        return False
    return -np.inf if is_float(dtype) else jnp.iinfo(dtype).min


def _highest(dtype):
    if dtype == np.bool_:
        return True
    return np.inf if is_float(dtype) else jnp.iinfo(dtype).max


# XLA's CPU reduction along a long minor axis (split into a reduce-window of 32 and a reduce, for accuracy) is not
# vectorized: Whisper's softmax over 750 keys spent more time in its two reductions than in its exponentials. Folded
# elementwise first, 32 lanes at a time over shifted slices of the axis, the same sums and maxima run 1.3-2x faster
# from ~200 values on (a softmax over 197 or 750 keys). From 64 values (two slices) on since the eighth session: on the
# Intel VM a softmax over 128 keys folded made BERT, GPT-2 and LLaMA 0.93-0.97x at batch 1 (0.94-0.98x at 8); on the
# AMD VM, when layer norms over 256 folded too (they are products with ones now: mean_kept), 128 had measured slower.
_FOLD_LANES = 32
_FOLD_FROM = 64
# An axis of a few values (a classifier's scores) folds value by value: a softmax over it is then three loops instead of
# four kernels, ~0.6 us of a call at batch 1; ArgMax/ArgMin over it choose column by column (arg_extreme)
_FOLD_UP_TO = 16
_FOLD_MAX_SLICES = 64  # longer axes fold in wider slices, then again: the HLO stays small
_FOLDS = {  # kind: (elementwise combine, reduce(x, axes) with dims kept)
    "sum": (jnp.add, lambda x, axes: jnp.sum(x, axes, keepdims=True)),
    "max": (jnp.maximum, lambda x, axes: jnp.max(x, axes, keepdims=True)),
}


def folds(x, axes: tuple[int, ...]) -> bool:
    """Whether reduce_trailing folds: float32/64 data reduced over its trailing axes, at least _FOLD_FROM values or
    2 to _FOLD_UP_TO."""
    if not x.ndim:
        return False
    axes = tuple(sorted(int(a) % x.ndim for a in axes))
    length = math.prod(x.shape[x.ndim - len(axes):])
    return (x.dtype in (np.float32, np.float64) and axes == tuple(range(x.ndim - len(axes), x.ndim))
            and isinstance(length, int) and (length >= _FOLD_FROM or 2 <= length <= _FOLD_UP_TO))


def reduce_trailing(x, axes: tuple[int, ...], kind: str):
    """The sum or max of x over `axes` (dims kept), folded elementwise across shifted slices first where `folds`."""
    combine, reduce = _FOLDS[kind]
    if not folds(x, axes):
        return reduce(x, axes)
    lead = x.shape[:x.ndim - len(axes)]
    length = math.prod(x.shape[len(lead):])
    flat = x.reshape(*lead, length)
    width = 1 if length <= _FOLD_UP_TO else _FOLD_LANES * -(-length // (_FOLD_LANES * _FOLD_MAX_SLICES))
    count = length // width
    partial = functools.reduce(combine, [flat[..., i * width:(i + 1) * width] for i in range(count)])
    y = reduce_trailing(partial, (-1,), kind)
    if count * width < length:
        y = combine(y, reduce(flat[..., count * width:], (-1,)))
    return y.reshape(*lead, *(1,) * len(axes))


# A float32 mean along a last axis of 64+ values (a layer norm's statistics) as a product with a column of ones: one
# dot, where XLA's CPU backend splits the reduction into a reduce-window and a reduce that are not vectorized. At
# batch 1 BERT 0.96-0.97x, ViT 0.96-0.98x, GPT-2 0.94-1.0x; LLaMA (one mean a norm), Whisper and batch 8 0.99-1.0x.
# Means over several axes (an image's spatial ones, which XLA may hold channels-last) stay reductions, as does every
# mean off CPU (not measured there).
_DOT_MEAN_FROM = 64


def mean_kept(x, axes: tuple[int, ...]):
    """The mean of x over `axes`, dims kept; on CPU, along one last float32 axis of _DOT_MEAN_FROM or more values, a
    matmul with a column of ones divided by their count."""
    def reduced(v):
        return jnp.mean(v, axes, keepdims=True)

    length = x.shape[-1] if x.ndim else 0  # a symbolic length (jax.export) stays a reduction
    if (x.dtype != np.float32 or type(length) is not int or length < _DOT_MEAN_FROM
            or tuple(int(a) % x.ndim for a in axes) != (x.ndim - 1,)):
        return reduced(x)
    ones = np.ones((length, 1), np.float32)
    return lax.platform_dependent(
        x, cpu=lambda v: jnp.matmul(v, ones, precision=lax.Precision.HIGHEST) / np.float32(length),
        default=reduced)


def _mean(x, axes, keepdims):
    if is_float(x.dtype):
        y = mean_kept(x, axes)
        return y if keepdims else jnp.squeeze(y, axes)
    count = math.prod(x.shape[a] for a in axes)
    return lax.div(jnp.sum(x, axes, dtype=x.dtype, keepdims=keepdims), jnp.asarray(count, x.dtype))  # truncates


_REDUCTIONS = {  # name: (fn(x, axes, keepdims), opset where axes became an input)
    "ReduceSum": (lambda x, a, k: jnp.sum(x, a, dtype=x.dtype, keepdims=k), 13),
    "ReduceMean": (_mean, 18),
    "ReduceMax": (lambda x, a, k: jnp.max(x, a, keepdims=k, initial=_lowest(x.dtype)), 18),
    "ReduceMin": (lambda x, a, k: jnp.min(x, a, keepdims=k, initial=_highest(x.dtype)), 18),
    "ReduceProd": (lambda x, a, k: jnp.prod(x, a, dtype=x.dtype, keepdims=k), 18),
    "ReduceL1": (lambda x, a, k: jnp.sum(jnp.abs(x), a, dtype=x.dtype, keepdims=k), 18),
    "ReduceL2": (lambda x, a, k: jnp.sqrt(jnp.sum(jnp.square(x), a, dtype=x.dtype, keepdims=k)), 18),
    "ReduceSumSquare": (lambda x, a, k: jnp.sum(jnp.square(x), a, dtype=x.dtype, keepdims=k), 18),
    "ReduceLogSum": (lambda x, a, k: jnp.log(jnp.sum(x, a, dtype=x.dtype, keepdims=k)), 18),
    "ReduceLogSumExp": (lambda x, a, k: jax.nn.logsumexp(x, a, keepdims=k), 18),
}


def _register_reduction(name: str, fn, since: int) -> None:
    """Register the axes-attribute form (opset 1) and the axes-input form (opset `since`) of a reduction."""

    def with_attribute(data, *, axes=None, keepdims=1):
        return _reduce(fn, jnp.asarray(data), axes, keepdims, noop_with_empty_axes=0)

    def with_input(data, axes=None, *, keepdims=1, noop_with_empty_axes=0):
        return _reduce(fn, jnp.asarray(data), axes, keepdims, noop_with_empty_axes)

    with_attribute.__name__, with_input.__name__ = f"{name}_1", name
    op(name, 1)(with_attribute)
    op(name, since, static=("axes",))(with_input)


for _name, (_fn, _since) in _REDUCTIONS.items():
    _register_reduction(_name, _fn, _since)


def arg_extreme(data, axis: int, largest: bool, last: bool = False):
    """jnp.argmax (largest) or jnp.argmin along `axis`, as int64 without the axis: the first extreme, or the last with
    `last`; a NaN counts as the extreme. Along 2 to _FOLD_UP_TO values a pass over the axis's slices choosing
    elementwise, which XLA fuses with its neighbours: its (value, index) reduction is a kernel of its own, ~1 us of
    a tree ensemble's call."""
    data = jnp.asarray(data)
    axis %= data.ndim
    length = data.shape[axis]
    if not 2 <= length <= _FOLD_UP_TO:
        fn = jnp.argmax if largest else jnp.argmin
        index = fn(jnp.flip(data, axis), axis) if last else fn(data, axis)
        return (length - 1 - index if last else index).astype(jnp.int64)
    columns = [lax.index_in_dim(data, k, axis, keepdims=False) for k in range(length)]
    best, index = columns[0], jnp.zeros(columns[0].shape, jnp.int64)
    for k, column in enumerate(columns[1:], 1):
        wins = (column >= best if last else column > best) if largest else (column <= best if last else column < best)
        if is_float(data.dtype):  # comparisons with a NaN are false: a NaN column wins, a NaN best stays
            wins = (wins | jnp.isnan(column)) if last else (wins | (jnp.isnan(column) & ~jnp.isnan(best)))
        best, index = jnp.where(wins, column, best), jnp.where(wins, k, index)
    return index


@op("ArgMax", 1)
def ArgMax(data, *, axis=0, keepdims=1, select_last_index=0):
    index = arg_extreme(data, axis, True, bool(select_last_index))
    return jnp.expand_dims(index, int(axis) % jnp.ndim(data)) if keepdims else index


@op("ArgMin", 1)
def ArgMin(data, *, axis=0, keepdims=1, select_last_index=0):
    index = arg_extreme(data, axis, False, bool(select_last_index))
    return jnp.expand_dims(index, int(axis) % jnp.ndim(data)) if keepdims else index


def _cumulative(fn, x, axis, identity, exclusive: int, reverse: int):
    x = jnp.asarray(x)
    axis = int(axis) % x.ndim
    if exclusive:  # shift by one along the axis, bringing in the identity
        shift = (-1, 1, 0) if reverse else (1, -1, 0)
        x = lax.pad(x, jnp.asarray(identity, x.dtype), [shift if d == axis else (0, 0, 0) for d in range(x.ndim)])
    return fn(x, axis, reverse=bool(reverse))


@op("CumSum", 11, static=("axis",))
def CumSum(x, axis, *, exclusive=0, reverse=0):
    return _cumulative(lax.cumsum, x, axis, 0, exclusive, reverse)


@op("CumProd", 26, static=("axis",))
def CumProd(x, axis, *, exclusive=0, reverse=0):
    return _cumulative(lax.cumprod, x, axis, 1, exclusive, reverse)


def _top_k(x, k: int, axis: int, largest: int):
    # A stable sort keeps equal values in index order, treats -0 == 0 and puts every NaN above +inf, like the reference.
    x = jnp.asarray(x)
    indices = lax.slice_in_dim(jnp.argsort(x, axis=axis, stable=True, descending=bool(largest)), 0, k, axis=axis)
    return jnp.take_along_axis(x, indices, axis), indices.astype(jnp.int64)


@op("TopK", 1)
def TopK_1(X, *, axis=-1, k):
    return _top_k(X, k, axis, largest=1)


@op("TopK", 10, static=("K",))
def TopK(X, K, *, axis=-1, largest=1, sorted=1):
    return _top_k(X, int(K.item()), axis, largest)


@op("Det", 11)
def Det(X):
    X = jnp.asarray(X)
    return jnp.linalg.det(X.astype(jnp.promote_types(X.dtype, jnp.float32))).astype(X.dtype)
