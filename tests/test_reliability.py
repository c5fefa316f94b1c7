"""What a user can count on: errors that name the culprit, safe external data, threads, a bounded cache,
an untouched ModelProto, and no crashed interpreter. docs/reliability.md says the same in prose.

Every test runs under a time limit (the `time_limit` fixture); anything that could take the interpreter
down runs in a subprocess with its own timeout.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnx_jax
from onnx_jax import (
    InvalidInputError,
    InvalidModelError,
    NodeExecutionError,
    OnnxJaxError,
    UnsupportedOpError,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIME_LIMIT_S = 240  # per test; generous because CI shares two cores between workers
SUBPROCESS_TIMEOUT_S = 200


@pytest.fixture(autouse=True)
def time_limit(request):
    """Fail (rather than hang) any test that runs past TIME_LIMIT_S."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return

    def expired(signum, frame):
        raise TimeoutError(f"{request.node.name} ran past {TIME_LIMIT_S}s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(TIME_LIMIT_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# model builders


def info(name, shape=(2, 3), elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def make_model(nodes, inputs, outputs, initializers=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def conv_weight():
    return numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")


@contextlib.contextmanager
def raises(error_type, *culprits):
    """pytest.raises that also checks every culprit (a node, value, attribute or file name) is in the message."""
    with pytest.raises(error_type) as caught:
        yield caught
    assert isinstance(caught.value, OnnxJaxError)
    message = str(caught.value)
    for culprit in culprits:
        assert culprit in message, f"{culprit!r} is not named in: {message}"


# validation at prepare

PREPARE_ERRORS = {
    "cycle": (
        lambda: make_model(
            [helper.make_node("Relu", ["b"], ["a"], name="first"),
             helper.make_node("Relu", ["a"], ["b"], name="second")],
            [info("x")], [info("a")],
        ),
        InvalidModelError, ("'first'", "'b'", "'second'", "cycle"),
    ),
    "undefined value": (
        lambda: make_model([helper.make_node("Relu", ["ghost"], ["a"], name="reader")], [info("x")], [info("a")]),
        InvalidModelError, ("'reader'", "'ghost'"),
    ),
    "value defined twice": (
        lambda: make_model(
            [helper.make_node("Relu", ["x"], ["a"], name="one"), helper.make_node("Neg", ["x"], ["a"], name="two")],
            [info("x")], [info("a")],
        ),
        InvalidModelError, ("'two'", "'a'", "already defined"),
    ),
    "node output shadows an input": (
        lambda: make_model([helper.make_node("Relu", ["x"], ["x"], name="shadow")], [info("x")], [info("x")]),
        InvalidModelError, ("'shadow'", "'x'"),
    ),
    "node output shadows an initializer": (
        lambda: make_model(
            [helper.make_node("Relu", ["x"], ["a"], name="r")], [info("x")], [info("a")],
            [numpy_helper.from_array(np.zeros((2, 3), np.float32), "a")],
        ),
        InvalidModelError, ("'r'", "'a'"),
    ),
    "graph output never produced": (
        lambda: make_model([helper.make_node("Relu", ["x"], ["a"], name="r")], [info("x")], [info("nowhere")]),
        InvalidModelError, ("'nowhere'",),
    ),
    "attribute of the wrong type": (
        lambda: make_model(
            [helper.make_node("Conv", ["x", "w"], ["y"], name="conv0", group=1.0)],
            [info("x", (1, 3, 8, 8))], [info("y", None)], [conv_weight()],
        ),
        InvalidModelError, ("'conv0'", "'group'", "INT", "FLOAT"),
    ),
    "unknown op": (
        lambda: make_model(
            [helper.make_node("Frobnicate", ["x"], ["y"], name="frob0"),
             helper.make_node("Frobnicate", ["y"], ["z"], name="frob1")],
            [info("x")], [info("z")],
        ),
        UnsupportedOpError, ("Frobnicate", "'frob0'", "'frob1'"),
    ),
    "too-new opset": (
        lambda: make_model([helper.make_node("Relu", ["x"], ["y"], name="r")], [info("x")], [info("y")], opset=999),
        InvalidModelError, ("opset 999",),
    ),
    "domain not imported": (
        lambda: make_model(
            [helper.make_node("Foo", ["x"], ["y"], name="custom0", domain="my.domain")], [info("x")], [info("y")]
        ),
        InvalidModelError, ("'custom0'", "my.domain"),
    ),
    "initializer data does not fit its dims": (
        lambda: make_model(
            [helper.make_node("Add", ["x", "big"], ["y"], name="add0")], [info("x", (1,))], [info("y", None)],
            [TensorProto(name="big", data_type=TensorProto.FLOAT, dims=[2**20, 2**20], raw_data=b"\0" * 4)],
        ),
        InvalidModelError, ("'big'",),
    ),
}


@pytest.mark.parametrize("case", sorted(PREPARE_ERRORS))
def test_invalid_model_is_refused_at_prepare_naming_the_culprit(case):
    build, error_type, culprits = PREPARE_ERRORS[case]
    model = build()
    with raises(error_type, *culprits):
        onnx_jax.prepare(model)
    with raises(error_type, *culprits):  # the functional API validates the same way
        onnx_jax.to_jax(model)


def test_every_unsupported_op_is_a_not_implemented_error_listing_each_one():
    model = PREPARE_ERRORS["unknown op"][0]()
    with pytest.raises(NotImplementedError) as info_:
        onnx_jax.prepare(model)
    assert isinstance(info_.value, UnsupportedOpError)
    assert info_.value.missing == (("", "Frobnicate", 17, ("frob0", "frob1")),)


def test_two_initializers_with_one_name_are_refused():
    """The ONNX checker says "w initializer name is not unique"; onnx_jax keeps the last one and runs."""
    model = make_model(
        [helper.make_node("Add", ["x", "w"], ["y"], name="add0")], [info("x")], [info("y", None)],
        [numpy_helper.from_array(np.zeros((2, 3), np.float32), "w"), numpy_helper.from_array(ONES, "w")],
    )
    with raises(InvalidModelError, "'w'"):
        onnx_jax.prepare(model)


@pytest.fixture
def good_model_bytes():
    model = make_model(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv0")],
        [info("x", (1, 3, 8, 8))], [info("y", None)], [conv_weight()],
    )
    return model.SerializeToString()


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_a_truncated_model_file_is_refused_naming_the_file(tmp_path, good_model_bytes, fraction):
    path = tmp_path / "truncated.onnx"
    path.write_bytes(good_model_bytes[: int(len(good_model_bytes) * fraction)])
    with raises(InvalidModelError, str(path)):
        onnx_jax.prepare(str(path))


def _cut_before_opset_import(data: bytes) -> bytes:
    """The serialized model up to (not including) its opset_import field: it still parses, fields intact."""
    model = onnx.ModelProto.FromString(data)
    del model.opset_import[:]
    return model.SerializeToString()


@pytest.mark.parametrize("cut", ["empty file", "cut before opset_import"])
def test_a_model_file_that_parses_but_is_incomplete_is_refused_naming_the_file(tmp_path, good_model_bytes, cut):
    path = tmp_path / "incomplete.onnx"
    path.write_bytes(b"" if cut == "empty file" else _cut_before_opset_import(good_model_bytes))
    with raises(InvalidModelError, str(path)):
        onnx_jax.prepare(str(path))


@pytest.mark.parametrize("content", ["random bytes", "text", "directory", "missing"])
def test_a_file_that_is_not_an_onnx_model_is_refused_naming_the_file(tmp_path, content):
    path = tmp_path / "model.onnx"
    if content == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif content == "text":
        path.write_text("ir_version: 8\ngraph { node { op_type: 'Relu' } }\n")
    elif content == "directory":
        path.mkdir()
    with raises(InvalidModelError, str(path)):
        onnx_jax.prepare(path)  # a PathLike works like a str


@pytest.mark.parametrize("data", [b"hello, world", b"\x00\x01\x02\x03", bytes(range(256)) * 4])
def test_bytes_that_are_not_a_model_are_refused(data):
    with raises(InvalidModelError, "bytes"):
        onnx_jax.prepare(data)


def test_empty_bytes_are_refused():
    with raises(InvalidModelError, "graph"):
        onnx_jax.prepare(b"")


# validation at run


@pytest.fixture(scope="module")
def add_rep():
    rep = onnx_jax.prepare(
        make_model([helper.make_node("Add", ["x", "y"], ["z"], name="add0")],
                   [info("x", ("N", 3)), info("y", ("N", 3))], [info("z", None)])
    )
    ones = np.ones((2, 3), np.float32)
    (z,) = rep.run({"x": ones, "y": ones})  # a good run first: the bad ones must not ride on its cache entry
    np.testing.assert_array_equal(z, 2 * ones)
    return rep


ONES = np.ones((2, 3), np.float32)
ONES.flags.writeable = False  # shared by many tests
RUN_ERRORS = {
    "missing input": ({"x": ONES}, ("'y'", "missing")),
    "unknown input name": ({"x": ONES, "y": ONES, "typo": ONES}, ("'typo'", "unknown")),
    "unknown input name in place of one": ({"x": ONES, "typo": ONES}, ("'typo'", "unknown")),
    "too few positional inputs": ([ONES], ("2 input", "got 1")),
    "too many positional inputs": ([ONES, ONES, ONES], ("2 input", "got 3")),
    "wrong rank": ({"x": ONES[0], "y": ONES}, ("'x'", "rank 2", "(3,)")),
    "fixed dimension differs": ({"x": np.ones((2, 4), np.float32), "y": ONES}, ("'x'", "dimension 1", "3")),
    "wrong dtype": ({"x": ONES, "y": ONES.astype(np.float64)}, ("'y'", "float32", "float64")),
    "integer data": ({"x": ONES.astype(np.int64), "y": ONES}, ("'x'", "float32", "int64")),
    "strings in a list": ({"x": [["a", "b", "c"]], "y": ONES}, ("'x'", "convert")),
    "strings in an array": ({"x": np.array([["a", "b", "c"]]), "y": ONES}, ("'x'", "float32")),
    "a dict for a tensor": ({"x": {"a": 1.0}, "y": ONES}, ("'x'", "dict")),
}


@pytest.fixture(scope="module")
def sequence_rep():
    tensors = helper.make_tensor_type_proto(TensorProto.FLOAT, ["N", 3])
    return onnx_jax.prepare(make_model(
        [helper.make_node("ConcatFromSequence", ["s"], ["y"], axis=0),
         helper.make_node("OptionalGetElement", ["o"], ["z"])],
        [helper.make_value_info("s", helper.make_sequence_type_proto(tensors)),
         helper.make_value_info("o", helper.make_optional_type_proto(tensors))],
        [info("y", None), info("z", None)], opset=18,
    ))


SEQUENCE_ERRORS = {  # a sequence's tensors and an optional's tensor are checked as a tensor input is
    "wrong dtype in a sequence": ({"s": [ONES, ONES.astype(np.float64)], "o": ONES}, ("'s[1]'", "float32", "float64")),
    "wrong rank in a sequence": ({"s": [ONES[0]], "o": ONES}, ("'s[0]'", "rank 2", "(3,)")),
    "fixed dimension differs in a sequence": (
        {"s": [np.ones((2, 4), np.float32)], "o": ONES}, ("'s[0]'", "dimension 1")
    ),
    "an array for a sequence": ({"s": np.stack([ONES, ONES]), "o": ONES}, ("'s'", "list of arrays", "ndarray")),
    "a string in a sequence": ({"s": [ONES, "x"], "o": ONES}, ("'s'", "convert")),
    "wrong dtype in an optional": ({"s": [ONES], "o": ONES.astype(np.float64)}, ("'o'", "float32", "float64")),
}


@pytest.mark.parametrize("rep, case", [("add_rep", case) for case in sorted(RUN_ERRORS)]
                         + [("sequence_rep", case) for case in sorted(SEQUENCE_ERRORS)])
def test_bad_run_inputs_are_refused_naming_the_input(request, rep, case):
    feeds, culprits = {**RUN_ERRORS, **SEQUENCE_ERRORS}[case]
    with raises(InvalidInputError, *culprits):
        request.getfixturevalue(rep).run(feeds)


def identity_rep(elem):
    return onnx_jax.prepare(make_model([helper.make_node("Identity", ["x"], ["y"])], [info("x", None, elem)],
                                       [info("y", None, elem)]))


PYTHON_DATA = {  # Python lists take the declared dtype only where no value changes (floats may round)
    "a fraction for int64": (TensorProto.INT64, [1.5, 2.0], "1.5 in the list does not fit"),
    "a float scalar for int64": (TensorProto.INT64, 3.9, "3.9 in the float does not fit"),
    "out of uint8's range": (TensorProto.UINT8, [255, 300], "300 in the list does not fit"),
    "negative for uint8": (TensorProto.UINT8, [-1], "-1 in the list does not fit"),
    "2**63 for int64": (TensorProto.INT64, [2**63], "9223372036854775808 in the list does not fit"),
    "2 for bool": (TensorProto.BOOL, [0, 2], "2 in the list does not fit"),
    "past float32's range": (TensorProto.FLOAT, [1.0, 1e40], "1e+40 in the list does not fit"),
    "text for int64": (TensorProto.INT64, ["7"], "cannot convert a list of text to int64"),
    "an int past int64": (TensorProto.INT64, [2**70], "cannot convert a list of Python objects"),
}


@pytest.mark.parametrize("case", sorted(PYTHON_DATA))
def test_python_data_that_would_change_is_refused(case):
    elem, value, culprit = PYTHON_DATA[case]
    with raises(InvalidInputError, "'x'", culprit):
        identity_rep(elem).run({"x": value})


def test_torch_tensors_are_arrays_checked_like_numpy_ones():
    torch = pytest.importorskip("torch")
    rep = identity_rep(TensorProto.FLOAT)
    np.testing.assert_array_equal(rep.run({"x": torch.ones(2)})[0], np.ones(2, np.float32))
    with raises(InvalidInputError, "'x'", "float32", "float64"):
        rep.run({"x": torch.ones(2, dtype=torch.float64)})  # not cast silently, as a numpy float64 array is not
    with raises(InvalidInputError, "'x'", "requires grad"):
        rep.run({"x": torch.ones(2, requires_grad=True)})


def test_python_data_that_fits_takes_the_declared_dtype():
    for elem, value, dtype in [(TensorProto.INT64, [1.0, 2], np.int64), (TensorProto.UINT8, [0, 255], np.uint8),
                               (TensorProto.BOOL, [0, 1, True], np.bool_), (TensorProto.FLOAT, [1, 0.1], np.float32),
                               (TensorProto.DOUBLE, 0.1, np.float64)]:
        (y,) = identity_rep(elem).run({"x": value})
        assert y.dtype == dtype
        np.testing.assert_array_equal(y, np.asarray(value).astype(dtype))


def test_python_lists_in_a_sequence_take_the_declared_dtype(sequence_rep):
    y, z = sequence_rep.run({"s": [[[1, 2, 3]], ONES], "o": [[4, 5, 6]]})
    assert y.dtype == z.dtype == np.float32
    np.testing.assert_array_equal(y, [[1, 2, 3], [1, 1, 1], [1, 1, 1]])
    np.testing.assert_array_equal(z, [[4, 5, 6]])


def test_bad_inputs_leave_the_prepared_model_usable(add_rep):
    with pytest.raises(InvalidInputError):
        add_rep.run({"x": ONES, "y": ONES.astype(np.float64)})
    (z,) = add_rep.run([ONES, 3 * ONES])
    np.testing.assert_array_equal(z, 4 * ONES)


def test_reshape_to_an_impossible_shape_names_the_node():
    shape = numpy_helper.from_array(np.array([5, 7], np.int64), "shape")
    rep = onnx_jax.prepare(make_model([helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape0")],
                                      [info("x", ("N", 3))], [info("y", None)], [shape]))
    with raises(NodeExecutionError, "'reshape0'", "Reshape") as error:
        rep.run([ONES])
    assert error.value.node == "reshape0" and error.value.op_type == "Reshape"


def test_conv_channel_mismatch_names_the_node():
    rep = onnx_jax.prepare(make_model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv0")],
                                      [info("x", (1, "C", 8, 8))], [info("y", None)], [conv_weight()]))
    (y,) = rep.run([np.ones((1, 3, 8, 8), np.float32)])
    assert y.shape == (1, 4, 6, 6)
    with raises(NodeExecutionError, "'conv0'", "Conv") as error:
        rep.run([np.ones((1, 5, 8, 8), np.float32)])
    assert error.value.node == "conv0"
    for channels in (1, 2, 4):  # fewer and more than 3: multiply-adds over the channels, never silently
        with raises(NodeExecutionError, "'conv0'", f"X has {channels} channels, W expects 3"):
            rep.run([np.ones((1, channels, 8, 8), np.float32)])


@pytest.mark.parametrize("kernel", [1, 3])
def test_a_pointwise_or_small_conv_refuses_the_wrong_channel_count(kernel):
    """The 1x1 (multiply-adds over <= 16 channels) and small-kernel paths read the weight per channel."""
    weight = numpy_helper.from_array(np.ones((4, 8, kernel, kernel), np.float32), "w")
    rep = onnx_jax.prepare(make_model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv0")],
                                      [info("x", (1, "C", 8, 8))], [info("y", None)], [weight]))
    assert rep.run([np.ones((1, 8, 8, 8), np.float32)])[0].shape[1] == 4
    with raises(NodeExecutionError, "'conv0'", "X has 6 channels, W expects 8"):
        rep.run([np.ones((1, 6, 8, 8), np.float32)])


def test_a_node_without_a_name_is_named_by_op_and_position():
    shape = numpy_helper.from_array(np.array([5, 7], np.int64), "shape")
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Reshape", ["r", "shape"], ["y"])]
    rep = onnx_jax.prepare(make_model(nodes, [info("x")], [info("y", None)], [shape]))
    with raises(NodeExecutionError, "'Reshape_1'"):
        rep.run([ONES])


# external data


def add_weight_model(weight_name="weight"):
    weight = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), weight_name)
    return make_model([helper.make_node("Add", ["x", weight_name], ["y"], name="add0")], [info("x")],
                      [info("y", None)], [weight])


@pytest.fixture
def external_model(tmp_path):
    """model/model.onnx with its weight in model/weights.bin; returns the model's path."""
    folder = tmp_path / "model"
    folder.mkdir()
    path = folder / "model.onnx"
    onnx.save(add_weight_model(), str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=0)
    assert (folder / "weights.bin").stat().st_size == 24
    return path


def relocate(path, location, name):
    """A copy of the external-data model beside `path` whose weight's location is `location`."""
    model = onnx.load(str(path), load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = location
    target = path.parent / name
    onnx.save(model, str(target))
    return target


def test_external_data_loads_from_the_models_path(external_model):
    expected = np.arange(6, dtype=np.float32).reshape(2, 3) + 1
    (y,) = onnx_jax.prepare(str(external_model)).run([ONES])
    np.testing.assert_array_equal(y, expected)
    fn, params = onnx_jax.to_jax(external_model)
    np.testing.assert_array_equal(np.asarray(fn(params, ONES)[0]), expected)


def test_external_data_is_found_beside_the_model_from_any_working_directory(external_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (y,) = onnx_jax.prepare(os.path.relpath(external_model, tmp_path)).run([ONES])
    np.testing.assert_array_equal(y, np.arange(6, dtype=np.float32).reshape(2, 3) + 1)


def test_external_data_outside_the_model_folder_is_refused(external_model):
    outside = external_model.parent.parent / "secret.bin"
    outside.write_bytes(np.arange(6, dtype=np.float32).tobytes())
    (external_model.parent / "link.bin").symlink_to(outside)
    (external_model.parent.parent / "elsewhere").mkdir()
    (external_model.parent.parent / "elsewhere" / "w.bin").write_bytes(outside.read_bytes())
    (external_model.parent / "sub").symlink_to(external_model.parent.parent / "elsewhere")
    for location, why in [("../secret.bin", "outside"), (str(outside), "absolute"), ("link.bin", "symbolic link"),
                          ("sub/w.bin", "outside")]:
        with raises(InvalidModelError, "'weight'", why):
            onnx_jax.prepare(str(relocate(external_model, location, "escape.onnx")))


def test_missing_or_short_external_data_is_refused(external_model):
    with raises(InvalidModelError, "'weight'", "nothere.bin"):
        onnx_jax.prepare(str(relocate(external_model, "nothere.bin", "missing.onnx")))
    (external_model.parent / "short.bin").write_bytes(b"\0" * 8)
    with raises(InvalidModelError, "'weight'", "exceeds"):
        onnx_jax.prepare(str(relocate(external_model, "short.bin", "short.onnx")))


@pytest.mark.parametrize("form", ["ModelProto", "bytes"])
def test_a_model_in_memory_whose_tensors_are_external_is_refused(external_model, form):
    model = onnx.load(str(external_model), load_external_data=False)
    source = model if form == "ModelProto" else model.SerializeToString()
    with raises(InvalidModelError, "'weight'", "external", "path"):
        onnx_jax.prepare(source)
    with raises(InvalidModelError, "'weight'", "external"):
        onnx_jax.to_jax(source)


def test_a_model_loaded_with_its_data_works_in_memory(external_model):
    (y,) = onnx_jax.prepare(onnx.load(str(external_model))).run([ONES])
    np.testing.assert_array_equal(y, np.arange(6, dtype=np.float32).reshape(2, 3) + 1)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("RUN_SLOW"), reason="writes and reads a 2.1 GB weight; set RUN_SLOW=1")
def test_a_model_above_the_2gb_protobuf_limit_loads_from_its_path(tmp_path):
    rows, cols = 524_800, 1024  # 2.15 GB of float32: more than one protobuf message may hold
    assert rows * cols * 4 > 2**31
    data_path = tmp_path / "big.bin"
    with open(data_path, "wb") as f:
        for start in range(0, rows, 16_384):
            block = np.arange(start, min(start + 16_384, rows), dtype=np.float32)
            f.write(np.repeat(block[:, None], cols, axis=1).tobytes())  # row r holds r everywhere
    weight = TensorProto(name="table", data_type=TensorProto.FLOAT, dims=[rows, cols],
                         data_location=TensorProto.EXTERNAL)
    for key, value in (("location", "big.bin"), ("offset", "0"), ("length", str(rows * cols * 4))):
        weight.external_data.add(key=key, value=value)
    model = make_model([helper.make_node("Gather", ["table", "rows"], ["y"], name="lookup", axis=0)],
                       [info("rows", (3,), TensorProto.INT64)], [info("y", None)], [weight])
    path = tmp_path / "big.onnx"
    onnx.save(model, str(path))
    assert path.stat().st_size < 10_000
    wanted = np.array([0, rows - 1, 12_345], np.int64)
    (y,) = onnx_jax.prepare(str(path)).run([wanted])
    np.testing.assert_array_equal(y, np.repeat(wanted.astype(np.float32)[:, None], cols, axis=1))


# concurrency and the compile cache


def mlp_model():
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["xw"], name="matmul"),
        helper.make_node("Add", ["xw", "b"], ["pre"], name="bias"),
        helper.make_node("Relu", ["pre"], ["y"], name="relu"),
        helper.make_node("ReduceSum", ["x", "axes"], ["s"], name="rowsum", keepdims=0),
    ]
    model = make_model(nodes, [info("x", ("N", 8))], [info("y", None), info("s", None)], [w, b, axes], opset=18)
    return model, numpy_helper.to_array(w), numpy_helper.to_array(b)


def mlp_expected(x, w, b):
    return np.maximum(x @ w + b, 0), x.sum(axis=1)


def run_threads(work, count=8, timeout=TIME_LIMIT_S / 2):
    """Run work(i) in `count` threads that start together; their results in order, or the first exception.

    Daemon threads joined with a timeout: a thread that hangs fails the test instead of hanging pytest."""
    barrier = threading.Barrier(count)
    results, errors = [None] * count, []

    def start(i):
        try:
            barrier.wait(timeout=timeout)
            results[i] = work(i)
        except BaseException as e:  # handed to the main thread
            errors.append(e)

    threads = [threading.Thread(target=start, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(t.is_alive() for t in threads), f"a thread still runs after {timeout}s"
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("same_shape", [False, True])
def test_one_prepared_model_serves_eight_threads_each_its_own_result(same_shape):
    """Each thread its own batch size (an executable each, however the threads raced), or all one shape: then the
    calls share the steady state's staged input buffers, and a thread that finds them busy must not read another's
    values."""
    model, w, b = mlp_model()
    rep = onnx_jax.prepare(model)

    def work(i):
        for round_ in range(50 if same_shape else 4):
            rows = 2 if same_shape else i + 1
            x = np.random.default_rng(100 * i + round_).standard_normal((rows, 8)).astype(np.float32)
            y, s = rep.run({"x": x})
            want_y, want_s = mlp_expected(x, w, b)
            np.testing.assert_allclose(y, want_y, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(s, want_s, rtol=1e-5, atol=1e-5)
        return i

    assert run_threads(work) == list(range(8))
    assert rep.compiled_segments == (1 if same_shape else 8)


def test_static_inputs_keyed_by_value_from_many_threads():
    """`shape` feeds Reshape, so it is compiled in by value: each thread's shape must give its own result."""
    rep = onnx_jax.prepare(make_model([helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape0")],
                                      [info("x", (4, 6)), info("shape", (2,), TensorProto.INT64)], [info("y", None)]))
    targets = [(24, 1), (1, 24), (2, 12), (12, 2), (3, 8), (8, 3), (4, 6), (6, 4)]
    x = np.arange(24, dtype=np.float32).reshape(4, 6)

    def work(i):
        for _ in range(3):
            (y,) = rep.run([x, np.array(targets[i], np.int64)])
            np.testing.assert_array_equal(y, x.reshape(targets[i]))
        return y.shape

    assert run_threads(work) == targets


def test_graph_breaks_from_many_threads():
    """NonZero splits the graph into compiled segments around a host step; threads share those segments."""
    two = numpy_helper.from_array(np.array(2.0, np.float32), "two")
    model = make_model(
        [helper.make_node("NonZero", ["x"], ["nz"], name="nonzero0"),
         helper.make_node("Cast", ["nz"], ["nzf"], name="cast0", to=TensorProto.FLOAT),
         helper.make_node("Mul", ["nzf", "two"], ["y"], name="mul0")],
        [info("x", (6,))], [info("y", None)], [two],
    )
    rep = onnx_jax.prepare(model)

    def work(i):
        x = np.array([1.0 if (j + i) % 3 else 0.0 for j in range(6)], np.float32)
        x[: i % 4] = 0.0
        for _ in range(3):
            (y,) = rep.run([x])
            np.testing.assert_array_equal(y, np.stack(np.nonzero(x)).astype(np.float32) * 2)
        return y.shape

    run_threads(work)


def test_the_compile_cache_is_bounded_and_evicted_shapes_come_back_right():
    model, w, b = mlp_model()
    rep = onnx_jax.prepare(model, cache_size=3)
    data = {n: np.random.default_rng(n).standard_normal((n, 8)).astype(np.float32) for n in range(1, 11)}
    for n, x in data.items():
        y, s = rep.run([x])
        np.testing.assert_allclose(y, mlp_expected(x, w, b)[0], rtol=1e-5, atol=1e-5)
        assert rep.compiled_segments <= 3
    assert rep.compiled_segments == 3
    for n in (1, 10, 2):  # 1 and 2 were evicted long ago; 10 is still cached
        y, s = rep.run([data[n]])
        want_y, want_s = mlp_expected(data[n], w, b)
        np.testing.assert_allclose(y, want_y, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(s, want_s, rtol=1e-5, atol=1e-5)
        assert rep.compiled_segments <= 3


def test_alternating_signatures_each_run_their_own_executable():
    model, w, b = mlp_model()
    rep = onnx_jax.prepare(model)
    xs = [np.random.default_rng(n).standard_normal((n, 8)).astype(np.float32) for n in (1, 4)]
    for i in range(6):  # each call's signature differs from the one before: the steady-state shortcut must not apply
        x = xs[i % 2]
        y, _ = rep.run([x])
        np.testing.assert_allclose(y, mlp_expected(x, w, b)[0], rtol=1e-5, atol=1e-5)
    assert rep.compiled_segments == 2


def test_the_cache_is_bounded_under_threads():
    model, w, b = mlp_model()
    rep = onnx_jax.prepare(model, cache_size=2)

    def work(i):
        for n in (i + 1, (i + 3) % 8 + 1):
            x = np.full((n, 8), float(i), np.float32)
            (y, _) = rep.run([x])
            np.testing.assert_allclose(y, mlp_expected(x, w, b)[0], rtol=1e-5, atol=1e-5)
            assert rep.compiled_segments <= 2

    run_threads(work)
    assert rep.compiled_segments <= 2


def test_a_cache_size_below_one_is_refused_at_prepare():
    model, _, _ = mlp_model()
    with pytest.raises(ValueError, match="cache_size"):
        onnx_jax.prepare(model, cache_size=-1)


# the user's data is only read


def rich_model():
    """Initializers, a Constant, an If with subgraphs, a model-local function with an attribute reference,
    and an unnamed node: everything prepare decodes, expands or names."""
    scale = helper.make_node("Constant", [], ["factor"])
    scale.attribute.append(onnx.AttributeProto(name="value_float", ref_attr_name="k", type=onnx.AttributeProto.FLOAT))
    body = [scale, helper.make_node("Mul", ["a", "factor"], ["out"])]
    function = helper.make_function("my.fns", "Scale", ["a"], ["out"], body, [helper.make_opsetid("", 17)],
                                    attributes=["k"])
    then_g = helper.make_graph([helper.make_node("Neg", ["t"], ["o1"], name="neg_in_then")], "then", [],
                               [info("o1", None)])
    else_g = helper.make_graph([helper.make_node("Identity", ["t"], ["o2"])], "else", [], [info("o2", None)])
    nodes = [
        helper.make_node("Add", ["x", "bias"], ["t"], name="add0"),
        helper.make_node("Constant", [], ["limit"], name="const0", value=numpy_helper.from_array(np.float32(0.5))),
        helper.make_node("ReduceMean", ["x"], ["m"], keepdims=0),
        helper.make_node("Greater", ["m", "limit"], ["cond"], name="cmp0"),
        helper.make_node("If", ["cond"], ["branch"], name="if0", then_branch=then_g, else_branch=else_g),
        helper.make_node("Scale", ["branch"], ["y"], name="scale0", domain="my.fns", k=3.0),
    ]
    graph = helper.make_graph(nodes, "rich", [info("x")], [info("y", None)],
                              initializer=[numpy_helper.from_array(np.full((2, 3), 0.25, np.float32), "bias")],
                              doc_string="keep me")
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("my.fns", 1)],
                             functions=[function], producer_name="reliability")


def test_the_users_model_proto_is_never_modified():
    model = rich_model()
    before = model.SerializeToString(deterministic=True)
    x = np.linspace(0, 3, 6, dtype=np.float32).reshape(2, 3)
    x_before = x.copy()

    rep = onnx_jax.prepare(model)
    for data in (x, -x):
        (y,) = rep.run([data])
        t = data + 0.25
        np.testing.assert_allclose(y, 3 * (-t if data.mean() > 0.5 else t), rtol=1e-6)
    fn, params = onnx_jax.to_jax(model)
    np.testing.assert_allclose(np.asarray(fn(params, x)[0]), rep.run([x])[0], rtol=1e-6)

    assert model.SerializeToString(deterministic=True) == before
    np.testing.assert_array_equal(x, x_before)


def test_run_node_leaves_the_node_alone():
    node = helper.make_node("Gemm", ["a", "b", "c"], ["y"], name="gemm0", alpha=2.0, transB=1)
    before = node.SerializeToString(deterministic=True)
    a, b, c = np.ones((2, 3), np.float32), np.ones((4, 3), np.float32), np.zeros(4, np.float32)
    (y,) = onnx_jax.run_node(node, [a, b, c])
    np.testing.assert_allclose(y, 2 * a @ b.T + c)
    assert node.SerializeToString(deterministic=True) == before
    assert [x.flags.writeable for x in (a, b, c)] == [True] * 3 and a.sum() == 6


def test_weights_cannot_be_changed_through_the_prepared_model():
    model = add_weight_model()
    rep = onnx_jax.prepare(model)
    for array in rep.program.graph.initializers.values():
        assert not array.flags.writeable
    (y,) = rep.run([ONES])
    try:
        y += 100  # outputs of a compiled executable are read-only views; a writeable one is the caller's own
    except ValueError:
        assert not y.flags.writeable
    (again,) = rep.run([ONES])
    np.testing.assert_array_equal(again, np.arange(6, dtype=np.float32).reshape(2, 3) + 1)


@pytest.mark.parametrize("case", ["Shape output", "static input passed through"])
def test_changing_an_output_does_not_change_the_next_run(case):
    """Values known while tracing are kept in the cached segment and handed out as-is: the first caller's
    array (or the first caller's own input) comes back to every later caller with the same signature."""
    if case == "Shape output":
        model = make_model([helper.make_node("Shape", ["x"], ["s"], name="shape0")], [info("x", ("N", 3))],
                           [info("s", None)])
        feeds, fresh = [ONES.copy()], [ONES.copy()]
    else:
        model = make_model([helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape0")],
                           [info("x"), info("shape", (2,), TensorProto.INT64)], [info("y", None), info("shape", None)])
        feeds, fresh = [ONES.copy(), np.array([3, 2], np.int64)], [ONES.copy(), np.array([3, 2], np.int64)]
    rep = onnx_jax.prepare(model)
    first = rep.run(feeds)[-1]
    expected = first.copy()
    feeds[-1][...] = 77  # a caller may reuse its input buffers
    if first.flags.writeable:  # and its outputs; a read-only output is a fine answer too
        first[...] = 77
    np.testing.assert_array_equal(rep.run(fresh)[-1], expected)


# the interpreter survives


HAZARDS = {  # case -> (code building `model` and `feeds`, error types that are acceptable, text the message names)
    "expand to 10**15 elements at run time": (
        """model = mk([node("Expand", ["x", "s"], ["y"], name="expand0")], [inp("x", [1])],
                   [const("s", [100000, 100000, 100000])]); feeds = [np.ones(1, np.float32)]""",
        ("JaxRuntimeError", "XlaRuntimeError", "MemoryError", "NodeExecutionError"), "RESOURCE_EXHAUSTED",
    ),
    "tile to 2**48 elements": (  # 1 PiB: more than any address space, so no overcommit setting lets it through
        """model = mk([node("Tile", ["x", "r"], ["y"], name="tile0")], [inp("x", [4])], [const("r", [2**46])]);
        feeds = [np.ones(4, np.float32)]""",
        ("JaxRuntimeError", "XlaRuntimeError", "MemoryError", "NodeExecutionError"), "",
    ),
    "a folded constant of 10**15 elements": (
        """model = mk([node("ConstantOfShape", ["s"], ["y"], name="cos0")], [], [const("s", [100000] * 3)]);
        feeds = []""",
        ("NodeExecutionError",), "'cos0'",
    ),
    "a folded range of 2**50 elements": (
        """model = mk([node("Range", ["a", "b", "c"], ["y"], name="range0")], [],
                   [const("a", 0, ()), const("b", 2**50, ()), const("c", 1, ())]); feeds = []""",
        ("NodeExecutionError",), "'range0'",
    ),
    "Expand whose dimensions overflow int64": (
        """model = mk([node("Expand", ["x", "s"], ["y"], name="expand0")], [inp("x", [1])],
                   [const("s", [2**62, 2**62])]); feeds = [np.ones(1, np.float32)]""",
        ("NodeExecutionError",), "'expand0'",
    ),
    "ConstantOfShape whose dimensions overflow int64": (
        """model = mk([node("ConstantOfShape", ["s"], ["y"], name="cos0")], [], [const("s", [2**62, 2**62])]);
        feeds = []""",
        ("NodeExecutionError",), "'cos0'",
    ),
    "Tile whose repeats overflow int64": (
        """model = mk([node("Tile", ["x", "r"], ["y"], name="tile0")], [inp("x", [4])], [const("r", [2**62])]);
        feeds = [np.ones(4, np.float32)]""",
        ("NodeExecutionError",), "'tile0'",
    ),
    "Pad by 2**62 on each side": (
        """model = mk([node("Pad", ["x", "p"], ["y"], name="pad0")], [inp("x", [4])], [const("p", [2**62, 2**62])]);
        feeds = [np.ones(4, np.float32)]""",
        ("NodeExecutionError",), "'pad0'",
    ),
    "a negative dimension": (
        """model = mk([node("ConstantOfShape", ["s"], ["y"], name="cos0")], [], [const("s", [-5, 3])]);
        feeds = []""",
        ("NodeExecutionError",), "'cos0'",
    ),
    "a reshape whose target has two -1": (
        """model = mk([node("Reshape", ["x", "s"], ["y"], name="reshape0")], [inp("x", [4, 6])],
                   [const("s", [-1, -1])]); feeds = [np.ones((4, 6), np.float32)]""",
        ("NodeExecutionError",), "'reshape0'",
    ),
    "an initializer claiming 2**40 elements": (
        """t = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2**20, 2**20], raw_data=b"\\0" * 4)
        model = mk([node("Add", ["x", "w"], ["y"], name="add0")], [inp("x", [1])], [t])
        feeds = [np.ones(1, np.float32)]""",
        ("InvalidModelError",), "'w'",
    ),
}

HAZARD_SCRIPT = """
import json, sys, traceback
import numpy as np
from onnx import TensorProto, helper, numpy_helper
import onnx_jax
node = helper.make_node
def inp(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)
def const(name, value, shape=None):
    array = np.array(value, np.int64)
    return numpy_helper.from_array(array if shape is None else array.reshape(shape), name)
def mk(nodes, inputs, initializers):
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "hazard", inputs, [out], initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
first = None
for case, code in json.loads(sys.argv[1]).items():
    try:
        exec(code)
        onnx_jax.prepare(model).run(feeds)
        record = {"case": case, "error": None}
    except Exception as e:
        first = first or e
        record = {"case": case, "error": type(e).__name__, "onnx_jax": isinstance(e, onnx_jax.OnnxJaxError),
                  "message": str(e)[:2000]}
    print("RESULT " + json.dumps(record), flush=True)
print("DONE", flush=True)
raise first  # an uncaught error: a clean exit status 1 with a traceback, never a signal
"""


HAZARD_XFAILS: dict = {}  # case -> xfail mark, for hazards not handled yet


def run_hazards(cases: dict[str, str]) -> tuple[dict[str, dict], list[subprocess.CompletedProcess]]:
    """Every case's record. When the interpreter dies, the case it died in is recorded as crashed and a fresh
    interpreter takes the rest, so one crash cannot hide the others."""
    records, runs, remaining = {}, [], dict(cases)
    while remaining:
        command = [sys.executable, "-c", HAZARD_SCRIPT, json.dumps(remaining)]
        env = {**os.environ, "PYTHONPATH": REPO, "JAX_PLATFORMS": "cpu"}
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S, cwd=REPO,
                                  env=env)
        except subprocess.TimeoutExpired as e:  # its output is bytes, whatever text= said
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else e.stdout or ""
            err = e.stderr.decode() if isinstance(e.stderr, bytes) else e.stderr or ""
            proc = subprocess.CompletedProcess(command, None, out, err + f"\ntimed out after {SUBPROCESS_TIMEOUT_S}s")
        runs.append(proc)
        for line in proc.stdout.splitlines():
            if line.startswith("RESULT "):
                record = json.loads(line[len("RESULT "):])
                records[record["case"]] = record
        if "DONE" in proc.stdout:
            break
        culprit = next(case for case in remaining if case not in records)
        records[culprit] = {"case": culprit, "crashed": proc.returncode, "stderr": proc.stderr[-3000:]}
        remaining = {case: code for case, code in remaining.items() if case not in records}
    return records, runs


@pytest.fixture(scope="module")
def hazard_results():
    cases = {case: textwrap.dedent(code).replace("\n        ", "\n") for case, (code, _, _) in HAZARDS.items()}
    return run_hazards(cases)


def test_the_hazard_run_ends_in_a_clean_exit(hazard_results):
    """The last interpreter re-raises an error uncaught: exit status 1 with a traceback, not a signal."""
    _, runs = hazard_results
    last = runs[-1]
    assert last.returncode == 1, f"exit status {last.returncode} (negative: a signal)\n{last.stderr[-3000:]}"
    assert "DONE" in last.stdout and "Traceback" in last.stderr


@pytest.mark.parametrize("case", [pytest.param(c, marks=HAZARD_XFAILS.get(c, ())) for c in sorted(HAZARDS)])
def test_each_hazard_is_an_error_not_a_crash(hazard_results, case):
    records, _ = hazard_results
    _, acceptable, named = HAZARDS[case]
    record = records[case]
    assert "crashed" not in record, f"the interpreter died (exit status {record['crashed']}):\n{record['stderr']}"
    assert record["error"] in acceptable, record
    assert named in record["message"], record
