"""Large batches run as a loop over slices (onnx_jax.batching): only where every node acts on each sample alone,
and with the same results as the whole batch at once."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import onnx_jax
from onnx_jax import backend, batching


@pytest.fixture
def slice_everything(monkeypatch):
    """Any temporaries count as large, so every batch of 2+ that may be sliced is (these tiny models would
    otherwise run whole on the one-thread client, which is never sliced)."""
    monkeypatch.setattr(batching, "MMAP_THRESHOLD", -1)
    monkeypatch.setattr(backend, "ONE_THREAD_FLOPS", -1)


@pytest.fixture
def split_anything(monkeypatch):
    """The one-thread cores to split over (skips with one): any executable of a batch counts as big enough to split
    and none runs on the single one-thread device."""
    devices = backend.one_thread_cpus(backend.cpu_cores())
    if len(devices) < 2:
        pytest.skip("one core: nothing to split over")
    monkeypatch.setattr(backend, "ONE_THREAD_FLOPS", -1)
    monkeypatch.setattr(backend, "SPLIT_FLOPS", 0)
    return devices


def _model(nodes, inputs, outputs, initializers=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=[numpy_helper.from_array(v, k)
                                                                         for k, v in dict(initializers).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


def _info(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _run(model, feeds):
    rep = onnx_jax.prepare(model)
    outputs = rep.run(feeds)
    (segment,) = rep._cache.values()
    return outputs, segment.micro_batch


def _cnn():
    """Conv, Relu, MaxPool, Conv, GlobalAveragePool, Flatten, Gemm, Softmax: per sample throughout."""
    rng = np.random.default_rng(0)
    weights = {
        "w1": rng.standard_normal((8, 3, 3, 3), dtype=np.float32), "b1": rng.standard_normal(8, dtype=np.float32),
        "w2": rng.standard_normal((16, 8, 3, 3), dtype=np.float32),
        "fc": rng.standard_normal((10, 16), dtype=np.float32), "fcb": rng.standard_normal(10, dtype=np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["c2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fc", "fcb"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["y"]),
    ]
    return _model(nodes, [_info("x", ["N", 3, 16, 16])], [_info("y", ["N", 10])], weights)


@pytest.mark.parametrize("batch", [2, 6])
def test_a_per_sample_cnn_runs_sliced_with_the_same_results(slice_everything, batch):
    model = _cnn()
    x = np.random.default_rng(1).standard_normal((batch, 3, 16, 16), dtype=np.float32)
    (y,), micro = _run(model, {"x": x})
    assert micro == 1
    (expected,) = ReferenceEvaluator(model).run(None, {"x": x})
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def test_residual_blocks_with_materialized_activations_run_sliced(slice_everything):
    """onnx_jax.optimize's Materialized nodes (each block's input, written once) act on each sample alone."""
    from test_optimize import residual_model

    model = residual_model()
    x = np.random.default_rng(3).uniform(-1, 1, (4, 3, 12, 12)).astype(np.float32)
    (y,), micro = _run(model, {"x": x})
    assert micro == 1
    (expected,) = ReferenceEvaluator(model).run(None, {"x": x})
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_a_sliced_batch_that_the_cores_divide_runs_split_over_them(slice_everything, monkeypatch):
    """Each core loops over the slices of its part of the batch (any FLOPs counting as many here)."""
    devices = backend.one_thread_cpus(backend.cpu_cores())
    if len(devices) < 2:
        pytest.skip("one core: nothing to split over")
    monkeypatch.setattr(backend, "SPLIT_FLOPS", 0)
    model = _cnn()
    x = np.random.default_rng(4).standard_normal((3 * len(devices), 3, 16, 16), dtype=np.float32)
    rep = onnx_jax.prepare(model)
    for _ in range(2):  # the first call, then the steady state
        (y,) = rep.run({"x": x})
        (expected,) = ReferenceEvaluator(model).run(None, {"x": x})
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    (segment,) = rep._cache.values()
    assert segment.micro_batch == 1 and segment.placement == "split"
    assert segment.executable.input_shardings[0][1].device_set == set(devices)


@pytest.mark.parametrize("sliced", [True, False])
def test_an_undivided_batch_runs_its_divided_part_split_then_the_rest(split_anything, monkeypatch, sliced):
    """Batch 3 * cores + 1: 3 * cores samples split over the cores (as slices or whole parts), then the last one,
    the outputs joined; the same results as the whole batch at once."""
    devices = split_anything
    if sliced:
        monkeypatch.setattr(batching, "MMAP_THRESHOLD", -1)
    model = _cnn()
    x = np.random.default_rng(7).standard_normal((3 * len(devices) + 1, 3, 16, 16), dtype=np.float32)
    rep = onnx_jax.prepare(model)
    for _ in range(2):
        (y,) = rep.run({"x": x})
        (expected,) = ReferenceEvaluator(model).run(None, {"x": x})
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    segment = rep._cache[next(reversed(rep._cache))]
    assert isinstance(segment.executable, backend.Joined) and segment.executable.size == 3 * len(devices)
    assert rep.compiled_segments == 1  # its parts are not cache entries of their own


def test_a_batch_whose_divided_part_is_one_sample_a_core_runs_whole(split_anything):
    """Batch cores + 1: one sample a core, then one more, ran slower than the whole batch on JAX's client."""
    devices = split_anything
    x = np.random.default_rng(12).standard_normal((len(devices) + 1, 3, 16, 16), dtype=np.float32)
    rep = onnx_jax.prepare(_cnn())
    (y,) = rep.run({"x": x})
    (segment,) = rep._cache.values()
    assert not isinstance(segment.executable, backend.Joined)
    (expected,) = ReferenceEvaluator(_cnn()).run(None, {"x": x})
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def test_the_parts_of_a_joined_batch_are_stored_and_loaded(split_anything, monkeypatch, tmp_path):
    """A new process finds both parts on disk and compiles nothing (the joined segment itself is not stored)."""
    devices = split_anything
    monkeypatch.setenv("ONNX_JAX_CACHE_DIR", str(tmp_path))
    x = np.random.default_rng(10).standard_normal((2 * len(devices) + 1, 3, 16, 16), dtype=np.float32)
    (first,) = onnx_jax.prepare(_cnn()).run({"x": x})
    assert len(list(tmp_path.glob("onnx_jax-*.pkl"))) == 2

    def no_compile(*args):
        raise AssertionError("compiled although both parts were stored")

    monkeypatch.setattr(backend, "_compile_lowered", no_compile)
    rep = onnx_jax.prepare(_cnn())
    (again,) = rep.run({"x": x})
    assert isinstance(rep._cache[next(iter(rep._cache))].executable, backend.Joined)
    np.testing.assert_array_equal(again, first)


def test_a_stored_part_that_fails_to_run_is_discarded_and_compiled_anew(split_anything, monkeypatch, tmp_path):
    """As run() does for a whole segment: XLA CPU executables serialized by some processes load but do not run."""
    devices = split_anything
    monkeypatch.setenv("ONNX_JAX_CACHE_DIR", str(tmp_path))
    x = np.random.default_rng(11).standard_normal((2 * len(devices) + 1, 3, 16, 16), dtype=np.float32)
    (first,) = onnx_jax.prepare(_cnn()).run({"x": x})

    class Broken:
        input_shardings = ((None,), {})

        def _call(self, *args):
            raise jax.errors.JaxRuntimeError("NOT_FOUND: Function not found")

    load = backend.load_executable
    monkeypatch.setattr(backend, "load_executable", lambda key, devices_of: (
        None if (stored := load(key, devices_of)) is None else (Broken(), stored[1])))
    (again,) = onnx_jax.prepare(_cnn()).run({"x": x})
    np.testing.assert_array_equal(again, first)
    assert not list(tmp_path.glob("onnx_jax-*.pkl"))  # both discarded


def test_a_batch_the_cores_do_not_divide_of_a_graph_that_mixes_samples_runs_whole(split_anything):
    devices = split_anything
    _, nodes, inputs, initializers = next(_mixing_graphs())  # a sum over the batch
    model = _model(nodes, inputs, [_info("y", None)], initializers)
    x = np.random.default_rng(8).standard_normal((2 * len(devices) + 1, 6)).astype(np.float32)
    rep = onnx_jax.prepare(model)
    (y,) = rep.run({"x": x})
    (segment,) = rep._cache.values()
    assert not isinstance(segment.executable, backend.Joined)
    (expected,) = ReferenceEvaluator(model).run(None, {"x": x})
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def test_a_core_part_of_one_slice_runs_split_in_smaller_slices(slice_everything, monkeypatch):
    """Where the slice size would make each core's part a single slice, the split runs each part as two or more
    smaller slices instead of leaving the batch on one device."""
    devices = backend.one_thread_cpus(backend.cpu_cores())
    if len(devices) < 2:
        pytest.skip("one core: nothing to split over")
    monkeypatch.setattr(backend, "SPLIT_FLOPS", 0)
    monkeypatch.setattr(batching, "micro_batch", lambda batch, temp: batch // len(devices))  # a part per slice
    model = _cnn()
    x = np.random.default_rng(5).standard_normal((2 * len(devices), 3, 16, 16), dtype=np.float32)
    rep = onnx_jax.prepare(model)
    for _ in range(2):
        (y,) = rep.run({"x": x})
        (expected,) = ReferenceEvaluator(model).run(None, {"x": x})
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    (segment,) = rep._cache.values()
    assert segment.placement == "split" and segment.micro_batch == 1
    assert segment.executable.input_shardings[0][1].device_set == set(devices)


@pytest.mark.parametrize("sliced", [True, False])
def test_a_scalar_input_reaches_every_core_of_a_split(split_anything, monkeypatch, sliced):
    """A rank-0 input beside the batch is passed whole to each core's part (a sliced or a plain split)."""
    devices = split_anything
    if sliced:
        monkeypatch.setattr(batching, "MMAP_THRESHOLD", -1)
    cnn = _cnn()
    cnn.graph.node.append(helper.make_node("Mul", ["y", "scale"], ["scaled"]))
    cnn.graph.input.append(_info("scale", []))
    cnn.graph.output[0].name = "scaled"
    feeds = {"x": np.random.default_rng(6).standard_normal((4 * len(devices), 3, 16, 16), dtype=np.float32),
             "scale": np.array(3.0, np.float32)}
    rep = onnx_jax.prepare(cnn)
    for _ in range(2):
        (y,) = rep.run(feeds)
        (expected,) = ReferenceEvaluator(cnn).run(None, feeds)
        # logits of ~300 (random weights) differ by an ulp, 3e-5: the softmax of two close ones by as much relatively
        np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-6)
    (segment,) = rep._cache.values()
    assert segment.placement == "split" and (segment.micro_batch is not None) == sliced


def test_part_slice_leaves_each_core_two_or_more_slices():
    assert batching.part_slice(4, 4) == 2
    assert batching.part_slice(4, 2) == 2
    assert batching.part_slice(2, 2) == 1
    assert batching.part_slice(8, 4) == 4
    assert batching.part_slice(6, 4) == 3
    assert batching.part_slice(3, 8) == 1
    assert batching.part_slice(1, 1) is None


def test_small_temporaries_keep_the_whole_batch():
    x = np.zeros((4, 3, 16, 16), np.float32)
    assert _run(_cnn(), {"x": x})[1] is None


def test_micro_batch_is_the_largest_divisor_under_the_threshold():
    mb = batching.MMAP_THRESHOLD
    assert batching.micro_batch(8, mb) is None  # fits whole
    assert batching.micro_batch(1, 10 * mb) is None  # nothing to slice
    assert batching.micro_batch(8, 2 * mb) == 4
    assert batching.micro_batch(8, 3 * mb) == 2
    assert batching.micro_batch(8, 100 * mb) == 1
    assert batching.micro_batch(6, 2 * mb) == 3


def test_a_shared_input_is_passed_whole_to_every_slice(slice_everything):
    model = _model(
        [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "bias"], ["y"])],
        [_info("x", ["N", 5, 4]), _info("w", [4, 3]), _info("bias", [3])], [_info("y", ["N", 5, 3])],
    )
    rng = np.random.default_rng(2)
    feeds = {"x": rng.standard_normal((4, 5, 4), dtype=np.float32), "w": rng.standard_normal((4, 3), dtype=np.float32),
             "bias": rng.standard_normal(3, dtype=np.float32)}
    (y,), micro = _run(model, feeds)
    assert micro == 1
    np.testing.assert_allclose(y, feeds["x"] @ feeds["w"] + feeds["bias"], rtol=1e-5, atol=1e-6)


def test_batch_merged_with_heads_by_a_reshape_is_still_per_sample(slice_everything):
    """(N, 4, 6) -> (4N, 6) -> softmax per row -> (N, 4, 6), as exporters split attention heads."""
    const = lambda name, values: helper.make_node(  # noqa: E731
        "Constant", [], [name], value=numpy_helper.from_array(np.array(values, np.int64)))
    model = _model([
        const("rows", [-1, 6]), helper.make_node("Reshape", ["x", "rows"], ["r"]),
        helper.make_node("Softmax", ["r"], ["s"], axis=1), const("back", [-1, 4, 6]),
        helper.make_node("Reshape", ["s", "back"], ["y"]),
    ], [_info("x", ["N", 4, 6])], [_info("y", ["N", 4, 6])])
    x = np.random.default_rng(5).standard_normal((3, 4, 6)).astype(np.float32)
    (y,), micro = _run(model, {"x": x})
    assert micro == 1
    (expected,) = ReferenceEvaluator(model).run(None, {"x": x})
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def test_casts_to_8bit_floats_keep_the_whole_batch(slice_everything):
    """XLA converts float32 -1e-9 to float8_e4m3fnuz as 0 at the top level but as NaN inside a loop."""
    node = helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT8E4M3FNUZ)
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT8E4M3FNUZ, None)
    model = _model([node], [_info("x", ["N", 3])], [output])
    x = np.array([[0.5, -1e-9, -240.0]] * 2, np.float32)
    (y,), micro = _run(model, {"x": x})
    assert micro is None
    np.testing.assert_array_equal(y.astype(np.float32), [[0.5, 0.0, -240.0]] * 2)


def _mixing_graphs():
    """Graphs where a sample's result depends on other samples or on the batch size: never sliced."""
    x = _info("x", ["N", 6])
    y = _info("y", None)
    i64 = lambda name, values: helper.make_node(  # noqa: E731
        "Constant", [], [name], value=numpy_helper.from_array(np.array(values, np.int64)))
    yield "sum over the batch", [
        helper.make_node("ReduceSum", ["x", "axes"], ["s"], keepdims=1), helper.make_node("Add", ["x", "s"], ["y"]),
    ], [x], {"axes": np.array([0], np.int64)}
    yield "softmax over the batch", [helper.make_node("Softmax", ["x"], ["y"], axis=0)], [x], {}
    yield "samples paired by a reshape", [
        i64("pairs", [-1, 12]), helper.make_node("Reshape", ["x", "pairs"], ["p"]),
        helper.make_node("ReduceMax", ["p", "one"], ["m"], keepdims=1),
        helper.make_node("Expand", ["m", "shape12"], ["e"]),
        i64("back", [-1, 6]), helper.make_node("Reshape", ["e", "back"], ["y"]),
    ], [x], {"one": np.array([1], np.int64), "shape12": np.array([1, 12], np.int64)}
    yield "a fixed batch in a reshape", [
        i64("fixed", [4, -1]), helper.make_node("Reshape", ["x", "fixed"], ["r"]),
        helper.make_node("Softmax", ["r"], ["s"], axis=1), i64("back", [-1, 6]),
        helper.make_node("Reshape", ["s", "back"], ["y"]),
    ], [x], {}
    yield "divided by the batch size", [
        helper.make_node("Shape", ["x"], ["shape"], end=1), helper.make_node("Cast", ["shape"], ["n"], to=1),
        helper.make_node("Div", ["x", "n"], ["y"]),
    ], [x], {}
    yield "samples reversed", [
        i64("order", [3, 2, 1, 0]), helper.make_node("Gather", ["x", "order"], ["y"], axis=0),
    ], [x], {}
    yield "transposed batch", [
        helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0]), helper.make_node("Softmax", ["t"], ["s"], axis=1),
        helper.make_node("Transpose", ["s"], ["y"], perm=[1, 0]),
    ], [x], {}
    yield "a product over the batch", [
        helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0]), helper.make_node("MatMul", ["t", "x"], ["g"]),
        helper.make_node("MatMul", ["x", "g"], ["y"]),
    ], [x], {}
    yield "rows of other samples gathered by indices from the batch size", [
        helper.make_node("Shape", ["x"], ["shape"]), i64("zero", 0), i64("one", 1), i64("minus", -1),
        helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0), helper.make_node("Sub", ["n", "one"], ["last"]),
        helper.make_node("Range", ["last", "minus", "minus"], ["reversed"]),
        helper.make_node("Gather", ["x", "reversed"], ["y"], axis=0),
    ], [x], {}
    yield "a running sum", [
        i64("axis", 0), helper.make_node("CumSum", ["x", "axis"], ["y"]),
    ], [x], {}


def _batch_sized_graphs():
    """Graphs that build values from the batch size, as exporters do, yet treat each sample alone: sliced."""
    x = _info("x", ["N", 6])
    i64 = lambda name, values: helper.make_node(  # noqa: E731
        "Constant", [], [name], value=numpy_helper.from_array(np.array(values, np.int64)))
    batch_size = [helper.make_node("Shape", ["x"], ["shape"]), i64("zero", 0), i64("one", 1),
                  helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0)]
    yield "a constant of the input's shape", batch_size[:1] + [
        helper.make_node("ConstantOfShape", ["shape"], ["z"],
                         value=numpy_helper.from_array(np.array([1.5], np.float32))),
        helper.make_node("Mul", ["x", "z"], ["y"]),
    ], [x], {}
    yield "a shared row expanded to the batch", batch_size + [
        helper.make_node("Unsqueeze", ["n", "zero"], ["n1"]), i64("six", [6]),
        helper.make_node("Concat", ["n1", "six"], ["to"], axis=0),
        helper.make_node("Expand", ["row", "to"], ["e"]), helper.make_node("Add", ["x", "e"], ["y"]),
    ], [x], {"row": np.arange(6, dtype=np.float32).reshape(1, 6)}
    yield "each sample's own row gathered", batch_size + [
        helper.make_node("Range", ["zero", "n", "one"], ["own"]),
        helper.make_node("Gather", ["x", "own"], ["g"], axis=0), helper.make_node("Relu", ["g"], ["y"]),
    ], [x], {}
    yield "each sample's own elements gathered by index pairs", batch_size + [
        helper.make_node("Range", ["zero", "n", "one"], ["own"]), i64("axis1", [1]), i64("axis2", [2]),
        helper.make_node("Unsqueeze", ["own", "axis1"], ["own1"]), i64("cols", [[5, 0, 2]]),
        helper.make_node("Mul", ["own1", "zero"], ["zeros"]),
        helper.make_node("Add", ["zeros", "cols"], ["c"]),  # (N, 3): the same columns for every sample
        helper.make_node("Mul", ["c", "zero"], ["zeros3"]),
        helper.make_node("Add", ["own1", "zeros3"], ["r"]),  # (N, 3): each sample's own number
        helper.make_node("Unsqueeze", ["r", "axis2"], ["r2"]), helper.make_node("Unsqueeze", ["c", "axis2"], ["c2"]),
        helper.make_node("Concat", ["r2", "c2"], ["pairs"], axis=2),
        helper.make_node("GatherND", ["x", "pairs"], ["y"]),
    ], [x], {}
    yield "the batch flattened with every axis", [
        helper.make_node("Flatten", ["x"], ["f"], axis=2), helper.make_node("Relu", ["f"], ["r"]),
        i64("back", [-1, 6]), helper.make_node("Reshape", ["r", "back"], ["y"]),
    ], [x], {}


@pytest.mark.parametrize("case", list(_batch_sized_graphs()), ids=lambda case: case[0])
def test_values_built_from_the_batch_size_that_follow_each_sample_are_sliced(slice_everything, case):
    _, nodes, inputs, initializers = case
    model = _model(nodes, inputs, [_info("y", None)], initializers)
    x = np.random.default_rng(9).standard_normal((4, 6)).astype(np.float32)
    (y,), micro = _run(model, {"x": x})
    assert micro == 1
    (expected,) = ReferenceEvaluator(model).run(None, {"x": x})
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", list(_mixing_graphs()), ids=lambda case: case[0])
def test_graphs_that_mix_samples_are_not_sliced(slice_everything, case):
    _, nodes, inputs, initializers = case
    model = _model(nodes, inputs, [_info("y", None)], initializers)
    x = np.random.default_rng(3).standard_normal((4, 6)).astype(np.float32)
    (y,), micro = _run(model, {"x": x})
    assert micro is None
    (expected,) = ReferenceEvaluator(model).run(None, {"x": x})
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("split", [False, True])
def test_a_sliced_executable_is_stored_and_loaded_as_sliced(slice_everything, monkeypatch, tmp_path, split):
    monkeypatch.setenv("ONNX_JAX_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(backend, "SPLIT_FLOPS", 0 if split else 2**62)
    x = np.random.default_rng(4).standard_normal((4, 3, 16, 16), dtype=np.float32)
    (first,), micro = _run(_cnn(), {"x": x})
    rep = onnx_jax.prepare(_cnn())
    (again,) = rep.run({"x": x})
    (segment,) = rep._cache.values()
    assert segment.stored is not None and micro == segment.micro_batch == 1
    assert segment.placement == ("split" if split and len(backend.one_thread_cpus(backend.cpu_cores())) > 1 else None)
    np.testing.assert_array_equal(again, first)


def test_a_node_with_a_subgraph_keeps_the_whole_batch(slice_everything):
    branch = lambda op: helper.make_graph(  # noqa: E731
        [helper.make_node(op, ["x"], [f"{op}_out"])], op, [], [_info(f"{op}_out", ["N", 6])])
    nodes = [
        helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.array(True))),
        helper.make_node("If", ["c"], ["y"], then_branch=branch("Relu"), else_branch=branch("Neg")),
    ]
    model = _model(nodes, [_info("x", ["N", 6])], [_info("y", ["N", 6])])
    x = np.random.default_rng(6).standard_normal((4, 6)).astype(np.float32)
    (y,), micro = _run(model, {"x": x})
    assert micro is None
    np.testing.assert_array_equal(y, np.maximum(x, 0))
