"""prepare's performance options: devices= (batch split across devices) and precision= give the same results.

The sharding test runs in a subprocess with two host CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count=2).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import helper

SCRIPT = """
import sys, jax, numpy as np, onnx_jax
assert len(jax.devices()) == 2, jax.devices()
x = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
single = onnx_jax.prepare(sys.argv[1]).run([x])[0]
split = onnx_jax.prepare(sys.argv[1], devices=jax.devices())
np.testing.assert_allclose(split.run([x])[0], single, rtol=1e-6, atol=1e-6)
segment = next(iter(split._cache.values()))
assert {d.id for d in segment.executable.input_shardings[0][1].device_set} == {0, 1}
assert segment.executable.input_shardings[0][1].spec[0] == "batch"
odd = np.ones((3, 8), np.float32)  # 3 rows do not split over 2 devices: replicated, still right
np.testing.assert_allclose(split.run([odd])[0], onnx_jax.prepare(sys.argv[1]).run([odd])[0], rtol=1e-6)
print("ok")
"""


def _mlp(path):
    rng = np.random.default_rng(1)
    w1, w2 = rng.standard_normal((8, 16)).astype(np.float32), rng.standard_normal((16, 2)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 8])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["n", 2])],
                              initializer=[onnx.numpy_helper.from_array(w1, "w1"), onnx.numpy_helper.from_array(w2, "w2")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_batch_split_across_two_devices(tmp_path):
    _mlp(tmp_path / "mlp.onnx")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "mlp.onnx")], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_precision_is_lowered_into_the_matmuls(tmp_path):
    import jax

    import onnx_jax

    _mlp(tmp_path / "mlp.onnx")
    x = np.random.default_rng(2).standard_normal((4, 8)).astype(np.float32)
    for precision in ("highest", "default"):
        rep = onnx_jax.prepare(tmp_path / "mlp.onnx", precision=precision)
        fn, params = onnx_jax.to_jax(tmp_path / "mlp.onnx", precision=precision)
        hlo = jax.jit(fn).lower(params, x).as_text()
        assert ("HIGHEST" in hlo) == (precision == "highest")
        np.testing.assert_allclose(rep.run([x])[0], fn(params, x)[0], rtol=1e-5, atol=1e-5)  # CPUs: float32 either way


def test_devices_must_be_jax_devices():
    import onnx_jax

    with pytest.raises(ValueError, match="devices must be"):
        onnx_jax.prepare(helper.make_model(helper.make_graph([], "g", [], [])), devices=["cpu:0"])
    with pytest.raises(ValueError, match="precision must be one of"):
        onnx_jax.prepare(helper.make_model(helper.make_graph([], "g", [], [])), precision="fast")
