"""The persistent compilation cache: on by default in a user cache dir, redirected or off with ONNX_JAX_CACHE_DIR."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import onnx
from onnx import helper

SCRIPT = """
import sys, numpy as np, onnx_jax
from onnx_jax.backend import OnnxJaxRep
if len(sys.argv) > 2:  # the executable must come from the cache: tracing is an error
    OnnxJaxRep._trace_and_compile = lambda *a: sys.exit("traced")
rep = onnx_jax.prepare(sys.argv[1])
print(rep.run([np.arange(6, dtype=np.float32).reshape(2, 3)])[0].sum())
"""


def _run(model_path, env_value: str | None, tmp_path, *, no_tracing: bool = False, xla_flags: str | None = None) -> str:
    """Run SCRIPT in a new process, ONNX_JAX_CACHE_DIR set to `env_value` (None: unset), the user cache in tmp_path."""
    env = {k: v for k, v in os.environ.items() if k != "ONNX_JAX_CACHE_DIR"} | {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    if env_value is not None:
        env["ONNX_JAX_CACHE_DIR"] = env_value
    if xla_flags is not None:
        env["XLA_FLAGS"] = xla_flags
    args = [sys.executable, "-c", SCRIPT, str(model_path)] + (["no-tracing"] if no_tracing else [])
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _model(tmp_path, op: str = "Tanh"):
    nodes = [helper.make_node(op, ["x"], ["t"]), helper.make_node("Add", ["t", "bias"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 3])],
                              initializer=[onnx.numpy_helper.from_array(np.zeros(3, np.float32), "bias")])
    path = tmp_path / f"{op}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_cache_dir_is_filled_once_and_reused(tmp_path):
    path, cache = _model(tmp_path), tmp_path / "cache"
    first = _run(path, str(cache), tmp_path)
    entries = sorted(os.listdir(cache))
    assert entries, "the first process wrote no executable"
    assert _run(path, str(cache), tmp_path, no_tracing=True) == first  # loaded, not traced or compiled
    assert sorted(os.listdir(cache)) == entries
    assert np.isclose(float(first), np.tanh(np.arange(6)).sum(), rtol=1e-6)


def test_a_changed_model_is_not_served_a_stored_executable(tmp_path):
    cache = tmp_path / "cache"
    _run(_model(tmp_path), str(cache), tmp_path)
    changed = _run(_model(tmp_path, "Sigmoid"), str(cache), tmp_path)  # same signature, another graph
    assert np.isclose(float(changed), (1 / (1 + np.exp(-np.arange(6)))).sum(), rtol=1e-6)


def test_default_dir_is_the_user_cache_dir(tmp_path):
    _run(_model(tmp_path), None, tmp_path)
    assert os.listdir(tmp_path / "xdg" / "onnx_jax" / "xla")


def test_empty_value_turns_the_cache_off(tmp_path):
    _run(_model(tmp_path), "", tmp_path)
    assert not (tmp_path / "xdg").exists()


def _weighted_model(tmp_path, seed: int, bias: float):
    """x @ w.T + bias as a 1-wide Conv: w (8x3, a filter, which stays an argument of the executable however small)
    from `seed`, bias (8 elements, compiled in)."""
    w = np.random.default_rng(seed).standard_normal((8, 3)).astype(np.float32)
    nodes = [helper.make_node("Unsqueeze", ["x", "last"], ["x3"]), helper.make_node("Conv", ["x3", "w"], ["t3"]),
             helper.make_node("Squeeze", ["t3", "last"], ["t"]), helper.make_node("Add", ["t", "bias"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 8])],
                              initializer=[onnx.numpy_helper.from_array(w[:, :, None], "w"),
                                           onnx.numpy_helper.from_array(np.array([2]), "last"),
                                           onnx.numpy_helper.from_array(np.full(8, bias, np.float32), "bias")])
    path = tmp_path / f"weighted-{seed}-{bias}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path, (np.arange(6, dtype=np.float32).reshape(2, 3) @ w.T + bias).sum()


def test_new_weight_values_reuse_the_executable_new_constants_do_not(tmp_path):
    """Weights passed as arguments are not compiled in: a model that differs only in their values loads the
    stored executable and computes with its own weights; a changed compiled-in constant compiles anew."""
    cache = tmp_path / "cache"
    path, expected = _weighted_model(tmp_path, 0, 1.0)
    assert np.isclose(float(_run(path, str(cache), tmp_path)), expected, rtol=1e-5)
    path, expected = _weighted_model(tmp_path, 1, 1.0)
    assert np.isclose(float(_run(path, str(cache), tmp_path, no_tracing=True)), expected, rtol=1e-5)
    path, expected = _weighted_model(tmp_path, 1, 2.0)
    assert np.isclose(float(_run(path, str(cache), tmp_path)), expected, rtol=1e-5)
    assert len(os.listdir(cache)) == 2


def test_other_xla_flags_compile_anew(tmp_path):
    """XLA_FLAGS change what XLA compiles (fast math, library fusions): an executable is only reused under the same."""
    path, cache = _model(tmp_path), tmp_path / "cache"
    first = _run(path, str(cache), tmp_path)
    assert _run(path, str(cache), tmp_path, xla_flags="--xla_cpu_enable_fast_math=false") == first
    assert len(os.listdir(cache)) == 2


PACKED = """
import sys, numpy as np, onnx_jax
from onnx_jax.backend import OnnxJaxRep
if len(sys.argv) > 2:
    OnnxJaxRep._trace_and_compile = lambda *a: sys.exit("traced")
rep = onnx_jax.prepare(sys.argv[1])
for _ in range(2):
    a, b = rep.run([np.arange(3, dtype=np.int64), np.arange(4, dtype=np.int64).reshape(2, 2)])
segment = next(iter(rep._cache.values()))
print(segment.packing, segment.placement, a.tolist(), b.tolist())
"""


def test_a_stored_executable_keeps_its_input_packing_and_its_client(tmp_path):
    inputs = [helper.make_tensor_value_info("a", onnx.TensorProto.INT64, [3]),
              helper.make_tensor_value_info("b", onnx.TensorProto.INT64, [2, 2])]
    outputs = [helper.make_tensor_value_info(n, onnx.TensorProto.INT64, None) for n in ("y", "z")]
    nodes = [helper.make_node("Neg", ["a"], ["y"]), helper.make_node("Abs", ["b"], ["z"])]
    path = tmp_path / "two.onnx"
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", inputs, outputs),
                                opset_imports=[helper.make_opsetid("", 17)]), path)
    env = {**os.environ, "ONNX_JAX_CACHE_DIR": str(tmp_path / "cache")}
    runs = [subprocess.run([sys.executable, "-c", PACKED, str(path), *extra], env=env, capture_output=True, text=True,
                           timeout=300) for extra in ([], ["no-tracing"])]
    for done in runs:
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "((0, 1),) one [0, -1, -2] [[0, 1], [2, 3]]"


SPLIT = """
import sys, numpy as np, onnx_jax
from onnx_jax.backend import OnnxJaxRep, cpu_cores, one_thread_cpus
if len(sys.argv) > 2:
    OnnxJaxRep._trace_and_compile = lambda *a: sys.exit("traced")
rep = onnx_jax.prepare(sys.argv[1])
x = np.linspace(-1, 1, 64 * 512 * cpu_cores(), dtype=np.float32).reshape(-1, 512)
y = rep.run([x])[0]
segment = next(iter(rep._cache.values()))
print(len(one_thread_cpus(cpu_cores())), segment.placement, y.shape, round(float(np.abs(y).sum()), 1))
"""


def test_a_stored_executable_split_over_the_cores_loads_split(tmp_path):
    rng = np.random.default_rng(0)
    w1, w2 = (rng.standard_normal(s).astype(np.float32) / 30 for s in ((512, 1024), (1024, 512)))  # 2 MFLOP a row
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("MatMul", ["h", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 512])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
                              initializer=[onnx.numpy_helper.from_array(w, n) for n, w in (("w1", w1), ("w2", w2))])
    path = tmp_path / "mlp.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    env = {**os.environ, "ONNX_JAX_CACHE_DIR": str(tmp_path / "cache")}
    runs = [subprocess.run([sys.executable, "-c", SPLIT, str(path), *extra], env=env, capture_output=True, text=True,
                           timeout=300) for extra in ([], ["no-tracing"])]
    for done in runs:
        assert done.returncode == 0, done.stderr
    first, second = (done.stdout.split() for done in runs)
    assert first == second
    assert first[1] == ("split" if int(first[0]) > 1 else "None")
