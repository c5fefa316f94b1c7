"""Indexing ops: Gather*, Scatter*, TensorScatter, OneHot, ReverseSequence.

ONNX calls out-of-range indices an error; here gathers clamp them into range and scatters drop them.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

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


@op("Gather", 1)
def Gather(data, indices, *, axis=0):
    axis = axis % jnp.ndim(data)
    return jnp.take(data, _wrap(indices, jnp.shape(data)[axis]), axis=axis, mode="clip")


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
