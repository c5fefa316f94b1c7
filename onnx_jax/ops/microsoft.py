"""com.microsoft ops: onnxruntime's fused transformer ops (attention, embedding and skip layer normalizations,
GELUs, rotary embedding, fused and N-bit matmuls), the QLinear elementwise ops and DynamicQuantizeLSTM.

These ops have no ONNX schema: inputs, attributes and defaults follow onnxruntime's contrib operator docs, and the
results onnxruntime's CPU kernels (tests/test_ops_microsoft.py compares them).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..registry import op
from .attention import RotaryEmbedding as _rotary
from .elementwise import gelu
from .quantization import DynamicQuantizeLinear, _dequantize, _quantize, _shifted
from .reduction import mean_kept
from .rnn import _activations, _directions, _in_processing_order, _lstm_cell, _recurrence

MS = "com.microsoft"


def _compute(x):
    """Half-precision inputs compute in float32, as onnxruntime's kernels do."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _gelu(x, approximate: bool):
    return gelu(_compute(x), approximate).astype(x.dtype)


# Activations and elementwise fusions


@op("Gelu", 1, domain=MS)
def Gelu(X):
    return _gelu(X, False)


@op("BiasGelu", 1, domain=MS)
def BiasGelu(A, B):
    return _gelu(A + B, False)


@op("FastGelu", 1, domain=MS)
def FastGelu(X, bias=None):
    """The tanh approximation of GELU."""
    return _gelu(X if bias is None else X + bias, True)


@op("QuickGelu", 1, domain=MS)
def QuickGelu(X, *, alpha=1.702):
    x = _compute(X)
    return (x * jax.nn.sigmoid(alpha * x)).astype(X.dtype)


@op("BiasAdd", 1, domain=MS)
def BiasAdd(X, bias, skip):
    return X + bias + skip


@op("FusedMatMul", 1, domain=MS)
def FusedMatMul(A, B, *, alpha=1.0, transA=0, transB=0, transBatchA=0, transBatchB=0):
    """alpha * A @ B; transBatch moves an operand's first axis to the second-to-last before transposing."""

    def arrange(x, trans_batch, trans):
        x = jnp.moveaxis(x, 0, -2) if trans_batch and x.ndim > 2 else x
        return jnp.swapaxes(x, -1, -2) if trans else x

    y = jnp.matmul(arrange(A, transBatchA, transA), arrange(B, transBatchB, transB))
    return y if alpha == 1.0 else y * jnp.asarray(alpha, y.dtype)


# Normalizations


def _normalize(x, scale, bias, epsilon, *, centered: bool, axis: int = -1):
    """Layer (or RMS, `centered=False`) normalization over axes [axis, rank) in float32 at least;
    returns (y, mean, inv_std_var) with the statistics' axes kept (an RMS normalization's mean is 0)."""
    xf = _compute(x)
    axes = tuple(range(axis % x.ndim, x.ndim))
    mean = mean_kept(xf, axes) if centered else jnp.zeros_like(xf[..., :1])
    centered_x = xf - mean
    inv_std = lax.rsqrt(mean_kept(jnp.square(centered_x), axes) + epsilon)
    y = centered_x * inv_std * _compute(scale)
    if bias is not None:
        y = y + _compute(bias)
    return y.astype(x.dtype), mean, inv_std


@op("SkipLayerNormalization", 1, domain=MS)
def SkipLayerNormalization(input, skip, gamma, beta=None, bias=None, *, epsilon=1e-12):
    """Returns (LayerNorm(input + skip + bias), mean, inv_std_var, input + skip + bias)."""
    total = input + skip if bias is None else input + skip + bias
    y, mean, inv_std = _normalize(total, gamma, beta, epsilon, centered=True)
    return y, mean, inv_std, total


@op("SkipSimplifiedLayerNormalization", 1, domain=MS)
def SkipSimplifiedLayerNormalization(input, skip, gamma, bias=None, *, epsilon=1e-12):
    """Returns (RMSNorm(input + skip + bias), mean, inv_std_var, input + skip + bias)."""
    total = input + skip if bias is None else input + skip + bias
    y, mean, inv_std = _normalize(total, gamma, None, epsilon, centered=False)
    return y, mean, inv_std, total


@op("SimplifiedLayerNormalization", 1)  # onnxruntime registers it in the default domain
def SimplifiedLayerNormalization(X, scale, *, axis=-1, epsilon=1e-5, stash_type=1):
    """RMS normalization; returns (Y, inv_std_var)."""
    y, _, inv_std = _normalize(X, scale, None, epsilon, centered=False, axis=axis)
    return y, inv_std


@op("EmbedLayerNormalization", 1, domain=MS)
def EmbedLayerNormalization(input_ids, segment_ids, word_embedding, position_embedding, segment_embedding, gamma,
                            beta, mask=None, position_ids=None, *, epsilon=1e-12, mask_index_type=1):
    """Returns (LayerNorm(word + position + segment embeddings), mask_index: the count of ones of each mask
    row (int32), the embedding sum)."""
    if position_ids is None:
        position_ids = jnp.arange(input_ids.shape[1])[None]
    total = jnp.take(word_embedding, input_ids, axis=0) + jnp.take(position_embedding, position_ids, axis=0)
    if segment_embedding is not None and segment_ids is not None:
        total = total + jnp.take(segment_embedding, segment_ids, axis=0)
    y, _, _ = _normalize(total, gamma, beta, epsilon, centered=True)
    if mask is None:
        mask_index = jnp.zeros(input_ids.shape[:1], jnp.int32)
    else:
        mask_index = jnp.sum(mask != 0, axis=1, dtype=jnp.int32)
    return y, mask_index, total


# Attention


def _heads(x, num_heads: int):
    """[batch, seq, heads * size] -> [batch, heads, seq, size]."""
    return jnp.reshape(x, x.shape[:2] + (num_heads, -1)).transpose(0, 2, 1, 3)


def _merge_heads(x):
    """[batch, heads, seq, size] -> [batch, seq, heads * size]."""
    return x.transpose(0, 2, 1, 3).reshape(x.shape[0], x.shape[2], -1)


def _mask_bias(mask, shape: tuple[int, int, int], past: int, filter_value: float, causal: bool, dtype):
    """onnxruntime's additive mask, [batch, q_len, kv_len]: `filter_value` where a key is masked (key lengths
    [batch], end and start positions [2 * batch], or a 0/1 mask [batch, kv_len] / [batch, q_len, kv_len]),
    and the type's lowest value where causality hides a key."""
    batch, q_len, kv_len = shape
    key = jnp.arange(kv_len)
    bias = jnp.zeros(shape, dtype)
    if mask is not None:
        if mask.ndim == 1:
            keep = key < mask[:batch, None]
            if mask.shape[0] == 2 * batch:
                keep &= key >= jnp.minimum(mask[batch:, None], kv_len)
            keep = keep[:, None, :]
        elif mask.ndim in (2, 3):
            keep = (mask > 0)[:, None, :] if mask.ndim == 2 else mask > 0
        else:
            raise NotImplementedError("4-D (Megatron) attention masks are not supported")
        bias = bias + jnp.where(keep, 0, filter_value).astype(dtype)
    if causal:
        hidden = key[None, :] > past + jnp.arange(q_len)[:, None]
        bias = jnp.where(hidden, jnp.finfo(dtype).min, bias)
    return bias


def _attend(q, k, v, bias, scale):
    """softmax(scale * q @ k^T + bias) @ v per head; q [b, n, s, h], k and v [b, n, t, h]."""
    scores = jnp.einsum("bnsh,bnth->bnst", q, k) * jnp.asarray(scale, q.dtype) + bias
    return jnp.einsum("bnst,bnth->bnsh", jax.nn.softmax(scores, axis=-1), v)


@op("Attention", 1, domain=MS)
def Attention(input, weights, bias=None, mask_index=None, past=None, attention_bias=None, past_sequence_length=None,
              *, do_rotary=0, mask_filter_value=-10000.0, num_heads=None, past_present_share_buffer=0,
              qkv_hidden_sizes=None, rotary_embedding_dim=0, scale=0.0, unidirectional=0):
    """Self attention with the Q/K/V projections merged into `weights`; returns (output, present), where
    present stacks the keys and values of past and input: [2, batch, heads, total, head_size]."""
    if do_rotary or past_present_share_buffer:
        raise NotImplementedError("Attention with do_rotary or past_present_share_buffer is not supported")
    qkv = jnp.matmul(input, weights) if bias is None else jnp.matmul(input, weights) + bias
    sizes = qkv_hidden_sizes or (weights.shape[1] // 3,) * 3
    q, k, v = (_heads(part, num_heads) for part in jnp.split(qkv, np.cumsum(sizes)[:2], axis=-1))
    past_len = 0
    if past is not None:
        past_len = past.shape[3]
        k, v = jnp.concatenate([past[0], k], axis=2), jnp.concatenate([past[1], v], axis=2)
    batch, _, q_len, head_size = q.shape
    mask = _mask_bias(mask_index, (batch, q_len, k.shape[2]), past_len, mask_filter_value, unidirectional,
                      q.dtype)[:, None]
    if attention_bias is not None:
        mask = mask + attention_bias
    out = _attend(q, k, v, mask, scale or 1 / math.sqrt(head_size))
    return _merge_heads(out), jnp.stack([k, v])


def _unpack(x, index: int):
    """Part `index` of a packed [batch, seq, heads, parts, size] tensor, as [batch, heads, seq, size]."""
    return x[:, :, :, index].transpose(0, 2, 1, 3)


@op("MultiHeadAttention", 1, domain=MS)
def MultiHeadAttention(query, key=None, value=None, bias=None, key_padding_mask=None, attention_bias=None,
                       past_key=None, past_value=None, past_sequence_length=None, cache_indirection=None, *,
                       mask_filter_value=-10000.0, num_heads=None, scale=0.0, unidirectional=0):
    """Returns (output, present_key, present_value). Query, key and value come separate ([batch, seq, hidden]),
    as packed QKV ([batch, seq, heads, 3, size]) or packed KV ([batch, seq, heads, 2, size]), or key and value
    already split into heads ([batch, heads, seq, size], without bias)."""
    if cache_indirection is not None:
        raise NotImplementedError("MultiHeadAttention with cache_indirection (beam search) is not supported")
    if query.ndim == 5:
        q, k, v = (_unpack(query, i) for i in range(3))
        if bias is not None:
            q, k, v = (t + _heads(b[None, None], num_heads) for t, b in zip((q, k, v), jnp.split(bias, 3)))
    else:
        hidden = query.shape[-1]
        q_bias, k_bias, v_bias = (None, None, None) if bias is None else (
            bias[:hidden], bias[hidden:2 * hidden], bias[2 * hidden:])
        q = _heads(query if q_bias is None else query + q_bias, num_heads)
        if key.ndim == 5:
            k, v = _unpack(key, 0), _unpack(key, 1)
            if bias is not None:
                k, v = k + _heads(k_bias[None, None], num_heads), v + _heads(v_bias[None, None], num_heads)
        elif key.ndim == 4:
            k, v = key, value
        else:
            k = _heads(key if k_bias is None else key + k_bias, num_heads)
            v = _heads(value if v_bias is None else value + v_bias, num_heads)
    past_len = 0
    if past_key is not None:
        past_len = past_key.shape[2]
        k, v = jnp.concatenate([past_key, k], axis=2), jnp.concatenate([past_value, v], axis=2)
    batch, _, q_len, head_size = q.shape
    mask = _mask_bias(key_padding_mask, (batch, q_len, k.shape[2]), past_len, mask_filter_value, unidirectional,
                      q.dtype)[:, None]
    if attention_bias is not None:
        mask = mask + attention_bias
    out = _attend(q, k, v, mask, scale or 1 / math.sqrt(head_size))
    return _merge_heads(out), k, v


@op("GroupQueryAttention", 1, domain=MS, static=("total_sequence_length",))
def GroupQueryAttention(query, key, value, past_key, past_value, seqlens_k, total_sequence_length, cos_cache=None,
                        sin_cache=None, position_ids=None, attention_bias=None, head_sink=None, k_scale=None,
                        v_scale=None, q_norm_weight=None, k_norm_weight=None, query_seqlens=None, *, causal=1,
                        do_rotary=0, k_norm_epsilon=None, k_quant_type="NONE", kv_cache_bit_width=0,
                        kv_num_heads=None, local_window_size=-1, num_heads=None, q_norm_epsilon=None,
                        qk_norm_epsilon=1e-6, qk_output=0, rotary_interleaved=0, scale=0.0,
                        sliding_window_cache=0, smooth_softmax=-1, softcap=0.0, v_quant_type="NONE"):
    """Grouped-query attention with a BNSH KV cache; returns (output, present_key, present_value).

    Batch entry b holds seqlens_k[b] + 1 tokens after this step, the new ones written to the cache at
    [past_b, past_b + seq) with past_b = seqlens_k[b] + 1 - seq (0 for a first, possibly right-padded, prompt).
    The present cache is max(past cache length, total_sequence_length) long."""
    if (k_quant_type, v_quant_type) != ("NONE", "NONE") or sliding_window_cache or qk_output or any(
            x is not None for x in (query_seqlens, q_norm_weight, k_norm_weight)):
        raise NotImplementedError("GroupQueryAttention with a quantized or sliding-window cache, query_seqlens, "
                                  "Q/K norms or a QK output is not supported")
    batch, q_len = query.shape[:2]
    if key is None:
        head_size = query.shape[-1] // (num_heads + 2 * kv_num_heads)
        query, key, value = jnp.split(query, [num_heads * head_size, (num_heads + kv_num_heads) * head_size], -1)
    q, k, v = _heads(query, num_heads), _heads(key, kv_num_heads), _heads(value, kv_num_heads)
    total = int(np.asarray(total_sequence_length).reshape(()))
    past_capacity = 0 if past_key is None else past_key.shape[2]
    valid = seqlens_k.astype(jnp.int32) + 1
    past_len = jnp.zeros_like(valid) if total == q_len else valid - q_len  # a first prompt may be right-padded
    positions = past_len[:, None] + jnp.arange(q_len)  # absolute position of each query row
    if do_rotary:
        rotary_ids = positions if position_ids is None else position_ids
        q, k = (_rotary(t, cos_cache, sin_cache, rotary_ids, interleaved=rotary_interleaved,
                        rotary_embedding_dim=2 * cos_cache.shape[-1]) for t in (q, k))
    capacity = max(past_capacity, total)

    def write(cache, new, start):
        zero = jnp.zeros((), start.dtype)
        return lax.dynamic_update_slice(cache, new.astype(cache.dtype), (zero, start, zero))

    caches = []
    for past, new in ((past_key, k), (past_value, v)):
        cache = jnp.zeros((batch, kv_num_heads, capacity, new.shape[-1]), new.dtype)
        if past is not None:
            cache = cache.at[:, :, :past_capacity].set(past)
        caches.append(jax.vmap(write)(cache, new, past_len))
    key_pos = jnp.arange(capacity)
    allowed = key_pos[None, None, :] < valid[:, None, None]
    if causal:
        allowed &= key_pos <= positions[:, :, None]
    if local_window_size >= 0:
        allowed &= key_pos > positions[:, :, None] - local_window_size
    head_size = q.shape[-1]
    groups = num_heads // kv_num_heads
    keys, values = (jnp.repeat(c, groups, axis=1) for c in caches)
    scores = _compute(jnp.einsum("bnsh,bnth->bnst", q, keys)) * (scale or 1 / math.sqrt(head_size))
    if softcap > 0:
        scores = softcap * jnp.tanh(scores / softcap)
    if attention_bias is not None:
        scores = scores + jnp.pad(_compute(attention_bias), [(0, 0)] * 3 + [(0, capacity - total)])
    scores = jnp.where(allowed[:, None], scores, -jnp.inf)
    peak = jnp.max(scores, axis=-1, keepdims=True)
    if smooth_softmax == 1 or head_sink is not None:  # a sink logit (0, or head_sink per head) joins the softmax
        sink = jnp.zeros((num_heads,), scores.dtype) if head_sink is None else _compute(head_sink)
        peak = jnp.maximum(peak, sink[None, :, None, None])
        weights = jnp.exp(scores - peak)
        probs = weights / (jnp.sum(weights, -1, keepdims=True) + jnp.exp(sink[None, :, None, None] - peak))
    else:
        probs = jax.nn.softmax(scores, axis=-1)
    out = jnp.einsum("bnst,bnth->bnsh", probs.astype(q.dtype), values)
    return _merge_heads(out), caches[0], caches[1]


@op("RotaryEmbedding", 1, domain=MS)
def RotaryEmbedding(input, position_ids, cos_cache, sin_cache, *, interleaved=0, is_packed_batching=0, num_heads=0,
                    rotary_embedding_dim=0, scale=1.0):
    """Rotary embedding of [batch, seq, hidden] or [batch, heads, seq, head_size] inputs; position_ids is
    [batch, seq], or one start position for every row."""
    seq = input.shape[-2] if input.ndim == 4 else input.shape[1]
    if position_ids.ndim < 2:
        position_ids = jnp.reshape(position_ids, (-1, 1))[:1] + jnp.arange(seq)
    if input.ndim == 3 and not num_heads:
        num_heads = input.shape[-1] // (2 * cos_cache.shape[-1])
    position_ids = jnp.broadcast_to(position_ids, (input.shape[0], seq))
    return _rotary(input, cos_cache, sin_cache, position_ids, interleaved=interleaved, num_heads=num_heads,
                   rotary_embedding_dim=rotary_embedding_dim or 2 * cos_cache.shape[-1])


# Quantized ops


def _unpack_bits(packed, bits: int, count: int):
    """Little-end-first `bits`-bit values of uint8 bytes along the last axis, the first `count` of them."""
    shifts = jnp.arange(0, 8, bits, dtype=jnp.uint8)
    values = (packed[..., None] >> shifts) & jnp.uint8((1 << bits) - 1)
    return jnp.reshape(values, packed.shape[:-1] + (-1,))[..., :count]


@op("MatMulNBits", 1, domain=MS)
def MatMulNBits(A, B, scales, zero_points=None, g_idx=None, bias=None, *, K=None, N=None, accuracy_level=0, bits=4,
                block_size=None, weight_prepacked=0):
    """A @ dequantized(B)^T (+ bias): B holds N rows of K `bits`-bit values in blocks of block_size along K,
    each block with a scale and a zero point (2^(bits-1) unless given, packed uint8 or in A's type)."""
    blocks = -(-K // block_size)
    weight = _unpack_bits(jnp.reshape(B, (N, -1)), bits, blocks * block_size)[:, :K].astype(jnp.float32)
    scale = jnp.reshape(jnp.asarray(scales, jnp.float32), (N, blocks))  # may be numpy (a small constant)
    if zero_points is None:
        zero = jnp.full((N, blocks), 2 ** (bits - 1), jnp.float32)
    elif zero_points.dtype == jnp.uint8:
        zero = _unpack_bits(jnp.reshape(zero_points, (N, -1)), bits, blocks).astype(jnp.float32)
    else:
        zero = jnp.reshape(jnp.asarray(zero_points, jnp.float32), (N, blocks))
    block = np.arange(K) // block_size if g_idx is None else g_idx
    weight = (weight - zero[:, block]) * scale[:, block]
    y = jnp.matmul(_compute(A), weight.T)
    if bias is not None:
        y = y + _compute(bias)
    return y.astype(A.dtype)


def _qlinear_binary(fn, a, a_scale, a_zero_point, b, b_scale, b_zero_point, c_scale, c_zero_point):
    out = fn(_dequantize(a, a_scale, a_zero_point), _dequantize(b, b_scale, b_zero_point))
    return _quantize(out, c_scale, jnp.zeros((), a.dtype) if c_zero_point is None else c_zero_point)


@op("QLinearAdd", 1, domain=MS)
def QLinearAdd(A, A_scale, A_zero_point, B, B_scale, B_zero_point, C_scale, C_zero_point=None):
    return _qlinear_binary(jnp.add, A, A_scale, A_zero_point, B, B_scale, B_zero_point, C_scale, C_zero_point)


@op("QLinearMul", 1, domain=MS)
def QLinearMul(A, A_scale, A_zero_point, B, B_scale, B_zero_point, C_scale, C_zero_point=None):
    return _qlinear_binary(jnp.multiply, A, A_scale, A_zero_point, B, B_scale, B_zero_point, C_scale, C_zero_point)


@op("QLinearSigmoid", 1, domain=MS)
def QLinearSigmoid(X, X_scale, X_zero_point, Y_scale, Y_zero_point=None):
    y = jax.nn.sigmoid(_dequantize(X, X_scale, X_zero_point))
    return _quantize(y, Y_scale, jnp.zeros((), X.dtype) if Y_zero_point is None else Y_zero_point)


@op("QLinearGlobalAveragePool", 1, domain=MS)
def QLinearGlobalAveragePool(X, x_scale, x_zero_point, y_scale, y_zero_point, *, channels_last=0):
    """The mean over the spatial axes (1 .. rank-2 with channels_last, else 2 ..), kept as size-1 axes."""
    axes = tuple(range(1, X.ndim - 1)) if channels_last else tuple(range(2, X.ndim))
    mean = jnp.mean(_dequantize(X, x_scale, x_zero_point), axis=axes, keepdims=True)
    return _quantize(mean, y_scale, y_zero_point)


def _quantized_matmul(spec: str, a, a_scale, a_zero_point, w, w_scale, w_zero_point):
    """einsum(a - a_zero_point, w - w_zero_point) accumulated in int32, then scaled to float32 by a_scale * w_scale."""
    acc = jnp.einsum(spec, _shifted(a, a_zero_point), _shifted(w, w_zero_point), preferred_element_type=jnp.int32)
    return acc.astype(jnp.float32) * (a_scale * w_scale)


def _reverse_sequences(x, sequence_lens):
    """x [time, batch, ...] with each sequence reversed over its own length, the steps past it left in place."""
    time = jnp.arange(x.shape[0])[:, None]
    lens = jnp.asarray(sequence_lens)[None, :]
    index = jnp.where(time < lens, lens - 1 - time, time)
    return jnp.take_along_axis(x, jnp.reshape(index, index.shape + (1,) * (x.ndim - 2)), axis=0)


def _align(x, sequence_lens, reverse: tuple[bool, ...]):
    """x [time, directions, batch, ...] in processing order: each sequence of a backward direction reversed over
    its own length, so every sequence starts at step 0 (as onnxruntime runs them); its own inverse."""
    return jnp.stack([_reverse_sequences(x[:, d], sequence_lens) if r else x[:, d] for d, r in enumerate(reverse)],
                     axis=1)


@op("DynamicQuantizeLSTM", 1, domain=MS, context=True)
def DynamicQuantizeLSTM(X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, P=None, W_scale=None,
                        W_zero_point=None, R_scale=None, R_zero_point=None, *, activation_alpha=None,
                        activation_beta=None, activations=None, clip=None, direction="forward", hidden_size=None,
                        input_forget=0, ctx):
    """LSTM with int8/uint8 weights W [directions, input, 4 * hidden] and R [directions, hidden, 4 * hidden]
    (transposed from LSTM's), each with a scale and zero point per direction or per output channel
    ([directions] or [directions, 4 * hidden]). Returns (Y, Y_h, Y_c).

    As onnxruntime computes it: X (its first max(sequence_lens) steps) is quantized once to uint8 as
    DynamicQuantizeLinear does, and each step's hidden state over the batch, per direction; the products
    accumulate in int32 and scale back to float32. Onnxruntime quantizes the hidden state of each of its threads'
    slices of the batch separately: this is its result with one intra-op thread. Sequences past their length feed
    a zero hidden state to the next step's quantization when Y is an output, their last one otherwise.
    """
    reverse = _directions(direction)
    time, batch = X.shape[:2]
    gates = R.shape[-1]
    f, g, h = _activations(activations or ("Sigmoid", "Tanh", "Tanh"), activation_alpha, activation_beta, 3,
                           len(reverse))
    per_gate = lambda p: jnp.reshape(p, (len(reverse), 1, -1))  # noqa: E731  [directions] or [directions, gates]
    w_scale, w_zero, r_scale, r_zero = (per_gate(p) for p in (W_scale, W_zero_point, R_scale, R_zero_point))

    x = X
    if sequence_lens is not None:  # onnxruntime quantizes only the steps up to the longest sequence
        x = jnp.where(jnp.arange(time)[:, None, None] < jnp.max(sequence_lens), X, 0)
    xq, x_scale, x_zero = DynamicQuantizeLinear(x)
    gates_x = _quantized_matmul("tbi,dig->tdbg", xq, x_scale, x_zero, W, w_scale, w_zero)
    if B is not None:
        gates_x = gates_x + jnp.sum(jnp.reshape(B, (len(reverse), 2, gates)), axis=1)[:, None, :]

    def recur(h_prev):
        hq, h_scale, h_zero = jax.vmap(DynamicQuantizeLinear)(h_prev)
        return _quantized_matmul("dbh,dhg->dbg", hq, h_scale[:, None, None], h_zero[:, None, None], R, r_scale, r_zero)

    cell = _lstm_cell(recur, P, f, g, h, clip, input_forget)
    zeros = jnp.zeros((len(reverse), batch, R.shape[1]), X.dtype)
    state = tuple(zeros if s is None else jnp.asarray(s) for s in (initial_h, initial_c))
    if sequence_lens is None:
        Y, final = _recurrence(cell, _in_processing_order(gates_x, reverse), state, None, reverse)
        return (Y, *final)

    # Every sequence in processing order starts at step 0, so the batch quantized together at a step holds every
    # sequence's same step. Where Y is an output, onnxruntime's next hidden state past a sequence's end is its zero
    # output; the step's flag (an extra input column) zeroes it before the quantization.
    gates_x = _align(gates_x, sequence_lens, reverse)
    lstm = cell
    if ctx.output_used(0):
        past = jnp.arange(time)[:, None] > jnp.asarray(sequence_lens)[None, :]
        flag = jnp.broadcast_to(past[:, None, :, None], gates_x.shape[:3] + (1,)).astype(gates_x.dtype)
        gates_x = jnp.concatenate([gates_x, flag], axis=-1)

        def cell(x, state):
            return lstm(x[..., :-1], (jnp.where(x[..., -1:] > 0, 0, state[0]), state[1]))

    in_order = (False,) * len(reverse)
    Y, final = _recurrence(cell, _in_processing_order(gates_x, in_order), state, sequence_lens, in_order)
    return (_align(Y, sequence_lens, reverse), *final)
