"""Indexing ops: Gather*, Scatter*, TensorScatter, OneHot, ReverseSequence.

ONNX calls out-of-range indices an error; here gathers clamp them into range and scatters drop them.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from ..registry import op


def _wrap(indices, dims):
    """Negative indices count from the end of their dimension (`dims` broadcasts against `indices`)."""
    return jnp.where(indices < 0, indices + dims, indices)


def _element_index(indices, axis: int, dim: int) -> tuple:
    """Full index for GatherElements/ScatterElements: `indices` on `axis`, each element's own position elsewhere."""
    index = list(jnp.indices(jnp.shape(indices), sparse=True))
    index[axis] = _wrap(indices, dim)
    return tuple(index)


def _nd_index(indices, shape, batch_dims: int = 0) -> tuple:
    """Index for GatherND/ScatterND: batch positions, then the last axis of `indices` spread over the data dims."""
    depth = jnp.shape(indices)[-1]
    indices = _wrap(indices, np.array(shape[batch_dims:batch_dims + depth]))
    trailing = (1,) * (jnp.ndim(indices) - 1 - batch_dims)
    batch = tuple(jnp.reshape(b, b.shape + trailing) for b in jnp.indices(jnp.shape(indices)[:batch_dims], sparse=True))
    return batch + tuple(jnp.moveaxis(indices, -1, 0))


_SCATTER = {"none": "set", "add": "add", "mul": "multiply", "max": "max", "min": "min"}


def _scatter(data, index: tuple, updates, reduction: str):
    return getattr(jnp.asarray(data).at[index], _SCATTER[reduction])(updates)


def take_static(data, index: np.ndarray, axis: int):
    """jnp.take with in-range indices known at trace time: a slice where they run with a fixed step (a Gather of
    positions 0..n-1, a scalar index), a repeat where they upsample by an integer (0,0,1,1,...); XLA's gather, several
    times slower on CPU, otherwise."""
    flat, in_len = index.reshape(-1), data.shape[axis]
    shape = data.shape[:axis] + index.shape + data.shape[axis + 1:]
    if not flat.size or not in_len:
        return jnp.take(data, index, axis=axis)
    factor = flat.size // in_len
    if factor >= 1 and flat.size == factor * in_len and np.array_equal(flat, np.repeat(np.arange(in_len), factor)):
        return jnp.repeat(data, factor, axis=axis).reshape(shape)
    step = int(flat[1] - flat[0]) if flat.size > 1 else 1
    if step >= 1 and np.array_equal(flat, np.arange(flat.size) * step + flat[0]):
        end = int(flat[0]) + (flat.size - 1) * step + 1
        return lax.slice_in_dim(data, int(flat[0]), end, step, axis).reshape(shape)
    return jnp.take(data, index, axis=axis, mode="clip")  # in range already: no bounds check to reduce


@op("Gather", 1)
def Gather(data, indices, *, axis=0):
    axis = axis % jnp.ndim(data)
    dim = jnp.shape(data)[axis]
    if isinstance(indices, np.ndarray) and type(dim) is int and dim:  # known while tracing (positions, a token's index)
        index = np.asarray(np.clip(np.where(indices < 0, indices + dim, indices), 0, dim - 1))
        return take_static(jnp.asarray(data), index, axis)
    return jnp.take(data, _wrap(indices, dim), axis=axis, mode="clip")


@op("GatherElements", 11)
def GatherElements(data, indices, *, axis=0):
    axis = axis % jnp.ndim(data)
    return jnp.asarray(data).at[_element_index(indices, axis, jnp.shape(data)[axis])].get(mode="clip")


@op("GatherND", 11)
def GatherND_11(data, indices):
    return GatherND(data, indices)


@op("GatherND", 12)
def GatherND(data, indices, *, batch_dims=0):
    return jnp.asarray(data).at[_nd_index(indices, jnp.shape(data), batch_dims)].get(mode="clip")


@op("Scatter", 9)
def Scatter(data, indices, updates, *, axis=0):
    return ScatterElements(data, indices, updates, axis=axis)


@op("ScatterElements", 11)
def ScatterElements_11(data, indices, updates, *, axis=0):
    return ScatterElements(data, indices, updates, axis=axis)


@op("ScatterElements", 16)
def ScatterElements(data, indices, updates, *, axis=0, reduction="none"):
    axis = axis % jnp.ndim(data)
    return _scatter(data, _element_index(indices, axis, jnp.shape(data)[axis]), updates, reduction)


@op("ScatterND", 11)
def ScatterND_11(data, indices, updates):
    return ScatterND(data, indices, updates)


@op("ScatterND", 16)
def ScatterND(data, indices, updates, *, reduction="none"):
    return _scatter(data, _nd_index(indices, jnp.shape(data)), updates, reduction)


@op("OneHot", 9, static=("depth",))
def OneHot(indices, depth, values, *, axis=-1):
    depth = int(depth.item())
    axis = axis + jnp.ndim(indices) + 1 if axis < 0 else axis
    indices = _wrap(jnp.asarray(indices).astype(np.int64), depth)  # float indices truncate, as a cast to int64
    classes = jnp.reshape(jnp.arange(depth), (depth,) + (1,) * (jnp.ndim(indices) - axis))
    return jnp.where(jnp.expand_dims(indices, axis) == classes, values[1], values[0])


@op("ReverseSequence", 10)
def ReverseSequence(input, sequence_lens, *, batch_axis=1, time_axis=0):
    rank = jnp.ndim(input)
    time = jnp.reshape(jnp.arange(jnp.shape(input)[time_axis]), [-1 if a == time_axis else 1 for a in range(rank)])
    lens = jnp.reshape(sequence_lens, [-1 if a == batch_axis else 1 for a in range(rank)])
    return jnp.take_along_axis(input, jnp.where(time < lens, lens - 1 - time, time), axis=time_axis, mode="clip")


@op("TensorScatter", 24)
def TensorScatter(past_cache, update, write_indices=None, *, axis=-2, mode="linear"):
    """Write `update` into the cache along `axis`, from each batch entry's write index (a KV-cache update)."""
    rank, shape = jnp.ndim(update), jnp.shape(update)
    axis = axis % rank
    length = jnp.shape(past_cache)[axis]
    starts = jnp.zeros(shape[0], np.int64) if write_indices is None else write_indices
    steps = jnp.reshape(jnp.arange(shape[axis]), [-1 if a == axis else 1 for a in range(rank)])
    positions = jnp.reshape(starts, (-1,) + (1,) * (rank - 1)) + steps
    if mode == "circular":
        positions = positions % length
    index = _element_index(jnp.broadcast_to(positions, shape), axis, length)
    return _scatter(past_cache, index, update, "none")  # linear writes past the end are dropped
