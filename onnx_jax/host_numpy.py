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


class Map(dict):
    """A map input's data with the value dtype the graph declares for it (None if undeclared), which an op's output
    takes even when the map is empty (DictVectorizer's)."""

    def __init__(self, items: Any = (), value_dtype: np.dtype | None = None):
        super().__init__(items)
        self.value_dtype = value_dtype


def is_object(value: Any) -> bool:
    """True for what only the host holds: numpy object arrays (strings, or shape values holding symbolic
    dimensions), maps (dicts) and sequences of maps (ZipMap's output)."""
    if isinstance(value, dict):
        return True
    if isinstance(value, list):
        return bool(value) and all(isinstance(v, dict) for v in value)
    return isinstance(value, np.ndarray) and value.dtype == object


def holds_strings(value: Any) -> bool:
    """Host-only data that no compiled segment can take: strings and maps (symbolic shape values can be traced)."""
    if isinstance(value, np.ndarray) and value.dtype == object:
        return any(isinstance(v, (str, bytes)) for v in value.flat)
    return is_object(value)


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


_STRING = 8  # onnx.TensorProto.STRING


def makes_strings(node: Any) -> bool:
    """A node that turns numbers into strings (Cast to STRING): it runs here, on the host, never in XLA."""
    if node.op_type != "Cast" or node.domain:
        return False
    to = node.attrs.get("to")
    return to == _STRING or (isinstance(to, str) and to.upper() == "STRING")


def _number_text(x: Any) -> str:
    """A number as onnxruntime writes it: floats of every width with printf's %.8g, NaN and INF spelled that
    way, booleans as 1 and 0."""
    if isinstance(x, (bool, np.bool_)):
        return "1" if x else "0"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if np.isnan(x):
        return "NaN"
    if np.isinf(x):
        return "INF" if x > 0 else "-INF"
    return "%.8g" % float(x)


def _parse(text: Any, dtype: np.dtype) -> Any:
    """A string as a number of `dtype` (strtod's forms: spaces, nan, inf, hexadecimal floats)."""
    text = text.decode() if isinstance(text, bytes) else str(text)
    if dtype == np.bool_:
        return _parse(text, np.dtype(np.float64)) != 0
    if dtype.kind in "iu":
        return int(text.strip(), 0) if text.strip().lower().startswith(("0x", "-0x")) else int(text.strip())
    try:
        return float(text)
    except ValueError:
        return float.fromhex(text.strip())


def _cast(x: Any, dtype: np.dtype) -> np.ndarray:
    """Cast to or from strings (other casts of object arrays, symbolic dimensions, keep the values)."""
    x = np.asarray(x)
    if dtype == object:
        if x.dtype == object:
            return x
        return np.array([_number_text(v) for v in x.reshape(-1)], object).reshape(x.shape)
    if x.dtype == object and x.size and all(isinstance(v, (str, bytes)) for v in x.reshape(-1)):
        flat = [_parse(v, dtype) for v in x.reshape(-1)]
        return np.array(flat).astype(dtype).reshape(x.shape)
    return x


def _cast_node(x, *, to, saturate=1, round_mode="up"):
    from .dtypes import to_numpy_dtype

    if isinstance(to, str):  # opset 1 names the type
        import onnx

        to = onnx.TensorProto.DataType.Value(to.upper())
    return _cast(x, np.dtype(object) if to == _STRING else to_numpy_dtype(to))


FOLDERS: dict[str, Callable[..., Any]] = {
    "Identity": lambda x: x,
    "Cast": _cast_node,
    "CastLike": lambda x, target, **_: _cast(x, np.asarray(target).dtype),
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
    "ArrayFeatureExtractor": lambda x, y: (lambda t: t.reshape(1, -1) if np.ndim(x) == 1 else t)(
        np.take(x, np.asarray(y, np.int64).reshape(-1), axis=-1)),
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
