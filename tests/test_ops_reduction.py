"""Reductions, ArgMax/ArgMin, CumSum/CumProd, TopK and Det against onnx.reference."""

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import onnx_jax
from onnx_jax.dtypes import x64
from onnx_jax.ops.reduction import reduce_trailing
from oracle import arrays, node_model, shapes
from test_ops_elementwise import check, check_nodes, node, some

FLOATS = [np.float32, np.float64, np.float16]
INTS = [np.int32, np.int64]
LOOSE = {np.dtype(np.float16): (1e-2, 1e-2), np.dtype(np.float32): (1e-4, 1e-4)}  # sums reassociate


def tolerance(dtype):
    return dict(zip(("rtol", "atol"), LOOSE.get(np.dtype(dtype), (None, None))))


REDUCTIONS = {  # op: (dtypes, value range)
    "ReduceSum": (FLOATS + INTS, (-10, 10)),
    "ReduceMean": (FLOATS + INTS, (-10, 10)),
    "ReduceMax": (FLOATS + INTS + [np.int8, np.uint8], (-10, 10)),
    "ReduceMin": (FLOATS + INTS + [np.int8, np.uint8], (-10, 10)),
    "ReduceProd": (FLOATS + INTS, (-2, 2)),
    "ReduceL1": (FLOATS + INTS, (-10, 10)),
    "ReduceL2": (FLOATS + INTS, (-10, 10)),
    "ReduceSumSquare": (FLOATS + [np.int64], (-10, 10)),  # the reference sums int32 squares as int64
    "ReduceLogSum": (FLOATS, (0.5, 10)),
    "ReduceLogSumExp": (FLOATS, (-10, 10)),
}


@st.composite
def reduction_case(draw, op_type):
    dtypes, (low, high) = REDUCTIONS[op_type]
    dtype = draw(st.sampled_from(dtypes))
    min_dims = 1 if op_type == "ReduceLogSumExp" else 0  # the reference fails on rank 0 without keepdims
    shape = draw(hnp.array_shapes(min_dims=min_dims, max_dims=4, min_side=0, max_side=4))
    if op_type in ("ReduceMean", "ReduceLogSum") and 0 in shape:
        shape = tuple(max(d, 1) for d in shape)  # mean of nothing is 0/0; log-sum of nothing, log(0)
    x = draw(arrays(dtype, shape, low=low, high=high))
    axes = draw(st.none() | st.lists(st.integers(-x.ndim, x.ndim - 1), unique_by=lambda a: a % max(x.ndim, 1),
                                     max_size=x.ndim) if x.ndim else st.none())
    return x, axes, draw(st.sampled_from([0, 1])), draw(st.sampled_from([0, 1]))


@given(data=st.data())
def test_reduction_with_axes_input(data):
    nodes = []
    for op_type in data.draw(some(REDUCTIONS, 4)):
        x, axes, keepdims, noop = data.draw(reduction_case(op_type))
        axes = None if axes is None else np.array(axes, np.int64)
        nodes.append(node(op_type, x, axes, static=[1], keepdims=keepdims, noop_with_empty_axes=noop))
    check_nodes(nodes, opset=20, tolerance=LOOSE)


@given(data=st.data())
def test_reduction_with_axes_attribute(data):
    nodes = []
    for op_type in data.draw(some(REDUCTIONS, 4)):
        x, axes, keepdims, _ = data.draw(reduction_case(op_type))
        attrs = {"axes": axes} if axes else {}  # an empty attribute list cannot be written; it means all axes anyway
        nodes.append(node(op_type, x, keepdims=keepdims, **attrs))
    check_nodes(nodes, opset=12, tolerance=LOOSE)


@pytest.mark.parametrize("op_type", ["ReduceSum", "ReduceL1", "ReduceSumSquare", "ReduceLogSumExp"])
def test_empty_axes_with_noop_still_applies_the_op_elementwise(op_type):
    x = np.array([[-1.5, 2.0], [3.0, 0.25]], np.float32)
    check(op_type, [x, np.array([], np.int64)], static=[1], noop_with_empty_axes=1)


@pytest.mark.parametrize("op_type, dtype", [("ReduceMax", np.bool_), ("ReduceMin", np.bool_),
                                            ("ReduceMax", np.float32), ("ReduceMin", np.int32),
                                            ("ReduceProd", np.float32), ("ReduceL2", np.float64)])
def test_reducing_an_empty_tensor_gives_the_identity(op_type, dtype):
    x = np.zeros((2, 0, 3), dtype)
    check(op_type, [x, np.array([1], np.int64)], static=[1], keepdims=0)
    check(op_type, [x], keepdims=1)


@given(data=st.data())
def test_reduce_max_min_of_bools(data):
    x = data.draw(arrays(np.bool_, shapes(min_dims=1)))
    axes = np.array([data.draw(st.integers(-x.ndim, x.ndim - 1))], np.int64)
    keepdims = data.draw(st.sampled_from([0, 1]))
    check_nodes([node(op_type, x, axes, static=[1], keepdims=keepdims) for op_type in ("ReduceMax", "ReduceMin")])


def test_axes_given_as_a_graph_input_take_each_run_value():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    rep = onnx_jax.prepare(node_model("ReduceSum", [x, np.array([0], np.int64)], keepdims=0))
    for axes, expected in (([0], x.sum(0)), ([1], x.sum(1)), ([-2], x.sum(0))):
        np.testing.assert_array_equal(rep.run([x, np.array(axes, np.int64)])[0], expected)


@pytest.mark.parametrize("op_type", ["ArgMax", "ArgMin"])
@given(data=st.data())
def test_arg_max_min(op_type, data):
    dtype = data.draw(st.sampled_from([np.float32, np.float64, np.float16, np.int32, np.int64, np.uint8]))
    x = data.draw(arrays(dtype, shapes(min_dims=1), low=-3, high=3))  # a narrow range makes ties
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    last = data.draw(st.sampled_from([0, 1]))
    check(op_type, [x], axis=axis, keepdims=data.draw(st.sampled_from([0, 1])), select_last_index=last)


@pytest.mark.parametrize("op_type", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("last", [0, 1])
def test_arg_max_min_pick_nans_and_ties_like_numpy(op_type, last):
    """Along 2-16 values ArgMax/ArgMin choose column by column (ops/reduction.py: arg_extreme), along more with
    XLA's reduction: the same first (or last) extreme either way, a NaN counting as the extreme."""
    x = np.array([[1, np.nan, 3, np.nan], [2, 2, -1, -1], [np.nan, 0, 0, np.nan], [5, 5, 5, 5]], np.float32)
    for data in (x, x.T, np.tile(x, (1, 5)), x[:, :2]):  # 4, 4, 20 (a reduction) and 2 values
        check(op_type, [data], axis=1, keepdims=0, select_last_index=last)
        check(op_type, [data.astype(np.int32) if not np.isnan(data).any() else data], axis=0, select_last_index=last)


@pytest.mark.parametrize("op_type", ["CumSum", "CumProd"])
@given(data=st.data())
def test_cumulative(op_type, data):
    dtype = data.draw(st.sampled_from([np.float32, np.float64, np.int32, np.int64, np.uint64]))
    x = data.draw(arrays(dtype, shapes(min_dims=1), low=-3 if op_type == "CumProd" else -10, high=3))
    axis = np.array(data.draw(st.integers(-x.ndim, x.ndim - 1)), data.draw(st.sampled_from([np.int32, np.int64])))
    check(op_type, [x, axis], static=[1], opset=26, exclusive=data.draw(st.sampled_from([0, 1])),
          reverse=data.draw(st.sampled_from([0, 1])), **tolerance(dtype))


def test_folding_at_trace_time_has_the_same_semantics():
    x = np.array([[3.0, -1.0, np.nan, 3.0], [0.0, -0.0, 2.0, np.inf]], np.float32)
    check_nodes([node("CumSum", x, np.array(1, np.int64), exclusive=1, reverse=1),
                 node("CumProd", x, np.array(-1, np.int32), exclusive=1),
                 node("TopK", x, np.array([3], np.int64), n_outputs=2, largest=0),
                 node("ArgMax", x, axis=1, select_last_index=1),
                 node("ReduceMax", x, np.array([], np.int64), noop_with_empty_axes=1),
                 node("ReduceMean", np.array([[7, -7], [2, 3]], np.int32), np.array([0], np.int64)),
                 node("ReduceLogSumExp", x, None, keepdims=0),
                 node("Det", x[:, :2].reshape(2, 2, 1) * np.ones(2, np.float32))], opset=26, folded=True)


@st.composite
def top_k_case(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64, np.float16, np.int32, np.int64, np.uint64]))
    x = draw(arrays(dtype, shapes(min_dims=1), low=-3, high=3))
    if dtype == np.float32:  # NaN (both signs), infinities and signed zeros order like the reference
        specials = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0], np.float32)
        picks = draw(hnp.arrays(np.int8, x.shape, elements=st.integers(-12, 5)))
        x = np.where(picks >= 0, specials[np.maximum(picks, 0)], x)
    axis = draw(st.integers(-x.ndim, x.ndim - 1))
    return x, draw(st.integers(0, x.shape[axis])), axis


@given(case=top_k_case(), largest=st.sampled_from([0, 1]))
def test_top_k(case, largest):
    x, k, axis = case
    check("TopK", [x, np.array([k], np.int64)], 2, static=[1], axis=axis, largest=largest)


@given(case=top_k_case())
def test_top_k_before_opset_10_takes_k_as_attribute(case):
    x, k, axis = case
    check("TopK", [x], 2, opset=9, axis=axis, k=k)


@given(data=st.data())
def test_det(data):
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    n = data.draw(st.integers(1, 4))
    x = data.draw(arrays(dtype, data.draw(shapes(max_dims=2, max_side=3)) + (n, n), low=-1, high=1))
    check("Det", [x], rtol=1e-4, atol=1e-5)


# Folded reductions along long trailing axes (the path of Softmax and the normalizations)


@settings(max_examples=12)
@given(st.data())
def test_reduce_trailing_folds_long_trailing_axes(data):
    """Lengths from 64 up take shifted-slice folds (with a remainder; past 2048 values in wider slices)."""
    trailing = data.draw(st.sampled_from([(64,), (95,), (128,), (160,), (197,), (750,), (4, 50), (2081,), (4100,),
                                          (63,)]))
    lead = data.draw(st.sampled_from([(), (1,), (2,), (2, 3)]))
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    x = np.random.default_rng(data.draw(st.integers(0, 2**16))).normal(0, 10, lead + trailing).astype(dtype)
    for value in data.draw(st.lists(st.sampled_from([np.nan, np.inf, -np.inf, -0.0]), max_size=3)):
        x.reshape(-1)[data.draw(st.integers(0, x.size - 1))] = value
    axes = tuple(range(len(lead), x.ndim))
    kinds = {"sum": np.sum, "max": np.max}
    with x64():
        got = jax.jit(lambda v: [reduce_trailing(v, axes, kind) for kind in kinds])(x)
    with np.errstate(invalid="ignore"):  # inf - inf in a sum
        expected = {kind: fn(x, axes, keepdims=True) for kind, fn in kinds.items()}
    for kind, y in zip(kinds, got):
        assert y.dtype == x.dtype and y.shape == lead + (1,) * len(trailing)
        np.testing.assert_allclose(np.asarray(y), expected[kind], err_msg=kind,
                                   rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-3 if dtype == np.float32 else 1e-9)
