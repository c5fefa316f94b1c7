"""Property tests for ops/rnn.py: RNN, GRU, LSTM.

onnx.reference covers directions, layouts, biases, initial states, peepholes and linear_before_reset, but
ignores sequence_lens, activations, clip and input_forget; those are checked against onnxruntime (which has
no layout=1), and layout=1 against layout=0 on transposed data. torch exports check whole models.
"""

from __future__ import annotations

import io

import jax
import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import onnx_jax
from oracle import assert_close, check_node, node_model

GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
STATES = {"RNN": 1, "GRU": 1, "LSTM": 2}  # initial_h (and initial_c)
SOME = settings(max_examples=15)  # each example compiles a scan: about a second
FEW = settings(max_examples=6)
TOLERANCE = {np.float16: 2e-2, np.float32: 1e-5, np.float64: 1e-12}


def ours(model, inputs):
    return list(onnx_jax.prepare(model).run([x for x in inputs if x is not None]))


def onnxruntime_outputs(model, inputs):
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {f"x{i}": x for i, x in enumerate(inputs) if x is not None})


@st.composite
def recurrences(draw, op_type=None, dtypes=(np.float32,), layouts=(0, 1)):
    """(op_type, inputs, attrs) with drawn sizes, direction, layout and optional inputs (sequence_lens left out)."""
    op_type = op_type or draw(st.sampled_from(sorted(GATES)))
    dtype = draw(st.sampled_from(dtypes))
    steps, batch, size, hidden = (draw(st.integers(1, n)) for n in (5, 3, 4, 4))
    direction = draw(st.sampled_from(["forward", "reverse", "bidirectional"]))
    layout = draw(st.sampled_from(layouts))
    dirs = 2 if direction == "bidirectional" else 1
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))

    def tensor(*shape, scale=1.0):
        return (scale * rng.standard_normal(shape)).astype(dtype)

    gates = GATES[op_type] * hidden
    state_shape = (dirs, batch, hidden) if layout == 0 else (batch, dirs, hidden)
    inputs = [
        tensor(steps, batch, size) if layout == 0 else tensor(batch, steps, size),
        tensor(dirs, gates, size, scale=0.7),
        tensor(dirs, gates, hidden, scale=0.7),
        tensor(dirs, 2 * gates, scale=0.5) if draw(st.booleans()) else None,
        None,
    ]
    inputs += [tensor(*state_shape) if draw(st.booleans()) else None for _ in range(STATES[op_type])]
    if op_type == "LSTM" and draw(st.booleans()):
        inputs.append(tensor(dirs, 3 * hidden, scale=0.5))
    while inputs[-1] is None:
        inputs.pop()
    attrs = {"hidden_size": hidden, "direction": direction, "layout": layout}
    if op_type == "GRU":
        attrs["linear_before_reset"] = draw(st.integers(0, 1))
    return op_type, inputs, attrs


@SOME
@given(recurrences(dtypes=(np.float32, np.float64)), st.integers(1, 3))
def test_matches_reference(case, n_outputs):
    op_type, inputs, attrs = case
    check_node(op_type, inputs, min(n_outputs, STATES[op_type] + 1), **attrs)


@FEW
@given(recurrences(dtypes=(np.float16,)))
def test_float16_matches_reference_loosely(case):
    op_type, inputs, attrs = case
    check_node(op_type, inputs, STATES[op_type] + 1, rtol=2e-2, atol=2e-2, **attrs)


ACTIVATIONS = ["Relu", "Tanh", "Sigmoid", "Affine", "LeakyRelu", "ThresholdedRelu", "ScaledTanh", "HardSigmoid",
               "Elu", "Softsign", "Softplus"]


@SOME
@given(recurrences(layouts=(0,)), st.data())
def test_sequence_lens_activations_clip_match_onnxruntime(case, data):
    op_type, inputs, attrs = case
    inputs += [None] * (5 - len(inputs))
    steps, batch = inputs[0].shape[:2]
    inputs[4] = np.array(data.draw(st.lists(st.integers(0, steps), min_size=batch, max_size=batch)), np.int32)
    dirs = inputs[1].shape[0]
    per_direction = {"RNN": 1, "GRU": 2, "LSTM": 3}[op_type]
    if data.draw(st.booleans()):
        # as many alphas and betas as activations: the activations that take them consume them in order
        count = per_direction * dirs
        attrs["activations"] = data.draw(st.lists(st.sampled_from(ACTIVATIONS), min_size=count, max_size=count))
        attrs["activation_alpha"] = data.draw(st.lists(st.floats(0.1, 2.0), min_size=count, max_size=count))
        attrs["activation_beta"] = data.draw(st.lists(st.floats(-1.0, 1.0), min_size=count, max_size=count))
    if data.draw(st.booleans()):
        attrs["clip"] = data.draw(st.floats(0.1, 3.0))
    if op_type == "LSTM":
        attrs["input_forget"] = data.draw(st.integers(0, 1))
    model = node_model(op_type, inputs, STATES[op_type] + 1, opset=14, **attrs)
    assert_close(ours(model, inputs), onnxruntime_outputs(model, inputs), rtol=1e-5, atol=1e-5)


def test_activation_defaults_are_the_onnx_ops_defaults():
    """LeakyRelu 0.01, HardSigmoid 0.2/0.5, Elu 1.0, as onnxruntime has them.

    (For Affine, ScaledTanh and ThresholdedRelu onnxruntime defaults alpha and beta to 0; we keep ONNX's.)
    """
    rng = np.random.default_rng(2)
    inputs = [rng.standard_normal(s).astype(np.float32) for s in [(4, 2, 3), (2, 12, 3), (2, 12, 3)]]
    activations = ["HardSigmoid", "LeakyRelu", "Elu", "Sigmoid", "Elu", "LeakyRelu"]
    model = node_model("LSTM", inputs, 3, opset=14, hidden_size=3, direction="bidirectional", activations=activations)
    assert_close(ours(model, inputs), onnxruntime_outputs(model, inputs), rtol=1e-5, atol=1e-6)


@FEW
@given(recurrences(layouts=(0,)), st.data())
def test_batch_major_layout_is_the_transposed_sequence_major_one(case, data):
    op_type, inputs, attrs = case
    inputs += [None] * (5 - len(inputs))
    steps, batch = inputs[0].shape[:2]
    inputs[4] = np.array(data.draw(st.lists(st.integers(0, steps), min_size=batch, max_size=batch)), np.int32)
    n_outputs = STATES[op_type] + 1
    want = ours(node_model(op_type, inputs, n_outputs, opset=14, **attrs), inputs)
    swapped = [x if i in (1, 2, 3, 4, 7) or x is None else np.swapaxes(x, 0, 1) for i, x in enumerate(inputs)]
    got = ours(node_model(op_type, swapped, n_outputs, opset=14, **{**attrs, "layout": 1}), swapped)
    np.testing.assert_array_equal(got[0], np.transpose(want[0], (2, 0, 1, 3)))
    for a, b in zip(got[1:], want[1:]):
        np.testing.assert_array_equal(a, np.swapaxes(b, 0, 1))


@pytest.mark.parametrize("op_type", sorted(GATES))
@pytest.mark.parametrize("opset", [1, 3, 7])
def test_older_opsets_match_onnxruntime_or_the_current_op(op_type, opset):
    """Opset 1 adds output_sequence (no effect); GRU-1 defaults to direction 'foward' and has no linear_before_reset."""
    rng = np.random.default_rng(opset)
    hidden, gates = 3, GATES[op_type] * 3
    inputs = [rng.standard_normal(shape).astype(np.float32) for shape in [(4, 2, 5), (1, gates, 5), (1, gates, 3),
                                                                          (1, 2 * gates)]]
    attrs = {"hidden_size": hidden}
    if op_type == "GRU" and opset == 3:
        attrs["linear_before_reset"] = 1
    model = node_model(op_type, inputs, 2, opset=opset, **attrs)
    want = node_model(op_type, inputs, 2, opset=14, **attrs)
    assert_close(ours(model, inputs), ours(want, inputs), rtol=0, atol=0)
    if opset == 7:
        assert_close(ours(model, inputs), onnxruntime_outputs(model, inputs), rtol=1e-5, atol=1e-5)


def test_final_state_alone_and_sequence_lens_past_the_end():
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal(s).astype(np.float32) for s in [(6, 3, 2), (2, 16, 2), (2, 16, 4)]]
    inputs += [None, np.array([6, 1, 3], np.int32)]
    model = node_model("LSTM", inputs, 3, opset=14, hidden_size=4, direction="bidirectional")
    model.graph.node[0].output[0] = ""  # Y not requested
    model.graph.output.pop(0)
    assert_close(ours(model, inputs), onnxruntime_outputs(model, inputs), rtol=1e-5, atol=1e-6)


def test_recurrence_is_one_scan_for_every_length_and_direction():
    """Never unrolled: one lax.scan whatever the sequence length, both directions in it."""
    for steps in (3, 50):
        rng = np.random.default_rng(steps)
        inputs = [rng.standard_normal(s).astype(np.float32) for s in [(steps, 2, 3), (2, 12, 3), (2, 12, 4)]]
        fn, params = onnx_jax.to_jax(node_model("GRU", inputs, 2, hidden_size=4, direction="bidirectional"))
        jaxpr = jax.make_jaxpr(fn)(params, *inputs)
        assert str(jaxpr).count("scan[") == 1


def test_gradients_flow_through_the_scan():
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal(s).astype(np.float32) for s in [(5, 2, 3), (1, 16, 3), (1, 16, 4)]]
    model = node_model("LSTM", inputs, 2, hidden_size=4, initializers={"x1": inputs[1], "x2": inputs[2]})
    fn, params = onnx_jax.to_jax(model)
    grads = jax.grad(lambda p: fn(p, inputs[0])[1].sum())(params)
    assert set(grads) == {"x1", "x2"} and all(np.isfinite(g).all() and np.abs(g).sum() > 0 for g in grads.values())


def _export(module, example, **kwargs):
    buffer = io.BytesIO()
    torch.onnx.export(module.eval(), (example,), buffer, dynamo=False, input_names=["x"], **kwargs)
    return onnx.load_from_string(buffer.getvalue())


@pytest.mark.filterwarnings("ignore:Exporting a model to ONNX with a batch_size other than 1")
@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize(("bidirectional", "batch_first"), [(False, False), (True, True)])
def test_torch_export_matches_torch(kind, bidirectional, batch_first):
    torch.manual_seed(0)
    module = getattr(torch.nn, kind)(5, 6, num_layers=2, bidirectional=bidirectional, batch_first=batch_first)
    seq_axis, batch_axis = (1, 0) if batch_first else (0, 1)
    model = _export(module, torch.randn(3, 3, 5), opset_version=14,
                    dynamic_axes={"x": {seq_axis: "steps", batch_axis: "batch"}})
    rep = onnx_jax.prepare(model)
    for shape in [(4, 2, 5), (7, 1, 5)]:
        x = torch.randn(*(shape[1], shape[0], 5) if batch_first else shape)
        with torch.no_grad():
            want = module(x)
        want = [want[0], *want[1]] if kind == "LSTM" else list(want)
        got = rep.run({"x": x.numpy()})
        assert len(got) == len(want)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b.numpy(), rtol=1e-4, atol=1e-5)
