"""numpy implementations of ops for object arrays, which jax.numpy cannot hold: strings, and shape
values with symbolic dimensions.

Under `jax.export` with a dynamic batch or sequence axis, a traced array's shape may hold symbolic
dimensions. `Shape` then yields a numpy object array of dimensions, and the shape arithmetic that
exporters emit (Gather, Concat, Unsqueeze, Mul, ...) is folded here with numpy, whose object arrays
carry the symbolic expressions along. Consumers (Reshape, Expand, ConstantOfShape, ...) read such
values with `dims`. String tensors go through the same table on the host, between compiled segments.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import export


def is_object(value: Any) -> bool:
    """True for numpy object arrays: strings, or shape values holding symbolic dimensions."""
    return isinstance(value, np.ndarray) and value.dtype == object


def shape_value(shape: tuple) -> np.ndarray:
    """A shape as an ONNX int64 tensor, or an object array when a dimension is symbolic."""
    if any(export.is_symbolic_dim(d) for d in shape):
        return np.array(shape, dtype=object).reshape(len(shape))
    return np.array(shape, dtype=np.int64)


MAX_ELEMENTS = 2**62  # a shape holding more elements makes XLA abort the process while compiling


def dims(value: Any) -> tuple:
    """A static 1-D value (a shape, axes, bounds) as a tuple of Python ints and symbolic dimensions."""
    return tuple(d if export.is_symbolic_dim(d) else int(d) for d in np.asarray(value).reshape(-1))


def check_size(shape: tuple) -> tuple:
    """`shape`, unless it holds so many elements that XLA would abort compiling it."""
    concrete = [abs(d) for d in shape if not export.is_symbolic_dim(d)]
    if concrete and math.prod(concrete) >= MAX_ELEMENTS:
        raise ValueError(f"shape {shape} has 2**62 or more elements")
    return shape


def _axes(axes: Any) -> tuple[int, ...]:
    return tuple(int(a) for a in np.asarray(axes).reshape(-1))


def _slice(data, starts, ends, axes=None, steps=None):
    index = [slice(None)] * data.ndim
    axes = _axes(axes) if axes is not None else range(len(_axes(starts)))
    steps = _axes(steps) if steps is not None else (1,) * len(_axes(starts))
    for axis, start, end, step in zip(axes, _axes(starts), _axes(ends), steps):
        index[axis] = slice(start, end, step)
    return data[tuple(index)]


def _div(a, b):
    a, b = np.asarray(a, object), np.asarray(b, object)
    return np.vectorize(lambda x, y: x // y if isinstance(x, int) or export.is_symbolic_dim(x) else x / y,
                        otypes=[object])(a, b)


FOLDERS: dict[str, Callable[..., Any]] = {
    "Identity": lambda x: x,
    "Cast": lambda x, **_: x,
    "Gather": lambda data, indices, *, axis=0: np.take(data, np.asarray(indices, np.int64), axis=axis),
    "Concat": lambda *xs, axis: np.concatenate([np.asarray(x, object) for x in xs], axis=axis),
    "Unsqueeze": lambda data, axes=None, **attrs: np.expand_dims(data, _axes(attrs.get("axes", axes))),
    "Squeeze": lambda data, axes=None, **attrs: np.squeeze(
        data, _axes(attrs.get("axes", axes)) if attrs.get("axes", axes) is not None else None
    ),
    "Slice": _slice,
    "Reshape": lambda data, shape, **_: np.reshape(data, dims(shape)),
    "Add": lambda a, b: np.add(np.asarray(a, object), b),
    "Sub": lambda a, b: np.subtract(np.asarray(a, object), b),
    "Mul": lambda a, b: np.multiply(np.asarray(a, object), b),
    "Div": _div,
    "Equal": lambda a, b: np.equal(np.asarray(a, object), b).astype(bool),
    "Transpose": lambda data, *, perm=None: np.transpose(data, perm),
    "Flatten": lambda data, *, axis=1: np.reshape(data, (int(np.prod(data.shape[:axis])), -1)),
    "Where": lambda c, x, y: np.where(c, np.asarray(x, object), np.asarray(y, object)),
    "ConstantOfShape": lambda input, *, value=None: jnp.full(
        check_size(dims(input)), 0.0 if value is None else value.reshape(()), dtype=np.float32 if value is None else value.dtype
    ),
    "ReduceProd": lambda data, axes=None, *, keepdims=1, noop_with_empty_axes=0: np.prod(data, keepdims=bool(keepdims)),
}


def fold(op_type: str, args: list, attrs: dict) -> Any:
    """Evaluate an op on object arrays (strings, symbolic dimensions); KeyError when the table lacks it."""
    result = FOLDERS[op_type](*args, **attrs)
    if isinstance(result, (np.ndarray, jax.Array)):
        return result
    return np.asarray(result, dtype=object)  # numpy hands back a bare element for 0-d results
