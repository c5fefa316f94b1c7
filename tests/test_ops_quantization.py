"""Property tests for ops/quantization.py against onnx.reference (and onnxruntime where the reference falls short)."""

from __future__ import annotations

import functools
import math
import re

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import lax

import onnx_jax
from onnx_jax.ops import quantization
from oracle import arrays, assert_close, check_node, node_model, shapes

INTEGERS = [np.int8, np.uint8, np.int16, np.uint16, ml_dtypes.int4, ml_dtypes.uint4, ml_dtypes.int2, ml_dtypes.uint2]
FLOAT8 = [ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e4m3fnuz, ml_dtypes.float8_e5m2, ml_dtypes.float8_e5m2fnuz]
SOME = settings(max_examples=10)


def integers(data, dtype, shape):
    """An array of any values of an integer dtype (int4/int2 included)."""
    info = ml_dtypes.iinfo(dtype)
    values = data.draw(st.lists(st.integers(int(info.min), int(info.max)), min_size=math.prod(shape),
                                max_size=math.prod(shape)))
    return np.array(values, np.int64).reshape(shape).astype(dtype)


def granularity(data, shape):
    """(axis, block_size, scale shape) for per-tensor, per-axis or blocked quantization of x's shape."""
    kind = data.draw(st.sampled_from(["tensor", "axis", "block"]))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    if kind == "tensor":
        return axis, 0, ()
    if kind == "axis":
        return axis, 0, (shape[axis],)
    block = data.draw(st.integers(1, shape[axis]))
    blocked = list(shape)
    blocked[axis] = -(-shape[axis] // block)
    return axis, block, tuple(blocked)


def onnxruntime(model, inputs):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {f"x{i}": x for i, x in enumerate(inputs) if x is not None})


def ours(model, inputs):
    return list(onnx_jax.prepare(model).run([x for x in inputs if x is not None]))


@given(st.data())
def test_quantize_linear_integers_per_tensor_axis_and_block(data):
    dtype = data.draw(st.sampled_from(INTEGERS))
    shape = data.draw(shapes(1, 3, 5))
    axis, block, pshape = granularity(data, shape)
    x = data.draw(arrays(np.float32, shape, low=-400, high=400))
    scale = data.draw(arrays(np.float32, pshape, low=0.25, high=8))
    zero_point = integers(data, dtype, pshape) if data.draw(st.booleans()) or dtype != np.uint8 else None
    check_node("QuantizeLinear", [x, scale, zero_point], opset=25, axis=axis, block_size=block)


@SOME
@given(st.data())
def test_quantize_linear_half_precision_and_output_dtype(data):
    dtype = data.draw(st.sampled_from([np.float16, ml_dtypes.bfloat16]))
    x = data.draw(arrays(np.float32, data.draw(shapes(0, 3)), low=-300, high=300)).astype(dtype)
    scale = np.array(data.draw(st.floats(0.5, 4, width=16)), dtype)
    out = data.draw(st.sampled_from([np.int8, np.uint8, np.int16]))
    check_node("QuantizeLinear", [x, scale], opset=21, output_dtype=onnx_jax.dtypes.to_onnx_dtype(out))


@SOME
@given(st.data())
def test_quantize_linear_precision_attribute_sets_division_type(data):
    x = data.draw(arrays(np.float32, data.draw(shapes(1, 2)), low=-100, high=100))
    scale = np.array(data.draw(st.floats(0.5, 4, width=16)), np.float16)
    check_node("QuantizeLinear", [x, scale, np.array(3, np.int8)], opset=23, precision=1)


@given(st.data())
def test_quantize_linear_float8_saturates_or_overflows(data):
    dtype = data.draw(st.sampled_from(FLOAT8))
    x = data.draw(arrays(np.float32, data.draw(shapes(0, 3)), low=-1e5, high=1e5))
    scale = np.array(data.draw(st.floats(0.5, 4)), np.float32)
    saturate = data.draw(st.integers(0, 1))
    check_node("QuantizeLinear", [x, scale, np.zeros((), dtype)], opset=21, saturate=saturate)


@given(st.data())
def test_dequantize_linear_integers_per_tensor_axis_and_block(data):
    dtype = data.draw(st.sampled_from(INTEGERS + [np.int32]))
    shape = data.draw(shapes(1, 3, 5))
    axis, block, pshape = granularity(data, shape)
    x = integers(data, dtype, shape)
    scale = data.draw(arrays(np.float32, pshape, low=2**-7, high=8))
    zero_point = integers(data, dtype, pshape) if data.draw(st.booleans()) and dtype != np.int32 else None
    check_node("DequantizeLinear", [x, scale, zero_point], opset=25, axis=axis, block_size=block)


@SOME
@given(st.data())
def test_dequantize_linear_float8_and_output_dtype(data):
    dtype = data.draw(st.sampled_from(FLOAT8))
    x = data.draw(arrays(np.float32, data.draw(shapes(0, 3)), low=-200, high=200)).astype(dtype)
    scale = np.array(data.draw(st.floats(0.5, 4)), np.float32)
    check_node("DequantizeLinear", [x, scale], opset=23, output_dtype=10)  # float16


@SOME
@given(st.data())
def test_quantize_then_dequantize_opset10_round_trips_within_half_a_step(data):
    x = data.draw(arrays(np.float32, data.draw(shapes(1, 3)), low=-10, high=10))
    scale, zero_point = np.float32(0.1), np.uint8(128)
    model = node_model("QuantizeLinear", [x, np.array(scale), np.array(zero_point)], opset=10)
    q = ours(model, [x, np.array(scale), np.array(zero_point)])[0]
    back = ours(node_model("DequantizeLinear", [q, np.array(scale), np.array(zero_point)], opset=10),
                [q, np.array(scale), np.array(zero_point)])[0]
    np.testing.assert_allclose(back, x, atol=0.05 + 1e-6)


@SOME
@given(st.data())
def test_dynamic_quantize_linear(data):
    x = data.draw(arrays(np.float32, data.draw(shapes(1, 3)), low=-50, high=50))
    check_node("DynamicQuantizeLinear", [x], 3)


def _zero_point(data, dtype):
    return np.array(data.draw(st.integers(int(np.iinfo(dtype).min), int(np.iinfo(dtype).max))), dtype)


@given(st.data())
def test_matmul_integer_with_scalar_and_per_column_zero_points(data):
    a_type, b_type = (data.draw(st.sampled_from([np.int8, np.uint8])) for _ in range(2))
    m, k, n = (data.draw(st.integers(1, 5)) for _ in range(3))
    batch = data.draw(shapes(0, 2, 3))
    a = integers(data, a_type, batch + (m, k))
    b = integers(data, b_type, (k, n))
    b_zero_point = data.draw(st.sampled_from([None, _zero_point(data, b_type), integers(data, b_type, (n,))]))
    check_node("MatMulInteger", [a, b, _zero_point(data, a_type), b_zero_point], opset=10)


@SOME
@given(st.data())
def test_matmul_integer_per_row_zero_point(data):
    m, k, n = (data.draw(st.integers(1, 5)) for _ in range(3))
    a, b = integers(data, np.uint8, (m, k)), integers(data, np.int8, (k, n))
    a_zero_point = integers(data, np.uint8, (m,))
    (y,) = ours(node_model("MatMulInteger", [a, b, a_zero_point], opset=10), [a, b, a_zero_point])
    np.testing.assert_array_equal(y, (a.astype(np.int32) - a_zero_point[:, None]) @ b.astype(np.int32))


@SOME
@given(st.data())
def test_qlinear_matmul_matches_reference_and_onnxruntime(data):
    dtype = data.draw(st.sampled_from([np.int8, np.uint8]))
    m, k, n = (data.draw(st.integers(1, 4)) for _ in range(3))
    a, b = integers(data, dtype, (m, k)), integers(data, dtype, (k, n))
    scales = [np.array(data.draw(st.floats(2**-7, 0.25, width=32)), np.float32) for _ in range(3)]
    zps = [_zero_point(data, dtype) for _ in range(3)]
    inputs = [a, scales[0], zps[0], b, scales[1], zps[1], scales[2], zps[2]]
    check_node("QLinearMatMul", inputs, opset=10)
    model = node_model("QLinearMatMul", inputs, opset=10)
    assert_close(ours(model, inputs), onnxruntime(model, inputs))


def _conv_attrs(data, spatial):
    strides = data.draw(st.lists(st.integers(1, 2), min_size=spatial, max_size=spatial))
    dilations = data.draw(st.lists(st.integers(1, 2), min_size=spatial, max_size=spatial))
    pads = data.draw(st.lists(st.integers(0, 1), min_size=2 * spatial, max_size=2 * spatial))
    return dict(strides=strides, dilations=dilations, pads=pads)


@SOME
@given(st.data())
def test_conv_integer(data):
    group = data.draw(st.integers(1, 2))
    c_in, c_out = group * data.draw(st.integers(1, 2)), group * data.draw(st.integers(1, 2))
    spatial = data.draw(st.integers(1, 2))
    x = integers(data, np.uint8, (1, c_in) + (5,) * spatial)
    w = integers(data, np.uint8, (c_out, c_in // group) + (2,) * spatial)
    x_zero_point, w_zero_point = _zero_point(data, np.uint8), _zero_point(data, np.uint8)
    check_node("ConvInteger", [x, w, x_zero_point, w_zero_point], opset=10, group=group, **_conv_attrs(data, spatial))


@SOME
@given(st.data())
def test_conv_integer_same_padding_matches_onnxruntime(data):
    auto_pad = data.draw(st.sampled_from(["SAME_UPPER", "SAME_LOWER", "VALID"]))
    x, w = integers(data, np.uint8, (1, 2, 5, 4)), integers(data, np.uint8, (3, 2, 2, 3))
    inputs = [x, w, _zero_point(data, np.uint8)]
    model = node_model("ConvInteger", inputs, opset=10, auto_pad=auto_pad, strides=[2, 1])
    assert_close(ours(model, inputs), onnxruntime(model, inputs))


@SOME
@given(st.data())
def test_qlinear_conv_with_bias_and_per_channel_weights(data):
    c_in, c_out = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    x = integers(data, np.uint8, (2, c_in, 5, 5))
    w = integers(data, np.int8, (c_out, c_in, 3, 3))
    w_scale = data.draw(arrays(np.float32, data.draw(st.sampled_from([(), (c_out,)])), low=2**-10, high=2**-7))
    bias = data.draw(st.sampled_from([None, integers(data, np.int16, (c_out,)).astype(np.int32)]))
    inputs = [x, np.array(0.02, np.float32), _zero_point(data, np.uint8), w, w_scale,
              np.zeros(w_scale.shape, np.int8), np.array(0.05, np.float32), _zero_point(data, np.uint8), bias]
    check_node("QLinearConv", inputs, opset=10, **_conv_attrs(data, 2))


def _conv_integer_model(channels: int):
    inputs = [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.UINT8, [1, channels, 6, 6]),
              onnx.helper.make_tensor_value_info("w", onnx.TensorProto.UINT8, [4, channels, 3, 3])]
    graph = onnx.helper.make_graph([onnx.helper.make_node("ConvInteger", ["x", "w"], ["y"])], "g", inputs,
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.INT32, None)])
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 10)])


def test_conv_integer_lowers_to_exact_float_convolutions():
    """XLA's GPU backend rejects int32 convolutions ("UNIMPLEMENTED: ... CuDNN integer convolutions must have s8
    input and filter") and its CPU backend runs them as plain loops: ConvInteger convolves in float32 while its sums
    stay below 2**24 (4 * 9 terms of at most 255 * 255), in float64 beyond (64 * 9 terms). On CPU the float32 case
    takes the float Conv's lowering (here multiply-adds over the 36 channel-taps)."""
    for channels, float_type in [(4, "f32"), (64, "f64")]:
        fn, params = onnx_jax.to_jax(_conv_integer_model(channels))
        specs = [jax.ShapeDtypeStruct(s, np.uint8) for s in [(1, channels, 6, 6), (4, channels, 3, 3)]]
        for platform in ("cuda", "cpu"):
            text = jax.export.export(jax.jit(lambda *a: fn(params, *a)), platforms=[platform])(*specs).mlir_module()
            convolutions = re.findall(r"stablehlo.convolution.*-> tensor<(\w+)>", text)
            if platform == "cpu" and float_type == "f32":  # 36 channel-taps: the float Conv's multiply-adds
                assert convolutions == [] and "tensor<1x4x4x4xf32>" in text, convolutions
            else:
                assert convolutions == [f"1x4x4x4x{float_type}"], (channels, platform, convolutions)


def _integer_conv(x, w, **attrs):
    return lax.conv_general_dilated(x, w, preferred_element_type=jnp.int32, **attrs)


@pytest.mark.parametrize("channels", [4, 64])
def test_exact_float_conv_equals_the_integer_conv(channels):
    """Both float paths: the same int32 results at the extremes of 8-bit operands shifted by their zero points."""
    rng = np.random.default_rng(channels)
    x = jnp.asarray(rng.choice([-255, 255, 0, 7], (2, channels, 6, 6)), jnp.int32)
    w = jnp.asarray(rng.choice([-255, 255, -3], (4, channels, 3, 3)), jnp.int32)
    conv = functools.partial(lax.conv_general_dilated, window_strides=(1, 1), padding=[(1, 1), (0, 0)])
    with jax.enable_x64(True):
        want = _integer_conv(x, w, window_strides=(1, 1), padding=[(1, 1), (0, 0)])
        got = quantization._exact_float_conv(conv, x, w)
    assert got.dtype == want.dtype == jnp.int32
    np.testing.assert_array_equal(got, want)
    if channels == 4:  # float32 is exact here: the CPU path through the float Conv's lowering
        got = quantization._float32_conv(x, w, pads=(1, 0, 1, 0))
        assert got.dtype == jnp.int32
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("group, channels, kernel", [(1, 1, 5), (1, 16, 1), (8, 8, 3), (2, 8, 3)])
def test_float32_conv_is_exact_on_each_float_conv_path(group, channels, kernel):
    """One input channel (multiply-adds over the image), 1x1 (a matmul), depthwise and grouped: int32 results equal
    at the extremes of the shifted operands."""
    rng = np.random.default_rng(channels)
    x = jnp.asarray(rng.choice([-255, 255, 0, 7], (2, channels, 9, 9)), jnp.int32)
    w = jnp.asarray(rng.choice([-255, 255, -3], (8, channels // group, kernel, kernel)), jnp.int32)
    want = _integer_conv(x, w, window_strides=(2, 1), padding=[(1, 1), (1, 1)], feature_group_count=group)
    got = quantization._float32_conv(x, w, pads=(1, 1, 1, 1), strides=(2, 1), group=group)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_wide_quotient_is_ieee_division(dtype):
    """The GPU path of quantization's division (XLA's float32 division there is not correctly rounded), run here."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal(1 << 16).astype(dtype) for _ in range(2))
    with jax.enable_x64(True):
        got = quantization._wide_quotient(jnp.asarray(a), jnp.asarray(b))
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, a / b)


def test_quantizers_divide_in_float64_on_gpus_only():
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [4])
    scale = onnx.helper.make_tensor("s", onnx.TensorProto.FLOAT, [], [0.5])
    nodes = [onnx.helper.make_node("QuantizeLinear", ["x", "s"], ["q"]),
             onnx.helper.make_node("DynamicQuantizeLinear", ["x"], ["d", "d_scale", "d_zero_point"])]
    outputs = [onnx.helper.make_tensor_value_info(n, t, None) for n, t in
               [("q", onnx.TensorProto.UINT8), ("d", onnx.TensorProto.UINT8)]]
    model = onnx.helper.make_model(onnx.helper.make_graph(nodes, "g", [x], outputs, [scale]),
                                   opset_imports=[onnx.helper.make_opsetid("", 13)])
    fn, params = onnx_jax.to_jax(model)
    for platform, divisions in [("cuda", {"f64"}), ("cpu", {"f32"})]:
        lowered = jax.export.export(jax.jit(lambda x: fn(params, x)), platforms=[platform])
        text = lowered(jax.ShapeDtypeStruct((4,), np.float32)).mlir_module()
        assert set(re.findall(r"stablehlo.divide .*: tensor<(?:\w+x)*(f\d+)>", text)) == divisions, platform
