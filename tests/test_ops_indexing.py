"""Indexing ops against onnx.reference: Gather*, Scatter*, OneHot, ReverseSequence."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import onnx_jax
from oracle import arrays, check_node, node_model, run_both, shapes
from test_ops_shape import DTYPES, check, i64, tensor

INDEX_DTYPES = [np.int64, np.int32]
REDUCTIONS = ["none", "add", "mul", "max", "min"]


def indices(data, dim: int, shape, dtype=None):
    """Valid indices into a dimension of size `dim`, negative ones included."""
    dtype = dtype or data.draw(st.sampled_from(INDEX_DTYPES))
    return data.draw(arrays(dtype, shape, low=-dim, high=dim - 1))


def distinct_indices(data, dim: int, count: int, shape, axis: int):
    """`count` distinct indices along `axis` for each position elsewhere (so plain scatters are order-free)."""
    keys = data.draw(arrays(np.float64, (*shape[:axis], dim, *shape[axis + 1:]), low=0, high=1))
    order = np.argsort(keys, axis=axis, kind="stable").take(range(count), axis=axis)
    return np.where(data.draw(arrays(np.bool_, order.shape)), order - dim, order).astype(np.int64)


@given(st.data())
def test_gather(data):
    x = tensor(data, data.draw(shapes(min_dims=1)))
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    idx = indices(data, x.shape[axis], data.draw(shapes(max_dims=2)))
    check("Gather", [x, idx], axis=axis, opset=data.draw(st.sampled_from([11, 13, 21])), fold=data.draw(st.booleans()))


@pytest.mark.parametrize("idx", [np.arange(5), np.arange(1, 6, 2), np.array([-2, -1]), np.repeat(np.arange(6), 2),
                                 np.array(3), np.array([[0, 1], [2, 3]]), np.array([4, 0, 2]), np.array([2, 9, -9])],
                         ids=["run", "strided", "negative", "repeated", "scalar", "2d-run", "any", "out-of-range"])
def test_gather_of_indices_known_while_tracing(idx):
    """Indices that are initializers (positions, a token's index) gather as a slice or a repeat where they can;
    out-of-range ones clamp as the traced gather's do."""
    x = np.random.default_rng(0).standard_normal((2, 6, 3)).astype(np.float32)
    model = node_model("Gather", [x, idx.astype(np.int64)], axis=1, initializers={"x1": idx.astype(np.int64)})
    (y,) = onnx_jax.prepare(model).run([x])
    np.testing.assert_array_equal(y, np.take(x, np.clip(np.where(idx < 0, idx + 6, idx), 0, 5), axis=1))


def test_gather_clamps_out_of_range_indices():
    x = np.arange(4, dtype=np.float32)
    (y,) = onnx_jax.prepare(node_model("Gather", [x, i64(7, -9)])).run([x, i64(7, -9)])
    np.testing.assert_array_equal(y, [3, 0])


@given(st.data())
def test_gather_elements(data):
    x = tensor(data, data.draw(shapes(min_dims=1, max_side=4)))
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    shape = list(x.shape)
    if axis >= 0:  # onnx.reference needs equal shapes for a negative axis
        shape[axis] = data.draw(st.integers(1, 4))
    check("GatherElements", [x, indices(data, x.shape[axis], tuple(shape))], axis=axis, fold=data.draw(st.booleans()))


@given(st.data())
def test_gather_nd(data):
    x = tensor(data, data.draw(shapes(min_dims=1, max_side=4)))
    batch_dims = data.draw(st.integers(0, x.ndim - 1))
    depth = data.draw(st.integers(1, x.ndim - batch_dims))
    middle = data.draw(shapes(max_dims=2, max_side=3))
    parts = [indices(data, d, (*x.shape[:batch_dims], *middle, 1), np.int64) for d in x.shape[batch_dims:][:depth]]
    opset = 11 if batch_dims == 0 and data.draw(st.booleans()) else 13
    check("GatherND", [x, np.concatenate(parts, axis=-1)], opset=opset, fold=data.draw(st.booleans()),
          **({"batch_dims": batch_dims} if opset > 11 else {}))


@given(st.data())
def test_scatter_elements(data):
    dtype = data.draw(st.sampled_from([np.float32, np.float64, np.int64, np.int32]))
    x = data.draw(arrays(dtype, data.draw(shapes(min_dims=1, max_side=4))))
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    reduction = data.draw(st.sampled_from(REDUCTIONS))
    shape = [data.draw(st.integers(1, d)) for d in x.shape]
    dim = x.shape[axis]
    if reduction == "none":
        shape[axis] = data.draw(st.integers(1, dim))
        idx = distinct_indices(data, dim, shape[axis], shape, axis % x.ndim)
    else:
        shape[axis] = data.draw(st.integers(1, 5))
        idx = indices(data, dim, tuple(shape))
    updates = data.draw(arrays(dtype, tuple(shape), low=-2, high=2))
    if reduction == "none" and data.draw(st.booleans()):
        check_node("ScatterElements", [x, idx, updates], opset=11, axis=axis)
    else:
        check("ScatterElements", [x, idx, updates], axis=axis, reduction=reduction, fold=data.draw(st.booleans()))


def test_scatter_is_scatter_elements():
    # onnx.reference has no Scatter (deprecated at opset 11): compare with its ScatterElements
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    idx, updates = i64(2, 0, -1, 1).reshape(2, 2), np.full((2, 2), -1.0, np.float32)
    (ours,) = onnx_jax.prepare(node_model("Scatter", [x, idx, updates], opset=10, axis=1)).run([x, idx, updates])
    _, (ref,) = run_both(node_model("ScatterElements", [x, idx, updates], opset=11, axis=1), [x, idx, updates])
    np.testing.assert_array_equal(ours, ref)


@given(st.data())
def test_scatter_nd(data):
    dtype = data.draw(st.sampled_from([np.float32, np.float64, np.int64, np.int32]))
    x = data.draw(arrays(dtype, data.draw(shapes(min_dims=1, max_side=4))))
    depth = data.draw(st.integers(1, x.ndim))
    reduction = data.draw(st.sampled_from(REDUCTIONS))
    positions = int(np.prod(x.shape[:depth]))
    count = data.draw(st.integers(1, positions if reduction == "none" else 6))
    if reduction == "none":
        flat = data.draw(st.permutations(range(positions)))[:count]
        idx = np.stack(np.unravel_index(flat, x.shape[:depth]), axis=-1).astype(np.int64)
        idx = np.where(data.draw(arrays(np.bool_, idx.shape)), idx - np.array(x.shape[:depth]), idx)
    else:
        idx = np.stack([indices(data, d, (count,), np.int64) for d in x.shape[:depth]], axis=-1)
    updates = data.draw(arrays(dtype, (count, *x.shape[depth:]), low=-2, high=2))
    if reduction == "none" and data.draw(st.booleans()):
        check_node("ScatterND", [x, idx, updates], opset=11)
    else:
        check("ScatterND", [x, idx, updates], reduction=reduction, fold=data.draw(st.booleans()))


@given(st.data())
def test_one_hot(data):
    depth = data.draw(st.integers(1, 5))
    shape = data.draw(shapes(max_dims=3))
    dtype = data.draw(st.sampled_from([np.int64, np.int32, np.uint8]))
    idx = data.draw(arrays(dtype, shape, low=-depth - 2, high=depth + 2))
    values = data.draw(arrays(data.draw(st.sampled_from(DTYPES[:-1])), (2,)))  # the reference cannot do bool
    depth = np.array(depth, data.draw(st.sampled_from([np.int64, np.float32])))
    axis = data.draw(st.integers(-len(shape) - 1, len(shape)))
    check("OneHot", [idx, depth, values], axis=axis, opset=data.draw(st.sampled_from([11, 21])),
          fold=data.draw(st.booleans()))


def test_one_hot_truncates_float_indices():
    # onnx.reference rejects float indices, which the spec casts to int64
    idx = np.array([1.7, -1.2, 3.0], np.float32)
    model = node_model("OneHot", [idx, i64(3), np.array([0, 1], np.int32)], initializers={"x1": i64(3)})
    (y,) = onnx_jax.prepare(model).run([idx, np.array([0, 1], np.int32)])
    np.testing.assert_array_equal(y, [[0, 1, 0], [0, 0, 1], [0, 0, 0]])


@given(st.data())
def test_reverse_sequence(data):
    time_axis = data.draw(st.integers(0, 1))
    x = tensor(data, data.draw(shapes(min_dims=2, max_dims=4)))
    lens = data.draw(arrays(np.int64, (x.shape[1 - time_axis],), low=0, high=x.shape[time_axis]))
    check("ReverseSequence", [x, lens], time_axis=time_axis, batch_axis=1 - time_axis, fold=data.draw(st.booleans()))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_scatter_nd_reduces_duplicates(reduction):
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    idx, updates = i64(1, 1, -1).reshape(3, 1), np.array([[5, -1], [2, 7], [3, 3]], np.float32)
    if reduction == "none":
        idx = i64(1, 0, -1).reshape(3, 1)
    check_node("ScatterND", [x, idx, updates], reduction=reduction)


@given(st.data())
def test_tensor_scatter(data):
    dtype = data.draw(st.sampled_from([np.float32, np.float16, np.int64]))
    cache_shape = data.draw(shapes(min_dims=2, max_dims=4, max_side=4))
    axis = data.draw(st.integers(1, len(cache_shape) - 1))
    mode = data.draw(st.sampled_from(["linear", "circular"]))
    length = cache_shape[axis]
    update_shape = list(cache_shape)
    update_shape[axis] = data.draw(st.integers(1, length))
    write = None
    if data.draw(st.booleans()):
        top = length - update_shape[axis] if mode == "linear" else 2 * length
        write = data.draw(arrays(np.int64, (cache_shape[0],), low=0, high=top))
    cache, update = data.draw(arrays(dtype, cache_shape)), data.draw(arrays(dtype, tuple(update_shape)))
    check_node("TensorScatter", [cache, update, write], opset=24, mode=mode,
               axis=data.draw(st.sampled_from([axis, axis - len(cache_shape)])))
