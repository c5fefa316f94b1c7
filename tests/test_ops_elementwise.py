"""Elementwise ops, activations, Cast/CastLike/BitCast against onnx.reference."""

import itertools

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import onnx
import onnx_jax
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from onnx_jax.dtypes import is_float, to_onnx_dtype
from oracle import TOLERANCE, arrays, assert_close, node_model, shapes

FLOATS = [np.float32, np.float64, np.float16]
SIGNED = [np.int8, np.int16, np.int32, np.int64]
UNSIGNED = [np.uint8, np.uint16, np.uint32, np.uint64]
NARROW_TOLERANCE = (1e-2, 1e-2)  # bfloat16 and narrower


def assert_same(ours, ref, rtol=None, atol=None, label="output", tolerance=TOLERANCE):
    """Exact dtype and shape; floats (ml_dtypes' included) within tolerance, NaN matching NaN; the rest exact."""
    ref = np.asarray(ref)
    assert ours.dtype == ref.dtype, f"{label}: dtype {ours.dtype} != reference {ref.dtype}"
    assert ours.shape == ref.shape, f"{label}: shape {ours.shape} != reference {ref.shape}"
    if not is_float(ours.dtype):
        as_int = (lambda a: a.astype(np.int64)) if ours.dtype.kind == "V" else (lambda a: a)  # 4- and 2-bit ints
        np.testing.assert_array_equal(as_int(ours), as_int(ref), err_msg=label)
        return
    r, t = tolerance.get(ours.dtype, NARROW_TOLERANCE)
    np.testing.assert_allclose(ours.astype(np.float64), ref.astype(np.float64), rtol=r if rtol is None else rtol,
                               atol=t if atol is None else atol, err_msg=label)


def node(op_type, *inputs, n_outputs=1, static=(), **attrs):
    """One node for check_nodes: its inputs (None for an omitted optional one), those that are initializers."""
    return op_type, inputs, n_outputs, static, attrs


def check_nodes(nodes, *, opset=21, rtol=None, atol=None, tolerance=None, folded=False):
    """Independent nodes in ONE model (one compilation per draw), each output compared with onnx.reference;
    `tolerance` overrides the (rtol, atol) of some dtypes, `rtol`/`atol` those of all. `folded`: every input comes
    from a Constant node, so the nodes are evaluated while tracing."""
    graph_nodes, graph_inputs, initializers, feeds, outputs, labels = [], [], [], {}, [], []
    for j, (op_type, inputs, n_outputs, static, attrs) in enumerate(nodes):
        names = [f"n{j}_x{i}" if x is not None else "" for i, x in enumerate(inputs)]
        for i, (name, x) in enumerate(zip(names, inputs)):
            if name and folded:
                graph_nodes.append(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(x)))
            elif name and i in static:
                initializers.append(numpy_helper.from_array(x, name))
            elif name:
                graph_inputs.append(helper.make_tensor_value_info(name, to_onnx_dtype(x.dtype), x.shape))
                feeds[name] = x
        graph_nodes.append(helper.make_node(op_type, names, [f"n{j}_y{k}" for k in range(n_outputs)], **attrs))
        outputs += [f"n{j}_y{k}" for k in range(n_outputs)]
        labels += [f"{op_type}{attrs} on {[getattr(x, 'dtype', None) for x in inputs]}, output {k}"
                   for k in range(n_outputs)]
    graph = helper.make_graph(graph_nodes, "g", graph_inputs,
                              [helper.make_value_info(o, onnx.TypeProto()) for o in outputs], initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)
    ours = onnx_jax.prepare(model).run(feeds)
    ref = ReferenceEvaluator(model).run(None, feeds)
    for label, a, b in zip(labels, ours, ref):
        assert_same(a, b, rtol, atol, label, {**TOLERANCE, **(tolerance or {})})


def check(op_type, inputs, n_outputs=1, *, static=(), opset=21, rtol=None, atol=None, **attrs):
    """One node through onnx_jax and onnx.reference; inputs at positions `static` become initializers."""
    check_nodes([node(op_type, *inputs, n_outputs=n_outputs, static=static, **attrs)], opset=opset, rtol=rtol,
                atol=atol)


def f32(low, high):
    """Attribute values: floats that survive the trip through a float32 attribute unchanged."""
    return st.floats(float(np.float32(low)), float(np.float32(high)), width=32)


# Unary math: every op of the table in one model per draw

UNARY = {  # op: (value range, dtypes)
    "Abs": ((-10, 10), FLOATS + SIGNED + UNSIGNED),
    "Neg": ((-10, 10), FLOATS + SIGNED),
    "Exp": ((-5, 5), FLOATS),
    "Log": ((0.5, 10), FLOATS),
    "Sqrt": ((0, 10), FLOATS),
    "Reciprocal": ((0.5, 10), FLOATS),
    "Floor": ((-10, 10), FLOATS),
    "Ceil": ((-10, 10), FLOATS),
    "Sigmoid": ((-10, 10), FLOATS),
    "Tanh": ((-5, 5), FLOATS),
    "Relu": ((-10, 10), FLOATS + [np.int8, np.int32, np.int64]),
    "Softplus": ((-10, 10), FLOATS),
    "Softsign": ((-10, 10), FLOATS),
    "Sin": ((-5, 5), FLOATS),
    "Cos": ((-5, 5), FLOATS),
    "Tan": ((-1.5, 1.5), FLOATS),
    "Asin": ((-1, 1), FLOATS),
    "Acos": ((-1, 1), FLOATS),
    "Atan": ((-10, 10), FLOATS),
    "Sinh": ((-5, 5), FLOATS),
    "Cosh": ((-5, 5), FLOATS),
    "Asinh": ((-10, 10), FLOATS),
    "Acosh": ((1, 10), FLOATS),
    "Atanh": ((-0.875, 0.875), FLOATS),
    "Erf": ((-3, 3), [np.float32, np.float16]),  # the reference computes float64 Erf in float32
    "Sign": ((-10, 10), FLOATS + SIGNED + UNSIGNED),
    "HardSwish": ((-5, 5), [np.float32, np.float16]),  # float64: test_hardswish_float64_follows_the_spec
    "Mish": ((-5, 5), FLOATS),
    "BitwiseNot": ((-100, 100), SIGNED + UNSIGNED),
}


def some(table, max_size):
    """A few of the table's ops per draw: each draw compiles one model, and compiling dominates the test time."""
    return st.lists(st.sampled_from(list(table)), min_size=1, max_size=max_size, unique=True)


@given(data=st.data())
def test_unary(data):
    nodes = []
    for op_type in data.draw(some(UNARY, 6)):
        (low, high), dtypes = UNARY[op_type]
        shape = data.draw(shapes(min_dims=1 if op_type == "Softsign" else 0))  # the reference fails on Softsign(scalar)
        nodes.append(node(op_type, data.draw(arrays(data.draw(st.sampled_from(dtypes)), shape, low=low, high=high))))
    check_nodes(nodes, opset=22)


@given(x=arrays(np.float64, shapes(), low=-5, high=5))
def test_hardswish_float64_follows_the_spec(x):
    """HardSwish is x * max(0, min(1, x / 6 + 0.5)). onnx.reference runs the schema's function body, whose
    HardSigmoid attribute alpha is a FLOAT: 1/6 rounded to float32 (0.16666667163...), off by 5e-9 from 1/6 in
    float64 (onnxruntime has no float64 HardSwish). onnx_jax uses 1/6 in the input's precision; float32 and
    float16 still go through the onnx.reference table of test_unary, where the rounding does not show."""
    (ours,) = onnx_jax.prepare(node_model("HardSwish", [x], opset=22)).run([x])
    assert ours.dtype == np.float64 and ours.shape == x.shape
    np.testing.assert_allclose(ours, x * np.maximum(0, np.minimum(1, x / 6 + 0.5)), rtol=1e-15, atol=1e-15)


def test_unary_bfloat16():
    x = np.linspace(-3, 3, 24).astype(ml_dtypes.bfloat16).reshape(2, 3, 4)
    ops = ["Abs", "Neg", "Exp", "Sigmoid", "Tanh", "Relu", "Erf", "Sin", "Floor", "Mish", "HardSwish", "Softplus"]
    check_nodes([node(op_type, x) for op_type in ops] + [node("Sqrt", np.abs(x)), node("Log", np.abs(x) + 1)],
                opset=22)


@given(x=arrays(np.float32, shapes(), low=-20, high=20).map(lambda a: np.round(a * 2) / 2))
def test_round_takes_halves_to_even(x):
    check("Round", [x], opset=22)


@given(data=st.data())
def test_isnan_isinf(data):
    specials = st.sampled_from([0.0, -1.5, 2.0, np.inf, -np.inf, np.nan])
    x = data.draw(hnp.arrays(data.draw(st.sampled_from(FLOATS)), shapes(), elements=specials))
    flags = {name: data.draw(st.sampled_from([0, 1])) for name in ("detect_negative", "detect_positive")}
    check_nodes([node("IsNaN", x), node("IsInf", x, **flags), node("IsInf", x)], opset=20)


# Binary arithmetic, comparison, logic, bitwise: every op of the table in one model per draw


@st.composite
def broadcast_pair(draw, dtype, low=-10, high=10, nonzero_b=False):
    a_shape, b_shape = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=4, max_side=4)).input_shapes
    a = draw(arrays(dtype, a_shape, low=low, high=high))
    b = draw(arrays(dtype, b_shape, low=low, high=high))
    if nonzero_b:
        b = np.where(b == 0, np.array(1, dtype), b)
    return a, b


ALL_NUMERIC = FLOATS + SIGNED + UNSIGNED
BINARY = {
    "Add": ALL_NUMERIC,
    "Sub": ALL_NUMERIC,
    "Mul": ALL_NUMERIC,
    "Div": ALL_NUMERIC,
    "Equal": ALL_NUMERIC + [np.bool_],
    "Less": ALL_NUMERIC,
    "Greater": ALL_NUMERIC,
    "LessOrEqual": ALL_NUMERIC,
    "GreaterOrEqual": ALL_NUMERIC,
    "And": [np.bool_],
    "Or": [np.bool_],
    "Xor": [np.bool_],
    "BitwiseAnd": SIGNED + UNSIGNED,
    "BitwiseOr": SIGNED + UNSIGNED,
    "BitwiseXor": SIGNED + UNSIGNED,
}


@given(data=st.data())
def test_binary(data):
    nodes = []
    for op_type in data.draw(some(BINARY, 5)):
        dtype = data.draw(st.sampled_from(BINARY[op_type]))
        low = -100 if op_type.startswith("Bitwise") else -3 if dtype in (np.int8, np.uint8) else -10
        nodes.append(node(op_type, *data.draw(broadcast_pair(dtype, low, -low, nonzero_b=op_type == "Div"))))
    check_nodes(nodes, opset=19)


def test_binary_bfloat16():
    a = np.linspace(-3, 3, 12).astype(ml_dtypes.bfloat16).reshape(3, 4)
    b = np.linspace(0.5, 2, 4).astype(ml_dtypes.bfloat16)
    check_nodes([node(op_type, a, b) for op_type in ("Add", "Sub", "Mul", "Div", "Pow", "Less", "Equal", "Max")],
                opset=15)


def test_integer_division_truncates_toward_zero():
    a = np.array([7, -7, 7, -7, 0, -128], np.int8)
    b = np.array([2, 2, -2, -2, 3, 3], np.int8)
    check_nodes([node("Div", a, b), node("Div", a[:, None], b)], opset=14)


@pytest.mark.parametrize("op_type", ["Add", "Mul", "Sub", "Div", "Pow", "Equal"])
def test_opset_6_broadcast_aligns_b_at_axis(op_type):
    a = np.arange(1, 25, dtype=np.float32).reshape(2, 3, 4)
    b = np.array([1.0, 2.0, 3.0], np.float32)
    model = node_model(op_type, [a, b], opset=6, broadcast=1, axis=1)
    (ours,) = onnx_jax.prepare(model).run([a, b])
    numpy_op = {"Add": np.add, "Mul": np.multiply, "Sub": np.subtract, "Div": np.divide, "Pow": np.power,
                "Equal": np.equal}[op_type]
    np.testing.assert_allclose(ours, numpy_op(a, b[:, None]), rtol=1e-6)


POW_TYPES = [  # (base, exponent)
    (np.float32, np.float32), (np.float64, np.float64), (np.float16, np.float16), (np.float32, np.int32),
    (np.float32, np.int64), (np.float64, np.uint8), (np.int32, np.int32), (np.int64, np.int64),
    (np.int32, np.float32), (np.int64, np.float64), (np.float32, np.float64),
]


@st.composite
def pow_inputs(draw, base, exponent):
    a_shape, b_shape = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=4)).input_shapes
    a = draw(arrays(base, a_shape, low=0 if is_float(base) else -5, high=5))
    b = draw(arrays(exponent, b_shape, low=-3 if is_float(base) else 0, high=4))
    if is_float(exponent) and not is_float(base):
        b = np.round(b)  # an integer to a fractional power is truncated: pow's last-bit rounding would decide
    return a, b


@given(data=st.data())
def test_pow_type_combinations(data):
    check_nodes([node("Pow", *data.draw(pow_inputs(*types))) for types in data.draw(some(POW_TYPES, 4))], opset=15)


@given(data=st.data())
def test_mod(data):
    nodes = []
    for dtype in data.draw(some(ALL_NUMERIC, 4)):
        low = -3 if dtype in (np.int8, np.uint8) else -10
        fmod = data.draw(st.sampled_from([0, 1]))  # 0: the sign of the divisor, as Python's %
        nodes.append(node("Mod", *data.draw(broadcast_pair(dtype, low, -low, nonzero_b=True)), fmod=fmod))
    check_nodes(nodes, opset=13)


@given(data=st.data())
def test_bitshift(data):
    nodes = []
    for dtype in data.draw(some(UNSIGNED, 2)):
        a, _ = data.draw(broadcast_pair(dtype, 0, 200))
        bits = np.iinfo(dtype).bits  # shifting by the width or more is defined too
        shift = data.draw(arrays(dtype, a.shape[data.draw(st.integers(0, a.ndim)):], low=0, high=bits + 2))
        for direction in ("LEFT", "RIGHT"):
            nodes.append(node("BitShift", a, shift, direction=direction))
    check_nodes(nodes, opset=11)


@given(x=arrays(np.bool_, shapes()))
def test_not(x):
    check("Not", [x], opset=1)


# Variadic


@given(data=st.data())
def test_variadic_broadcast(data):
    nodes = []
    for op_type in data.draw(some(["Sum", "Max", "Min", "Mean"], 2)):
        dtypes = FLOATS if op_type in ("Sum", "Mean") else FLOATS + [np.int32, np.int64, np.uint8]
        dtype = data.draw(st.sampled_from(dtypes))
        n = data.draw(st.integers(1, 4))
        shapes_ = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=n, max_dims=3, max_side=4))
        input_shapes = shapes_.input_shapes
        if op_type == "Mean":  # the reference accumulates in place into the first input
            input_shapes = (shapes_.result_shape,) + input_shapes[1:]
        nodes.append(node(op_type, *[data.draw(arrays(dtype, s)) for s in input_shapes]))
    check_nodes(nodes, opset=13)


# Activations

ACTIVATIONS = {  # op: attribute strategies
    "LeakyRelu": {"alpha": f32(0, 1)},
    "Elu": {"alpha": f32(0.1, 2)},
    "Celu": {"alpha": f32(0.1, 2)},
    "Selu": {"alpha": f32(0.5, 2), "gamma": f32(0.5, 2)},
    "ThresholdedRelu": {"alpha": f32(-2, 2)},
    "HardSigmoid": {"alpha": f32(0.05, 1), "beta": f32(-1, 1)},
    "Swish": {"alpha": f32(0.1, 2)},
    "Gelu": {"approximate": st.sampled_from(["none", "tanh"])},
    "Shrink": {"bias": f32(-1, 1), "lambd": f32(0, 2)},
}


@given(data=st.data())
def test_activations(data):
    nodes = []
    for op_type in data.draw(some(ACTIVATIONS, 4)):
        attrs = {name: data.draw(s) for name, s in ACTIVATIONS[op_type].items() if data.draw(st.booleans())}
        x = data.draw(arrays(data.draw(st.sampled_from(FLOATS)), shapes(), low=-5, high=5))
        nodes.append(node(op_type, x, **attrs))  # attributes not drawn take the spec default
    check_nodes(nodes, opset=24)


@given(data=st.data())
def test_prelu_and_swiglu(data):
    nodes = []
    dtype = data.draw(st.sampled_from(FLOATS + [np.int32]))
    x = data.draw(arrays(dtype, shapes(min_dims=1)))
    slope_shape = tuple(d if data.draw(st.booleans()) else 1 for d in x.shape[data.draw(st.integers(0, x.ndim)):])
    nodes.append(node("PRelu", x, data.draw(arrays(dtype, slope_shape, low=-2, high=2))))
    dtype, shape = data.draw(st.sampled_from(FLOATS)), data.draw(shapes())
    a, b = data.draw(arrays(dtype, shape, low=-5, high=5)), data.draw(arrays(dtype, shape))
    nodes.append(node("SwiGLU", a, b, **({"alpha": data.draw(f32(0.1, 2))} if data.draw(st.booleans()) else {})))
    check_nodes(nodes, opset=28)


@given(data=st.data())
def test_clip(data):
    nodes = []
    for dtype in data.draw(some(FLOATS + [np.int8, np.int32, np.int64, np.uint8], 3)):
        bounds = [data.draw(st.none() | arrays(dtype, ())) for _ in range(2)]
        static = [i + 1 for i, v in enumerate(bounds) if v is not None and data.draw(st.booleans())]
        nodes.append(node("Clip", data.draw(arrays(dtype, shapes())), *bounds, static=static))
    check_nodes(nodes, opset=13)


@given(x=arrays(np.float32, shapes()), bounds=st.tuples(f32(-10, 10), f32(-10, 10)))
def test_clip_6_takes_attributes(x, bounds):
    check_nodes([node("Clip", x, min=min(bounds), max=max(bounds)), node("Clip", x, min=bounds[0]), node("Clip", x)],
                opset=6)


@given(data=st.data())
def test_where_broadcasts_all_three(data):
    nodes = []
    for dtype in data.draw(some(FLOATS + [np.int64, np.uint8, np.bool_], 2)):
        c, a, b = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=3, max_dims=3, max_side=4)).input_shapes
        nodes.append(node("Where", data.draw(arrays(np.bool_, c)), data.draw(arrays(dtype, a)),
                          data.draw(arrays(dtype, b))))
    check_nodes(nodes, opset=16)


# Cast, CastLike, BitCast

F8 = [ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e4m3fnuz, ml_dtypes.float8_e5m2, ml_dtypes.float8_e5m2fnuz]
SUB_BYTE = [ml_dtypes.int4, ml_dtypes.uint4, ml_dtypes.int2, ml_dtypes.uint2, ml_dtypes.float4_e2m1fn]
CAST_TYPES = [np.dtype(t) for t in [np.bool_, *ALL_NUMERIC, ml_dtypes.bfloat16, *F8, ml_dtypes.float8_e8m0fnu,
                                    *SUB_BYTE]]
E8M0 = np.dtype(ml_dtypes.float8_e8m0fnu)


def _numpy_can_cast(src, dst):
    try:
        np.ones(2, src).astype(dst)
        return True
    except (TypeError, ValueError):
        return False


# numpy (so the reference) cannot convert between some ml_dtypes (e8m0 to float8, int4 to uint2, ...)
CAST_PAIRS = [(s, d) for s, d in itertools.product(CAST_TYPES, CAST_TYPES) if s != d and _numpy_can_cast(s, d)]


def _integer(dtype):
    return not is_float(dtype) and dtype != np.bool_


@st.composite
def cast_case(draw, src, dst):
    """Cast or CastLike from src to dst, on values the spec defines: no NaN, infinity or out-of-range float into an
    integer, except that narrow integers wrap like numpy (the conformance data expects it)."""
    shape = draw(shapes(max_dims=3))
    if _integer(dst) and is_float(src):
        values = draw(hnp.arrays(np.float64, shape, elements=st.floats(0 if dst == np.uint64 else -300, 300)))
    elif is_float(src):
        special = st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e6, -1e6, 1e-7, 448.0, 500.0, 0.25])
        values = draw(hnp.arrays(np.float64, shape, elements=st.floats(-600, 600) | special))
    else:
        values = draw(hnp.arrays(np.float64, shape, elements=st.integers(-300, 300).map(float)))
    if dst == E8M0:
        values = np.abs(values)  # the spec leaves negative inputs unspecified
    with np.errstate(all="ignore"):
        x = np.asarray(values.astype(np.int64).astype(src) if _integer(src) else values.astype(src))
    saturate = draw(st.sampled_from([0, 1]))
    if dst != E8M0 and draw(st.booleans()):  # the reference's CastLike has no round_mode
        return node("CastLike", x, np.zeros((1,), dst), saturate=saturate)
    return node("Cast", x, to=to_onnx_dtype(dst), saturate=saturate,
                round_mode=draw(st.sampled_from(["up", "down", "nearest"])))


@pytest.mark.parametrize("src", CAST_TYPES, ids=str)
def test_cast_every_pair(src):
    """Every pair numpy can convert, on a fixed set of values, both saturate modes and every e8m0 rounding."""
    nodes = []
    for dst in [d for s, d in CAST_PAIRS if s == src]:
        modes = [(1, "up")] + [(0, "up")] * (dst in F8 or dst == E8M0)
        for saturate, round_mode in modes + [(1, "down"), (0, "nearest"), (1, "nearest")] * (dst == E8M0):
            if _integer(dst) and is_float(src):
                values = np.array([0, 1.5, 7.9, 127, 255] + ([] if dst == np.uint64 else [-2.5, -9, -300.2]))
            elif is_float(src):
                values = np.array([np.nan, np.inf, -np.inf, 0, -0.0, 0.1, 0.75, 3, 448, 500, 6e4, 1e6, -1e6, 1e-7, -6])
            else:
                values = np.array([0, 1, 2, 3, 7, 8, 15, -1, -2, -8, 127, 255, 300])
            values = np.abs(values) if dst == E8M0 else values
            with np.errstate(all="ignore"):
                x = values.astype(np.int64).astype(src) if _integer(src) else values.astype(src)
            nodes.append(node("Cast", x, to=to_onnx_dtype(dst), saturate=saturate, round_mode=round_mode))
    check_nodes(nodes, opset=25)


@given(data=st.data())
def test_cast(data):
    pairs = data.draw(some(CAST_PAIRS, 6))
    check_nodes([data.draw(cast_case(src, dst)) for src, dst in pairs], opset=25)


def test_cast_opset_1_names_the_type():
    x = np.array([1.5, -2.5, 3.0], np.float64)
    (y,) = onnx_jax.prepare(node_model("Cast", [x], opset=1, to="FLOAT")).run([x])
    assert y.dtype == np.float32 and y.tolist() == [1.5, -2.5, 3.0]


def test_folding_at_trace_time_has_the_same_semantics():
    x = np.array([-9.0, 500.0, np.inf, 0.3, np.nan], np.float32)
    check_nodes([node("Cast", x[:2], to=TensorProto.INT4),
                 node("Cast", x, to=TensorProto.FLOAT8E4M3FN),
                 node("Cast", x, to=TensorProto.FLOAT8E4M3FN, saturate=0),
                 node("Cast", np.abs(x), to=TensorProto.FLOAT8E8M0, round_mode="nearest"),
                 node("CastLike", x[:2], np.zeros(1, ml_dtypes.float4_e2m1fn)),
                 node("BitCast", x, to=TensorProto.INT32),
                 node("Div", np.array([7, -7], np.int32), np.array([-2], np.int32)),
                 node("Mod", np.array([7, -7], np.int32), np.array([-2], np.int32)),
                 node("Pow", np.array([3, 2], np.int64), np.array([2.0, 0.5], np.float32)),
                 node("Clip", x, np.array(-1, np.float32), None),
                 node("Mean", x, x[:1])], opset=26, folded=True)


# the reference views bytes, which for unpacked 4- and 2-bit types is not a bit cast
BITCAST_PAIRS = [(s, d) for s, d in itertools.product(CAST_TYPES, CAST_TYPES)
                 if s != d and s.itemsize == d.itemsize and not {s, d} & set(map(np.dtype, SUB_BYTE))]


@given(data=st.data())
def test_bitcast(data):
    nodes = []
    for src, dst in data.draw(some(BITCAST_PAIRS, 6)):
        shape = data.draw(shapes(max_dims=3))
        if np.dtype(np.bool_) in (src, dst):
            x = data.draw(hnp.arrays(np.uint8, shape, elements=st.integers(0, 1))).view(src)
        else:
            x = data.draw(hnp.arrays(np.uint8, shape + (src.itemsize,))).view(src).reshape(shape)
        nodes.append(node("BitCast", x, to=to_onnx_dtype(dst)))
    check_nodes(nodes, opset=26, rtol=0, atol=0)


COMPLEX = np.array([1.5 - 2j, 0.25 + 7j], np.complex64)


@pytest.mark.parametrize("x, expected", [
    (COMPLEX, COMPLEX.view(np.int64)),
    (COMPLEX.view(np.float64), COMPLEX),
    (COMPLEX, COMPLEX),
    (np.array([-8, -1, 0, 7], ml_dtypes.int4), np.array([8, 15, 0, 7], ml_dtypes.uint4)),
], ids=["complex64-int64", "float64-complex64", "complex64-complex64", "int4-uint4"])
def test_bitcast_complex_and_4_bit(x, expected):
    """Types onnx.reference cannot bitcast: complex (real part in the low half) and 4-bit integers."""
    model = node_model("BitCast", [x], opset=26, to=to_onnx_dtype(expected.dtype))
    (y,) = onnx_jax.prepare(model).run([x])
    assert y.dtype == expected.dtype
    np.testing.assert_array_equal(y.view(np.uint8), expected.view(np.uint8))


@pytest.mark.parametrize("exponent", [1.0, 2.0, 3.0, 4.0, 0.5, -1.0, 5.0])
def test_pow_with_a_constant_exponent(exponent):
    """Small integer constant exponents are lowered to multiplications (GELU's x**3); others to power."""
    x = np.linspace(-3, 3, 24, dtype=np.float32).reshape(2, 3, 4)
    y = np.array(exponent, np.float32)
    model = node_model("Pow", [x, y], initializers={"x1": y})
    ours = onnx_jax.prepare(model).run([x])
    assert_close(ours, ReferenceEvaluator(model).run(None, {"x0": x}), rtol=1e-6, atol=1e-6)
