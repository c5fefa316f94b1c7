"""Property tests for ops/signal.py against onnx.reference: DFT, STFT, windows, MelWeightMatrix."""

from __future__ import annotations

import numpy as np
import onnx
from hypothesis import given, settings
from hypothesis import strategies as st

from oracle import arrays, check_node, shapes

SOME = settings(max_examples=10)
TOL = dict(rtol=1e-4, atol=1e-4)


@given(st.data())
def test_dft_forward_inverse_onesided_axis_and_length(data):
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    signal = data.draw(shapes(1, 3, 6))
    inverse, onesided = data.draw(st.integers(0, 1)), data.draw(st.integers(0, 1))
    channels = 2 if inverse and onesided else data.draw(st.sampled_from([1, 2]))
    if onesided and not inverse:
        channels = 1  # RFFT takes real input
    x = data.draw(arrays(dtype, signal + (channels,), low=-5, high=5))
    axis = data.draw(st.integers(-len(signal) - 1, len(signal) - 1).filter(lambda a: a != -1 and a != len(signal)))
    length = data.draw(st.sampled_from([None, 1, 3, 4, 7]))
    opset = data.draw(st.sampled_from([17, 20]))
    dft_length = None if length is None else np.array(length, np.int64)
    if opset == 17:
        check_node("DFT", [x, dft_length], opset=17, axis=axis, inverse=inverse, onesided=onesided, **TOL)
    else:
        check_node("DFT", [x, dft_length, np.array(axis, np.int64)], opset=20, inverse=inverse, onesided=onesided,
                   **TOL)


@SOME
@given(st.data())
def test_stft_frames_window_and_onesided(data):
    length = data.draw(st.integers(4, 16))
    x = data.draw(arrays(np.float32, (data.draw(st.integers(1, 2)), length, data.draw(st.sampled_from([1, 2]))),
                         low=-5, high=5))
    frame = data.draw(st.integers(2, length))
    step = np.array(data.draw(st.integers(1, 4)), np.int64)
    window = data.draw(st.sampled_from([None, np.hanning(frame).astype(np.float32)]))
    frame_length = None if window is not None and data.draw(st.booleans()) else np.array(frame, np.int64)
    onesided = data.draw(st.integers(0, 1)) if x.shape[-1] == 1 else 0
    check_node("STFT", [x, step, window, frame_length], opset=17, onesided=onesided, **TOL)


@given(st.data())
def test_windows(data):
    op_type = data.draw(st.sampled_from(["HannWindow", "HammingWindow", "BlackmanWindow"]))
    size = np.array(data.draw(st.integers(2, 40)), data.draw(st.sampled_from([np.int32, np.int64])))
    datatype = data.draw(st.sampled_from([onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE]))
    check_node(op_type, [size], opset=17, periodic=data.draw(st.integers(0, 1)), output_datatype=datatype, **TOL)


@SOME
@given(st.data())
def test_mel_weight_matrix(data):
    bins = np.array(data.draw(st.integers(1, 10)), np.int32)
    length = np.array(data.draw(st.sampled_from([16, 32, 64, 256])), np.int32)
    rate = np.array(data.draw(st.sampled_from([8000, 16000])), np.int32)
    low = np.array(data.draw(st.sampled_from([0.0, 20.0, 100.0])), np.float32)
    high = np.array(rate / 2 - data.draw(st.sampled_from([0.0, 500.0])), np.float32)
    check_node("MelWeightMatrix", [bins, length, rate, low, high], opset=17, **TOL)
