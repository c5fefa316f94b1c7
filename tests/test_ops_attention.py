"""Property tests for ops/attention.py: Attention, RotaryEmbedding, LinearAttention, FlexAttention vs onnx.reference.

Where onnx.reference departs from the spec (qk_matmul_output_mode 0 with a softcap), the case is checked
against the reference evaluation of the schema's own function body instead.
"""

from __future__ import annotations

import numpy as np
import onnx
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper
from onnx.backend.test.case.node import function_testcase_helper
from onnx.reference import ReferenceEvaluator

import onnx_jax
from oracle import assert_close, check_node, node_model

SOME = settings(max_examples=20)
LOOSE = {np.float16: dict(rtol=5e-3, atol=5e-3), np.float32: dict(rtol=1e-5, atol=1e-6),
         np.float64: dict(rtol=1e-12, atol=1e-12)}


def normal(rng, shape, dtype, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


@st.composite
def attention_cases(draw, opset=None):
    """(inputs, n_outputs, attrs, opset) for Attention-23/24/25 with drawn shapes, masks, caches and options."""
    opset = opset or draw(st.sampled_from([23, 24, 25]))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.float16]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    batch, kv_heads, groups = (draw(st.integers(1, n)) for n in (2, 3, 3))
    q_heads = kv_heads * groups
    q_len, kv_len, size, v_size = (draw(st.integers(1, n)) for n in (4, 5, 4, 4))
    past = draw(st.integers(0, 3)) if draw(st.booleans()) else None
    nonpad = None
    if opset >= 24 and past is None and draw(st.booleans()):
        nonpad = np.array(draw(st.lists(st.integers(0, kv_len), min_size=batch, max_size=batch)), np.int64)
    total = kv_len + (past or 0)

    attrs = {"is_causal": draw(st.integers(0, 1))}
    rank = draw(st.sampled_from([3, 4]))
    if rank == 3:
        attrs.update(q_num_heads=q_heads, kv_num_heads=kv_heads)
        Q, K, V = (normal(rng, (batch, n, h * d), dtype) for n, h, d in
                   [(q_len, q_heads, size), (kv_len, kv_heads, size), (kv_len, kv_heads, v_size)])
    else:
        Q, K, V = (normal(rng, (batch, h, n, d), dtype) for n, h, d in
                   [(q_len, q_heads, size), (kv_len, kv_heads, size), (kv_len, kv_heads, v_size)])
    mask = None
    kind = draw(st.sampled_from([None, "bool", "float"]))
    if kind:
        lead = draw(st.sampled_from([(), (1,), (q_heads,), (batch, 1), (batch, q_heads)]))
        shape = lead + (q_len, draw(st.integers(max(1, total - 2), total)))
        if kind == "bool":
            mask = rng.random(shape) < 0.8
        else:
            mask = np.where(rng.random(shape) < 0.8, normal(rng, shape, dtype), -np.inf).astype(dtype)
    if draw(st.booleans()):
        attrs["scale"] = draw(st.floats(0.05, 1.0))
    if draw(st.booleans()):
        attrs["softcap"] = draw(st.floats(0.5, 5.0))
    if draw(st.booleans()):
        attrs["softmax_precision"] = draw(st.sampled_from([TensorProto.FLOAT, TensorProto.DOUBLE]))
    if opset >= 25:
        attrs["left_window_size"] = draw(st.integers(-1, 3))
        attrs["right_window_size"] = draw(st.integers(-1, 3))
    n_outputs = draw(st.integers(1, 4))
    if n_outputs == 4:
        # mode 0 with a softcap: onnx.reference returns the capped product, the spec the raw one (tested below)
        attrs["qk_matmul_output_mode"] = draw(st.integers(0 if attrs.get("softcap", 0) == 0 else 1, 3))
    caches = [None, None] if past is None else [normal(rng, (batch, kv_heads, past, d), dtype) for d in (size, v_size)]
    inputs = [Q, K, V, mask, *caches, nonpad]
    while inputs[-1] is None:
        inputs.pop()
    return inputs, n_outputs, attrs, opset


@SOME
@given(attention_cases())
def test_attention_matches_reference(case):
    inputs, n_outputs, attrs, opset = case
    dtype = inputs[0].dtype.type
    if attrs.get("softmax_precision") == TensorProto.FLOAT and dtype == np.float64:
        dtype = np.float32  # probabilities rounded to float32
    check_node("Attention", inputs, n_outputs, opset=opset, **LOOSE[dtype], **attrs)


def expanded_reference(op_type, inputs, n_outputs, opset, **attrs):
    """onnx.reference run on the node's schema function body rather than on its Python implementation."""
    names = [f"x{i}" if x is not None else "" for i, x in enumerate(inputs)]
    outputs = [f"y{i}" for i in range(n_outputs)]
    node = helper.make_node(op_type, names, outputs, **attrs)
    types = [helper.make_tensor_type_proto(helper.np_dtype_to_tensor_dtype(x.dtype), x.shape)
             for x in inputs if x is not None]
    [(nodes, opsets)], _ = function_testcase_helper(node, types, "expanded", [helper.make_opsetid("", opset)])
    graph = helper.make_graph(
        nodes, "expanded",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(x.dtype), x.shape)
         for n, x in zip(names, inputs) if n],
        [helper.make_value_info(o, onnx.TypeProto()) for o in outputs])
    model = helper.make_model(graph, opset_imports=list(opsets), ir_version=10)
    return ReferenceEvaluator(model).run(None, {n: x for n, x in zip(names, inputs) if n})


def test_qk_matmul_output_mode_0_is_the_raw_product_even_with_softcap():
    rng = np.random.default_rng(0)
    inputs = [normal(rng, (2, 2, 3, 4), np.float32, 3.0), normal(rng, (2, 2, 5, 4), np.float32, 3.0),
              normal(rng, (2, 2, 5, 4), np.float32)]
    attrs = dict(softcap=1.5, qk_matmul_output_mode=0, is_causal=1)
    ours = onnx_jax.prepare(node_model("Attention", inputs, 4, opset=23, **attrs)).run(inputs)
    assert_close(ours, expanded_reference("Attention", inputs, 4, 23, **attrs))
    assert np.abs(ours[3]).max() > 1.5  # not capped


def test_attention_cache_decode_step_and_bfloat16():
    """A decode step with a KV cache, and the same attention on bfloat16 inputs (as the conformance suite has)."""
    import ml_dtypes

    rng = np.random.default_rng(1)
    inputs = [normal(rng, (1, 4, 1, 8), np.float32), normal(rng, (1, 2, 1, 8), np.float32),
              normal(rng, (1, 2, 1, 8), np.float32), None, normal(rng, (1, 2, 6, 8), np.float32),
              normal(rng, (1, 2, 6, 8), np.float32)]
    check_node("Attention", inputs, 3, opset=23, is_causal=1)
    low = [None if x is None else x.astype(ml_dtypes.bfloat16) for x in inputs]
    model = node_model("Attention", low, 3, opset=23, is_causal=1)
    ours = onnx_jax.prepare(model).run([x for x in low if x is not None])
    want = ReferenceEvaluator(node_model("Attention", inputs, 3, opset=23, is_causal=1)).run(
        None, {f"x{i}": x for i, x in enumerate(inputs) if x is not None})
    assert ours[0].dtype == ml_dtypes.bfloat16
    np.testing.assert_allclose(ours[0].astype(np.float32), want[0], rtol=3e-2, atol=3e-2)


@SOME
@given(st.data())
def test_rotary_embedding_matches_reference(data):
    dtype = data.draw(st.sampled_from([np.float32, np.float16]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    batch, heads, seq = (data.draw(st.integers(1, n)) for n in (2, 3, 4))
    head_size = 2 * data.draw(st.integers(1, 4))
    rotary = data.draw(st.sampled_from([0] + [2 * k for k in range(1, head_size // 2 + 1)]))
    half = (rotary or head_size) // 2
    attrs = {"interleaved": data.draw(st.integers(0, 1)), "rotary_embedding_dim": rotary}
    if data.draw(st.booleans()):
        X = normal(rng, (batch, heads, seq, head_size), dtype)
    else:
        X = normal(rng, (batch, seq, heads * head_size), dtype)
        attrs["num_heads"] = heads
    if data.draw(st.booleans()):
        positions = rng.integers(0, 10, (batch, seq)).astype(np.int64)
        angles = rng.uniform(0, 6.3, (10, half))
        inputs = [X, np.cos(angles).astype(dtype), np.sin(angles).astype(dtype), positions]
    else:
        angles = rng.uniform(0, 6.3, (batch, seq, half))
        inputs = [X, np.cos(angles).astype(dtype), np.sin(angles).astype(dtype)]
    check_node("RotaryEmbedding", inputs, opset=23, **LOOSE[dtype], **attrs)


@SOME
@given(st.data())
def test_linear_attention_matches_reference(data):
    dtype = data.draw(st.sampled_from([np.float32, np.float16]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    rule = data.draw(st.sampled_from(["linear", "gated", "delta", "gated_delta"]))
    batch, steps, kv_heads, groups, d_k, d_v = (data.draw(st.integers(1, n)) for n in (2, 5, 2, 3, 4, 4))
    q_heads = kv_heads * groups
    inputs = [normal(rng, (batch, steps, h * d), dtype, 0.5) for h, d in [(q_heads, d_k), (kv_heads, d_k),
                                                                          (kv_heads, d_v)]]
    inputs.append(normal(rng, (batch, kv_heads, d_k, d_v), dtype, 0.5) if data.draw(st.booleans()) else None)
    decay_width = data.draw(st.sampled_from([kv_heads, kv_heads * d_k]))
    inputs.append(-rng.uniform(0, 1, (batch, steps, decay_width)).astype(dtype) if "gated" in rule else None)
    beta_width = data.draw(st.sampled_from([kv_heads, 1]))
    inputs.append(rng.uniform(0, 1, (batch, steps, beta_width)).astype(dtype) if "delta" in rule else None)
    while inputs[-1] is None:
        inputs.pop()
    attrs = {"update_rule": rule, "q_num_heads": q_heads, "kv_num_heads": kv_heads}
    if data.draw(st.booleans()):
        attrs["scale"] = data.draw(st.floats(0.1, 1.0))
    check_node("LinearAttention", inputs, 2, opset=27, **LOOSE[dtype], **attrs)


def _modifier(name: str, factor: float) -> onnx.GraphProto:
    """A one-input subgraph: scores -> tanh(scores) * factor + scores (shape and type preserved)."""
    nodes = [helper.make_node("Constant", [], ["f"], value_float=factor),
             helper.make_node("CastLike", ["f", "s"], ["fc"]),
             helper.make_node("Tanh", ["s"], ["t"]),
             helper.make_node("Mul", ["t", "fc"], ["m"]),
             helper.make_node("Add", ["m", "s"], ["out"])]
    value = helper.make_tensor_value_info
    return helper.make_graph(nodes, name, [value("s", TensorProto.UNDEFINED, None)],
                             [value("out", TensorProto.UNDEFINED, None)])


@SOME
@given(st.data())
def test_flex_attention_matches_reference(data):
    dtype = data.draw(st.sampled_from([np.float32, np.float64, np.float16]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    batch, kv_heads, groups, q_len, kv_len, size, v_size = (data.draw(st.integers(1, n)) for n in (2, 2, 3, 4, 5, 4, 4))
    inputs = [normal(rng, (batch, h, n, d), dtype) for h, n, d in
              [(kv_heads * groups, q_len, size), (kv_heads, kv_len, size), (kv_heads, kv_len, v_size)]]
    attrs = {}
    if data.draw(st.booleans()):
        attrs["scale"] = data.draw(st.floats(0.05, 1.0))
    if data.draw(st.booleans()):
        attrs["score_mod"] = _modifier("score_mod", 0.5)
    if data.draw(st.booleans()):
        attrs["prob_mod"] = _modifier("prob_mod", -0.25)
    check_node("FlexAttention", inputs, opset=1, domain="ai.onnx.preview", **LOOSE[dtype], **attrs)
