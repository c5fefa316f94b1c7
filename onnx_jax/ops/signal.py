"""Signal ops: DFT, STFT, the Hann/Hamming/Blackman windows, MelWeightMatrix.

Complex tensors are real ones with a trailing axis of 1 (real) or 2 (real, imaginary)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from ..dtypes import to_numpy_dtype
from ..registry import op


def _dft(x, dft_length, axis: int, inverse: int, onesided: int):
    """The DFT of x's complex values along `axis`; onesided keeps half of a forward spectrum or, inverse,
    takes half a spectrum to a real signal (IRFFT)."""
    axis %= x.ndim
    compute = jnp.promote_types(x.dtype, jnp.float32)
    values = x.astype(compute)
    signal = lax.complex(values[..., 0], values[..., 1]) if x.shape[-1] == 2 else values[..., 0]
    if dft_length is not None:
        n = int(dft_length)
    else:
        n = 2 * (x.shape[axis] - 1) if inverse and onesided else x.shape[axis]
    if inverse and onesided:
        return jnp.fft.irfft(signal, n, axis=axis)[..., None].astype(x.dtype)
    if inverse or jnp.iscomplexobj(signal):
        spectrum = (jnp.fft.ifft if inverse else jnp.fft.fft)(signal, n, axis=axis)
        if onesided:
            spectrum = lax.slice_in_dim(spectrum, 0, n // 2 + 1, axis=axis)
    else:
        spectrum = jnp.fft.rfft(signal, n, axis=axis)
        if not onesided:  # the other half by conjugate symmetry: X[n - k] = conj(X[k])
            mirrored = jnp.flip(lax.slice_in_dim(spectrum, 1, (n + 1) // 2, axis=axis), axis)
            spectrum = jnp.concatenate([spectrum, jnp.conj(mirrored)], axis=axis)
    return jnp.stack([spectrum.real, spectrum.imag], axis=-1).astype(x.dtype)


@op("DFT", 17, static=("dft_length",))
def DFT_17(input, dft_length=None, *, axis=1, inverse=0, onesided=0):
    return _dft(input, dft_length, axis, inverse, onesided)


@op("DFT", 20, static=("dft_length", "axis"))
def DFT(input, dft_length=None, axis=None, *, inverse=0, onesided=0):
    return _dft(input, dft_length, -2 if axis is None else int(axis), inverse, onesided)


@op("STFT", 17, static=("frame_step", "frame_length"))
def STFT(signal, frame_step, window=None, frame_length=None, *, onesided=1):
    """DFTs of the windowed frames of a [batch, length, 1 or 2] signal: [batch, frames, bins, 2]."""
    length = signal.shape[1]
    if frame_length is not None:
        n = int(frame_length)
    else:
        n = window.shape[0] if window is not None else length
    starts = np.arange((length - n) // int(frame_step) + 1) * int(frame_step)
    frames = signal[:, starts[:, None] + np.arange(n)]  # [batch, frames, n, 1 or 2]
    if window is not None:
        frames = frames * jnp.reshape(window, (n, 1)).astype(signal.dtype)
    return _dft(frames, n, 2, 0, onesided)


def _cosine_window(size, periodic: int, output_datatype: int, coefficients: tuple[float, ...]):
    """sum_k c_k cos(2 pi k n / N), N = size (periodic) or size - 1 (symmetric)."""
    n = int(size)
    phase = 2 * np.pi * np.arange(n) / (n if periodic else n - 1)
    window = sum(c * np.cos(k * phase) for k, c in enumerate(coefficients))
    return window.astype(to_numpy_dtype(output_datatype))


@op("HannWindow", 17, static=("size",))
def HannWindow(size, *, output_datatype=1, periodic=1):
    return _cosine_window(size, periodic, output_datatype, (0.5, -0.5))


@op("HammingWindow", 17, static=("size",))
def HammingWindow(size, *, output_datatype=1, periodic=1):
    return _cosine_window(size, periodic, output_datatype, (25 / 46, -21 / 46))


@op("BlackmanWindow", 17, static=("size",))
def BlackmanWindow(size, *, output_datatype=1, periodic=1):
    return _cosine_window(size, periodic, output_datatype, (0.42, -0.5, 0.08))


@op("MelWeightMatrix", 17, static=("num_mel_bins", "dft_length", "sample_rate", "lower_edge_hertz", "upper_edge_hertz"))
def MelWeightMatrix(num_mel_bins, dft_length, sample_rate, lower_edge_hertz, upper_edge_hertz, *, output_datatype=1):
    """Triangular filters with peak 1 from the onesided DFT bins [dft_length // 2 + 1] to num_mel_bins mel bands."""
    bands, length = int(num_mel_bins), int(dft_length)
    low, high = (2595 * np.log10(1 + float(f) / 700) for f in (lower_edge_hertz, upper_edge_hertz))
    # the mel range is cut in num_mel_bins + 2 steps, not + 1, as onnx's reference and onnxruntime do
    mel = low + np.arange(bands + 2) * (high - low) / (bands + 2)
    hertz = 700 * (10 ** (mel / 2595) - 1)
    edges = np.floor((length + 1) * hertz / int(sample_rate)).astype(np.int64)
    left, center, right = edges[:-2], edges[1:-1], edges[2:]
    j = np.arange(length // 2 + 1)[:, None]
    rising = np.where(center > left, (j - left) / np.maximum(center - left, 1), 1.0)
    falling = (right - j) / np.maximum(right - center, 1)
    weights = np.where((j >= left) & (j <= center), rising, np.where((j > center) & (j < right), falling, 0.0))
    return weights.astype(to_numpy_dtype(output_datatype))
