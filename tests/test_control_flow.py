"""If / Loop / Scan and sequences, against onnxruntime and onnx.reference."""

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnx_jax

F = TensorProto.FLOAT


def ort_run(model: onnx.ModelProto, feeds: dict) -> list:
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def nested_if(depth: int, value: str, prefix: str = "") -> onnx.GraphProto:
    """A branch graph: if depth > 0, If(c{depth} > 0, then: nested(depth-1) * 2, else: nested(depth-1) - 1)."""
    out = f"{prefix}out{depth}"
    if depth == 0:
        return helper.make_graph([helper.make_node("Identity", [value], [out])], f"{prefix}leaf", [],
                                 [helper.make_tensor_value_info(out, F, None)])
    cond = f"{prefix}cond{depth}"
    then_g = nested_if(depth - 1, value, prefix + "t")
    else_g = nested_if(depth - 1, value, prefix + "e")
    two = f"{prefix}two{depth}"
    nodes = [
        helper.make_node("ReduceSum", [f"c{depth}"], [f"{prefix}s{depth}"], keepdims=0),
        helper.make_node("Greater", [f"{prefix}s{depth}", "zero"], [cond]),
        helper.make_node("If", [cond], [f"{prefix}r{depth}"], then_branch=then_g, else_branch=else_g),
        helper.make_node("Constant", [], [two], value=numpy_helper.from_array(np.array(2.0, np.float32))),
        helper.make_node("Mul", [f"{prefix}r{depth}", two], [out]),
    ]
    return helper.make_graph(nodes, f"{prefix}level{depth}", [], [helper.make_tensor_value_info(out, F, None)])


def lstm_with_nested_if_model(depth: int = 3) -> onnx.ModelProto:
    hidden, features = 4, 3
    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.standard_normal((1, 4 * hidden, features)).astype(np.float32) * 0.5, "W"),
        numpy_helper.from_array(rng.standard_normal((1, 4 * hidden, hidden)).astype(np.float32) * 0.5, "R"),
        numpy_helper.from_array(np.zeros((1, 8 * hidden), np.float32), "B"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
    ]
    body = nested_if(depth, "y_h")
    nodes = [
        helper.make_node("LSTM", ["x", "W", "R", "B", "", "h0", "c0"], ["y", "y_h", "y_c"], hidden_size=hidden),
        *body.node,
    ]
    graph = helper.make_graph(
        nodes, "lstm_if",
        [helper.make_tensor_value_info("x", F, [5, 1, features]),
         helper.make_tensor_value_info("h0", F, [1, 1, hidden]),
         helper.make_tensor_value_info("c0", F, [1, 1, hidden])]
        + [helper.make_tensor_value_info(f"c{d}", F, [2]) for d in range(1, depth + 1)],
        [helper.make_tensor_value_info(f"out{depth}", F, None),
         helper.make_tensor_value_info("y_h", F, [1, 1, hidden]),
         helper.make_tensor_value_info("y_c", F, [1, 1, hidden])],
        initializer=weights,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_nested_if_depth_3_with_lstm_state_matches_onnxruntime():
    model = lstm_with_nested_if_model(3)
    rep = onnx_jax.prepare(model)
    rng = np.random.default_rng(1)
    for trial in range(6):
        feeds = {
            "x": rng.standard_normal((5, 1, 3)).astype(np.float32),
            "h0": rng.standard_normal((1, 1, 4)).astype(np.float32),
            "c0": rng.standard_normal((1, 1, 4)).astype(np.float32),
        }
        feeds.update({f"c{d}": np.float32([1, -1]) * (1 if (trial >> (d - 1)) & 1 else -1) for d in range(1, 4)})
        ours = rep.run(feeds)
        for got, want in zip(ours, ort_run(model, feeds)):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert rep.compiled_segments == 1  # the conditions are traced: lax.cond, not a value-keyed recompile


def loop_model(with_scan_output: bool) -> onnx.ModelProto:
    """acc = x; for i in range(n): acc = acc * 0.5 + i  (optionally emitting acc each step)."""
    body_outputs = [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
                    helper.make_tensor_value_info("acc_out", F, [2])]
    nodes = [
        helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        helper.make_node("Cast", ["i"], ["fi"], to=F),
        helper.make_node("Constant", [], ["half"], value=numpy_helper.from_array(np.array(0.5, np.float32))),
        helper.make_node("Mul", ["acc_in", "half"], ["scaled"]),
        helper.make_node("Add", ["scaled", "fi"], ["acc_out"]),
    ]
    if with_scan_output:
        nodes.append(helper.make_node("Identity", ["acc_out"], ["emit"]))
        body_outputs.append(helper.make_tensor_value_info("emit", F, [2]))
    body = helper.make_graph(
        nodes, "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_in", F, [2])],
        body_outputs,
    )
    outputs = ["acc"] + (["all"] if with_scan_output else [])
    graph = helper.make_graph(
        [helper.make_node("Loop", ["n", "", "x"], outputs, body=body)], "loop",
        [helper.make_tensor_value_info("n", TensorProto.INT64, []), helper.make_tensor_value_info("x", F, [2])],
        [helper.make_tensor_value_info(o, F, None) for o in outputs],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("with_scan_output", [False, True])
def test_loop_trip_count_from_an_input_matches_onnxruntime(with_scan_output):
    model = loop_model(with_scan_output)
    rep = onnx_jax.prepare(model)
    for n in (0, 1, 4, 7):
        feeds = {"n": np.array(n, np.int64), "x": np.float32([1.0, -2.0])}
        for got, want in zip(rep.run(feeds), ort_run(model, feeds)):
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=1e-6)
    # without scan outputs the trip count stays a run-time value: one executable for every n
    assert rep.compiled_segments == (4 if with_scan_output else 1)


def test_scan_reverse_input_and_output_axis_match_onnxruntime():
    body = helper.make_graph(
        [helper.make_node("Add", ["s_in", "x_t"], ["s_out"]), helper.make_node("Identity", ["s_out"], ["y_t"])],
        "body",
        [helper.make_tensor_value_info("s_in", F, [2]), helper.make_tensor_value_info("x_t", F, [2])],
        [helper.make_tensor_value_info("s_out", F, [2]), helper.make_tensor_value_info("y_t", F, [2])],
    )
    node = helper.make_node("Scan", ["s0", "xs"], ["s", "ys"], body=body, num_scan_inputs=1,
                            scan_input_directions=[1], scan_output_axes=[1])
    graph = helper.make_graph([node], "scan",
                              [helper.make_tensor_value_info("s0", F, [2]), helper.make_tensor_value_info("xs", F, [4, 2])],
                              [helper.make_tensor_value_info("s", F, None), helper.make_tensor_value_info("ys", F, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    feeds = {"s0": np.float32([0, 1]), "xs": np.arange(8, dtype=np.float32).reshape(4, 2)}
    for got, want in zip(onnx_jax.prepare(model).run(feeds), ort_run(model, feeds)):
        np.testing.assert_allclose(got, want)
