"""Property tests for ops/random.py: shapes, dtypes, statistics and seed determinism (values differ from
onnx.reference by design: the spec leaves the generator to the implementation)."""

from __future__ import annotations

import numpy as np
import onnx
from hypothesis import given, settings
from hypothesis import strategies as st

import onnx_jax
from oracle import node_model, shapes

SOME = settings(max_examples=4)  # each example compiles a PRNG program (seconds)
FLOATS = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.DOUBLE: np.float64, onnx.TensorProto.FLOAT16: np.float16}


def run(op_type, inputs=(), *, opset=22, **attrs):
    return onnx_jax.prepare(node_model(op_type, list(inputs), opset=opset, **attrs)).run(list(inputs))[0]


@SOME
@given(st.data())
def test_random_normal_and_uniform_shape_dtype_and_seed(data):
    op_type = data.draw(st.sampled_from(["RandomNormal", "RandomUniform"]))
    dtype = data.draw(st.sampled_from(sorted(FLOATS)))
    shape = data.draw(shapes(1, 3))
    seed = data.draw(st.floats(0, 1000, width=32))
    y = run(op_type, shape=shape, dtype=dtype, seed=seed)
    assert y.shape == shape and y.dtype == FLOATS[dtype]
    np.testing.assert_array_equal(y, run(op_type, shape=shape, dtype=dtype, seed=seed))


def test_seeds_give_different_draws():
    assert not np.array_equal(run("RandomNormal", shape=(64,), seed=1.0), run("RandomNormal", shape=(64,), seed=2.0))
    assert not np.array_equal(run("RandomNormal", shape=(64,), seed=1.0), run("RandomNormal", shape=(64,), seed=1.5))


def test_random_normal_statistics():
    y = run("RandomNormal", shape=(200, 100), mean=3.0, scale=0.5, seed=7.0)
    assert abs(y.mean() - 3.0) < 0.01 and abs(y.std() - 0.5) < 0.01


def test_random_uniform_statistics_and_range():
    y = run("RandomUniform", shape=(200, 100), low=-2.0, high=6.0, seed=7.0)
    assert y.min() >= -2.0 and y.max() < 6.0
    assert abs(y.mean() - 2.0) < 0.05 and abs(y.var() - 64 / 12) < 0.1


@SOME
@given(st.data())
def test_like_variants_take_the_input_shape_and_dtype(data):
    op_type = data.draw(st.sampled_from(["RandomNormalLike", "RandomUniformLike"]))
    x = np.zeros(data.draw(shapes(0, 3)), data.draw(st.sampled_from([np.float32, np.float16, np.float64])))
    y = run(op_type, [x], seed=1.0)
    assert y.shape == x.shape and y.dtype == x.dtype
    z = run(op_type, [x], seed=1.0, dtype=onnx.TensorProto.DOUBLE)
    assert z.shape == x.shape and z.dtype == np.float64


def test_random_ops_are_not_folded_away():
    """A seedless random op with static inputs still runs in the compiled program (fold=False)."""
    y = run("RandomUniformLike", [np.zeros((3, 4), np.float32)])
    assert y.shape == (3, 4) and len(np.unique(y)) > 1


@SOME
@given(st.data())
def test_bernoulli_values_dtype_and_seed(data):
    p = np.random.default_rng(0).uniform(size=data.draw(shapes(1, 3))).astype(np.float32)
    dtype = data.draw(st.sampled_from([None, onnx.TensorProto.INT32, onnx.TensorProto.BOOL, onnx.TensorProto.DOUBLE]))
    attrs = dict(seed=3.0) if dtype is None else dict(seed=3.0, dtype=dtype)
    y = run("Bernoulli", [p], **attrs)
    assert y.shape == p.shape and y.dtype == (np.float32 if dtype is None else onnx_jax.dtypes.to_numpy_dtype(dtype))
    assert set(np.unique(y.astype(np.float64))) <= {0.0, 1.0}
    np.testing.assert_array_equal(y, run("Bernoulli", [p], **attrs))


def test_bernoulli_frequency_follows_probability():
    p = np.tile(np.array([0.0, 0.2, 0.9, 1.0], np.float32), (5000, 1))
    y = run("Bernoulli", [p], seed=11.0)
    np.testing.assert_allclose(y.mean(axis=0), [0.0, 0.2, 0.9, 1.0], atol=0.02)
    assert y[:, 0].max() == 0 and y[:, 3].min() == 1


def test_multinomial_shape_dtype_and_frequencies():
    probs = np.array([[0.1, 0.6, 0.3], [0.0, 0.0, 1.0]], np.float32)
    y = run("Multinomial", [np.log(probs + 1e-30).astype(np.float32)], sample_size=20000, seed=5.0)
    assert y.shape == (2, 20000) and y.dtype == np.int32
    np.testing.assert_allclose(np.bincount(y[0], minlength=3) / 20000, probs[0], atol=0.02)
    assert (y[1] == 2).all()
    z = run("Multinomial", [np.zeros((3, 4), np.float32)], sample_size=5, seed=5.0, dtype=onnx.TensorProto.INT64)
    assert z.shape == (3, 5) and z.dtype == np.int64 and z.min() >= 0 and z.max() < 4


def test_old_opsets_resolve():
    assert run("RandomNormal", opset=1, shape=(2,), seed=0.0).shape == (2,)
    assert run("Multinomial", [np.zeros((1, 2), np.float32)], opset=7, seed=0.0).shape == (1, 1)
    assert run("Bernoulli", [np.full((2,), 0.5, np.float32)], opset=15, seed=0.0).shape == (2,)
