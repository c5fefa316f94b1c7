"""Image ops: Resize, Upsample, GridSample, AffineGrid, RoiAlign, and ImageDecoder (on the host, with Pillow)."""

from __future__ import annotations

import io
import itertools

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from jax import lax

from ..dtypes import is_float
from ..registry import op
from .indexing import take_static

# Resize: separable, one axis at a time. Sampling positions, tap indices and weights depend only on static
# shapes, scales and roi, so they are numpy; the data is gathered along the axis and the taps summed.


def _source_coords(mode: str, out_len: int, in_len: int, scale: float, roi: tuple[float, float]):
    """Where each output index samples the input along one axis (coordinate_transformation_mode), and a
    mask of the positions tf_crop_and_resize puts outside the input (None for the other modes)."""
    y = np.arange(out_len, dtype=np.float64)
    out_f = scale * in_len  # the fractional output length the scale asks for
    if mode == "asymmetric":
        return y / scale, None
    if mode == "align_corners":
        return (np.zeros_like(y) if out_f == 1 else y * (in_len - 1) / (out_f - 1)), None
    if mode == "pytorch_half_pixel":
        return (np.zeros_like(y) if out_len == 1 else (y + 0.5) / scale - 0.5), None
    if mode == "tf_half_pixel_for_nn":
        return (y + 0.5) / scale, None
    if mode == "half_pixel_symmetric":
        offset = in_len / 2 * (1 - out_len / out_f)
        return offset + (y + 0.5) / scale - 0.5, None
    if mode == "tf_crop_and_resize":
        start, end = roi
        if out_f == 1:
            x = np.full_like(y, (end - start) * (in_len - 1) / 2)
        else:
            x = y * (end - start) * (in_len - 1) / (out_f - 1)
        x = x + start * (in_len - 1)
        return x, (x < 0) | (x > in_len - 1)
    if mode == "half_pixel":
        return (y + 0.5) / scale - 0.5, None
    raise ValueError(f"unknown coordinate_transformation_mode {mode!r}")


def _nearest_index(x, nearest_mode: str):
    if nearest_mode == "round_prefer_floor":
        return np.ceil(x - 0.5)
    if nearest_mode == "round_prefer_ceil":
        return np.floor(x + 0.5)
    if nearest_mode == "floor":
        return np.floor(x)
    if nearest_mode == "ceil":
        return np.ceil(x)
    raise ValueError(f"unknown nearest_mode {nearest_mode!r}")


def _linear_kernel(d, a, xp=np):
    return xp.clip(1 - xp.abs(d), 0, 1)


def _cubic_kernel(d, a, xp=np):
    """Keys' cubic convolution kernel with coefficient a (xp: numpy for static positions, jax.numpy for traced)."""
    d = xp.abs(d)
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return xp.where(d <= 1, near, xp.where(d < 2, far, 0.0))


def _taps(x, in_len: int, kernel, radius: int, a: float, stretch: float, exclude_outside: int):
    """Input indices and weights (each out_len x taps) of a filter centred on positions x.

    `stretch` < 1 widens the filter (antialiasing); taps start right of the pixel strictly left of x."""
    first = int(np.floor(-radius / stretch)) + 1
    index = (np.ceil(x) - 1)[:, None] + np.arange(first, 2 - first)[None, :]
    weight = kernel(stretch * (index - x[:, None]), a)
    if exclude_outside:
        weight = np.where((index < 0) | (index >= in_len), 0.0, weight)
    total = weight.sum(axis=1, keepdims=True)
    return np.clip(index, 0, in_len - 1).astype(np.int32), weight / np.where(total == 0, 1, total)


def _resize_axis(data, axis: int, out_len: int, scale: float, roi, *, mode, coordinate_transformation_mode,
                 cubic_coeff_a, exclude_outside, extrapolation_value, nearest_mode, antialias):
    in_len = data.shape[axis]
    x, outside = _source_coords(coordinate_transformation_mode, out_len, in_len, scale, roi)
    if mode == "nearest":
        index = np.clip(_nearest_index(x, nearest_mode), 0, in_len - 1).astype(np.int32)
        y = take_static(data, index, axis)
    else:
        kernel, radius = (_cubic_kernel, 2) if mode == "cubic" else (_linear_kernel, 1)
        stretch = min(scale, 1.0) if antialias else 1.0
        index, weight = _taps(x, in_len, kernel, radius, cubic_coeff_a, stretch, exclude_outside)
        # a gather per tap, weighted and added elementwise: XLA fuses them into one loop, where a gather of every tap
        # and a sum over the tap axis ran 1.6x slower in prepare and up to 70x under jax.jit's default options (a 2x
        # bilinear upsample of 64x56x56: 40 against 0.6 ms)
        weight = np.reshape(weight, weight.shape + (1,) * (data.ndim - axis - 1)).astype(data.dtype)
        y = sum(take_static(data, index[:, k], axis) * weight[:, k] for k in range(index.shape[1]))
    if outside is not None and outside.any():
        mask = np.reshape(outside, (-1,) + (1,) * (data.ndim - axis - 1))
        y = jnp.where(mask, _saturate_cast(np.float64(extrapolation_value), y.dtype), y)
    return y


def _saturate_cast(y, dtype):
    """Back to the input's type: integers round half to even, every type clips to its range."""
    if not is_float(dtype):
        y = jnp.round(y)
    info = ml_dtypes.finfo(dtype) if is_float(dtype) else ml_dtypes.iinfo(dtype)
    return jnp.clip(y, info.min, info.max).astype(dtype)


def _resize(X, roi, scales, sizes, *, antialias=0, axes=None, keep_aspect_ratio_policy="stretch", **kw):
    rank = X.ndim
    axes = list(range(rank)) if axes is None else [a % rank for a in axes]
    in_sizes = [X.shape[a] for a in axes]
    if sizes is not None and sizes.size:
        out_sizes = [int(s) for s in sizes]
        factors = [o / i for o, i in zip(out_sizes, in_sizes)]
        if keep_aspect_ratio_policy != "stretch":
            factor = min(factors) if keep_aspect_ratio_policy == "not_larger" else max(factors)
            factors = [factor] * len(axes)
            out_sizes = [int(factor * i + 0.5) for i in in_sizes]
    else:
        factors = [float(s) for s in scales]
        out_sizes = [int(f * i) for f, i in zip(factors, in_sizes)]
    rois = [(0.0, 1.0)] * len(axes) if roi is None or not roi.size else list(zip(roi[: len(axes)], roi[len(axes) :]))
    interpolating = kw["mode"] != "nearest"
    y = X.astype(np.float64 if X.dtype == np.float64 else np.float32) if interpolating else X
    for axis, out_len, factor, box in zip(axes, out_sizes, factors, rois):
        if out_len == X.shape[axis] and factor == 1 and box == (0.0, 1.0):
            continue  # identity along this axis
        y = _resize_axis(y, axis, out_len, factor, box, antialias=antialias, **kw)
    return _saturate_cast(y, X.dtype) if interpolating else y


def _legacy_resize(X, scales, mode: str):
    """Resize-10 and Upsample: asymmetric coordinates; nearest truncates when upsampling, rounds up otherwise."""
    scales = np.asarray(scales, np.float32)
    kw = dict(mode=mode, coordinate_transformation_mode="asymmetric", cubic_coeff_a=-0.75, exclude_outside=0,
              extrapolation_value=0.0)
    if mode != "nearest":
        return _resize(X, None, scales, None, nearest_mode="floor", **kw)
    y = X
    for axis, scale in enumerate(scales):
        y = _resize(y, None, scales[axis : axis + 1], None, axes=[axis], nearest_mode="floor" if scale >= 1 else "ceil",
                    **kw)
    return y


@op("Upsample", 7)
def Upsample_7(X, *, mode="nearest", scales):
    return _legacy_resize(X, scales, mode)


@op("Upsample", 9, static=("scales",))
def Upsample(X, scales, *, mode="nearest"):
    return _legacy_resize(X, scales, mode)


@op("Resize", 10, static=("scales",))
def Resize_10(X, scales, *, mode="nearest"):
    return _legacy_resize(X, scales, mode)


@op("Resize", 11, static=("roi", "scales", "sizes"))
def Resize_11(X, roi=None, scales=None, sizes=None, *, coordinate_transformation_mode="half_pixel",
              cubic_coeff_a=-0.75, exclude_outside=0, extrapolation_value=0.0, mode="nearest",
              nearest_mode="round_prefer_floor"):
    return _resize(X, roi, scales, sizes, coordinate_transformation_mode=coordinate_transformation_mode,
                   cubic_coeff_a=cubic_coeff_a, exclude_outside=exclude_outside,
                   extrapolation_value=extrapolation_value, mode=mode, nearest_mode=nearest_mode)


@op("Resize", 18, static=("roi", "scales", "sizes"))
def Resize(X, roi=None, scales=None, sizes=None, *, antialias=0, axes=None, coordinate_transformation_mode="half_pixel",
           cubic_coeff_a=-0.75, exclude_outside=0, extrapolation_value=0.0, keep_aspect_ratio_policy="stretch",
           mode="nearest", nearest_mode="round_prefer_floor"):
    return _resize(X, roi, scales, sizes, antialias=antialias, axes=axes,
                   coordinate_transformation_mode=coordinate_transformation_mode, cubic_coeff_a=cubic_coeff_a,
                   exclude_outside=exclude_outside, extrapolation_value=extrapolation_value,
                   keep_aspect_ratio_policy=keep_aspect_ratio_policy, mode=mode, nearest_mode=nearest_mode)


# GridSample: per spatial axis a few taps (index, weight); their product over axes gathers from the input.


def _reflect(x, low, high):
    """Reflect x off the borders [low, high] until it lies inside."""
    span = high - low
    if span <= 0:
        return jnp.full_like(x, low)
    d = jnp.abs(x - low)
    flips = jnp.floor(d / span)
    rest = d - flips * span
    return jnp.where(flips % 2 == 0, low + rest, high - rest)


def _grid_taps(x, size: int, mode: str, padding_mode: str, align_corners: int):
    """(index, weight, inside) per tap along one axis, for unnormalized positions x."""
    low, high = (0.0, size - 1.0) if align_corners else (-0.5, size - 0.5)
    if mode == "nearest":
        x = jnp.round(x)  # half to even, like PyTorch
    outside = (x < low) | (x > high)
    if padding_mode == "border":
        x = jnp.where(outside, jnp.clip(x, 0, size - 1), x)
    elif padding_mode == "reflection":
        x = jnp.where(outside, _reflect(x, low, high), x)
    base = jnp.floor(x)
    t = x - base
    if mode == "nearest":
        offsets, weights = [0], [jnp.ones_like(x)]
    elif mode == "linear":
        offsets, weights = [0, 1], [1 - t, t]
    else:
        offsets, weights = [-1, 0, 1, 2], [_cubic_kernel(d, -0.75, jnp) for d in (t + 1, t, 1 - t, 2 - t)]
    taps = []
    for offset, weight in zip(offsets, weights):
        i = base + offset
        if padding_mode == "reflection":
            i = _reflect(i, low, high)
        elif padding_mode == "border":
            i = jnp.clip(i, 0, size - 1)
        i = i.astype(jnp.int32)
        taps.append((jnp.clip(i, 0, size - 1), weight, (i >= 0) & (i < size)))
    return taps


def _grid_sample(X, grid, mode: str, padding_mode: str, align_corners: int):
    n, c, *sizes = X.shape
    grid = grid.astype(jnp.promote_types(grid.dtype, jnp.float32))  # positions in at least float32
    out = grid.shape[1:-1]
    per_axis = []
    for axis, size in enumerate(sizes):
        g = grid[..., len(sizes) - 1 - axis]  # the grid lists coordinates innermost axis first
        x = (g + 1) / 2 * (size - 1) if align_corners else ((g + 1) * size - 1) / 2
        per_axis.append(_grid_taps(x, size, mode, padding_mode, align_corners))
    flat = jnp.reshape(X, (n, c, -1))
    y = 0
    for taps in itertools.product(*per_axis):
        index, weight, inside = 0, 1, True
        for (i, w, ok), size in zip(taps, sizes):
            index, weight, inside = index * size + i, weight * w, inside & ok
        values = jnp.take_along_axis(flat, jnp.reshape(index, (n, 1, -1)), axis=2)
        y = y + values * jnp.reshape(jnp.where(inside, weight, 0), (n, 1, -1))
    return jnp.reshape(y, (n, c, *out)).astype(X.dtype)


@op("GridSample", 16)
def GridSample_16(X, grid, *, align_corners=0, mode="bilinear", padding_mode="zeros"):
    mode = {"bilinear": "linear", "bicubic": "cubic"}.get(mode, mode)
    return _grid_sample(X, grid, mode, padding_mode, align_corners)


@op("GridSample", 20)
def GridSample(X, grid, *, align_corners=0, mode="linear", padding_mode="zeros"):
    return _grid_sample(X, grid, mode, padding_mode, align_corners)


@op("AffineGrid", 20, static=("size",))
def AffineGrid(theta, size, *, align_corners=0):
    """theta (N, d, d+1) applied to the normalized [-1, 1] coordinates of every output point, innermost first."""
    spatial = [int(s) for s in size[2:]]
    axes = [
        np.zeros(1) if s == 1 else np.linspace(-1, 1, s) if align_corners else (2 * np.arange(s) + 1) / s - 1
        for s in spatial
    ]
    points = np.meshgrid(*axes, indexing="ij")
    base = np.stack([*points[::-1], np.ones(spatial)], axis=-1).astype(theta.dtype)
    return jnp.einsum("...k,njk->n...j", base, theta)


# RoiAlign: each output bin averages (or maxes) a grid of bilinear samples; with sampling_ratio 0 the grid's
# size depends on the roi, so samples are visited in a loop whose trip count is data (vmapped over rois).


def _bilinear_taps(p, size: int):
    """Indices (.., 2) and weights (.., 2) of the two pixels around positions p; zero weight far outside."""
    valid = (p >= -1.0) & (p <= size)
    p = jnp.maximum(p, 0)
    low = jnp.floor(p).astype(jnp.int32)
    edge = low >= size - 1
    low = jnp.where(edge, size - 1, low)
    high = jnp.where(edge, size - 1, low + 1)
    frac = jnp.where(edge, 0, p - low)
    weights = jnp.stack([1 - frac, frac], axis=-1) * valid[..., None]
    return jnp.stack([low, high], axis=-1), weights


def _roi_align(X, rois, batch_indices, *, half_pixel: bool, mode: str, output_height: int, output_width: int,
               sampling_ratio: int, spatial_scale: float):
    height, width = X.shape[2:]
    boxes = rois.astype(jnp.promote_types(rois.dtype, jnp.float32)) * spatial_scale - (0.5 if half_pixel else 0.0)
    start, extent = boxes[:, :2], boxes[:, 2:] - boxes[:, :2]  # (x, y) pairs
    if not half_pixel:
        extent = jnp.maximum(extent, 1.0)  # malformed rois are forced to 1x1
    bins = jnp.array([output_width, output_height], boxes.dtype)
    bin_size = extent / bins
    grid = jnp.full_like(extent, sampling_ratio) if sampling_ratio > 0 else jnp.ceil(extent / bins)
    grid = grid.astype(jnp.int32)

    def one_roi(b, start, bin_size, grid):
        def sample(k, acc):
            offset = (jnp.stack([k % grid[0], k // grid[0]]) + 0.5) * bin_size / grid
            xi, xw = _bilinear_taps(start[0] + jnp.arange(output_width) * bin_size[0] + offset[0], width)
            yi, yw = _bilinear_taps(start[1] + jnp.arange(output_height) * bin_size[1] + offset[1], height)
            values = X[b, :, yi[:, :, None, None], xi[None, None, :, :]]  # (out_h, 2, out_w, 2, C)
            terms = values * (yw[:, :, None, None] * xw[None, None, :, :]).astype(X.dtype)[..., None]
            if mode == "avg":
                return acc + jnp.sum(terms, axis=(1, 3))
            return jnp.maximum(acc, jnp.max(terms, axis=(1, 3)))  # the max of the weighted corners, as ONNX does

        count = grid[0] * grid[1]
        init = jnp.full((output_height, output_width, X.shape[1]), 0 if mode == "avg" else -jnp.inf, X.dtype)
        acc = lax.fori_loop(0, count, sample, init)
        acc = acc / jnp.maximum(count, 1).astype(X.dtype) if mode == "avg" else jnp.where(count > 0, acc, 0)
        return jnp.moveaxis(acc, -1, 0)

    return jax.vmap(one_roi)(batch_indices, start, bin_size, grid)


@op("RoiAlign", 10)
def RoiAlign_10(X, rois, batch_indices, *, mode="avg", output_height=1, output_width=1, sampling_ratio=0,
                spatial_scale=1.0):
    return _roi_align(X, rois, batch_indices, half_pixel=False, mode=mode, output_height=output_height,
                      output_width=output_width, sampling_ratio=sampling_ratio, spatial_scale=spatial_scale)


@op("RoiAlign", 16)
def RoiAlign(X, rois, batch_indices, *, coordinate_transformation_mode="half_pixel", mode="avg", output_height=1,
             output_width=1, sampling_ratio=0, spatial_scale=1.0):
    return _roi_align(X, rois, batch_indices, half_pixel=coordinate_transformation_mode == "half_pixel", mode=mode,
                      output_height=output_height, output_width=output_width, sampling_ratio=sampling_ratio,
                      spatial_scale=spatial_scale)


# ImageDecoder: codecs cannot run in XLA; the encoded bytes are decoded on the host by Pillow, imported only here.


@op("ImageDecoder", 20, host=True)
def ImageDecoder(encoded_stream, *, pixel_format="RGB"):
    """An encoded image (a 1-D uint8 tensor of the file's bytes, in any format Pillow reads: BMP, JPEG, JPEG 2000,
    PNG, PNM, TIFF, WebP, ...) decoded to uint8 [height, width, channels]: 3 channels for RGB and BGR, 1 for
    Grayscale (ITU-R 601-2 luma, as Pillow converts)."""
    if pixel_format not in ("RGB", "BGR", "Grayscale"):
        raise ValueError(f"pixel_format must be RGB, BGR or Grayscale, got {pixel_format!r}")
    try:
        from PIL import Image
    except ImportError as e:
        raise ImportError("ImageDecoder decodes images with Pillow, which is not installed: pip install pillow") from e
    with Image.open(io.BytesIO(np.asarray(encoded_stream, np.uint8).tobytes())) as image:
        if pixel_format == "Grayscale":
            return np.asarray(image.convert("L"))[:, :, None]
        rgb = np.asarray(image.convert("RGB"))
    return np.ascontiguousarray(rgb[:, :, ::-1]) if pixel_format == "BGR" else rgb
