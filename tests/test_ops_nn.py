"""Property tests for ops/nn.py: MatMul/Gemm/Einsum, convolution, pooling, normalization, softmax, dropout.

Most cases compare with onnx.reference through oracle.check_node. Where the reference is known to be wrong
(old-opset softmax coercion, grouped ConvTranspose, MaxUnpool's output_shape, Lp pooling with pads, ...)
the case is either steered around the bug (with a comment) or checked against a small numpy model of the spec.
"""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from onnx.reference import ReferenceEvaluator

import onnx_jax
from oracle import arrays, assert_close, check_node, node_model, shapes

FLOATS = [np.float32, np.float64]
SOME = settings(max_examples=6)
FEW = settings(max_examples=4)
# Normalizing divides rounding noise in the mean by sqrt(var + epsilon): near-constant slices amplify it.
NORM_TOLERANCE = {"rtol": 1e-4, "atol": 1e-4}


def ours(op_type, inputs, n_outputs=1, *, opset=21, **attrs):
    """onnx_jax's outputs for a one-node model."""
    return list(onnx_jax.prepare(node_model(op_type, inputs, n_outputs, opset=opset, **attrs)).run(inputs))


def reference(op_type, inputs, n_outputs=1, *, opset=21, **attrs):
    model = node_model(op_type, inputs, n_outputs, opset=opset, **attrs)
    return ReferenceEvaluator(model).run(None, {f"x{i}": x for i, x in enumerate(inputs)})


# Matrix products


@SOME
@given(st.data())
def test_matmul_broadcasts_batches(data):
    dtype = data.draw(st.sampled_from([np.float32, np.float16, np.int32, np.int64]))
    m, k, n = (data.draw(st.integers(1, 4)) for _ in range(3))
    batch = data.draw(shapes(0, 2, 3))
    a_shape = data.draw(st.sampled_from([(k,), batch + (m, k)]))
    b_shape = data.draw(st.sampled_from([(k,), (k, n), batch[1:] + (k, n)]))
    a, b = (data.draw(arrays(dtype, shape, low=-4, high=4)) for shape in (a_shape, b_shape))
    check_node("MatMul", [a, b], rtol=1e-2 if dtype == np.float16 else None)


@SOME
@given(st.data())
def test_gemm_transposes_scales_and_broadcasts_c(data):
    dtype = data.draw(st.sampled_from(FLOATS))
    m, k, n = (data.draw(st.integers(1, 4)) for _ in range(3))
    trans_a, trans_b = data.draw(st.booleans()), data.draw(st.booleans())
    a = data.draw(arrays(dtype, (k, m) if trans_a else (m, k)))
    b = data.draw(arrays(dtype, (n, k) if trans_b else (k, n)))
    c_shape = data.draw(st.sampled_from([None, (), (1,), (n,), (m, 1), (1, n), (m, n)]))
    c = None if c_shape is None else data.draw(arrays(dtype, c_shape))
    opset = data.draw(st.sampled_from([6, 11, 13]) if c is not None else st.just(13))
    attrs = {"broadcast": 1} if opset == 6 else {}
    alpha, beta = data.draw(st.sampled_from([1.0, 0.5, -2.0])), data.draw(st.sampled_from([1.0, 0.0, 0.25]))
    check_node("Gemm", [a, b] + ([] if c is None else [c]), opset=opset, alpha=alpha, beta=beta,
               transA=int(trans_a), transB=int(trans_b), **attrs)


EQUATIONS = {  # equation: operand shapes over the letters' sizes
    "ij,jk->ik": "ij,jk", "bij,bjk->bik": "bij,bjk", "ij->ji": "ij", "ii->i": "ii", "ii": "ii", "ij": "ij",
    "ba": "ba", "i,i": "i,i", "i,j->ij": "i,j", "...ij,...jk->...ik": "bij,bjk", "bhqd,bhkd->bhqk": "bhqd,bhkd",
    "ij, jk": "ij,jk", "Ab,bA->A": "Ab,bA",
}


@SOME
@given(st.data())
def test_einsum_matches_numpy_einsum(data):
    equation = data.draw(st.sampled_from(sorted(EQUATIONS)))
    dtype = data.draw(st.sampled_from([np.float32, np.float64, np.int32, np.int64]))
    sizes = {letter: data.draw(st.integers(1, 3)) for letter in set(EQUATIONS[equation]) - {","}}
    if "..." in equation:
        sizes["b"] = data.draw(st.integers(1, 3))
    operands = [data.draw(arrays(dtype, tuple(sizes[c] for c in term), low=-3, high=3))
                for term in EQUATIONS[equation].split(",")]
    check_node("Einsum", operands, equation=equation)


# Convolution


@st.composite
def conv_case(draw, max_dims=3):
    """(x shape, w shape, attributes) for a valid Conv: kernel, strides, dilations, pads or auto_pad, group."""
    n = draw(st.integers(1, max_dims))
    group = draw(st.sampled_from([1, 1, 2]))
    c_in, c_out = group * draw(st.integers(1, 2)), group * draw(st.integers(1, 2))
    kernel = [draw(st.integers(1, 3)) for _ in range(n)]
    dilations = [draw(st.integers(1, 2)) for _ in range(n)]
    strides = [draw(st.integers(1, 2)) for _ in range(n)]
    spans = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    auto_pad = draw(st.sampled_from(["NOTSET", "NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"]))
    pads = [draw(st.integers(0, s - 1)) for s in spans * 2] if auto_pad == "NOTSET" else None
    low = [max(1, s - (pads[i] + pads[i + n] if pads else 0)) for i, s in enumerate(spans)]
    x_shape = (draw(st.integers(1, 2)), c_in) + tuple(draw(st.integers(lo, lo + 3)) for lo in low)
    attrs = {"auto_pad": auto_pad, "group": group, "strides": strides, "dilations": dilations}
    if pads:
        attrs["pads"] = pads
    if draw(st.booleans()):
        attrs["kernel_shape"] = kernel
    return x_shape, (c_out, c_in // group, *kernel), attrs


@SOME
@given(st.data())
def test_conv(data):
    x_shape, w_shape, attrs = data.draw(conv_case())
    dtype = data.draw(st.sampled_from(FLOATS))
    inputs = [data.draw(arrays(dtype, x_shape, low=-2, high=2)), data.draw(arrays(dtype, w_shape, low=-2, high=2))]
    if data.draw(st.booleans()):
        inputs.append(data.draw(arrays(dtype, (w_shape[0],))))
    check_node("Conv", inputs, opset=data.draw(st.sampled_from([1, 11, 22])), **attrs)


def _conv_transpose_by_group(x, w, b, group, **attrs):
    """The reference ConvTranspose per group, concatenated (the reference itself mishandles group > 1)."""
    xs, ws = np.split(x, group, axis=1), np.split(w, group, axis=0)
    bs = np.split(b, group) if b is not None else [None] * group
    parts = [reference("ConvTranspose", [xi, wi] + ([bi] if bi is not None else []), **attrs)[0]
             for xi, wi, bi in zip(xs, ws, bs)]
    return np.concatenate(parts, axis=1)


@SOME
@given(st.data())
def test_conv_transpose(data):
    n = data.draw(st.integers(1, 3))
    group = data.draw(st.sampled_from([1, 1, 2]))
    c_in, c_out = group * data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2))
    kernel = [data.draw(st.integers(1, 3)) for _ in range(n)]
    strides = [data.draw(st.integers(1, 3)) for _ in range(n)]
    dilations = [data.draw(st.integers(1, 2)) for _ in range(n)]
    sizes = [data.draw(st.integers(1, 4)) for _ in range(n)]
    attrs = {"strides": strides, "dilations": dilations}
    mode = data.draw(st.sampled_from(["pads", "output_padding", "output_shape", "SAME_UPPER", "SAME_LOWER"]))
    full = [s * (i - 1) + (k - 1) * d + 1 for s, i, k, d in zip(strides, sizes, kernel, dilations)]
    if mode == "pads":
        attrs["pads"] = [data.draw(st.integers(0, (f - 1) // 2)) for f in full * 2]
    elif mode == "output_padding":
        attrs["output_padding"] = [data.draw(st.integers(0, s - 1)) for s in strides]
    elif mode == "output_shape":
        attrs["output_shape"] = [f + data.draw(st.integers(0, s - 1)) for f, s in zip(full, strides)]
    else:  # SAME with a stride past the kernel span: the reference pads negatively, ONNX Runtime clamps at 0
        assume(all(s <= (k - 1) * d + 1 for s, k, d in zip(strides, kernel, dilations)))
        attrs["auto_pad"] = mode
    dtype = data.draw(st.sampled_from(FLOATS))
    x = data.draw(arrays(dtype, (data.draw(st.integers(1, 2)), c_in, *sizes), low=-2, high=2))
    w = data.draw(arrays(dtype, (c_in, c_out, *kernel), low=-2, high=2))
    b = data.draw(arrays(dtype, (group * c_out,))) if data.draw(st.booleans()) else None
    inputs = [x, w] + ([b] if b is not None else [])
    if group == 1:
        check_node("ConvTranspose", inputs, **attrs)
    else:
        assert_close(ours("ConvTranspose", inputs, group=group, **attrs),
                     [_conv_transpose_by_group(x, w, b, group, **attrs)])


@FEW
@given(st.data())
def test_deform_conv(data):
    """The reference is a slow Python loop, so the cases stay tiny (2-D only, as the reference)."""
    group, offset_group = data.draw(st.sampled_from([(1, 1), (1, 2), (2, 1)]))
    kernel = [data.draw(st.integers(1, 2)) for _ in range(2)]
    x = data.draw(arrays(np.float32, (1, 2, 3, 3), low=-2, high=2))
    w = data.draw(arrays(np.float32, (2, 2 // group, *kernel), low=-2, high=2))
    pads = [data.draw(st.integers(0, 1)) for _ in range(4)]
    out = [3 + pads[i] + pads[i + 2] - kernel[i] + 1 for i in range(2)]
    offset = data.draw(arrays(np.float32, (1, offset_group * math.prod(kernel) * 2, *out), low=-1.5, high=1.5))
    inputs = [x, w, offset]
    if data.draw(st.booleans()):
        mask_shape = (1, offset_group * math.prod(kernel), *out)
        inputs += [data.draw(arrays(np.float32, (2,))), data.draw(arrays(np.float32, mask_shape, low=0, high=1))]
    check_node("DeformConv", inputs, group=group, offset_group=offset_group, pads=pads, atol=1e-5)


@SOME
@given(st.data())
def test_col2im(data):
    n = data.draw(st.integers(1, 3))
    block = [data.draw(st.integers(1, 3)) for _ in range(n)]
    strides = [data.draw(st.integers(1, 2)) for _ in range(n)]
    dilations = [data.draw(st.integers(1, 2)) for _ in range(n)]
    pads = [data.draw(st.integers(0, 1)) for _ in range(2 * n)]
    image = [max(1, (k - 1) * d + 1 - pads[i] - pads[i + n]) + data.draw(st.integers(0, 3))
             for i, (k, d) in enumerate(zip(block, dilations))]
    blocks = [(image[i] + pads[i] + pads[i + n] - (k - 1) * d - 1) // s + 1
              for i, (k, d, s) in enumerate(zip(block, dilations, strides))]
    dtype = data.draw(st.sampled_from([np.float32, np.int64]))
    x = data.draw(arrays(dtype, (data.draw(st.integers(1, 2)), 2 * math.prod(block), math.prod(blocks))))
    check_node("Col2Im", [x, np.array(image, np.int64), np.array(block, np.int64)],
               strides=strides, dilations=dilations, pads=pads)


# Pooling


@st.composite
def pool_case(draw, max_dims=3, dilated=True, ceil=True):
    """(x shape, attributes) for a pooling op whose every window touches the input."""
    n = draw(st.integers(1, max_dims))
    kernel = [draw(st.integers(1, 3)) for _ in range(n)]
    strides = [draw(st.integers(1, 3)) for _ in range(n)]
    dilations = [draw(st.integers(1, 2)) if dilated else 1 for _ in range(n)]
    spans = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    auto_pad = draw(st.sampled_from(["NOTSET", "NOTSET", "NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"]))
    pads = [draw(st.integers(0, min(s - 1, 2))) for s in spans * 2] if auto_pad == "NOTSET" else [0] * 2 * n
    # dilated windows may skip a short input entirely, so those inputs are at least one span long
    sizes = [(s if d > 1 else max(1, s - pads[i] - pads[i + n])) + draw(st.integers(0, 3))
             for i, (s, d) in enumerate(zip(spans, dilations))]
    attrs = {"kernel_shape": kernel, "auto_pad": auto_pad, "strides": strides}
    if dilated:
        attrs["dilations"] = dilations
    if any(pads):
        attrs["pads"] = pads
    if ceil and auto_pad == "NOTSET":
        attrs["ceil_mode"] = int(draw(st.booleans()))
    return (draw(st.integers(1, 2)), draw(st.integers(1, 2)), *sizes), attrs


def _ceil_extra(shape, attrs):
    """Per axis, (how far ceil_mode's last window reaches past the padding, whether it had to be pulled back)."""
    n = len(attrs["kernel_shape"])
    pads = attrs.get("pads", [0] * 2 * n)
    result = []
    for i, (size, k, s) in enumerate(zip(shape[2:], attrs["kernel_shape"], attrs["strides"])):
        span = (k - 1) * attrs.get("dilations", [1] * n)[i] + 1
        out = -(-(size + pads[i] + pads[i + n] - span) // s) + 1
        pulled = (out - 1) * s >= size + pads[i]
        out -= pulled
        result.append(((out - 1) * s + span - size - pads[i] - pads[i + n], pulled))
    return result


def assume_reference_pool_geometry(shape, attrs, *, max_pool):
    """Skip geometries where onnx.reference's pooling is wrong (it is the oracle for what remains).

    MaxPool here is the reference's strided path; the other pools take its generic path.
    """
    n = len(attrs["kernel_shape"])
    if attrs["auto_pad"].startswith("SAME"):  # it lets SAME pads go negative instead of clamping at 0
        assume(all(s <= k for s, k in zip(attrs["strides"], attrs["kernel_shape"])))
    if max_pool:  # it sizes SAME_LOWER like floor(in / stride) and never pulls ceil_mode's last window back
        assume(attrs["auto_pad"] != "SAME_LOWER")
        assume(not attrs.get("ceil_mode") or not any(p for _, p in _ceil_extra(shape, attrs)))
        return
    if attrs.get("ceil_mode"):  # it splits ceil_mode's extra padding over both sides
        assume(all(e <= 1 for e, _ in _ceil_extra(shape, attrs)))
    if attrs["auto_pad"] != "NOTSET":  # it ignores dilations with auto_pad
        assume(set(attrs.get("dilations", [1] * n)) == {1})


def _sliding_max(x, attrs):
    """Unit-stride, undilated MaxPool as the max over windows of the padded input."""
    kernel = attrs["kernel_shape"]
    n = len(kernel)
    if attrs["auto_pad"].startswith("SAME"):
        small = [(k - 1) // 2 for k in kernel]
        large = [k - 1 - s for k, s in zip(kernel, small)]
        low, high = (small, large) if attrs["auto_pad"] == "SAME_UPPER" else (large, small)
    else:
        pads = attrs.get("pads", [0] * 2 * n)
        low, high = pads[:n], pads[n:]
    lowest = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    padded = np.pad(x, [(0, 0), (0, 0), *zip(low, high)], constant_values=lowest)
    windows = np.lib.stride_tricks.sliding_window_view(padded, kernel, axis=tuple(range(2, 2 + n)))
    return windows.max(axis=tuple(range(-n, 0)))


@settings(max_examples=10)
@given(st.data())
def test_max_pool(data):
    shape, attrs = data.draw(pool_case())
    dtype = data.draw(st.sampled_from([np.float32, np.float64, np.float16, np.int8, np.uint8]))
    x = data.draw(arrays(dtype, shape, low=-100, high=100))
    if (set(attrs["strides"]) | set(attrs["dilations"])) == {1}:
        # the reference's unit-stride path misplaces asymmetric pads and returns no Indices
        assert_close(ours("MaxPool", [x], **attrs), [_sliding_max(x, attrs)])
        return
    assume_reference_pool_geometry(shape, attrs, max_pool=True)
    n_outputs = 1 + data.draw(st.booleans())
    if n_outputs == 2 and len(shape) > 3:
        attrs["storage_order"] = int(data.draw(st.booleans()))
    check_node("MaxPool", [x], n_outputs, **attrs)


@pytest.mark.parametrize("opset", [1, 8, 10])
def test_max_pool_old_opsets(opset):
    x = np.arange(2 * 3 * 5 * 4, dtype=np.float32).reshape(2, 3, 5, 4) % 7
    check_node("MaxPool", [x], 2 if opset >= 8 else 1, opset=opset, kernel_shape=[2, 2], strides=[2, 1],
               pads=[1, 0, 0, 1])


def test_max_pool_indices_prefer_first_maximum_and_ignore_padding():
    x = np.array([[[[1, 1, 0], [1, 0, 0], [0, 0, 1]]]], np.float32) - 5
    y, indices = ours("MaxPool", [x], 2, kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1])
    np.testing.assert_array_equal(indices, [[[[0, 1], [3, 8]]]])
    np.testing.assert_array_equal(y, [[[[-4, -4], [-4, -4]]]])
    _, column_major = ours("MaxPool", [x], 2, kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1], storage_order=1)
    np.testing.assert_array_equal(column_major, [[[[0, 3], [1, 8]]]])


@settings(max_examples=10)
@given(st.data())
def test_average_pool(data):
    shape, attrs = data.draw(pool_case())
    assume_reference_pool_geometry(shape, attrs, max_pool=False)
    attrs["count_include_pad"] = int(data.draw(st.booleans()))
    dtype = data.draw(st.sampled_from([np.float32, np.float64, np.float16]))
    check_node("AveragePool", [data.draw(arrays(dtype, shape))], **attrs)


@pytest.mark.parametrize("opset", [7, 10])
def test_average_pool_old_opsets(opset):
    x = np.arange(2 * 3 * 5 * 4, dtype=np.float32).reshape(2, 3, 5, 4) % 7
    check_node("AveragePool", [x], opset=opset, kernel_shape=[3, 2], strides=[2, 1], pads=[1, 0, 1, 1],
               count_include_pad=1)


def test_average_pool_1_excludes_padding():
    # the reference counts padding at opset 1, where the spec excludes it as opset 7's default does
    x = np.arange(2 * 3 * 5 * 4, dtype=np.float32).reshape(2, 3, 5, 4) % 7
    attrs = {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [1, 0, 1, 1]}
    assert_close(ours("AveragePool", [x], opset=1, **attrs), reference("AveragePool", [x], opset=7, **attrs))


@SOME
@given(st.data())
def test_lp_pool(data):
    # with pads the reference rescales by the window size instead of summing, so pads stay 0 here
    shape, attrs = data.draw(pool_case(ceil=False))
    assume(attrs["auto_pad"] in ("NOTSET", "VALID") and "pads" not in attrs)
    assume_reference_pool_geometry(shape, attrs, max_pool=False)
    attrs["p"] = data.draw(st.integers(1, 3))
    check_node("LpPool", [data.draw(arrays(np.float32, shape, low=-3, high=3))], opset=18, **attrs)


def test_lp_pool_sums_powers_over_padded_windows():
    x = np.array([[[3.0, -4.0, 12.0]]], np.float32)
    (y,) = ours("LpPool", [x], kernel_shape=[2], pads=[1, 1], p=2, strides=[2])
    np.testing.assert_allclose(y, [[[3.0, np.hypot(4.0, 12.0)]]])
    (y,) = ours("LpPool", [x], opset=1, kernel_shape=[2], p=1.0)
    np.testing.assert_allclose(y, [[[7.0, 16.0]]])


@SOME
@given(st.data())
def test_global_pools(data):
    op_type = data.draw(st.sampled_from(["GlobalAveragePool", "GlobalMaxPool"]))
    dtype = data.draw(st.sampled_from([np.float32, np.float64, np.float16]))
    rank = data.draw(st.integers(3, 5)) if op_type == "GlobalAveragePool" else 4  # the reference's max is 4-D only
    shape = data.draw(shapes(rank, rank, 4))
    check_node(op_type, [data.draw(arrays(dtype, shape))], opset=data.draw(st.sampled_from([1, 22])))


@pytest.mark.parametrize("p", [1, 2, 3])
def test_global_lp_pool(p):
    x = np.random.default_rng(p).normal(size=(2, 3, 4, 5)).astype(np.float32)
    (y,) = ours("GlobalLpPool", [x], p=p)
    assert_close([y], [np.sum(np.abs(x) ** p, axis=(2, 3), keepdims=True) ** (1 / p)])


@SOME
@given(st.data())
def test_max_unpool(data):
    n = data.draw(st.integers(1, 3))
    kernel = [data.draw(st.integers(1, 3)) for _ in range(n)]
    strides = [data.draw(st.integers(1, 3)) for _ in range(n)]
    pads = [data.draw(st.integers(0, k - 1)) for k in kernel * 2]
    x_shape = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)),
               *[data.draw(st.integers(max(1, (p1 + p2 - k) // s + 2), 3))
                 for k, s, p1, p2 in zip(kernel, strides, pads[:n], pads[n:])])
    sizes = zip(x_shape[2:], strides, kernel, pads[:n], pads[n:])
    out = x_shape[:2] + tuple((i - 1) * s - p1 - p2 + k for i, s, k, p1, p2 in sizes)
    assume(math.prod(out) >= math.prod(x_shape))
    x = data.draw(arrays(np.float32, x_shape))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    indices = rng.choice(math.prod(out), math.prod(x_shape), replace=False).reshape(x_shape).astype(np.int64)
    attrs = {"kernel_shape": kernel, "strides": strides, "pads": pads}
    check_node("MaxUnpool", [x, indices], **attrs)
    # an explicit output_shape frames the flat indices (as ONNX Runtime and PyTorch read them; the reference
    # and the backend test frame them in the inferred shape, see onnx/onnx#2398)
    bigger = out[:2] + tuple(d + data.draw(st.integers(0, 1)) for d in out[2:])
    (y,) = ours("MaxUnpool", [x, indices, np.array(bigger, np.int64)], **attrs)
    expected = np.zeros(math.prod(bigger), np.float32)
    expected[indices.ravel()] = x.ravel()
    assert_close([y], [expected.reshape(bigger)])


def test_max_pool_then_unpool_round_trips_odd_sizes():
    x = np.random.default_rng(0).normal(size=(1, 2, 5, 5)).astype(np.float32)
    y, indices = ours("MaxPool", [x], 2, kernel_shape=[2, 2], strides=[2, 2])
    (restored,) = ours("MaxUnpool", [y, indices, np.array(x.shape, np.int64)], kernel_shape=[2, 2], strides=[2, 2])
    kept = restored != 0
    np.testing.assert_array_equal(restored[kept], x[kept])
    assert kept.sum() == y.size


# Normalization


@SOME
@given(st.data())
def test_batch_normalization(data):
    dtype = data.draw(st.sampled_from(FLOATS))
    shape = data.draw(shapes(2, 5, 4))
    c = shape[1]
    params = [data.draw(arrays(dtype, (c,))) for _ in range(3)] + [data.draw(arrays(dtype, (c,), low=0.5, high=4))]
    training = data.draw(st.booleans())
    check_node("BatchNormalization", [data.draw(arrays(dtype, shape)), *params], 3 if training else 1, opset=15,
               epsilon=1e-2, momentum=0.8, training_mode=int(training), **NORM_TOLERANCE)


@pytest.mark.parametrize("opset", [6, 7, 9])
def test_batch_normalization_legacy_inference(opset):
    rng = np.random.default_rng(opset)
    x = rng.normal(size=(2, 3, 4)).astype(np.float32)
    scale, bias, mean = (rng.normal(size=3).astype(np.float32) for _ in range(3))
    var = rng.uniform(0.5, 2, size=3).astype(np.float32)
    attrs = {"is_test": 1} if opset < 7 else {}
    (y,) = ours("BatchNormalization", [x, scale, bias, mean, var], opset=opset, **attrs)
    expected = (x - mean[:, None]) / np.sqrt(var[:, None] + 1e-5) * scale[:, None] + bias[:, None]
    assert_close([y], [expected])


def test_batch_normalization_legacy_training_outputs():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 2, 3)).astype(np.float32)
    scale, bias, mean, var = (np.ones(2, np.float32) * v for v in (2, 1, 0.5, 3))
    y, running_mean, running_var, saved_mean, saved_var = ours(
        "BatchNormalization", [x, scale, bias, mean, var], 5, opset=9, momentum=0.5)
    batch_mean, batch_var = x.mean(axis=(0, 2)), x.var(axis=(0, 2))
    assert_close([saved_mean, saved_var, running_mean, running_var],
                 [batch_mean, batch_var, 0.5 * mean + 0.5 * batch_mean, 0.5 * var + 0.5 * batch_var])
    assert_close([y], [(x - batch_mean[:, None]) / np.sqrt(batch_var[:, None] + 1e-5) * 2 + 1])


def test_batch_normalization_not_spatial():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 2, 4)).astype(np.float32)
    scale, bias, mean = (rng.normal(size=(2, 4)).astype(np.float32) for _ in range(3))
    var = rng.uniform(0.5, 2, size=(2, 4)).astype(np.float32)
    (y,) = ours("BatchNormalization", [x, scale, bias, mean, var], opset=7, spatial=0)
    assert_close([y], [(x - mean) / np.sqrt(var + 1e-5) * scale + bias])


@SOME
@given(st.data())
def test_instance_normalization(data):
    dtype = data.draw(st.sampled_from(FLOATS))
    shape = data.draw(shapes(3, 5, 4))
    scale, bias = (data.draw(arrays(dtype, shape[1:2])) for _ in range(2))
    check_node("InstanceNormalization", [data.draw(arrays(dtype, shape)), scale, bias], epsilon=1e-2, **NORM_TOLERANCE)


@SOME
@given(st.data())
def test_layer_normalization(data):
    dtype = data.draw(st.sampled_from([np.float32, np.float16]))
    shape = data.draw(shapes(1, 4, 4))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    normalized = shape[axis:]
    scale = data.draw(arrays(dtype, data.draw(st.sampled_from([normalized, normalized[-1:]]))))
    bias = data.draw(st.sampled_from([None, scale.shape]))
    inputs = [data.draw(arrays(dtype, shape)), scale] + ([] if bias is None else [data.draw(arrays(dtype, bias))])
    if dtype == np.float32:
        check_node("LayerNormalization", inputs, 3, opset=17, axis=axis, epsilon=1e-2, **NORM_TOLERANCE)
    else:  # the spec stashes float16's statistics in float32, where the reference keeps float16
        y, mean, inv_std = ours("LayerNormalization", inputs, 3, opset=17, axis=axis, epsilon=1e-2)
        expected = reference("LayerNormalization", [v.astype(np.float32) for v in inputs], 3, opset=17, axis=axis,
                             epsilon=1e-2)
        assert_close([y], [expected[0].astype(np.float16)], rtol=1e-2, atol=1e-2)
        assert_close([mean, inv_std], expected[1:], **NORM_TOLERANCE)


@SOME
@given(st.data())
def test_normalizations_over_long_trailing_axes(data):
    """Along a last axis of 64+ float32 values the statistics are products with a column of ones (ops/reduction.py),
    also on data far from zero; over several axes they stay reductions."""
    trailing = data.draw(st.sampled_from([(64,), (256,), (384,), (4, 50), (1000,)]))
    lead = data.draw(st.sampled_from([(1,), (3,), (2, 5)]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = rng.normal(data.draw(st.sampled_from([0.0, 300.0])), 3.0, lead + trailing).astype(np.float32)
    axis = len(lead)
    scale, bias = rng.normal(size=trailing).astype(np.float32), rng.normal(size=trailing).astype(np.float32)
    check_node("LayerNormalization", [x, scale, bias], 3, opset=17, axis=axis, epsilon=1e-5, rtol=1e-4, atol=1e-4)
    check_node("RMSNormalization", [x, scale], opset=23, axis=axis, epsilon=1e-5, rtol=1e-5, atol=1e-5)
    axes = np.arange(axis, x.ndim, dtype=np.int64)
    for keepdims in (0, 1):
        check_node("ReduceMean", [x, axes], opset=18, keepdims=keepdims, rtol=1e-6, atol=1e-4)


@SOME
@given(st.data())
def test_group_normalization(data):
    opset = data.draw(st.sampled_from([18, 21]))
    groups = data.draw(st.integers(1, 3))
    shape = (data.draw(st.integers(1, 2)), groups * data.draw(st.integers(1, 2)), *data.draw(shapes(0, 2, 4)))
    per = groups if opset == 18 else shape[1]  # opset 18 scales per group, 21 per channel
    scale, bias = (data.draw(arrays(np.float32, (per,))) for _ in range(2))
    check_node("GroupNormalization", [data.draw(arrays(np.float32, shape)), scale, bias], opset=opset,
               num_groups=groups, epsilon=1e-2, **NORM_TOLERANCE)


@SOME
@given(st.data())
def test_rms_normalization(data):
    dtype = data.draw(st.sampled_from([np.float32, np.float16]))
    shape = data.draw(shapes(1, 4, 4))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    scale = data.draw(arrays(dtype, shape[axis:]))
    tolerance = {"rtol": 1e-2, "atol": 1e-2} if dtype == np.float16 else {}
    check_node("RMSNormalization", [data.draw(arrays(dtype, shape)), scale], opset=23, axis=axis, **tolerance)


@FEW
@given(st.data())
def test_lrn(data):
    c = data.draw(st.integers(1, 5))
    shape = (c, c, data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))  # the reference loops over N for C
    check_node("LRN", [data.draw(arrays(np.float32, shape))], size=data.draw(st.integers(1, 5)),
               alpha=data.draw(st.sampled_from([1e-4, 0.01])), beta=data.draw(st.sampled_from([0.75, 0.5])),
               bias=data.draw(st.sampled_from([1.0, 2.0])))


@FEW
@given(st.data())
def test_mean_variance_normalization(data):
    shape = data.draw(shapes(4, 4, 4))
    axes = data.draw(st.sampled_from([None, [0, 2, 3], [1], [2, 3], [0, 1, 2, 3]]))
    attrs = {} if axes is None else {"axes": axes}
    x = data.draw(arrays(np.float32, shape))
    # with an epsilon of 1e-9, a constant slice turns rounding noise into +-1 (or NaN in the reference)
    assume(np.all(np.ptp(x, axis=tuple(axes or (0, 2, 3))) > 1e-3))
    check_node("MeanVarianceNormalization", [x], rtol=1e-4, atol=1e-5, **attrs)


@SOME
@given(st.data())
@pytest.mark.filterwarnings("ignore:invalid value encountered in divide:RuntimeWarning")  # the reference's 0 / 0
def test_lp_normalization(data):
    p = data.draw(st.sampled_from([1, 2]))
    shape = data.draw(shapes(1, 4, 4))
    # the reference forgets the absolute value for p=1, so those inputs stay non-negative
    x = data.draw(arrays(np.float32, shape, low=-5 if p == 2 else 0, high=5))
    check_node("LpNormalization", [x], axis=data.draw(st.integers(-len(shape), len(shape) - 1)), p=p)


def test_lp_normalization_of_zeros_and_negatives():
    x = np.array([[0.0, 0.0], [3.0, -4.0]], np.float32)
    np.testing.assert_allclose(ours("LpNormalization", [x], p=1)[0], [[0, 0], [3 / 7, -4 / 7]], rtol=1e-6)
    np.testing.assert_allclose(ours("LpNormalization", [x])[0], [[0, 0], [0.6, -0.8]], rtol=1e-6)


# Softmax family


@SOME
@given(st.data())
def test_softmax_family(data):
    op_type = data.draw(st.sampled_from(["Softmax", "LogSoftmax", "Hardmax"]))
    dtype = data.draw(st.sampled_from([np.float32, np.float64, np.float16]))
    shape = data.draw(shapes(1, 4, 4))
    x = data.draw(arrays(dtype, shape, low=-5, high=5))
    if op_type == "Hardmax":  # ties go to the first maximum; keep the values distinct so float16 rounding agrees
        x = np.argsort(np.argsort(x.ravel(), kind="stable")).reshape(shape).astype(dtype)
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    check_node(op_type, [x], axis=axis, opset=13)


@SOME
@given(st.data())
def test_softmax_over_long_and_short_last_axes(data):
    """From 64 values along the last axis the reductions fold over shifted slices, over 2-16 value by value
    (ops/reduction.py)."""
    length = data.draw(st.sampled_from([2, 3, 10, 16, 64, 128, 197, 750, 2081]))
    x = np.random.default_rng(data.draw(st.integers(0, 2**16))).normal(0, 5, (data.draw(st.integers(1, 3)), length))
    x = x.astype(data.draw(st.sampled_from([np.float32, np.float64])))
    x[:, data.draw(st.integers(0, length - 1))] = -np.inf  # a masked key
    with np.errstate(divide="ignore"):  # the reference's log of its 0
        check_node(data.draw(st.sampled_from(["Softmax", "LogSoftmax"])), [x], opset=13, rtol=1e-5, atol=1e-6)


def _coerced(fn, x, axis):
    rows = math.prod(x.shape[:axis % x.ndim])
    return fn(x.reshape(rows, -1)).reshape(x.shape)


def _softmax2d(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _hardmax2d(x):
    return np.eye(x.shape[1], dtype=x.dtype)[np.argmax(x, axis=1)]


@SOME
@given(st.data())
def test_softmax_family_before_13_coerces_to_2d(data):
    """The reference implements only the single-axis semantics of opset 13, so numpy models the old one."""
    shape = data.draw(shapes(1, 4, 4))
    x = data.draw(arrays(np.float64, shape, low=-5, high=5))
    axis = data.draw(st.sampled_from([None, *range(-len(shape), len(shape))]))
    attrs = {} if axis is None else {"axis": axis}
    axis = 1 if axis is None else axis
    opset = data.draw(st.sampled_from([1, 11]))
    if len(shape) == 1 and axis == 1:
        return
    assert_close(ours("Softmax", [x], opset=opset, **attrs), [_coerced(_softmax2d, x, axis)])
    assert_close(ours("LogSoftmax", [x], opset=opset, **attrs), [np.log(_coerced(_softmax2d, x, axis))])
    assert_close(ours("Hardmax", [x], opset=opset, **attrs), [_coerced(_hardmax2d, x, axis)])


# Dropout


@SOME
@given(st.data())
def test_dropout_inference_is_identity(data):
    dtype = data.draw(st.sampled_from([np.float32, np.float16, np.float64]))
    x = data.draw(arrays(dtype, data.draw(shapes(0, 3, 4))))
    opset = data.draw(st.sampled_from([7, 10, 12, 13, 22]))
    inputs = [x]
    if opset >= 12 and data.draw(st.booleans()):
        inputs += [np.array(0.3, np.float32), np.array(False)]
    check_node("Dropout", inputs, 2 if opset >= 10 else 1, opset=opset)


def test_dropout_before_10_has_a_mask_of_the_input_type():
    x = np.ones((2, 3), np.float32)
    y, mask = ours("Dropout", [x], 2, opset=7, ratio=0.2)
    assert mask.dtype == np.float32 and (mask == 1).all() and (y == x).all()


def test_dropout_training_drops_and_rescales_deterministically_per_seed():
    x = np.ones((64, 64), np.float32)
    inputs = [x, np.array(0.25, np.float32), np.array(True)]
    y, mask = ours("Dropout", inputs, 2, opset=13, seed=3)
    assert mask.dtype == np.bool_
    np.testing.assert_allclose(y, np.where(mask, 1 / 0.75, 0), rtol=1e-6)
    assert 0.2 < 1 - mask.mean() < 0.3
    np.testing.assert_array_equal(ours("Dropout", inputs, 2, opset=13, seed=3)[1], mask)
    assert (ours("Dropout", [x, np.array(0.0, np.float32), np.array(True)], 2, opset=13)[0] == x).all()


# Exact dtypes


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16])
def test_narrow_floats_keep_their_dtype(dtype):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 2, 4, 4)).astype(dtype)
    w = rng.normal(size=(3, 2, 2, 2)).astype(dtype)
    scale, bias = np.ones(2, dtype), np.zeros(2, dtype)
    cases = [("Conv", [x, w], {}), ("ConvTranspose", [x, w.transpose(1, 0, 2, 3)], {}),
             ("AveragePool", [x], {"kernel_shape": [2, 2]}), ("LpPool", [x], {"kernel_shape": [2, 2]}),
             ("GlobalAveragePool", [x], {}), ("InstanceNormalization", [x, scale, bias], {}),
             ("LayerNormalization", [x, np.ones(4, dtype)], {}), ("Softmax", [x], {}), ("MatMul", [x, x], {}),
             ("Gemm", [x[0, 0], x[0, 1], np.ones(4, dtype)], {"alpha": 0.5, "beta": 2.0}),
             ("LRN", [x], {"size": 3}), ("GroupNormalization", [x, scale, bias], {"num_groups": 2})]
    for op_type, inputs, attrs in cases:
        (y,) = ours(op_type, inputs, **attrs)
        assert y.dtype == dtype, op_type
