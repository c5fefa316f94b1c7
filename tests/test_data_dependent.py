"""Host ops (output shape depends on data) against onnx.reference."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from oracle import arrays, check_node, shapes


@settings(max_examples=15)
@given(st.data())
def test_nonzero(data):
    x = data.draw(arrays(np.int32, data.draw(shapes(1, 3)), low=-1, high=1))
    check_node("NonZero", [x])


@settings(max_examples=15)
@given(st.data(), st.sampled_from([None, 0]), st.booleans())
def test_unique(data, axis, sort):
    x = data.draw(arrays(np.int64, data.draw(shapes(1, 2, max_side=6)), low=0, high=3))
    attrs = {"sorted": int(sort)} | ({"axis": axis} if axis is not None else {})
    check_node("Unique", [x], 4, **attrs)


@settings(max_examples=15)
@given(st.data(), st.sampled_from([None, 0, 1]))
def test_compress(data, axis):
    x = data.draw(arrays(np.float32, (3, 4)))
    length = 12 if axis is None else x.shape[axis]
    condition = data.draw(arrays(np.bool_, (data.draw(st.integers(1, length)),)))
    check_node("Compress", [x, condition], **({"axis": axis} if axis is not None else {}))


@settings(max_examples=15)
@given(st.data(), st.sampled_from([0, 1]))
def test_non_max_suppression(data, center_point_box):
    n = data.draw(st.integers(1, 6))
    corner = data.draw(arrays(np.float32, (1, n, 2), low=0, high=5))
    size = data.draw(arrays(np.float32, (1, n, 2), low=0.5, high=3))
    if center_point_box:
        boxes = np.concatenate([corner, size], -1)
    else:
        boxes = np.concatenate([corner, corner + size], -1)[..., [1, 0, 3, 2]]
    scores = data.draw(arrays(np.float32, (1, 2, n), low=0, high=1))
    check_node("NonMaxSuppression", [boxes, scores, np.array([3], np.int64), np.array([0.4], np.float32),
                                     np.array([0.2], np.float32)], center_point_box=center_point_box)
