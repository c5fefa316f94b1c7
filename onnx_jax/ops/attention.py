"""Attention ops: scaled dot-product Attention (MHA, GQA, MQA, KV cache), RotaryEmbedding, LinearAttention."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..dtypes import to_numpy_dtype
from ..registry import op


def _split_heads(x, num_heads: int):
    """[batch, seq, heads * size] -> [batch, heads, seq, size]."""
    batch, seq, hidden = x.shape
    return jnp.reshape(x, (batch, seq, num_heads, hidden // num_heads)).transpose(0, 2, 1, 3)


def _bias(attn_mask, dtype, q_len: int, kv_len: int, past_len: int, nonpad_kv_seqlen, is_causal: int, left: int,
          right: int):
    """The additive bias, broadcastable to [batch, heads, q_len, kv_len]: -inf on the keys a query may not see."""
    bias = jnp.zeros((q_len, kv_len), dtype)
    if attn_mask is not None:
        pad = [(0, 0)] * (attn_mask.ndim - 1) + [(0, kv_len - attn_mask.shape[-1])]  # a short mask hides the rest
        if attn_mask.dtype == bool:
            bias = bias + jnp.where(jnp.pad(attn_mask, pad), 0, -jnp.inf).astype(dtype)
        else:
            bias = bias + jnp.pad(attn_mask, pad, constant_values=-jnp.inf)
    # A query's absolute position counts the valid keys before it: the past, or an external cache's length - q_len.
    position = jnp.arange(q_len)[:, None] + past_len
    if past_len == 0 and nonpad_kv_seqlen is not None:
        position = position + jnp.reshape(nonpad_kv_seqlen - q_len, (-1, 1, 1, 1))
    key = jnp.arange(kv_len)
    allowed = jnp.ones((q_len, kv_len), bool)
    if is_causal:
        allowed &= key <= position
    if left >= 0:
        allowed &= key >= position - left
    if right >= 0:
        allowed &= key <= position + right
    if nonpad_kv_seqlen is not None:
        allowed &= key < jnp.reshape(nonpad_kv_seqlen, (-1, 1, 1, 1))
    return bias + jnp.where(allowed, 0, -jnp.inf).astype(dtype)


def _scores(Q, K):
    """Q @ K^T, [batch, q_heads, q_len, kv_len]; query head h reads key head h // (q_heads / kv_heads) (GQA)."""
    batch, q_heads, q_len, size = Q.shape
    kv_heads, kv_len = K.shape[1], K.shape[2]
    grouped = jnp.reshape(Q, (batch, kv_heads, q_heads // kv_heads, q_len, size))
    return jnp.einsum("bhgqd,bhkd->bhgqk", grouped, K).reshape(batch, q_heads, q_len, kv_len)


def _weighted(probs, V):
    """probs @ V, [batch, q_heads, q_len, v_size], with the head grouping of `_scores`."""
    batch, q_heads, q_len, kv_len = probs.shape
    grouped = jnp.reshape(probs, (batch, V.shape[1], -1, q_len, kv_len))
    return jnp.einsum("bhgqk,bhkv->bhgqv", grouped, V).reshape(batch, q_heads, q_len, -1)


@op("Attention", 25)
def Attention(Q, K, V, attn_mask=None, past_key=None, past_value=None, nonpad_kv_seqlen=None, *, is_causal=0,
              kv_num_heads=None, left_window_size=-1, q_num_heads=None, qk_matmul_output_mode=0,
              right_window_size=-1, scale=None, softcap=0.0, softmax_precision=None):
    """Returns (Y, present_key, present_value, qk_matmul_output)."""
    dtype, rank = Q.dtype, Q.ndim
    if rank == 3:
        Q, K, V = _split_heads(Q, q_num_heads), _split_heads(K, kv_num_heads), _split_heads(V, kv_num_heads)
    past_len = 0
    if past_key is not None:
        past_len = past_key.shape[2]
        K, V = jnp.concatenate([past_key, K], axis=2), jnp.concatenate([past_value, V], axis=2)
    batch, _, q_len, head_size = Q.shape
    # Q and K are each scaled by sqrt(scale); a given scale is a float32 attribute, rooted in float32 as onnx does
    root = jnp.asarray(math.sqrt(1 / math.sqrt(head_size)) if scale is None else np.sqrt(np.float32(scale)), dtype)
    qk = _scores(Q * root, K * root)
    capped = softcap * jnp.tanh(qk / softcap) if softcap > 0 else qk
    bias = _bias(attn_mask, dtype, q_len, K.shape[2], past_len, nonpad_kv_seqlen, is_causal, left_window_size,
                 right_window_size)
    scores = capped + bias
    probs = jax.nn.softmax(scores.astype(to_numpy_dtype(softmax_precision) if softmax_precision else dtype))
    probs = jnp.where(jnp.all(bias == -jnp.inf, axis=-1, keepdims=True), 0, probs).astype(dtype)  # no key: zeros
    Y = _weighted(probs, V)
    if rank == 3:
        Y = Y.transpose(0, 2, 1, 3).reshape(batch, q_len, -1)
    # mode 0 is the raw product even with a softcap, as the spec and its function body say (onnx.reference caps it)
    return Y, K, V, (qk, capped, scores, probs)[qk_matmul_output_mode].astype(dtype)


@op("Attention", 23)
def Attention_23(Q, K, V, attn_mask=None, past_key=None, past_value=None, nonpad_kv_seqlen=None, *, is_causal=0,
                 kv_num_heads=None, q_num_heads=None, qk_matmul_output_mode=0, scale=None, softcap=0.0,
                 softmax_precision=None):
    """Attention before sliding windows; opset 24 added the `nonpad_kv_seqlen` input."""
    return Attention(Q, K, V, attn_mask, past_key, past_value, nonpad_kv_seqlen, is_causal=is_causal,
                     kv_num_heads=kv_num_heads, q_num_heads=q_num_heads, qk_matmul_output_mode=qk_matmul_output_mode,
                     scale=scale, softcap=softcap, softmax_precision=softmax_precision)


@op("FlexAttention", 1, domain="ai.onnx.preview", context=True)
def FlexAttention(Q, K, V, *, prob_mod=None, scale=None, score_mod=None, softmax_precision=None, ctx):
    """Attention with optional one-input subgraphs modifying the scores and the probabilities."""
    precision = to_numpy_dtype(softmax_precision) if softmax_precision else jnp.promote_types(Q.dtype, jnp.float32)
    root = jnp.asarray(np.sqrt(np.float32(1 / math.sqrt(Q.shape[-1]) if scale is None else scale)), Q.dtype)
    scores = _scores(Q * root, K * root).astype(precision)
    if score_mod is not None:
        (scores,) = ctx.run_subgraph(score_mod, scores)
    probs = jax.nn.softmax(scores, axis=-1)
    if prob_mod is not None:
        (probs,) = ctx.run_subgraph(prob_mod, probs)
    return _weighted(probs.astype(precision), V.astype(precision)).astype(V.dtype)


@op("RotaryEmbedding", 23)
def RotaryEmbedding(X, cos_cache, sin_cache, position_ids=None, *, interleaved=0, num_heads=None,
                    rotary_embedding_dim=0):
    """Rotates the first `rotary_embedding_dim` features of each head by the cached angles (halves or pairs)."""
    if position_ids is not None:
        cos_cache, sin_cache = jnp.take(cos_cache, position_ids, axis=0), jnp.take(sin_cache, position_ids, axis=0)
    if X.ndim == 4:  # [batch, heads, seq, head_size]
        x, cos, sin = X, cos_cache[:, None], sin_cache[:, None]
    else:  # [batch, seq, heads * head_size]
        x = jnp.reshape(X, X.shape[:2] + (num_heads, -1))
        cos, sin = cos_cache[:, :, None], sin_cache[:, :, None]
    rotary = rotary_embedding_dim or x.shape[-1]
    rotate, keep = x[..., :rotary], x[..., rotary:]
    if interleaved:
        x1, x2 = rotate[..., 0::2], rotate[..., 1::2]
    else:
        x1, x2 = jnp.split(rotate, 2, axis=-1)
    real, imag = cos * x1 - sin * x2, sin * x1 + cos * x2
    if interleaved:
        rotated = jnp.stack([real, imag], axis=-1).reshape(rotate.shape)
    else:
        rotated = jnp.concatenate([real, imag], axis=-1)
    return jnp.concatenate([rotated, keep], axis=-1).reshape(X.shape)


def _time_major(x, num_heads: int):
    """[batch, time, heads * size] -> float32 [time, batch, heads, size]."""
    batch, steps, hidden = x.shape
    return jnp.reshape(x, (batch, steps, num_heads, hidden // num_heads)).transpose(1, 0, 2, 3).astype(jnp.float32)


@op("LinearAttention", 27)
def LinearAttention(query, key, value, past_state=None, decay=None, beta=None, *, chunk_size=64, kv_num_heads,
                    q_num_heads, scale=0.0, update_rule="gated_delta"):
    """The recurrence token by token in float32, as a lax.scan; `chunk_size` is only a tuning hint."""
    batch, steps, _ = query.shape
    groups = q_num_heads // kv_num_heads
    q = jnp.reshape(_time_major(query, q_num_heads), (steps, batch, kv_num_heads, groups, -1))
    k, v = _time_major(key, kv_num_heads), _time_major(value, kv_num_heads)
    gate = jnp.exp(_time_major(decay, kv_num_heads)) if "gated" in update_rule else None  # per head or per key dim
    rate = _time_major(beta, beta.shape[-1]) if "delta" in update_rule else None
    d_k, d_v = k.shape[-1], v.shape[-1]
    if past_state is None:
        past_state = jnp.zeros((batch, kv_num_heads, d_k, d_v), query.dtype)

    def step(state, x):
        q_t, k_t, v_t, gate_t, rate_t = x
        if gate_t is not None:
            state = state * gate_t[..., None]
        if rate_t is not None:
            v_t = rate_t * (v_t - jnp.einsum("bhkv,bhk->bhv", state, k_t))
        state = state + k_t[..., :, None] * v_t[..., None, :]
        return state, jnp.einsum("bhgk,bhkv->bhgv", q_t, state)

    final, out = lax.scan(step, jnp.asarray(past_state, jnp.float32), (q, k, v, gate, rate))
    out = (scale or 1 / math.sqrt(d_k)) * out.transpose(1, 0, 2, 3, 4).reshape(batch, steps, -1)
    return out.astype(query.dtype), final.astype(past_state.dtype)
