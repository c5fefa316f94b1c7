"""The compiler: folding, per-signature compilation, dtypes, errors found at prepare."""

import jax
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.backend.test.runner import BackendIsNotSupposedToImplementIt

import onnx_jax
from onnx_jax.compiler import Program, make_function
from onnx_jax.graph import build_graph, load_model


def make_model(nodes, inputs, outputs, initializers=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def flatten_model():
    """y = reshape(x, [shape(x)[0], -1]) @ w : a shape chain that must fold away."""
    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(12, 1) / 10, "w")
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.array([0], np.int64))),
        helper.make_node("Gather", ["s", "zero"], ["batch"], axis=0),
        helper.make_node("Constant", [], ["minus1"], value=numpy_helper.from_array(np.array([-1], np.int64))),
        helper.make_node("Concat", ["batch", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["y"]),
    ]
    return make_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])],
        [w],
    )


def test_shape_chain_folds_to_a_single_reshape():
    program = Program(build_graph(flatten_model()))
    fn = make_function(program, {})
    with onnx_jax.dtypes.x64():
        jaxpr = jax.make_jaxpr(fn)(program.params, np.zeros((2, 3, 4), np.float32))
    primitives = [e.primitive.name for e in jaxpr.eqns]
    assert "gather" not in primitives and "concatenate" not in primitives
    assert primitives.count("reshape") == 1


def test_small_models_compile_their_weights_in_but_convolution_filters():
    """prepare: weights are constants where together they are small, except filters (XLA's multiply-add
    convolutions run slower with them compiled in); larger models pass every weight as an argument."""
    w = numpy_helper.from_array(np.ones((4, 2, 1, 3), np.float32), "w")
    m = numpy_helper.from_array(np.ones((2, 3), np.float32), "m")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("MatMul", ["c", "m"], ["y"])]
    model = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 1, 4])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 1, 3])], [w, m])
    graph = build_graph(model)
    assert set(Program(graph, constant_bytes=24).params) == {"w"}
    assert set(Program(graph, constant_bytes=23).params) == {"w", "m"}
    assert set(Program(graph).params) == {"w", "m"}
    rep = onnx_jax.prepare(model)
    assert set(rep.program.params) == {"w/channels_last"}  # the filter, laid out channels-last
    x = np.random.default_rng(0).standard_normal((1, 2, 1, 4)).astype(np.float32)
    windows = x[:, :, :, :3].sum((1, 3)) + x[:, :, :, 1:].sum((1, 3))  # each output channel: both windows' sums
    np.testing.assert_allclose(rep.run([x])[0], np.broadcast_to(windows[:, None, :, None], (1, 4, 1, 3)), rtol=1e-5)


def test_short_float_initializers_compile_in_so_tables_made_from_them_fold():
    """prepare compiles float initializers of up to SMALL_CONSTANT elements in: a rotary embedding's inverse
    frequencies times the positions (a Range over a static length) then fold at trace time, where as an argument
    their cos table was computed on every call (LLaMA's legacy export). For to_jax they stay parameters."""
    inv_freq = (1 / 10000 ** (np.arange(0, 64, 2) / 64)).astype(np.float32)  # 32 values
    scalars = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in (("zero", 0), ("one", 1))]
    nodes = [helper.make_node("Shape", ["x"], ["shape"]), helper.make_node("Gather", ["shape", "zero"], ["n"]),
             helper.make_node("Range", ["zero", "n", "one"], ["positions"]),
             helper.make_node("Cast", ["positions"], ["p"], to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["p", "axes"], ["column"]),
             helper.make_node("Mul", ["column", "inv_freq"], ["angles"]), helper.make_node("Cos", ["angles"], ["c"]),
             helper.make_node("Mul", ["x", "c"], ["y"])]
    model = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [16, 32])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [16, 32])],
                       [numpy_helper.from_array(inv_freq, "inv_freq"), numpy_helper.from_array(np.array([1]), "axes"),
                        *scalars])
    program = Program(build_graph(model), constant_size=onnx_jax.backend.SMALL_CONSTANT)
    assert "inv_freq" not in program.params
    jaxpr = jax.make_jaxpr(make_function(program, {}))(program.params, np.zeros((16, 32), np.float32))
    assert [e.primitive.name for e in jaxpr.eqns] == ["mul"]  # the cos table is a constant
    x = np.random.default_rng(0).standard_normal((16, 32)).astype(np.float32)
    expected = x * np.cos(np.arange(16, dtype=np.float32)[:, None] * inv_freq)
    np.testing.assert_allclose(onnx_jax.prepare(model).run([x])[0], expected, rtol=1e-6, atol=1e-6)
    fn, params = onnx_jax.to_jax(model)
    assert "inv_freq" in params
    np.testing.assert_allclose(fn(params, x)[0], expected, rtol=1e-6, atol=1e-6)


def test_each_batch_size_compiles_its_own_executable():
    rep = onnx_jax.prepare(flatten_model())
    w = np.arange(12, dtype=np.float32).reshape(12, 1) / 10
    for batch in (1, 5, 1):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 4)).astype(np.float32)
        (y,) = rep.run({"x": x})
        np.testing.assert_allclose(y, x.reshape(batch, -1) @ w, rtol=1e-5)
    assert rep.compiled_segments == 2


def test_int64_and_float64_keep_their_dtypes_without_touching_global_x64():
    model = make_model(
        [helper.make_node("Add", ["a", "a"], ["b"]), helper.make_node("Mul", ["f", "f"], ["g"])],
        [helper.make_tensor_value_info("a", TensorProto.INT64, [2]),
         helper.make_tensor_value_info("f", TensorProto.DOUBLE, [2])],
        [helper.make_tensor_value_info("b", TensorProto.INT64, [2]),
         helper.make_tensor_value_info("g", TensorProto.DOUBLE, [2])],
    )
    before = jax.config.jax_enable_x64
    b, g = onnx_jax.prepare(model).run([np.array([2**40, -3], np.int64), np.array([1e-200, 3.0])])
    assert b.dtype == np.int64 and b.tolist() == [2**41, -6]
    assert g.dtype == np.float64 and g[0] == 1e-200**2 and g[1] == 9.0
    assert jax.config.jax_enable_x64 == before


def test_every_unsupported_op_is_reported_at_prepare_at_once():
    then_branch = helper.make_graph(
        [helper.make_node("Frobnicate", ["x"], ["t"], name="inner")], "then", [],
        [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)],
    )
    model = make_model(
        [
            helper.make_node("NoSuchOp", ["x"], ["a"], name="first"),
            helper.make_node("NoSuchOp", ["a"], ["b"], name="second"),
            helper.make_node("Relu", ["b"], ["c"]),
            helper.make_node("If", ["cond"], ["d"], name="branch", then_branch=then_branch, else_branch=then_branch),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
         helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("d", TensorProto.FLOAT, None)],
    )
    with pytest.raises(onnx_jax.UnsupportedOpError) as info:
        onnx_jax.prepare(model)
    assert isinstance(info.value, NotImplementedError)
    assert not isinstance(info.value, BackendIsNotSupposedToImplementIt)
    message = str(info.value)
    for expected in ("NoSuchOp", "'first'", "'second'", "Frobnicate", "'inner'", "opset 17"):
        assert expected in message
    assert "Relu" not in message


def test_static_input_that_depends_on_traced_data_names_node_and_input():
    model = make_model(
        [helper.make_node("Cast", ["x"], ["shape"], to=TensorProto.INT64),
         helper.make_node("Reshape", ["y", "shape"], ["z"], name="the_reshape")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
         helper.make_tensor_value_info("y", TensorProto.FLOAT, [6])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
    )
    program = Program(build_graph(model))
    fn = jax.jit(make_function(program, {}))
    with onnx_jax.dtypes.x64(), pytest.raises(onnx_jax.StaticValueRequiredError, match="'the_reshape'.*'shape'"):
        fn(program.params, np.array([2, 3], np.float32), np.zeros(6, np.float32))
    # Through prepare/run the same value is keyed into the signature instead, so it just works.
    (z,) = onnx_jax.prepare(model).run([np.array([2, 3], np.float32), np.arange(6, dtype=np.float32)])
    assert z.shape == (2, 3)


def test_user_model_is_not_mutated():
    model = flatten_model()
    before = model.SerializeToString()
    rep = onnx_jax.prepare(model)
    rep.run([np.zeros((2, 3, 4), np.float32)])
    assert model.SerializeToString() == before


def test_initializers_listed_as_inputs_are_not_required_at_run():
    model = flatten_model()
    model.graph.input.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [12, 1]))
    rep = onnx_jax.prepare(model)
    assert rep.input_names == ("x",)
    (y,) = rep.run([np.ones((1, 3, 4), np.float32)])
    assert y.shape == (1, 1)


@pytest.mark.parametrize(
    "inputs, match",
    [
        ({"x": np.zeros((2, 3, 4), np.float64)}, "'x' must have dtype float32"),
        ({"x": np.zeros((2, 12), np.float32)}, "'x' must have rank 3"),
        ({"x": np.zeros((2, 3, 5), np.float32)}, "'x': dimension 2 must be 4"),
        ({}, r"missing input\(s\) \['x'\]"),
        ({"x": np.zeros((1, 3, 4), np.float32), "z": 1}, r"unknown input name\(s\) \['z'\]"),
        ([], "takes 1 input"),
    ],
)
def test_bad_inputs_are_named(inputs, match):
    with pytest.raises(onnx_jax.InvalidInputError, match=match):
        onnx_jax.prepare(flatten_model()).run(inputs)


def test_python_lists_take_the_declared_dtype():
    (y,) = onnx_jax.prepare(flatten_model()).run([np.zeros((1, 3, 4)).tolist()])
    assert y.dtype == np.float32


def test_model_from_path_and_bytes(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(flatten_model(), path)
    x = np.ones((1, 3, 4), np.float32)
    a = onnx_jax.prepare(str(path)).run([x])[0]
    b = onnx_jax.prepare(path.read_bytes()).run([x])[0]
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name, fmt", [("m.pb", None), ("model", None), ("m.textproto", "textproto"),
                                       ("m.json", "json")])
def test_model_files_in_every_format_onnx_reads(tmp_path, name, fmt):
    """Binary files are parsed from a memory map; text formats (by extension) still go through onnx.load."""
    path = tmp_path / name
    onnx.save(flatten_model(), path, format=fmt)
    assert load_model(str(path))[0] == flatten_model()
    x = np.ones((1, 3, 4), np.float32)
    expected = onnx_jax.prepare(flatten_model()).run([x])[0]
    np.testing.assert_array_equal(onnx_jax.prepare(str(path)).run([x])[0], expected)


def test_unreadable_model_is_an_invalid_model_error(tmp_path):
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"\x00not a model")
    with pytest.raises(onnx_jax.InvalidModelError, match="bad.onnx"):
        onnx_jax.prepare(str(path))
    with pytest.raises(onnx_jax.InvalidModelError, match="does not exist"):
        onnx_jax.prepare(str(tmp_path / "missing.onnx"))


def test_op_failure_names_the_node():
    model = make_model(
        [helper.make_node("Reshape", ["x", "shape"], ["y"], name="bad_reshape")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.array([4, 2], np.int64), "shape")],
    )
    with pytest.raises(onnx_jax.NodeExecutionError, match="'bad_reshape'"):
        onnx_jax.prepare(model).run([np.zeros(6, np.float32)])


def test_run_node_backend_api():
    node = helper.make_node("Add", ["a", "b"], ["c"])
    (c,) = onnx_jax.run_node(node, [np.float32([1, 2]), np.float32([3, 4])])
    np.testing.assert_array_equal(c, [4, 6])
    assert onnx_jax.supports_device("CPU")
    assert onnx_jax.is_compatible(flatten_model())


def test_function_body_outputs_the_node_leaves_unnamed_are_not_required():
    """SoftmaxCrossEntropyLoss expands from its schema's body; with one output named, that body does not even
    produce log_prob, and the expansion must not ask for it."""
    from onnx.reference import ReferenceEvaluator

    rng = np.random.default_rng(0)
    scores, labels = rng.normal(size=(3, 5, 2)).astype(np.float32), np.int64([[0, 4], [2, 1], [3, 3]])
    inputs = [helper.make_tensor_value_info("scores", TensorProto.FLOAT, scores.shape),
              helper.make_tensor_value_info("labels", TensorProto.INT64, labels.shape)]
    for outputs in (["loss"], ["loss", "log_prob"], ["", "log_prob"]):
        node = helper.make_node("SoftmaxCrossEntropyLoss", ["scores", "labels"], outputs, reduction="mean")
        model = make_model([node], inputs, [helper.make_value_info(n, onnx.TypeProto()) for n in outputs if n],
                           opset=18)
        ours = onnx_jax.prepare(model).run([scores, labels])
        expected = ReferenceEvaluator(model).run(None, {"scores": scores, "labels": labels})
        assert len(ours) == len(expected)
        for a, b in zip(ours, expected):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_if_whose_branches_differ_in_structure_is_a_graph_break():
    """An empty optional in one branch and a sequence in the other: the run-time condition decides on the host."""
    x = numpy_helper.from_array(np.float32([1, 2, 3]))
    then_branch = helper.make_graph([helper.make_node("Optional", [], ["empty"], type=helper.make_sequence_type_proto(
        helper.make_tensor_type_proto(TensorProto.FLOAT, None)))], "then", [],
        [helper.make_value_info("empty", helper.make_optional_type_proto(helper.make_sequence_type_proto(
            helper.make_tensor_type_proto(TensorProto.FLOAT, None))))])
    else_branch = helper.make_graph([
        helper.make_node("Constant", [], ["x"], value=x),
        helper.make_node("Mul", ["x", "k"], ["kx"]),
        helper.make_node("SequenceConstruct", ["kx"], ["seq"]),
        helper.make_node("Optional", ["seq"], ["opt"]),
    ], "else", [], [helper.make_value_info("opt", helper.make_optional_type_proto(helper.make_sequence_type_proto(
        helper.make_tensor_type_proto(TensorProto.FLOAT, None))))])
    node = helper.make_node("If", ["cond"], ["out"], then_branch=then_branch, else_branch=else_branch)
    model = make_model([node], [helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
                                helper.make_tensor_value_info("k", TensorProto.FLOAT, [])],
                       [helper.make_value_info("out", helper.make_optional_type_proto(helper.make_sequence_type_proto(
                           helper.make_tensor_type_proto(TensorProto.FLOAT, None))))], opset=18)
    rep = onnx_jax.prepare(model)
    assert rep.run([np.array(True), np.float32(2)])[0] is None
    (out,) = rep.run([np.array(False), np.float32(2)])
    assert isinstance(out, list) and len(out) == 1
    np.testing.assert_array_equal(out[0], np.float32([2, 4, 6]))
    fn, params = onnx_jax.to_jax(model)
    with pytest.raises(onnx_jax.DataDependentShapeError, match="If"):
        jax.jit(fn)(params, np.array(False), np.float32(2))
