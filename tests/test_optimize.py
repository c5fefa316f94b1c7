"""onnx_jax.optimize: the prepare-time rewrites keep results (against onnx.reference) and leave the model alone."""

from __future__ import annotations

import re

import jax
import ml_dtypes
import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper
from onnx.reference import ReferenceEvaluator
from test_ops_nn import conv_case

import onnx_jax
from onnx_jax.errors import NodeExecutionError
from onnx_jax.graph import read_graph
from onnx_jax.ops.elementwise import Materialized
from onnx_jax.optimize import INTERNAL_DOMAIN, optimize
from oracle import arrays, assert_close, node_model


def _ops(graph) -> list[tuple[str, str]]:
    return [(n.domain, n.op_type) for n in graph.nodes]


@settings(max_examples=15)
@given(st.data())
def test_conv_with_constant_weights(data):
    x_shape, w_shape, attrs = data.draw(conv_case())
    if data.draw(st.booleans()):  # depthwise, with a channel multiplier of 1 or 2
        channels, multiplier = x_shape[1], data.draw(st.integers(1, 2))
        attrs["group"] = channels
        w_shape = (channels * multiplier, 1, *w_shape[2:])
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    x = data.draw(arrays(dtype, x_shape, low=-2, high=2))
    weights = {"x1": data.draw(arrays(dtype, w_shape, low=-2, high=2))}
    if data.draw(st.booleans()):
        weights["x2"] = data.draw(arrays(dtype, (w_shape[0],)))
    model = node_model("Conv", [x, *weights.values()], initializers=weights, **attrs)
    assert _ops(optimize(read_graph(model))) == [(INTERNAL_DOMAIN, "Conv")]
    ours = onnx_jax.prepare(model).run([x])
    assert_close(ours, ReferenceEvaluator(model).run(None, {"x0": x}))


@settings(max_examples=15)
@given(st.data())
def test_depthwise_conv_with_stride_one(data):
    """Depthwise convolutions with stride 1 over 2-3 spatial axes read flattened shifted windows (ops/nn.py)."""
    n = data.draw(st.integers(2, 3))
    kernel = [data.draw(st.integers(1, 3)) for _ in range(n)]
    dilations = [data.draw(st.integers(1, 2)) for _ in range(n)]
    spans = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    pads = [data.draw(st.integers(0, s - 1)) for s in spans * 2]
    sizes = [data.draw(st.integers(max(1, s - lo - hi), 5)) for s, lo, hi in zip(spans, pads, pads[n:])]
    channels, multiplier = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 2))
    x = data.draw(arrays(np.float32, (data.draw(st.integers(1, 2)), channels, *sizes), low=-2, high=2))
    w = data.draw(arrays(np.float32, (channels * multiplier, 1, *kernel), low=-2, high=2))
    model = node_model("Conv", [x, w], initializers={"x1": w}, group=channels, pads=pads, dilations=dilations)
    assert_close(onnx_jax.prepare(model).run([x]), ReferenceEvaluator(model).run(None, {"x0": x}))


def _conv_batchnorm_model(rng, with_bias: bool) -> onnx.ModelProto:
    inits = {
        "w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "scale": rng.uniform(0.5, 2, 4).astype(np.float32),
        "bias": rng.standard_normal(4).astype(np.float32),
        "mean": rng.standard_normal(4).astype(np.float32),
        "var": rng.uniform(0.5, 2, 4).astype(np.float32),
    }
    conv_inputs = ["x", "w"]
    if with_bias:
        inits["b"] = rng.standard_normal(4).astype(np.float32)
        conv_inputs.append("b")
    nodes = [
        helper.make_node("Conv", conv_inputs, ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["y"], name="bn", epsilon=1e-3),
        helper.make_node("Relu", ["y"], ["z"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes, "conv_bn", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 3, 6, 6])],
        [helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, None)],
        initializer=[onnx.numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_batchnorm_folds_into_conv():
    rng = np.random.default_rng(0)
    for with_bias in (False, True):
        model = _conv_batchnorm_model(rng, with_bias)
        before = model.SerializeToString()
        graph = optimize(read_graph(model))
        assert _ops(graph) == [(INTERNAL_DOMAIN, "Conv"), ("", "Relu")]
        assert graph.nodes[0].name == "conv"  # errors keep naming the user's node
        assert set(graph.initializers) == {"w/bn_folded/channels_last", "b/bn_folded_bias" if with_bias
                                           else "conv/bn_folded_bias"}
        x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
        assert_close(onnx_jax.prepare(model).run([x]), ReferenceEvaluator(model).run(None, {"x": x}), atol=1e-5)
        assert model.SerializeToString() == before


def test_batchnorm_stays_when_the_conv_output_is_read_elsewhere():
    model = _conv_batchnorm_model(np.random.default_rng(1), False)
    model.graph.output.append(helper.make_tensor_value_info("c", onnx.TensorProto.FLOAT, None))
    assert ("", "BatchNormalization") in _ops(optimize(read_graph(model)))
    x = np.random.default_rng(2).standard_normal((2, 3, 6, 6)).astype(np.float32)
    assert_close(onnx_jax.prepare(model).run([x]), ReferenceEvaluator(model).run(None, {"x": x}), atol=1e-5)


def test_optimize_false_lowers_the_graph_as_written():
    model = _conv_batchnorm_model(np.random.default_rng(5), True)
    rep = onnx_jax.prepare(model, optimize=False)
    assert _ops(rep.program.graph) == [("", "Conv"), ("", "BatchNormalization"), ("", "Relu")]
    x = np.random.default_rng(6).standard_normal((2, 3, 6, 6)).astype(np.float32)
    assert_close(rep.run([x]), onnx_jax.prepare(model).run([x]), atol=1e-5)


@settings(max_examples=10)
@given(st.data())
def test_gemm_with_constant_transposed_weights(data):
    m, k, n = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 5)), data.draw(st.integers(1, 5))
    trans_a = data.draw(st.sampled_from([0, 1]))
    a = data.draw(arrays(np.float32, (k, m) if trans_a else (m, k), low=-2, high=2))
    weights = {"x1": data.draw(arrays(np.float32, (n, k), low=-2, high=2))}
    if data.draw(st.booleans()):
        weights["x2"] = data.draw(arrays(np.float32, (n,), low=-2, high=2))
    attrs = {"transA": trans_a, "transB": 1, "alpha": data.draw(st.sampled_from([1.0, 0.5])), "beta": 1.0}
    model = node_model("Gemm", [a, *weights.values()], initializers=weights, **attrs)
    (node,) = optimize(read_graph(model)).nodes
    assert node.attrs["transB"] == 0 and node.attrs["transA"] == trans_a
    assert_close(onnx_jax.prepare(model).run([a]), ReferenceEvaluator(model).run(None, {"x0": a}), atol=1e-5)


def test_expressions_of_weights_are_computed_once():
    """Transpose of a (tied) weight and DequantizeLinear of int8 weights fold into initializers; an Expand that
    would grow the weights stays a node."""
    rng = np.random.default_rng(7)
    inits = {
        "w": rng.standard_normal((5, 4)).astype(np.float32),
        "q": rng.integers(-128, 127, (5, 3), dtype=np.int8),
        "scale": np.array(0.05, np.float32),
        "row": rng.standard_normal((1, 3)).astype(np.float32),
        "big": np.array([100_000, 3], np.int64),  # 1.2 MB from 12 bytes
    }
    nodes = [
        helper.make_node("Transpose", ["w"], ["wt"], name="transpose"),
        helper.make_node("MatMul", ["x", "wt"], ["h"], name="matmul"),
        helper.make_node("DequantizeLinear", ["q", "scale"], ["dq"], name="dequantize"),
        helper.make_node("MatMul", ["h", "dq"], ["y"], name="matmul_q"),
        helper.make_node("Expand", ["row", "big"], ["grown"], name="expand"),
    ]
    graph = helper.make_graph(
        nodes, "weights", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in ("y", "grown")],
        initializer=[onnx.numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    optimized = optimize(read_graph(model))
    assert _ops(optimized) == [("", "MatMul"), ("", "MatMul"), ("", "Expand")]
    x = rng.standard_normal((2, 4)).astype(np.float32)
    assert_close(onnx_jax.prepare(model).run([x]), ReferenceEvaluator(model).run(None, {"x": x}), atol=1e-5)


def _pad_conv_model(pads, *, opset=18, mode="constant", value=None, axes=None, extra_output=False,
                    conv_pads=(1, 0, 0, 1)) -> onnx.ModelProto:
    """x -> Pad (widths computed by Constant/Concat, as exporters write them) -> Conv; optionally Pad also an output."""
    rng = np.random.default_rng(8)
    inits = {"w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "b": rng.standard_normal(4).astype(np.float32)}
    half = len(pads) // 2
    nodes = [
        *(helper.make_node("Constant", [], [name], value=onnx.numpy_helper.from_array(np.array(part, np.int64)))
          for name, part in (("begins", pads[:half]), ("ends", pads[half:]))),
        helper.make_node("Concat", ["begins", "ends"], ["pads"], axis=0),
    ]
    pad_inputs = ["x", "pads", "value" if value is not None else "", "axes" if axes is not None else ""]
    if value is not None:
        inits["value"] = np.array(value, np.float32)
    if axes is not None:
        inits["axes"] = np.array(axes, np.int64)
    if opset < 11:
        nodes = [helper.make_node("Pad", ["x"], ["p"], name="pad", mode=mode, pads=list(pads),
                                  value=float(value or 0.0))]
    else:
        nodes.append(helper.make_node("Pad", [n for n in pad_inputs if n] if axes is None else pad_inputs, ["p"],
                                      name="pad", mode=mode))
    nodes.append(helper.make_node("Conv", ["p", "w", "b"], ["y"], name="conv", pads=list(conv_pads)))
    outputs = [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)]
    if extra_output:
        outputs.append(helper.make_tensor_value_info("p", onnx.TensorProto.FLOAT, None))
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 3, 7, 6])
    graph = helper.make_graph(nodes, "pad_conv", [x], outputs,
                              initializer=[onnx.numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_zero_pad_folds_into_the_conv():
    x = np.random.default_rng(9).standard_normal((2, 3, 7, 6)).astype(np.float32)
    for model in (
        _pad_conv_model((0, 0, 1, 2, 0, 0, 3, 0)),
        _pad_conv_model((0, 0, 1, 2, 0, 0, 3, 0), value=0.0),
        _pad_conv_model((1, 2, 3, 0), axes=(2, -1)),
        _pad_conv_model((0, 0, 1, 2, 0, 0, 3, 0), opset=2),
    ):
        before = model.SerializeToString()
        graph = optimize(read_graph(model))
        assert _ops(graph) == [(INTERNAL_DOMAIN, "Conv")]
        assert graph.nodes[0].inputs[0] == "x" and graph.nodes[0].attrs["pads"] == (2, 2, 3, 1)
        assert_close(onnx_jax.prepare(model).run([x]), ReferenceEvaluator(model).run(None, {"x": x}), atol=1e-5)
        assert model.SerializeToString() == before


def test_pads_that_change_results_stay():
    """Non-zero fill, reflect mode, a padded batch axis, and a padded tensor read elsewhere keep the Pad."""
    x = np.random.default_rng(10).standard_normal((2, 3, 7, 6)).astype(np.float32)
    for model in (
        _pad_conv_model((0, 0, 1, 1, 0, 0, 1, 1), value=0.5),
        _pad_conv_model((0, 0, 1, 1, 0, 0, 1, 1), mode="reflect"),
        _pad_conv_model((1, 0, 1, 1, 0, 0, 1, 1), conv_pads=(0, 0, 0, 0)),
        _pad_conv_model((0, 0, 1, 1, 0, 0, 1, 1), extra_output=True),
    ):
        graph = optimize(read_graph(model))
        assert ("", "Pad") in _ops(graph)
        assert_close(onnx_jax.prepare(model).run([x]), ReferenceEvaluator(model).run(None, {"x": x}), atol=1e-5)


def test_pooling_between_convolutions_stays_channels_last():
    """Conv -> Relu -> MaxPool -> Conv compiles with only the graph's own layout changes (its input and output):
    the pooled image is not copied out to channels-first and back."""
    rng = np.random.default_rng(7)
    inits = {"w1": rng.standard_normal((8, 4, 3, 3)).astype(np.float32),
             "w2": rng.standard_normal((8, 8, 3, 3)).astype(np.float32)}
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["a"], ["b"]),
         helper.make_node("MaxPool", ["b"], ["c"], kernel_shape=[2, 2], strides=[2, 2]),
         helper.make_node("Conv", ["c", "w2"], ["y"], pads=[1, 1, 1, 1])],
        "conv_pool_conv", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4, 16, 16])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.standard_normal((1, 4, 16, 16)).astype(np.float32)
    rep = onnx_jax.prepare(model)
    # the second conv sums 72 products of size ~10 to outputs near 0: float32 rounding of ~1e-5 absolute
    assert_close(rep.run([x]), ReferenceEvaluator(model).run(None, {"x": x}), atol=1e-4)
    hlo = next(iter(rep._cache.values())).executable.as_text()
    entry = hlo[hlo.index("ENTRY"):]
    assert len(re.findall(r"%(?:transpose|copy)\S* = ", entry)) == 2, entry


@pytest.mark.parametrize("channels", [3, 16, 17, 64])  # multiply-adds up to 16 input channels, a matmul above
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_pointwise_conv_by_input_channels(channels, dtype):
    rng = np.random.default_rng(channels)
    x = rng.uniform(-2, 2, (2, channels, 5, 6)).astype(dtype)
    weights = {"x1": rng.uniform(-1, 1, (24, channels, 1, 1)).astype(dtype), "x2": rng.uniform(-1, 1, 24).astype(dtype)}
    model = node_model("Conv", [x, *weights.values()], initializers=weights, strides=[2, 1])
    assert _ops(optimize(read_graph(model))) == [(INTERNAL_DOMAIN, "Conv")]
    # float32 sums of up to 64 products of size ~1 round by ~1e-6 absolute
    assert_close(onnx_jax.prepare(model).run([x]), ReferenceEvaluator(model).run(None, {"x0": x}),
                 atol=1e-5 if dtype == np.float32 else None)


def _concat_conv_model(rng, *, axis=1, kernel=1, extra_reader=False, pieces=(3, 20, 8), strides=(2, 1),
                       bias=True) -> onnx.ModelProto:
    inputs = [helper.make_tensor_value_info(f"x{i}", onnx.TensorProto.FLOAT, [2, c, 6, 5])
              for i, c in enumerate(pieces)]
    inits = {"w": rng.uniform(-1, 1, (12, sum(pieces), kernel, kernel)).astype(np.float32)}
    if bias:
        inits["b"] = rng.uniform(-1, 1, 12).astype(np.float32)
    nodes = [helper.make_node("Concat", [i.name for i in inputs], ["c"], axis=axis),
             helper.make_node("Conv", ["c", *inits], ["y"], strides=list(strides))]
    outputs = [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)]
    if extra_reader:
        outputs.append(helper.make_tensor_value_info("c", onnx.TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "concat_conv", inputs, outputs,
                              [onnx.numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@settings(max_examples=15)
@given(pieces=st.lists(st.integers(1, 20), min_size=1, max_size=4), axis=st.sampled_from([1, -3]),
       strides=st.tuples(st.integers(1, 2), st.integers(1, 2)), bias=st.booleans(), seed=st.integers(0, 2**16))
def test_pointwise_conv_of_a_channel_concat_sums_the_pieces(pieces, axis, strides, bias, seed):
    """The Concat is gone: each piece (up to 16 channels: multiply-adds; more: a matmul) meets its rows of the
    weight, and the sum equals onnx.reference's Conv of the concatenation."""
    rng = np.random.default_rng(seed)
    model = _concat_conv_model(rng, axis=axis, pieces=tuple(pieces), strides=strides, bias=bias)
    assert _ops(optimize(read_graph(model))) == [(INTERNAL_DOMAIN, "ConcatConv")]
    feeds = {f"x{i}": rng.uniform(-2, 2, (2, c, 6, 5)).astype(np.float32) for i, c in enumerate(pieces)}
    # float32 sums of up to 80 products of size ~1: rounding of ~1e-6 absolute
    assert_close(onnx_jax.prepare(model).run(feeds), ReferenceEvaluator(model).run(None, feeds), atol=1e-5)


@pytest.mark.parametrize("case", [dict(kernel=3), dict(extra_reader=True)])
def test_concats_stay_where_the_conv_is_not_pointwise_or_not_their_only_reader(case):
    graph = optimize(read_graph(_concat_conv_model(np.random.default_rng(4), **case)))
    assert ("", "Concat") in _ops(graph) and (INTERNAL_DOMAIN, "Conv") in _ops(graph)


@pytest.mark.parametrize(("channels", "kernel", "dilations"), [(3, 3, 1), (1, 5, 1), (3, 3, 2), (4, 3, 1), (3, 5, 1),
                                                           (9, 3, 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_first_layer_conv_over_few_channels(channels, kernel, dilations, dtype):
    """Up to 75 channel-taps (a 5x5 over RGB): multiply-adds that read the channels-first image in place (no
    convolution in the HLO); above that (9 channels x 9 taps) XLA's convolution."""
    rng = np.random.default_rng(channels * kernel)
    x = rng.uniform(-2, 2, (2, channels, 11, 9)).astype(dtype)
    weights = {"x1": rng.uniform(-1, 1, (8, channels, kernel, kernel)).astype(dtype),
               "x2": rng.uniform(-1, 1, 8).astype(dtype)}
    model = node_model("Conv", [x, *weights.values()], initializers=weights, strides=[2, 1], pads=[1, 0, 2, 1],
                       dilations=[dilations, dilations])
    rep = onnx_jax.prepare(model)
    # float32 sums of up to 81 products of size ~2 round by ~1e-6 absolute
    assert_close(rep.run([x]), ReferenceEvaluator(model).run(None, {"x0": x}),
                 atol=1e-5 if dtype == np.float32 else None)
    entry = (hlo := next(iter(rep._cache.values())).executable.as_text())[hlo.index("ENTRY"):]
    assert ("convolution(" in entry) == (channels * kernel * kernel > 75), entry


def test_concat_conv_refuses_pieces_that_do_not_add_up_to_the_weight():
    """Channels the weight expects but the pieces lack would otherwise be left out of the sum, silently."""
    model = _concat_conv_model(np.random.default_rng(0), pieces=(3, 5))
    for i, value in enumerate(model.graph.input):
        value.type.tensor_type.shape.dim[1].dim_param = f"C{i}"
    rep = onnx_jax.prepare(model)
    assert rep.run([np.ones((2, 3, 6, 5), np.float32), np.ones((2, 5, 6, 5), np.float32)])[0].shape == (2, 12, 3, 5)
    with pytest.raises(NodeExecutionError, match="has 7 channels, W expects 8"):
        rep.run([np.ones((2, 3, 6, 5), np.float32), np.ones((2, 4, 6, 5), np.float32)])


def residual_model(blocks: int = 3, channels: int = 32, seed: int = 0) -> onnx.ModelProto:
    """A first layer, then residual blocks as ResNet's: r' = Relu(r + Conv(Relu(Conv(r)))), with 1x1 convolutions
    (matmuls)."""
    rng = np.random.default_rng(seed)
    inits = {"w0": rng.uniform(-0.5, 0.5, (channels, 3, 3, 3)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w0"], ["c0"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c0"], ["r0"])]
    for k in range(blocks):
        inits[f"wa{k}"] = rng.uniform(-0.3, 0.3, (channels, channels, 1, 1)).astype(np.float32)
        inits[f"wb{k}"] = rng.uniform(-0.3, 0.3, (channels, channels, 1, 1)).astype(np.float32)
        inits[f"bb{k}"] = rng.uniform(-1, 1, channels).astype(np.float32)
        nodes += [helper.make_node("Conv", [f"r{k}", f"wa{k}"], [f"a{k}"]),
                  helper.make_node("Relu", [f"a{k}"], [f"h{k}"]),
                  helper.make_node("Conv", [f"h{k}", f"wb{k}", f"bb{k}"], [f"b{k}"]),
                  helper.make_node("Add", [f"r{k}", f"b{k}"], [f"s{k}"]),
                  helper.make_node("Relu", [f"s{k}"], [f"r{k + 1}"])]
    graph = helper.make_graph(
        nodes, "residual", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3, 12, 12])],
        [helper.make_tensor_value_info(f"r{blocks}", onnx.TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_residual_blocks_read_each_activation_once():
    """Each block's input, read by its first convolution and its residual Add, is written once (Materialized): no
    block's fusion recomputes the blocks before it, as XLA's fusion did (the last one read every block's product and
    the model's input, recomputing the first layer)."""
    model = residual_model()
    graph = optimize(read_graph(model))
    stored = [n for n in graph.nodes if n.op_type == "Materialized"]
    assert [(n.domain, n.inputs, n.attrs) for n in stored] == [
        (INTERNAL_DOMAIN, (f"r{k}",), {"channels_last": 1}) for k in range(3)]  # not r3, the graph's output
    x = np.random.default_rng(1).uniform(-1, 1, (2, 3, 12, 12)).astype(np.float32)
    rep = onnx_jax.prepare(model)
    assert_close(rep.run([x]), ReferenceEvaluator(model).run(None, {"x": x}), atol=1e-5)
    hlo = next(iter(rep._cache.values())).executable.as_text()
    operands = [m.count("%") for m in re.findall(r"= \S+ fusion\(([^)]*)\)", hlo[hlo.index("ENTRY"):])]
    assert max(operands) <= 3, hlo  # a block's sum reads the previous sum, its bias and its product


def test_activations_stay_unmaterialized_without_a_second_kind_of_reader():
    """Read by convolutions alone (both written out anyway), or by no convolution, a value is left to XLA."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Conv", ["r", "w1"], ["a"]),
             helper.make_node("Conv", ["r", "w2"], ["b"]), helper.make_node("Add", ["a", "b"], ["s"]),
             helper.make_node("Sigmoid", ["s"], ["g"]), helper.make_node("Mul", ["s", "g"], ["y"])]
    rng = np.random.default_rng(2)
    inits = {n: rng.uniform(-1, 1, (4, 4, 1, 1)).astype(np.float32) for n in ("w1", "w2")}
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4, 3, 3])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
                              [onnx.numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert "Materialized" not in [n.op_type for n in optimize(read_graph(model)).nodes]


@settings(max_examples=20)
@given(dtype=st.sampled_from([np.float32, np.float16, ml_dtypes.bfloat16]), channels_last=st.sampled_from([0, 1]),
       shape=st.sampled_from([(2, 3, 4, 2), (1, 5, 7), (3, 4)]), data=st.data())
def test_materialized_is_the_value_itself(dtype, channels_last, shape, data):
    """x / 1 with ones made from x: bit for bit x, infinities, NaN, -0 and subnormals included (other types than
    float32 are passed through)."""
    dtype = np.dtype(dtype)
    info = ml_dtypes.finfo(dtype)
    x = data.draw(arrays(np.float32, shape, low=-1e4, high=1e4)).astype(dtype)
    special = [np.inf, -np.inf, np.nan, -0.0, info.smallest_subnormal, -info.smallest_subnormal, info.max, info.min]
    for value in data.draw(st.lists(st.sampled_from(special), max_size=6)):
        x.reshape(-1)[data.draw(st.integers(0, x.size - 1))] = value
    y = np.asarray(jax.jit(lambda v: Materialized(v, channels_last=channels_last))(x))
    assert y.dtype == dtype and y.shape == x.shape
    assert np.array_equal(y.view(f"u{dtype.itemsize}"), x.view(f"u{dtype.itemsize}"))
