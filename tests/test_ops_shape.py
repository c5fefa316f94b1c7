"""Shape and layout ops against onnx.reference: every version form, drawn shapes, dtypes and attributes."""

import jax
import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

import onnx_jax
from oracle import arrays, assert_close, check_node, node_model, shapes

DTYPES = [np.float32, np.float16, np.float64, np.int64, np.int32, np.int8, np.uint8, np.bool_]
INT64_MAX, INT64_MIN = np.iinfo(np.int64).max, np.iinfo(np.int64).min


def i64(*values) -> np.ndarray:
    return np.array(values, np.int64)


def tensor(data, shape=None, dtypes=DTYPES):
    """Draw an array of a drawn dtype (bfloat16 included, cast from float32) and shape."""
    shape = data.draw(shapes()) if shape is None else shape
    dtype = data.draw(st.sampled_from([*dtypes, ml_dtypes.bfloat16]))
    if dtype is ml_dtypes.bfloat16:
        return data.draw(arrays(np.float32, shape)).astype(dtype)
    return data.draw(arrays(dtype, shape))


def check_folded(op_type, inputs, n_outputs=1, *, opset=21, **attrs):
    """Every input an initializer: the node folds to a constant at trace time, equal to the reference."""
    inits = {f"x{i}": x for i, x in enumerate(inputs) if x is not None}
    model = node_model(op_type, inputs, n_outputs, opset=opset, initializers=inits, **attrs)
    fn, params = onnx_jax.to_jax(model, fold_weights=True)
    assert not jax.make_jaxpr(fn)(params).eqns, "the node should fold at trace time"
    assert_close([np.asarray(y) for y in fn(params)], ReferenceEvaluator(model).run(None, {}))


def check(op_type, inputs, n_outputs=1, *, fold=False, **attrs):
    (check_folded if fold else check_node)(op_type, inputs, n_outputs, **attrs)


# Shape, Size, Reshape, Flatten


@given(st.data())
def test_shape_start_end(data):
    x = tensor(data)
    start = data.draw(st.none() | st.integers(-x.ndim - 2, x.ndim + 2))
    end = data.draw(st.none() | st.integers(-x.ndim, x.ndim + 2))  # onnx.reference mishandles end < -rank
    attrs = {k: v for k, v in (("start", start), ("end", end)) if v is not None}
    check_node("Shape", [x], **attrs)
    check_node("Size", [x])


def test_shape_before_opset_15_has_no_slice():
    check_node("Shape", [np.zeros((2, 3, 1), np.float32)], opset=13)


@given(st.data())
def test_reshape(data):
    x = tensor(data, data.draw(shapes(min_dims=1)))
    dims = list(x.shape)
    target = data.draw(st.sampled_from([dims[::-1], [x.size], dims + [1], [1, *dims]]))
    if len(target) > 1 and data.draw(st.booleans()):
        target[data.draw(st.integers(0, len(target) - 1))] = -1
    copied = [d if i >= len(dims) or d != dims[i] or not data.draw(st.booleans()) else 0 for i, d in enumerate(target)]
    opset = data.draw(st.sampled_from([5, 13, 14, 21]))
    check("Reshape", [x, i64(*copied)], opset=opset, fold=data.draw(st.booleans()))


def test_reshape_allowzero_keeps_zero_dims():
    check_node("Reshape", [np.zeros((0, 3), np.float32), i64(3, 0)], allowzero=1)
    check_node("Reshape", [np.zeros((2, 0, 3), np.float32), i64(0, 0, 3, 1)], allowzero=0)


def test_reshape_opset_1_takes_the_shape_as_attribute():
    # onnx.reference has no Reshape-1: compare with numpy
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    (y,) = onnx_jax.prepare(node_model("Reshape", [x], opset=4, shape=[0, -1])).run([x])
    np.testing.assert_array_equal(y, x.reshape(2, 12))


@given(st.data())
def test_flatten(data):
    x = tensor(data, data.draw(shapes(min_dims=1)))
    opset = data.draw(st.sampled_from([9, 11, 13, 21]))
    axis = data.draw(st.integers(-x.ndim if opset >= 11 else 0, x.ndim))
    check("Flatten", [x], opset=opset, axis=axis, fold=data.draw(st.booleans()))


@given(st.data())
def test_transpose(data):
    x = tensor(data)
    perm = data.draw(st.none() | st.permutations(range(x.ndim))) if x.ndim else None
    check("Transpose", [x], fold=data.draw(st.booleans()), **({} if perm is None else {"perm": perm}))


# Squeeze, Unsqueeze, Expand, Tile


@given(st.data())
def test_squeeze(data):
    shape = data.draw(shapes(max_side=2))
    x = tensor(data, shape)
    ones = [i for i, d in enumerate(shape) if d == 1]
    # Axes are omitted (squeeze every 1) or name at least one axis: an empty attribute list has no type that
    # onnx.helper can infer, and an empty axes tensor is read as "omitted" by some runtimes and as "none" by others.
    axes = data.draw((st.none() | st.lists(st.sampled_from(ones), min_size=1, unique=True)) if ones else st.none())
    axes = None if axes is None else [a - x.ndim if data.draw(st.booleans()) else a for a in axes]
    if data.draw(st.booleans()):
        check_node("Squeeze", [x], opset=11, **({} if axes is None else {"axes": axes}))
    else:
        check("Squeeze", [x, None if axes is None else i64(*axes)], fold=data.draw(st.booleans()))


@given(st.data())
def test_unsqueeze(data):
    x = tensor(data, data.draw(shapes(max_dims=3)))
    rank = x.ndim + data.draw(st.integers(1, 3))
    axes = data.draw(st.lists(st.integers(0, rank - 1), min_size=rank - x.ndim, max_size=rank - x.ndim, unique=True))
    if data.draw(st.booleans()):  # onnx.reference inserts attribute axes one by one: keep them sorted
        check_node("Unsqueeze", [x], opset=11, axes=sorted(axes))
    else:
        axes = [a - rank if data.draw(st.booleans()) else a for a in axes]
        check("Unsqueeze", [x, i64(*axes)], fold=data.draw(st.booleans()))


@given(st.data())
def test_expand(data):
    x = tensor(data, data.draw(shapes(max_side=3)))
    lead = data.draw(st.lists(st.integers(1, 3), max_size=2))
    tail = [data.draw(st.sampled_from([1, 3])) if d == 1 else data.draw(st.sampled_from([1, d])) for d in x.shape]
    check("Expand", [x, i64(*lead, *tail)], fold=data.draw(st.booleans()))


@given(st.data())
def test_tile(data):
    x = tensor(data, data.draw(shapes(max_dims=3, max_side=3)))
    repeats = data.draw(st.lists(st.integers(0, 3), min_size=x.ndim, max_size=x.ndim))
    check("Tile", [x, i64(*repeats)], fold=data.draw(st.booleans()))


def test_tile_opset_1_repeats_along_one_axis():
    # onnx.reference has no Tile-1: compare with numpy
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    model = node_model("Tile", [x, i64(3), i64(1)], opset=5, initializers={"x1": i64(3), "x2": i64(1)})
    np.testing.assert_array_equal(onnx_jax.prepare(model).run([x])[0], np.tile(x, (1, 3)))


# Concat, Split, Slice


@given(st.data())
def test_concat(data):
    shape = data.draw(shapes(min_dims=1, max_dims=3))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    dtype = data.draw(st.sampled_from(DTYPES))
    parts = []
    for _ in range(data.draw(st.integers(1, 4))):
        part = list(shape)
        part[axis] = data.draw(st.integers(0, 3))
        parts.append(data.draw(arrays(dtype, tuple(part))))
    check("Concat", parts, axis=axis, fold=data.draw(st.booleans()))


@given(st.data())
def test_split(data):
    x = tensor(data, data.draw(shapes(min_dims=1, max_dims=3, max_side=7)))
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    dim = x.shape[axis]
    form = data.draw(st.sampled_from(["input", "num_outputs", "equal", "attribute"]))
    if form == "num_outputs":
        n = data.draw(st.integers(1, dim))
        check_node("Split", [x], n, opset=18, axis=axis, num_outputs=n)
        return
    if form == "equal":
        n = data.draw(st.sampled_from([k for k in range(1, dim + 1) if dim % k == 0]))
        check_node("Split", [x], n, opset=data.draw(st.sampled_from([11, 13])), axis=axis)
        return
    cuts = sorted(data.draw(st.lists(st.integers(0, dim), max_size=3)))
    sizes = np.diff([0, *cuts, dim]).tolist()
    if form == "attribute":
        check_node("Split", [x], len(sizes), opset=11, axis=axis, split=sizes)
    else:
        check("Split", [x, i64(*sizes)], len(sizes), axis=axis, fold=data.draw(st.booleans()))


def test_split_opset_2_and_opset_1_second_input():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    check_node("Split", [x], 2, opset=2, axis=1, split=[1, 3])
    model = node_model("Split", [x, i64(3, 1)], 2, opset=1, axis=1, initializers={"x1": i64(3, 1)})
    ys = onnx_jax.prepare(model).run([x])  # onnx.reference has no Split-1: compare with numpy
    for y, want in zip(ys, np.split(x, [3], axis=1)):
        np.testing.assert_array_equal(y, want)


def spec_slice(x, starts, ends, axes, steps):
    """Slice-10+ as the spec words it: a negative start or end gets dim added, then start is clamped to
    [0, dim] (positive step) or [0, dim - 1] (negative step) and end to [0, dim] or [-1, dim - 1]."""
    positions = [np.arange(d) for d in x.shape]
    for start, end, axis, step in zip(starts, ends, range(x.ndim) if axes is None else axes, steps):
        dim = x.shape[axis]
        start, end = (int(v) + dim if v < 0 else int(v) for v in (start, end))
        low, high = (0, dim) if step > 0 else (-1, dim - 1)
        positions[axis] = np.arange(min(max(start, max(low, 0)), high), min(max(end, low), high), step)
    return x[np.ix_(*positions)]


def check_slice_against_spec(inputs):
    """onnx_jax's Slice-10+ (run-time inputs and folded) against spec_slice."""
    want = [spec_slice(*inputs)]
    given_inputs = {f"x{i}": x for i, x in enumerate(inputs) if x is not None}
    assert_close(onnx_jax.prepare(node_model("Slice", inputs, opset=21)).run(given_inputs), want)
    folded = node_model("Slice", inputs, opset=21, initializers=given_inputs)
    fn, params = onnx_jax.to_jax(folded, fold_weights=True)
    assert_close([np.asarray(y) for y in fn(params)], want)


@given(st.data())
def test_slice(data):
    x = tensor(data, data.draw(shapes(min_dims=1)))
    axes = data.draw(st.lists(st.integers(0, x.ndim - 1), min_size=1, unique=True))
    starts, ends, steps = [], [], []
    for axis in axes:
        bound = st.integers(-x.shape[axis] - 2, x.shape[axis] + 2) | st.sampled_from([INT64_MIN, INT64_MAX])
        starts.append(data.draw(bound))
        ends.append(data.draw(bound))
        steps.append(data.draw(st.integers(-3, 3).filter(bool)))
    axes = [a - x.ndim if data.draw(st.booleans()) else a for a in axes]
    if data.draw(st.booleans()):
        default_axes = data.draw(st.booleans()) and axes == list(range(len(axes)))
        inputs = [x, i64(*starts), i64(*ends), None if default_axes else i64(*axes), i64(*steps)]
        # The spec clamps a negative-step start to [0, dim - 1] after adding dim to a negative one, so a start
        # below -dim selects the first element (onnx_jax, onnxruntime). onnx.reference slices with numpy, where
        # such a start lies before the first element and the slice is empty: compare those with the spec's
        # formula. (Not with onnxruntime: it reads end == INT64_MAX with a negative step as "to the first
        # element", like numpy's None, where the spec clamps it to dim - 1.)
        if any(step < 0 and start < -x.shape[axis] for axis, start, step in zip(axes, starts, steps)):
            check_slice_against_spec(inputs)
        else:
            check("Slice", inputs, fold=data.draw(st.booleans()))
    else:  # opset 1-9: attributes, unit steps, non-negative axes
        check_node("Slice", [x], opset=9, starts=starts, ends=ends, axes=[a % x.ndim for a in axes])


# Pad, CenterCropPad


@given(st.data())
def test_pad(data):
    x = tensor(data, data.draw(shapes(min_dims=1, max_dims=3)))
    mode = data.draw(st.sampled_from(["constant", "reflect", "edge", "wrap"]))
    axes = data.draw(st.none() | st.lists(st.integers(-x.ndim, x.ndim - 1), min_size=1, unique_by=lambda a: a % x.ndim))
    padded = range(x.ndim) if axes is None else axes
    pads = [data.draw(st.integers(0, x.shape[a] - 1 if mode == "reflect" else 3)) for a in padded for _ in "be"]
    pads = pads[0::2] + pads[1::2]
    value = data.draw(arrays(x.dtype, ())) if mode == "constant" and data.draw(st.booleans()) else None
    if axes is None and mode != "wrap" and data.draw(st.booleans()):
        check_node("Pad", [x, i64(*pads), value], opset=11, mode=mode)
    elif axes is None and mode != "wrap" and x.dtype.kind == "f" and data.draw(st.booleans()):
        check_node("Pad", [x], opset=2, pads=pads, mode=mode, value=1.5)
    else:
        check("Pad", [x, i64(*pads), value, None if axes is None else i64(*axes)], mode=mode,
              fold=data.draw(st.booleans()))


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
def test_negative_pads_crop(mode):
    # np.pad (and so onnx.reference) refuses negative pads; the spec crops
    x = np.arange(20, dtype=np.float32).reshape(4, 5)
    model = node_model("Pad", [x, i64(-1, 2, 1, -2)], initializers={"x1": i64(-1, 2, 1, -2)}, mode=mode)
    (y,) = onnx_jax.prepare(model).run([x])
    np.testing.assert_array_equal(y, np.pad(x[1:, :3], [(0, 1), (2, 0)], mode=mode))


@given(st.data())
def test_center_crop_pad(data):
    x = tensor(data, data.draw(shapes(min_dims=1, max_dims=3)))
    axes = data.draw(st.none() | st.lists(st.integers(-x.ndim, x.ndim - 1), min_size=1, unique_by=lambda a: a % x.ndim))
    sizes = [data.draw(st.integers(1, 7)) for _ in (range(x.ndim) if axes is None else axes)]
    check("CenterCropPad", [x, i64(*sizes)], fold=data.draw(st.booleans()), **({} if axes is None else {"axes": axes}))


# DepthToSpace, SpaceToDepth


@given(st.data())
def test_depth_to_space(data):
    n = data.draw(st.integers(1, 3))
    shape = (data.draw(st.integers(1, 2)), n * n * data.draw(st.integers(1, 3)), *data.draw(shapes(2, 2, 3)))
    x = tensor(data, shape)
    mode = data.draw(st.sampled_from(["DCR", "CRD"]))
    check("DepthToSpace", [x], opset=data.draw(st.sampled_from([11, 13, 21])), blocksize=n, mode=mode,
          fold=data.draw(st.booleans()))


def test_depth_to_space_opset_1_is_dcr():
    # onnx.reference reads a missing `mode` as CRD: compare opset 1 with our opset-11 DCR instead
    x = np.arange(2 * 8 * 2 * 3, dtype=np.float32).reshape(2, 8, 2, 3)
    old, new = (onnx_jax.prepare(node_model("DepthToSpace", [x], opset=v, blocksize=2)).run([x])[0] for v in (1, 11))
    np.testing.assert_array_equal(old, new)


@given(st.data())
def test_space_to_depth(data):
    n = data.draw(st.integers(1, 3))
    shape = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 3)), *(n * d for d in data.draw(shapes(2, 2, 3))))
    x = tensor(data, shape)
    opset = data.draw(st.sampled_from([13, 28]))
    mode = {"mode": data.draw(st.sampled_from(["DCR", "CRD"]))} if opset == 28 else {}
    check("SpaceToDepth", [x], opset=opset, blocksize=n, fold=data.draw(st.booleans()), **mode)


# Constants and generators


SPARSE = helper.make_sparse_tensor(
    helper.make_tensor("v", TensorProto.FLOAT, [2], [5.0, 6.0]),
    helper.make_tensor("i", TensorProto.INT64, [2], [1, 3]),
    [5],
)


@pytest.mark.parametrize(
    ("opset", "attrs"),
    [
        (9, {"value": helper.make_tensor("v", TensorProto.INT32, [2, 2], [1, 2, 3, 4])}),
        (21, {"value": helper.make_tensor("v", TensorProto.BFLOAT16, [3], [1.0, 2.5, -3.0])}),
        (21, {"value_float": 2.5}),
        (21, {"value_floats": [1.0, -2.0]}),
        (21, {"value_int": 7}),
        (21, {"value_ints": [1, 2, 3]}),
    ],
)
def test_constant(opset, attrs):
    model = node_model("Constant", [], opset=opset, **attrs)
    assert_close(onnx_jax.prepare(model).run([]), ReferenceEvaluator(model).run(None, {}))


@pytest.mark.parametrize("opset", [11, 21])
def test_constant_sparse_value_is_densified(opset):
    # onnx.reference cannot return a sparse tensor: compare with numpy
    (y,) = onnx_jax.prepare(node_model("Constant", [], opset=opset, sparse_value=SPARSE)).run([])
    np.testing.assert_array_equal(y, np.array([0, 5, 0, 6, 0], np.float32))


@given(st.data())
def test_constant_of_shape(data):
    shape = data.draw(st.lists(st.integers(0, 3), max_size=3))
    dtype = data.draw(st.sampled_from([TensorProto.FLOAT, TensorProto.INT64, TensorProto.INT8, TensorProto.BOOL,
                                       TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.UINT8]))
    value = {} if data.draw(st.booleans()) else {"value": helper.make_tensor("v", dtype, [1], [1])}
    check("ConstantOfShape", [i64(*shape)], fold=data.draw(st.booleans()), **value)


@given(st.data())
def test_identity(data):
    check("Identity", [tensor(data)], fold=data.draw(st.booleans()))


def test_identity_passes_sequences_and_optionals_through():
    from onnx_jax.ops.shape import Identity

    seq = [np.zeros(2), np.ones(3)]
    assert Identity(seq) is seq and Identity(None) is None


@given(st.data())
def test_range(data):
    dtype = data.draw(st.sampled_from([np.int64, np.int32, np.int16, np.float32, np.float64]))
    start, limit = (data.draw(arrays(dtype, ())) for _ in "sl")
    delta = data.draw(arrays(dtype, (), low=-3, high=3).filter(lambda d: abs(d) >= 0.25))
    check_node("Range", [start, limit, delta], opset=data.draw(st.sampled_from([11, 21, 27])))


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16])
@pytest.mark.parametrize("stash_type", [TensorProto.FLOAT, TensorProto.DOUBLE])
def test_range_low_precision_counts_in_stash_type(dtype, stash_type):
    inputs = [np.array(v, dtype) for v in (1.0, 300.0, 0.7)]
    check_node("Range", inputs, opset=27, stash_type=stash_type)


@given(st.data())
def test_eyelike(data):
    x = tensor(data, data.draw(shapes(2, 2)))
    k = data.draw(st.integers(-4, 4))
    dtype = data.draw(st.none() | st.sampled_from([TensorProto.FLOAT, TensorProto.INT32, TensorProto.DOUBLE]))
    check_node("EyeLike", [x], k=k, **({} if dtype is None else {"dtype": dtype}))


def test_eyelike_of_a_traced_input_is_static():
    model = node_model("EyeLike", [np.zeros((2, 3), np.float32)])
    fn, params = onnx_jax.to_jax(model)
    assert not jax.make_jaxpr(fn)(params, np.zeros((2, 3), np.float32)).eqns


@given(st.data())
def test_trilu(data):
    x = tensor(data, data.draw(shapes(min_dims=2)))
    k = data.draw(st.none() | st.integers(-5, 5))
    check("Trilu", [x, None if k is None else i64(k)], upper=data.draw(st.integers(0, 1)),
          fold=data.draw(st.booleans()))


# Folding shape arithmetic


def test_shape_chain_on_a_traced_input_folds_away():
    """Reshape(x, Concat(Gather(Shape(x), 0), Slice(Shape(x), -1), [-1])) leaves only the reshape."""
    x = np.zeros((2, 3, 4, 5), np.float32)
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Constant", [], ["zero"], value_ints=[0]),
        helper.make_node("Gather", ["s", "zero"], ["batch"]),
        helper.make_node("Shape", ["x"], ["last"], start=-1),
        helper.make_node("Constant", [], ["minus1"], value_ints=[-1]),
        helper.make_node("Concat", ["batch", "minus1", "last"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 4, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    fn, params = onnx_jax.to_jax(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]))
    primitives = [e.primitive.name for e in jax.make_jaxpr(fn)(params, x).eqns]
    assert primitives == ["reshape"]
    for n in (1, 3):
        (y,) = jax.jit(fn)(params, np.ones((n, 3, 4, 5), np.float32))
        assert y.shape == (n, 12, 5)
