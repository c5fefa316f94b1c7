"""Ops whose output shape depends on input values. They run on the host, on concrete numpy data,
between two compiled segments of the graph (a graph break), or fold when their inputs are static."""

from __future__ import annotations

import numpy as np

from ..registry import op


@op("NonZero", 9, host=True)
def NonZero(X):
    return np.array(np.nonzero(np.asarray(X)), dtype=np.int64).reshape(np.ndim(X), -1)


@op("Compress", 9, host=True)
def Compress(input, condition, *, axis=None):
    return np.compress(np.asarray(condition, bool), np.asarray(input), axis=axis)


@op("Unique", 11, host=True)
def Unique(X, *, axis=None, sorted=1):
    X = np.asarray(X)
    values, first, inverse, counts = np.unique(X, return_index=True, return_inverse=True, return_counts=True, axis=axis)
    if not sorted:  # order of first occurrence
        order = np.argsort(first, kind="stable")
        values = np.take(values, order, axis=0 if axis is None else axis)
        first, counts = first[order], counts[order]
        inverse = np.argsort(order)[inverse]
    as_int64 = lambda a: np.asarray(a, np.int64).reshape(-1)  # noqa: E731
    return values, as_int64(first), as_int64(inverse), as_int64(counts)


def _corners(boxes: np.ndarray, center_point_box: int) -> np.ndarray:
    """Boxes as [y1, x1, y2, x2] with y1 <= y2 and x1 <= x2."""
    if center_point_box:
        xc, yc, w, h = np.moveaxis(boxes, -1, 0)
        return np.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], -1)
    y1, x1, y2, x2 = np.moveaxis(boxes, -1, 0)
    return np.stack([np.minimum(y1, y2), np.minimum(x1, x2), np.maximum(y1, y2), np.maximum(x1, x2)], -1)


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    top_left = np.maximum(box[:2], others[:, :2])
    bottom_right = np.minimum(box[2:], others[:, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=-1)
    area = lambda b: np.prod(b[..., 2:] - b[..., :2], axis=-1)  # noqa: E731
    union = area(box) + area(others) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0)


@op("NonMaxSuppression", 10, host=True)
def NonMaxSuppression(boxes, scores, max_output_boxes_per_class=None, iou_threshold=None, score_threshold=None,
                      *, center_point_box=0):
    boxes, scores = _corners(np.asarray(boxes, np.float64), center_point_box), np.asarray(scores, np.float64)
    limit = int(np.reshape(max_output_boxes_per_class, ())) if max_output_boxes_per_class is not None else 0
    iou_limit = float(np.reshape(iou_threshold, ())) if iou_threshold is not None else 0.0
    selected = []
    for b, c in np.ndindex(scores.shape[:2]):
        order = np.argsort(-scores[b, c], kind="stable")
        if score_threshold is not None:
            order = order[scores[b, c, order] > float(np.reshape(score_threshold, ()))]
        kept: list[int] = []
        for i in order:
            if len(kept) >= limit:
                break
            if not kept or np.all(_iou(boxes[b, i], boxes[b, kept]) <= iou_limit):
                kept.append(int(i))
        selected += [(b, c, i) for i in kept]
    return np.array(selected, np.int64).reshape(-1, 3)
