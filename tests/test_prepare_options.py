"""prepare's performance options: devices= (batch split across devices) and precision= give the same results; the
CPU compiler options; JAX's CPU dispatch made synchronous by importing onnx_jax.

The sharding test runs in a subprocess with two host CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count=2),
the dispatch tests in fresh processes (JAX reads the setting when it creates its CPU client).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import onnx
import onnx.reference
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


def _conv(path):
    w = np.random.default_rng(3).standard_normal((64, 64, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "conv",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 64, 28, 28])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 64, 28, 28])],
        initializer=[onnx.numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_cpu_convolutions_compile_to_eigen_not_ynnpack(tmp_path):
    import onnx_jax

    _conv(tmp_path / "conv.onnx")
    rep = onnx_jax.prepare(tmp_path / "conv.onnx")
    x = np.random.default_rng(4).standard_normal((1, 64, 28, 28)).astype(np.float32)
    y = rep.run([x])[0]
    hlo = next(iter(rep._cache.values())).executable.as_text()
    assert "convolution(" in hlo and "__ynn_fusion" not in hlo
    expected = onnx.reference.ReferenceEvaluator(str(tmp_path / "conv.onnx")).run(None, {"x": x})[0]
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-4)  # sums of 576 terms of size ~1


CHOSEN = """
import sys, numpy as np, onnx_jax
rep = onnx_jax.prepare(sys.argv[1])
rep.run([np.ones((1, 64, 28, 28), np.float32)])
print("__ynn_fusion" in next(iter(rep._cache.values())).executable.as_text())
"""


def test_ynnpack_choice_in_xla_flags_is_kept(tmp_path):
    _conv(tmp_path / "conv.onnx")
    flags = "--xla_cpu_experimental_ynn_fusion_type=individual_dot,individual_convolution"
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu", "ONNX_JAX_CACHE_DIR": ""}
    done = subprocess.run([sys.executable, "-c", CHOSEN, str(tmp_path / "conv.onnx")], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"


def _lowered(fn, *shapes):
    import jax

    return jax.jit(fn).lower(*(jax.ShapeDtypeStruct(s, np.float32) for s in shapes))


def _lowered_text(fn, *shapes) -> str:
    return _lowered(fn, *shapes).as_text()


def test_cpu_dots_go_to_eigen_when_mid_size_dots_dominate():
    from onnx_jax import backend

    def mlp(x, w1, w2):
        return (x @ w1) @ w2

    def lm_head(x, w, vocab):  # a small block, then a 2048+-column projection that holds most FLOPs
        return (x @ w) @ vocab

    def attention(q, k):  # batched: 4 x 128 x 64 by 4 x 64 x 128
        import jax.numpy as jnp

        return jnp.einsum("bqd,bdk->bqk", q, k)

    def tiny(x, w):
        return x @ w

    choices = {
        "mlp": backend.cpu_compiler_options(_lowered_text(mlp, (128, 256), (256, 1024), (1024, 256))),
        "lm_head": backend.cpu_compiler_options(_lowered_text(lm_head, (128, 256), (256, 256), (256, 8192))),
        "attention": backend.cpu_compiler_options(_lowered_text(attention, (4, 128, 64), (4, 64, 128))),
        "tiny": backend.cpu_compiler_options(_lowered_text(tiny, (4, 32), (32, 96))),
        "few rows": backend.cpu_compiler_options(_lowered_text(tiny, (32, 1024), (1024, 1024))),  # 67 MFLOP
        "no dots": backend.cpu_compiler_options(_lowered_text(lambda x: x + 1, (4, 4))),
    }
    eigen = {k for k, v in choices.items() if v == backend.EIGEN_DOTS}
    assert eigen == {"mlp", "attention"}, choices
    assert all(v in (backend.EIGEN_DOTS, backend.YNN_DOTS) for v in choices.values())


def test_cpu_dots_in_a_loop_count_once_per_iteration():
    import jax.numpy as jnp
    from jax import lax

    from onnx_jax import backend

    def recurrence(x, w, r):  # one mid-size product, then 100 steps of a tiny one (an RNN's shape)
        def step(h, _):
            return jnp.tanh(h @ r), None

        return lax.scan(step, (x @ w)[:2], None, length=100)[0]

    text = _lowered_text(recurrence, (128, 256), (256, 128), (128, 128))
    assert sorted(times for _, times in backend._executed_dots(text)) == [1, 100]
    # per run: 8.4 MFLOP in the mid-size product, 100 x 65.5 kFLOP = 6.6 MFLOP in the tiny one
    assert backend.cpu_compiler_options(text) == backend.YNN_DOTS
    dynamic = _lowered_text(lambda x, w: lax.while_loop(lambda c: c[1] < c[0].sum(), lambda c: (c[0] @ w, c[1] + 1),
                                                        (x, 0.0))[0], (4, 4), (4, 4))
    assert [times for _, times in backend._executed_dots(dynamic)] == [1]  # no constant bound: counted once


def test_small_executables_run_on_the_one_thread_client(tmp_path):
    """A model of few FLOPs runs on one_thread_cpus(1) with the same results; a larger one does not."""
    import jax

    import onnx_jax
    from onnx_jax import backend

    _mlp(tmp_path / "mlp.onnx")
    x = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    expected = onnx.reference.ReferenceEvaluator(str(tmp_path / "mlp.onnx")).run(None, {"x": x})[0]
    rep = onnx_jax.prepare(str(tmp_path / "mlp.onnx"))
    for _ in range(2):  # the first call, then the steady state
        np.testing.assert_allclose(rep.run([x])[0], expected, rtol=1e-5, atol=1e-6)
    (segment,) = rep._cache.values()
    assert segment.placement == "one" and backend.one_thread_cpus(1)
    assert backend.one_thread_cpus(1)[0].client is not jax.devices("cpu")[0].client
    assert "NPROC" not in os.environ  # set only while that client was made
    big = np.random.default_rng(1).standard_normal((40_000, 8)).astype(np.float32)  # 12.8 MFLOP, 1.3 MB in
    expected = onnx.reference.ReferenceEvaluator(str(tmp_path / "mlp.onnx")).run(None, {"x": big})[0]
    np.testing.assert_allclose(rep.run([big])[0], expected, rtol=1e-4, atol=1e-5)
    assert rep._cache[next(reversed(rep._cache))].placement != "one"


def _wide_mlp(path, reduce_batch=False):
    """x [n, 512] -> 2048 -> 512: 4.2 MFLOP a row; with reduce_batch, then the [512, 512] Gram matrix over the batch."""
    rng = np.random.default_rng(2)
    w1, w2 = (rng.standard_normal(s).astype(np.float32) / 30 for s in ((512, 2048), (2048, 512)))
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["y" if not reduce_batch else "z"])]
    if reduce_batch:
        nodes += [helper.make_node("Transpose", ["z"], ["t"]), helper.make_node("MatMul", ["t", "z"], ["y"])]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 512])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
                              initializer=[onnx.numpy_helper.from_array(w, n) for n, w in (("w1", w1), ("w2", w2))])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


@pytest.mark.parametrize("reduce_batch", [False, True])
def test_a_large_batch_runs_split_over_the_cores_where_its_parts_need_not_talk(tmp_path, reduce_batch):
    import onnx_jax
    from onnx_jax import backend

    cores = len(backend.one_thread_cpus(backend.cpu_cores()))
    if cores < 2:
        pytest.skip("one core: nothing to split over")
    _wide_mlp(tmp_path / "mlp.onnx", reduce_batch)
    x = np.random.default_rng(0).standard_normal((32 * cores, 512)).astype(np.float32)  # >= 134 MFLOP
    expected = onnx.reference.ReferenceEvaluator(str(tmp_path / "mlp.onnx")).run(None, {"x": x})[0]
    rep = onnx_jax.prepare(str(tmp_path / "mlp.onnx"))
    for _ in range(2):  # the first call, then the steady state
        np.testing.assert_allclose(rep.run([x])[0], expected, rtol=1e-4, atol=1e-3)
    (segment,) = rep._cache.values()
    # the Gram matrix sums over every part: an all-reduce of 1 MB, kept whole (a batch mean's 2 KB would be split)
    assert segment.placement == (None if reduce_batch else "split")
    if not reduce_batch:
        assert {d.id for d in segment.executable.input_shardings[0][1].device_set} == set(range(cores))
        np.testing.assert_allclose(rep.run([x[:cores]])[0], expected[:cores], rtol=1e-4, atol=1e-4)  # too few FLOPs
        assert rep._cache[next(reversed(rep._cache))].placement is None
    odd = x[: 2 * cores + 1]  # does not divide: whole
    np.testing.assert_allclose(rep.run([odd])[0], onnx.reference.ReferenceEvaluator(str(tmp_path / "mlp.onnx")).run(
        None, {"x": odd})[0], rtol=1e-4, atol=1e-3)
    assert rep._cache[next(reversed(rep._cache))].placement is None


def test_exchanged_bytes_are_read_from_the_collectives():
    from onnx_jax import backend

    hlo = """  %all-gather = pred[1024,1]{1,0} all-gather(%compare_bitcast_fusion), channel_id=4
  %all-reduce-start = f32[16]{0} all-reduce-start(%wrapped_reduce), channel_id=1
  %collective-permute = bf16[4,16]{1,0} collective-permute(%param), channel_id=1
  %add = f32[16]{0} add(%a, %b)"""
    assert backend._exchanged_bytes(hlo) == 1024 + 16 * 4 + 64 * 2


def test_one_thread_counts_dots_in_a_loop_per_iteration():
    import jax.numpy as jnp
    from jax import lax

    from onnx_jax import backend

    def steps(n):
        return lambda h, r: lax.scan(lambda h, _: (jnp.tanh(h @ r), None), h, None, length=n)[0]

    # 2 x 128 x 128 x 2 = 65.5 kFLOP a step: 10 steps are small, 1000 (65.5 MFLOP) are not
    assert backend._flops(_lowered(steps(10), (2, 128), (128, 128))) < backend.ONE_THREAD_FLOPS
    assert backend._flops(_lowered(steps(1000), (2, 128), (128, 128))) >= 1000 * 2 * 128 * 128 * 2


def test_cpu_options_the_user_set_in_xla_flags_are_left_to_them(monkeypatch):
    import jax

    from onnx_jax import backend

    class Lowered:  # records what it is compiled with
        def as_text(self):
            return ""

        def compile(self, options=None):
            return options

    cpu = jax.devices("cpu")[0]
    monkeypatch.setenv("XLA_FLAGS", "")
    assert backend._compile_lowered(Lowered(), cpu) == backend.YNN_DOTS
    assert backend.YNN_DOTS["xla_cpu_prefer_vector_width"] == 512
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_prefer_vector_width=256")
    assert backend._compile_lowered(Lowered(), cpu) == {backend.YNN_OPTION: "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}
    monkeypatch.setenv("XLA_FLAGS", f"--{backend.YNN_OPTION}=LIBRARY_FUSION_TYPE_DOT")
    assert backend._compile_lowered(Lowered(), cpu) == {"xla_cpu_prefer_vector_width": 512}


def test_cpu_dot_flops_are_read_from_batched_and_dynamic_dot_generals():
    from onnx_jax import backend

    text = ("%0 = stablehlo.dot_general %a, %b, batching_dims = [0] x [0], contracting_dims = [2] x [1], "
            "precision = [HIGHEST, HIGHEST] : (tensor<4x128x64xf32>, tensor<4x64x128xf32>) -> tensor<4x128x128xf32>")
    assert backend._DOT.findall(text) == [("2", "4x128x64xf32", "4x128x128xf32")]
    assert backend._dims("?x128xf32") == [1, 128]


FRESH = """
import jax, jax.numpy as jnp, onnx_jax
x = jnp.ones((1024, 1024))
y = jax.jit(lambda a: (a @ a @ a @ a).sum())(x)
print(jax.config.values["jax_cpu_enable_async_dispatch"], y.is_ready())  # computed on this thread: ready
"""
JAX_FIRST = """
import jax, jax.numpy as jnp
jnp.ones(1).block_until_ready()  # JAX's CPU client exists before onnx_jax is imported
import onnx_jax
print(jax.config.values["jax_cpu_enable_async_dispatch"])
"""


@pytest.mark.parametrize("script, expected", [(FRESH, "False True"), (JAX_FIRST, "True")])
def test_cpu_dispatch_is_synchronous_unless_jax_already_ran(script, expected):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected


def _sum_model(dtypes_and_shapes):
    """y_i = x_i + 1 for each input, in its dtype: every input reaches its own output."""
    inputs, outputs, nodes, inits = [], [], [], []
    for i, (dtype, shape) in enumerate(dtypes_and_shapes):
        elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
        inputs.append(helper.make_tensor_value_info(f"x{i}", elem, shape))
        outputs.append(helper.make_tensor_value_info(f"y{i}", elem, shape))
        inits.append(onnx.numpy_helper.from_array(np.array(1, dtype), f"one{i}"))
        nodes.append(helper.make_node("Add", [f"x{i}", f"one{i}"], [f"y{i}"]))
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_small_inputs_of_one_dtype_travel_as_one_buffer():
    import onnx_jax

    specs = [(np.int64, [1]), (np.float32, [2, 3]), (np.int64, [3, 2]), (np.float32, [0, 4]), (np.int64, [])]
    big = (np.float32, [40, 40])  # 6400 bytes: passed on its own
    rep = onnx_jax.prepare(_sum_model([*specs, big]))
    rng = np.random.default_rng(0)
    for _ in range(3):  # the first call, then the steady state
        values = [rng.integers(-9, 9, shape).astype(dtype) for dtype, shape in [*specs, big]]
        outputs = rep.run(values)
        for value, output in zip(values, outputs):
            assert output.dtype == value.dtype and output.shape == value.shape
            np.testing.assert_array_equal(output, value + 1)
    (segment,) = rep._cache.values()
    assert segment.packing == ((0, 2, 4), (1, 3), (5,))


def test_small_inputs_are_staged_and_results_stay_their_own():
    """In the steady state small inputs are copied into buffers the executable reads in place: each call sees its
    own values, earlier results are not overwritten, and an output that is an input turns staging off."""
    import onnx_jax

    rep = onnx_jax.prepare(_sum_model([(np.int64, [3]), (np.float32, [2, 3]), (np.float32, [4])]))
    rng = np.random.default_rng(0)
    calls = [[rng.integers(-9, 9, s).astype(d) for d, s in [(np.int64, [3]), (np.float32, [2, 3]), (np.float32, [4])]]
             for _ in range(4)]
    results = [rep.run(values) for values in calls]
    assert rep._last[2].__name__ == "staged"
    for values, outputs in zip(calls, results):
        for value, output in zip(values, outputs):
            assert output.dtype == value.dtype
            np.testing.assert_array_equal(output, value + 1)

    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [3])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [3])
    identity = helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y]),
                                 opset_imports=[helper.make_opsetid("", 17)])
    rep = onnx_jax.prepare(identity)
    first = [np.full(3, i, np.float32) for i in range(3)]
    outputs = [rep.run([value])[0] for value in first]
    for value, output in zip(first, outputs):
        np.testing.assert_array_equal(output, value)


def test_alternating_signatures_keep_their_steady_state_calls():
    """Each signature's steady-state call (with its staged buffers) is made once and kept beside its executable, not
    made again whenever the signature changes (that made alternating calls of a 10 us model 160 us each)."""
    import onnx_jax

    rep = onnx_jax.prepare(_sum_model([(np.float32, ["N"])]))
    xs = [np.arange(n, dtype=np.float32) for n in (2, 3)]
    for i in range(6):
        np.testing.assert_array_equal(rep.run([xs[i % 2]])[0], xs[i % 2] + 1)
    made = dict(rep._directs)
    for i in range(4):
        np.testing.assert_array_equal(rep.run([xs[i % 2] * 2])[0], xs[i % 2] * 2 + 1)
    assert len(made) == 2 and all(rep._directs[key] is call for key, call in made.items())


def test_inputs_are_not_packed_where_the_graph_breaks():
    import onnx_jax

    model = _sum_model([(np.float32, [2]), (np.float32, [2])])
    model.graph.node.append(helper.make_node("Unique", ["y0"], ["u"]))  # a data-dependent shape: a graph break
    model.graph.output.append(helper.make_tensor_value_info("u", onnx.TensorProto.FLOAT, None))
    rep = onnx_jax.prepare(model)
    y0, y1, u = rep.run([np.array([1, 1], np.float32), np.array([2, 3], np.float32)])
    np.testing.assert_array_equal(u, [2])
    np.testing.assert_array_equal(y1, [3, 4])
    assert all(segment.packing is None for segment in rep._cache.values())
