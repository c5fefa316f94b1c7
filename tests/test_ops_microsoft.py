"""Property tests for ops/microsoft.py (com.microsoft) against onnxruntime, which defines these ops, and the
real tiny-random-gpt2-msft model."""

from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from onnx import helper

import onnx_jax
from oracle import assert_close, node_model

MS = "com.microsoft"
# Every example compiles a model: shrinking a failure would take many minutes, so these tests report it unshrunk.
SOME = settings(max_examples=10, phases=[Phase.explicit, Phase.reuse, Phase.generate])


def ms_model(op_type, inputs, n_outputs=1, *, domain=MS, initializers=(), **attrs):
    model = node_model(op_type, inputs, n_outputs, opset=1, domain=domain,
                       initializers={f"x{i}": inputs[i] for i in initializers}, **attrs)
    if domain:
        del model.opset_import[1:]
        model.opset_import.append(helper.make_opsetid("", 17))
    return model


def feeds(model, inputs):
    names = {i.name for i in model.graph.input}
    return {f"x{i}": x for i, x in enumerate(inputs) if f"x{i}" in names}


def run_ort(model, inputs):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds(model, inputs))


def run_ours(model, inputs):
    return list(onnx_jax.prepare(model).run(feeds(model, inputs)))


def check(op_type, inputs, n_outputs=1, *, rtol=1e-5, atol=1e-5, initializers=(), **attrs):
    model = ms_model(op_type, inputs, n_outputs, initializers=initializers, **attrs)
    assert_close(run_ours(model, inputs), run_ort(model, inputs), rtol, atol)


def normal(data, shape, dtype=np.float32, scale=1.0):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    return (rng.normal(size=shape) * scale).astype(dtype)


HALF = {"rtol": 2e-3, "atol": 2e-3}


# Activations, matmuls, normalizations


@SOME
@given(st.data())
def test_gelus_match_onnxruntime(data):
    dtype = data.draw(st.sampled_from([np.float32, np.float16]))
    tol = HALF if dtype == np.float16 else {}
    x = normal(data, data.draw(st.sampled_from([(2, 3, 8), (5, 4)])), dtype, 2.0)
    bias = normal(data, x.shape[-1:], dtype)
    check("Gelu", [x], **tol)
    check("BiasGelu", [x, bias], **tol)
    check("FastGelu", [x] + ([bias] if data.draw(st.booleans()) else []), **tol)
    check("QuickGelu", [x], alpha=data.draw(st.sampled_from([1.702, 0.5])), **tol)


def test_bias_add_adds_bias_and_skip():  # onnxruntime has BiasAdd on GPU only
    x, bias, skip = np.float32(np.arange(24).reshape(2, 3, 4)), np.float32([1, 2, 3, 4]), np.ones((2, 3, 4), np.float32)
    (y,) = run_ours(ms_model("BiasAdd", [x, bias, skip]), [x, bias, skip])
    np.testing.assert_array_equal(y, x + bias + skip)


@SOME
@given(st.data())
def test_fused_matmul_matches_onnxruntime(data):
    batch = data.draw(st.sampled_from([(), (2,), (2, 3)]))
    m, k, n = (data.draw(st.integers(1, 4)) for _ in range(3))
    trans_a, trans_b = data.draw(st.booleans()), data.draw(st.booleans())
    trans_batch_a = data.draw(st.booleans()) and len(batch) > 0
    trans_batch_b = data.draw(st.booleans()) and len(batch) > 0

    def operand(rows, cols, trans, trans_batch):
        x = normal(data, batch + ((cols, rows) if trans else (rows, cols)))
        return np.moveaxis(x, -2, 0) if trans_batch else x

    check("FusedMatMul", [operand(m, k, trans_a, trans_batch_a), operand(k, n, trans_b, trans_batch_b)],
          rtol=1e-4, atol=1e-4, alpha=data.draw(st.sampled_from([1.0, 0.5])), transA=int(trans_a),
          transB=int(trans_b), transBatchA=int(trans_batch_a), transBatchB=int(trans_batch_b))


@SOME
@given(st.data())
def test_skip_layer_normalizations_match_onnxruntime(data):
    dtype = data.draw(st.sampled_from([np.float32, np.float16]))
    tol = HALF if dtype == np.float16 else {"rtol": 1e-4, "atol": 1e-4}
    shape = data.draw(st.sampled_from([(2, 3, 8), (3, 16)]))
    x, skip = normal(data, shape, dtype), normal(data, data.draw(st.sampled_from([shape, shape[-2:]])), dtype)
    gamma, beta, bias = (normal(data, shape[-1:], dtype) for _ in range(3))
    epsilon = data.draw(st.sampled_from([1e-12, 1e-5]))
    with_bias = data.draw(st.booleans())
    check("SkipLayerNormalization", [x, skip, gamma, data.draw(st.sampled_from([beta, None]))] +
          ([bias] if with_bias else []), 4, epsilon=epsilon, **tol)
    check("SkipSimplifiedLayerNormalization", [x, skip, gamma] + ([bias] if with_bias else []), 4, epsilon=epsilon,
          **tol)


def test_simplified_layer_normalization_in_the_default_domain():
    x, scale = np.random.default_rng(0).normal(size=(2, 3, 8)).astype(np.float32), np.float32(np.arange(8))
    model = ms_model("SimplifiedLayerNormalization", [x, scale], 2, domain="", epsilon=1e-5)
    assert_close(run_ours(model, [x, scale]), run_ort(model, [x, scale]), 1e-5, 1e-5)


def test_simplified_layer_normalization_matches_onnxruntime():
    from onnx_jax.ops.microsoft import SimplifiedLayerNormalization

    rng = np.random.default_rng(0)
    for axis in (-1, 1):
        x, scale = rng.normal(size=(2, 3, 8)).astype(np.float32), rng.normal(size=(3, 8)[axis:]).astype(np.float32)
        expected = run_ort(ms_model("SimplifiedLayerNormalization", [x, scale], 2, domain="", axis=axis), [x, scale])
        ours = [np.asarray(y) for y in SimplifiedLayerNormalization(x, scale, axis=axis)]
        assert_close(ours, expected, 1e-5, 1e-5)


@SOME
@given(st.data())
def test_embed_layer_normalization_matches_onnxruntime(data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    batch, seq, hidden = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 5)), 8
    ids = rng.integers(0, 10, (batch, seq)).astype(np.int32)
    segments = rng.integers(0, 2, (batch, seq)).astype(np.int32) if data.draw(st.booleans()) else None
    words, positions, segment_table = (rng.normal(size=(n, hidden)).astype(np.float32) for n in (10, 6, 2))
    gamma, beta = rng.normal(size=hidden).astype(np.float32), rng.normal(size=hidden).astype(np.float32)
    mask = (np.arange(seq) < rng.integers(1, seq + 1, (batch, 1))).astype(np.int32) if data.draw(
        st.booleans()) else None
    position_ids = rng.integers(0, 6, (data.draw(st.sampled_from([1, batch])), seq)).astype(np.int32) if data.draw(
        st.booleans()) else None
    inputs = [ids, segments, words, positions, None if segments is None else segment_table, gamma, beta, mask,
              position_ids]
    while inputs[-1] is None:
        inputs.pop()
    check("EmbedLayerNormalization", inputs, 3, rtol=1e-4, atol=1e-4,
          initializers=(2, 3, 4, 5, 6) if segments is not None else (2, 3, 5, 6))


# Attention


def attention_case(data, *, past: bool):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    batch, seq, heads, head_size = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 4)),
                                    data.draw(st.sampled_from([1, 2])), data.draw(st.sampled_from([2, 4])))
    past_len = data.draw(st.integers(0, 3)) if past else 0
    return rng, batch, seq, heads, head_size, past_len


def key_mask(data, rng, batch, seq, total, kinds=("none", "lengths", "ends_starts", "2d", "3d")):
    """A mask in one of onnxruntime's formats, or None."""
    kind = data.draw(st.sampled_from(kinds))
    if kind == "lengths":
        return rng.integers(1, total + 1, batch).astype(np.int32)
    if kind == "ends_starts":
        ends = rng.integers(1, total + 1, batch)
        return np.concatenate([ends, rng.integers(0, ends)]).astype(np.int32)
    if kind == "2d":
        return (rng.random((batch, total)) < 0.8).astype(np.int32)
    if kind == "3d":
        return (rng.random((batch, seq, total)) < 0.8).astype(np.int32)
    return None


@SOME
@given(st.data())
def test_attention_matches_onnxruntime(data):
    rng, batch, seq, heads, head_size, past_len = attention_case(data, past=data.draw(st.booleans()))
    hidden, input_hidden = heads * head_size, 5
    x = rng.normal(size=(batch, seq, input_hidden)).astype(np.float32)
    weights = rng.normal(size=(input_hidden, 3 * hidden)).astype(np.float32)
    bias = rng.normal(size=3 * hidden).astype(np.float32)
    total = past_len + seq
    mask = key_mask(data, rng, batch, seq, total)
    past = rng.normal(size=(2, batch, heads, past_len, head_size)).astype(np.float32) if past_len else None
    attention_bias = rng.normal(size=(1, heads, seq, total)).astype(np.float32) if past is None and data.draw(
        st.booleans()) else None  # onnxruntime takes no attention_bias with a past
    inputs = [x, weights, bias, mask, past, attention_bias]
    while inputs[-1] is None:
        inputs.pop()
    check("Attention", inputs, 2 if past is not None else 1, rtol=1e-4, atol=1e-4, num_heads=heads,
          unidirectional=int(data.draw(st.booleans())), scale=data.draw(st.sampled_from([0.0, 0.3])),
          mask_filter_value=data.draw(st.sampled_from([-10000.0, -1000.0, float(np.finfo(np.float32).min)])))


@SOME
@given(st.data())
def test_multi_head_attention_matches_onnxruntime(data):
    rng, batch, seq, heads, head_size, past_len = attention_case(data, past=data.draw(st.booleans()))
    hidden = heads * head_size
    kv_len = seq if past_len or data.draw(st.booleans()) else data.draw(st.integers(1, 4))
    total = past_len + kv_len
    query = rng.normal(size=(batch, seq, hidden)).astype(np.float32)
    key, value = (rng.normal(size=(batch, kv_len, hidden)).astype(np.float32) for _ in range(2))
    bias = rng.normal(size=3 * hidden).astype(np.float32) if data.draw(st.booleans()) else None
    mask = key_mask(data, rng, batch, seq, total, ("none", "lengths", "2d"))  # the CPU kernel's formats
    past_key, past_value = ((rng.normal(size=(batch, heads, past_len, head_size)).astype(np.float32)
                             for _ in range(2)) if past_len else (None, None))
    attention_bias = rng.normal(size=(batch, heads, seq, total)).astype(np.float32) if data.draw(
        st.booleans()) else None
    inputs = [query, key, value, bias, mask, attention_bias, past_key, past_value]
    while inputs[-1] is None:
        inputs.pop()
    unidirectional = int(data.draw(st.booleans()) and kv_len == seq)
    check("MultiHeadAttention", inputs, 3 if past_len else 1, rtol=1e-4, atol=1e-4, num_heads=heads,
          unidirectional=unidirectional)


def test_multi_head_attention_packed_layouts_match_separate_inputs():
    """onnxruntime's CPU kernel has no packed layouts: they must equal the separate query, key and value."""
    rng = np.random.default_rng(0)
    batch, seq, heads, size = 2, 3, 2, 4
    q, k, v = (rng.normal(size=(batch, seq, heads, size)).astype(np.float32) for _ in range(3))
    bias = rng.normal(size=3 * heads * size).astype(np.float32)
    flat = [t.reshape(batch, seq, -1) for t in (q, k, v)]
    (expected,) = run_ours(ms_model("MultiHeadAttention", flat + [bias], num_heads=heads), flat + [bias])
    packed_qkv = [np.stack([q, k, v], axis=3), None, None, bias]
    packed_kv = [flat[0], np.stack([k, v], axis=3), None, bias]
    for inputs in (packed_qkv, packed_kv):
        (y,) = run_ours(ms_model("MultiHeadAttention", inputs, num_heads=heads), inputs)
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    heads_first = [flat[0], *(np.swapaxes(t, 1, 2) + np.swapaxes(b.reshape(1, 1, heads, size), 1, 2)
                               for t, b in zip((k, v), np.split(bias, 3)[1:])), np.concatenate(
        [np.split(bias, 3)[0], np.zeros(2 * heads * size, np.float32)])]
    (y,) = run_ours(ms_model("MultiHeadAttention", heads_first, num_heads=heads), heads_first)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def rotary_caches(rng, positions: int, rotary_dim: int):
    angles = rng.uniform(0, math.pi, (positions, rotary_dim // 2))
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


@SOME
@given(st.data())
def test_group_query_attention_matches_onnxruntime(data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    batch, kv_heads, groups, head_size = (data.draw(st.integers(1, 2)), data.draw(st.sampled_from([1, 2])),
                                          data.draw(st.sampled_from([1, 2])), data.draw(st.sampled_from([16, 32])))
    heads = kv_heads * groups
    step = data.draw(st.sampled_from(["prompt", "decode"]))
    if step == "prompt":
        seq = data.draw(st.integers(1, 4))
        past_len, total = 0, seq
        valid = np.full(batch, seq)  # right-padded prompts of different lengths would leave padding rows undefined
    else:
        seq, past_len = 1, data.draw(st.integers(1, 4))
        total = past_len + seq
        valid = np.full(batch, total)
    packed = data.draw(st.booleans())
    query = rng.normal(size=(batch, seq, heads * head_size)).astype(np.float32)
    key, value = (rng.normal(size=(batch, seq, kv_heads * head_size)).astype(np.float32) for _ in range(2))
    if packed:
        query, key, value = np.concatenate([query, key, value], axis=-1), None, None
    past_key, past_value = ((rng.normal(size=(batch, kv_heads, past_len, head_size)).astype(np.float32)
                             for _ in range(2)) if past_len else (None, None))
    rotary = data.draw(st.booleans())
    cos, sin = rotary_caches(rng, 8, head_size) if rotary else (None, None)
    attention_bias = rng.normal(size=(batch, 1, seq, total)).astype(np.float32) if data.draw(st.booleans()) else None
    head_sink = rng.normal(size=heads).astype(np.float32) if data.draw(st.booleans()) else None
    inputs = [query, key, value, past_key, past_value, (valid - 1).astype(np.int32), np.array(total, np.int32),
              cos, sin, None, attention_bias, head_sink]
    while inputs[-1] is None:
        inputs.pop()
    attrs = dict(num_heads=heads, kv_num_heads=kv_heads, do_rotary=int(rotary),
                 smooth_softmax=int(head_sink is None and data.draw(st.booleans())),
                 rotary_interleaved=int(rotary and data.draw(st.booleans())),
                 local_window_size=data.draw(st.sampled_from([-1, 1, 2])),
                 softcap=data.draw(st.sampled_from([0.0, 2.0])))
    check("GroupQueryAttention", inputs, 3, rtol=1e-4, atol=1e-4, **attrs)


def test_group_query_attention_decodes_ragged_batches_in_a_shared_cache():
    """Each batch entry appends at its own length; cache rows past an entry's length are left unspecified."""
    rng = np.random.default_rng(1)
    batch, heads, kv_heads, head_size, capacity = 3, 4, 2, 16, 6
    valid = np.array([2, 5, 6])
    query = rng.normal(size=(batch, 1, heads * head_size)).astype(np.float32)
    key, value = (rng.normal(size=(batch, 1, kv_heads * head_size)).astype(np.float32) for _ in range(2))
    past_key, past_value = (rng.normal(size=(batch, kv_heads, capacity, head_size)).astype(np.float32)
                            for _ in range(2))
    inputs = [query, key, value, past_key, past_value, (valid - 1).astype(np.int32), np.array(capacity, np.int32)]
    model = ms_model("GroupQueryAttention", inputs, 3, num_heads=heads, kv_num_heads=kv_heads)
    ours, theirs = run_ours(model, inputs), run_ort(model, inputs)
    assert_close(ours[:1], theirs[:1], 1e-4, 1e-4)
    for b, n in enumerate(valid):
        assert_close([ours[1][b, :, :n], ours[2][b, :, :n]], [theirs[1][b, :, :n], theirs[2][b, :, :n]], 1e-6, 1e-6)


def test_group_query_attention_right_padded_prompt():
    """Rows past an entry's length are padding: their outputs and cache rows are unspecified."""
    rng = np.random.default_rng(2)
    batch, seq, heads, head_size = 2, 4, 2, 16
    valid = np.array([2, 4])
    query, key, value = (rng.normal(size=(batch, seq, heads * head_size)).astype(np.float32) for _ in range(3))
    inputs = [query, key, value, None, None, (valid - 1).astype(np.int32), np.array(seq, np.int32)]
    model = ms_model("GroupQueryAttention", inputs, 3, num_heads=heads, kv_num_heads=heads)
    ours, theirs = run_ours(model, inputs), run_ort(model, inputs)
    for b, n in enumerate(valid):
        assert_close([ours[0][b, :n], ours[1][b, :, :n], ours[2][b, :, :n]],
                     [theirs[0][b, :n], theirs[1][b, :, :n], theirs[2][b, :, :n]], 1e-4, 1e-4)


@SOME
@given(st.data())
def test_rotary_embedding_matches_onnxruntime(data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    batch, seq, heads, head_size = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 4)),
                                    data.draw(st.sampled_from([1, 2])), data.draw(st.sampled_from([4, 8])))
    rotary_dim = data.draw(st.sampled_from([head_size, head_size // 2]))
    layout = data.draw(st.sampled_from(["bsd", "bnsh"]))
    x = rng.normal(size=(batch, seq, heads * head_size) if layout == "bsd" else (batch, heads, seq, head_size))
    cos, sin = rotary_caches(rng, 8, rotary_dim)
    if data.draw(st.booleans()):
        position_ids = rng.integers(0, 8, (batch, seq)).astype(np.int64)
    else:
        position_ids = np.int64([data.draw(st.integers(0, 8 - seq))])
    attrs = dict(interleaved=int(data.draw(st.booleans())))
    if rotary_dim != head_size:
        attrs.update(rotary_embedding_dim=rotary_dim, num_heads=heads)
    elif layout == "bsd" and data.draw(st.booleans()):
        attrs.update(num_heads=heads)
    check("RotaryEmbedding", [x.astype(np.float32), position_ids, cos, sin], rtol=1e-5, atol=1e-5, **attrs)


# Quantized ops


def pack_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """Pack `bits`-bit values along the last axis into uint8, low bits first."""
    per_byte = 8 // bits
    values = values.reshape(values.shape[:-1] + (-1, per_byte)).astype(np.uint8)
    return np.bitwise_or.reduce(values << (np.arange(per_byte, dtype=np.uint8) * bits), axis=-1).astype(np.uint8)


@SOME
@given(st.data())
def test_mat_mul_n_bits_matches_onnxruntime(data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    bits, block_size = data.draw(st.sampled_from([4, 8, 2])), data.draw(st.sampled_from([16, 32]))
    k, n = data.draw(st.sampled_from([16, 24, 64])), data.draw(st.integers(1, 5))
    blocks = -(-k // block_size)
    quantized = rng.integers(0, 2**bits, (n, blocks, block_size))
    b = pack_bits(quantized, bits)
    scales = rng.uniform(0.01, 0.1, (n, blocks)).astype(np.float32)
    # onnxruntime's CPU kernel takes no float zero points for 8 bits
    zero_kind = data.draw(st.sampled_from(["default", "packed"] + (["float"] if bits != 8 else [])))
    zero_points = None
    if zero_kind == "packed":
        zeros = rng.integers(0, 2**bits, (n, -(-blocks * bits // 8) * (8 // bits)))
        zero_points = pack_bits(zeros, bits).reshape(-1) if bits != 8 else zeros.astype(np.uint8).reshape(-1)
    elif zero_kind == "float":
        zero_points = rng.uniform(0, 2**bits - 1, (n, blocks)).astype(np.float32)
    bias = rng.normal(size=n).astype(np.float32) if data.draw(st.booleans()) else None
    a = rng.normal(size=data.draw(st.sampled_from([(3, k), (2, 2, k)]))).astype(np.float32)
    inputs = [a, b, scales.reshape(-1), zero_points, None, bias]
    while inputs[-1] is None:
        inputs.pop()
    check("MatMulNBits", inputs, rtol=1e-4, atol=1e-4, initializers=[i for i in (1, 2, 3, 5) if i < len(inputs)
                                                                      and inputs[i] is not None],
          K=k, N=n, bits=bits, block_size=block_size)


def qparams(data, dtype):
    low, high = (0, 255) if dtype == np.uint8 else (-128, 127)
    return (np.array(data.draw(st.sampled_from([0.02, 0.1, 0.5])), np.float32),
            np.array(data.draw(st.integers(low, high)), dtype))


@SOME
@given(st.data())
def test_qlinear_ops_match_onnxruntime(data):
    dtype = data.draw(st.sampled_from([np.uint8, np.int8]))
    info = np.iinfo(dtype)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    shape = data.draw(st.sampled_from([(2, 3, 4), (1, 2, 3, 3)]))
    a = rng.integers(info.min, info.max + 1, shape).astype(dtype)
    b = rng.integers(info.min, info.max + 1, data.draw(st.sampled_from([shape, shape[-1:]]))).astype(dtype)
    (a_scale, a_zero), (b_scale, b_zero), (c_scale, c_zero) = (qparams(data, dtype) for _ in range(3))
    # onnxruntime rounds through lookup tables and fixed point: allow one quantization step
    for op_type in ("QLinearAdd", "QLinearMul"):
        check(op_type, [a, a_scale, a_zero, b, b_scale, b_zero, c_scale, c_zero], rtol=0, atol=1)
    check("QLinearSigmoid", [a, a_scale, a_zero, c_scale, c_zero], rtol=0, atol=1)
    if len(shape) == 4:
        channels_last = int(data.draw(st.booleans()))
        check("QLinearGlobalAveragePool", [a, a_scale, a_zero, c_scale, c_zero], rtol=0, atol=1,
              channels_last=channels_last)


def quantize_weights(w, dtype, per_channel: bool):
    """w [directions, K, 4 * hidden] quantized per direction or per output channel, as onnxruntime accepts it: int8
    symmetric in 7 bits (x86 u8s8 kernels saturate int16 pair sums past that), uint8 with one zero point throughout."""
    axes = (1,) if per_channel else (1, 2)
    low, high = np.minimum(w.min(axis=axes, keepdims=True), 0), np.maximum(w.max(axis=axes, keepdims=True), 0)
    if dtype == np.int8:
        scale = np.maximum(high, -low) / 63
        zero = np.zeros_like(scale)
        q = np.clip(np.round(w / scale), -64, 63)
    else:
        scale = np.maximum(high / 127, -low / 128)
        zero = np.full_like(scale, 128)
        q = np.clip(np.round(w / scale) + zero, 0, 255)
    shape = (w.shape[0], w.shape[2]) if per_channel else (w.shape[0],)
    return q.astype(dtype), scale.reshape(shape).astype(np.float32), zero.reshape(shape).astype(dtype)


@SOME
@given(st.data())
def test_dynamic_quantize_lstm_matches_onnxruntime(data):
    """Exact up to float32 rounding: X and each step's hidden state are quantized to uint8 as onnxruntime does, so
    the integer products agree exactly and only its float accumulation order and approximate sigmoid/tanh differ
    (~1e-7); a float emulation without the activation quantization is off by up to ~2e-2."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    direction = data.draw(st.sampled_from(["forward", "reverse", "bidirectional"]))
    dtype = data.draw(st.sampled_from([np.uint8, np.int8]))
    per_channel = data.draw(st.booleans())
    d, time, batch, size, hidden = 2 if direction == "bidirectional" else 1, 5, 3, 4, 3
    W, w_scale, w_zero = quantize_weights(rng.normal(size=(d, size, 4 * hidden)).astype(np.float32), dtype,
                                          per_channel)
    R, r_scale, r_zero = quantize_weights(rng.normal(size=(d, hidden, 4 * hidden)).astype(np.float32) * 0.5, dtype,
                                          per_channel)
    X = rng.normal(size=(time, batch, size)).astype(np.float32)
    B = rng.normal(size=(d, 8 * hidden)).astype(np.float32) * 0.3 if data.draw(st.booleans()) else None
    sequence_lens = rng.integers(0, time + 1, batch).astype(np.int32) if data.draw(st.booleans()) else None
    initial_h, initial_c = (rng.normal(size=(d, batch, hidden)).astype(np.float32) for _ in range(2))
    P = rng.normal(size=(d, 3 * hidden)).astype(np.float32) if data.draw(st.booleans()) else None
    inputs = [X, W, R, B, sequence_lens, initial_h, initial_c, P, w_scale, w_zero, r_scale, r_zero]
    model = ms_model("DynamicQuantizeLSTM", inputs, 3, initializers=[1, 2, 8, 9, 10, 11], hidden_size=hidden,
                     direction=direction, input_forget=int(data.draw(st.booleans())))
    if data.draw(st.booleans()):  # without Y, a finished sequence's hidden state joins the quantization unzeroed
        model.graph.node[0].output[0] = ""
        del model.graph.output[0]
    if sequence_lens is not None and not model.graph.node[0].output[0]:
        sequence_lens += sequence_lens == 0  # onnxruntime then quantizes an empty sequence's uninitialized state
    # onnxruntime quantizes the hidden state of each thread's slice of the batch separately: one thread, one slice
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    assert_close(run_ours(model, inputs), session.run(None, feeds(model, inputs)), rtol=1e-5, atol=1e-5)


# Real model

