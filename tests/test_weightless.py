"""examples/weightless.py: benchmark models travel without their weights and come back runnable."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

import onnx_jax

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import weightless  # noqa: E402


def _model(rng: np.random.Generator) -> onnx.ModelProto:
    weights = {
        "w": rng.normal(0.3, 0.05, (64, 128)).astype(np.float32),  # large: stripped
        "scale": rng.uniform(0.5, 1.5, (128,)).astype(np.float32),  # small: exact
        "mask": np.where(rng.random((64, 128)) < 0.5, 0, -np.inf).astype(np.float32),  # infinities: exact
        "variance": rng.uniform(0.5, 1.5, (64, 128)).astype(np.float32),  # large and positive: stays positive
    }
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Mul", ["y", "scale"], ["z"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 64])],
                              [helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, [2, 128])],
                              [numpy_helper.from_array(v, k) for k, v in weights.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_strip_then_refill_keeps_shapes_moments_and_exact_small_tensors(tmp_path):
    model = _model(np.random.default_rng(0))
    original = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    onnx.save(model, tmp_path / "m.onnx")
    weightless.strip(tmp_path / "m.onnx", tmp_path / "light.onnx")
    assert (tmp_path / "light.onnx").stat().st_size < 4 * 64 * 128 + 4 * 128 + 1024  # the mask, the scale, the graph
    weightless.refill(tmp_path / "light.onnx")
    refilled = onnx.load(tmp_path / "light.onnx")
    back = {t.name: numpy_helper.to_array(t) for t in refilled.graph.initializer}
    for name in ("scale", "mask"):
        np.testing.assert_array_equal(back[name], original[name])
    for name in ("w", "variance"):
        assert back[name].shape == original[name].shape and back[name].dtype == np.float32
        assert not np.array_equal(back[name], original[name])
        np.testing.assert_allclose(back[name].mean(), original[name].mean(), rtol=0.05)
        # a normal clipped to the range: w's range spans ~8 standard deviations, variance's only ~3.5
        assert 0.85 * original[name].std() < back[name].std() < 1.05 * original[name].std()
        assert original[name].min() <= back[name].min() and back[name].max() <= original[name].max()
    x = np.ones((2, 64), np.float32)
    np.testing.assert_allclose(onnx_jax.prepare(refilled).run({"x": x})[0],
                               (x @ back["w"]) * back["scale"], rtol=1e-5)
