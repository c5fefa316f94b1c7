"""Shape and layout ops: Shape, Size, Reshape, Transpose, Concat, Squeeze/Unsqueeze, Constant, ..."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ..registry import op


@op("Shape", 1, shape_only=True)
def Shape(data, *, start=0, end=None):
    return np.array(jnp.shape(data)[start:end], dtype=np.int64)


@op("Size", 1, shape_only=True)
def Size(data):
    return np.array(np.prod(jnp.shape(data)), dtype=np.int64)


@op("Reshape", 5, static=("shape",))
def Reshape(data, shape, *, allowzero=0):
    dims = [int(d) for d in shape]
    if not allowzero:
        dims = [jnp.shape(data)[i] if d == 0 else d for i, d in enumerate(dims)]
    return jnp.reshape(data, dims)


@op("Constant", 1)
def Constant(*, value=None, value_float=None, value_floats=None, value_int=None, value_ints=None,
             value_string=None, value_strings=None, sparse_value=None):
    if value is not None:
        return value
    if sparse_value is not None:
        return sparse_value
    if value_float is not None:
        return np.array(value_float, np.float32)
    if value_floats is not None:
        return np.array(value_floats, np.float32)
    if value_int is not None:
        return np.array(value_int, np.int64)
    if value_ints is not None:
        return np.array(value_ints, np.int64)
    if value_string is not None:
        return np.array(value_string, object)
    return np.array(value_strings, object)


@op("Concat", 4)
def Concat(*inputs, axis):
    return jnp.concatenate(inputs, axis=axis)


@op("Unsqueeze", 13, static=("axes",))
def Unsqueeze(data, axes):
    return jnp.expand_dims(data, tuple(int(a) for a in axes))


@op("Gather", 1)
def Gather(data, indices, *, axis=0):
    indices = jnp.where(indices < 0, indices + jnp.shape(data)[axis], indices)
    return jnp.take(data, indices, axis=axis)
