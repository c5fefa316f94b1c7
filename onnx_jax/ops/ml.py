"""ai.onnx.ml ops on numbers: tree ensembles, linear and SVM models, and the feature transformers.

Results follow onnxruntime, the runtime these models are exported for, including its choices where the spec is
vague (binary classifiers, a single target's post transform, the approximate PROBIT).

Strings never enter XLA. A classifier with string labels computes label *indices* compiled, and a host tail turns
them into strings (see registry's `host_tail`). Ops that read or make strings (LabelEncoder and OneHotEncoder
with string keys, values or categories, CategoryMapper, ZipMap, DictVectorizer) run on the host with numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..registry import op
from .nn import softmax
from .reduction import arg_extreme

# Post transforms


def _probit(p):
    """sqrt(2) * erfinv(2p - 1), with the approximate erfinv (Winitzki, a = 0.147) that onnxruntime uses."""
    x = 2 * p - 1
    log = jnp.log((1 - x) * (1 + x))
    v = 2 / (math.pi * 0.147) + 0.5 * log
    return math.sqrt(2) * jnp.sign(x) * jnp.sqrt(jnp.sqrt(v * v - log / 0.147) - v)


def _softmax_zero(s):
    """Softmax over the non-zero scores; zero scores stay zero."""
    nonzero = jnp.abs(s) > 1e-7
    e = jnp.where(nonzero, jnp.exp(s - jnp.max(s, -1, keepdims=True)), 0)
    return e / jnp.sum(e, -1, keepdims=True)


_TRANSFORMS = {
    "NONE": lambda s: s,
    "LOGISTIC": jax.nn.sigmoid,
    "SOFTMAX": lambda s: softmax(s, (-1,)),
    "SOFTMAX_ZERO": _softmax_zero,
    "PROBIT": _probit,
}


def _transform(scores, post_transform: str):
    """onnxruntime applies only PROBIT when there is a single score per row."""
    if scores.shape[-1] == 1 and post_transform != "PROBIT":
        return scores
    return _TRANSFORMS[post_transform](scores)


def _rows(X, dtype=None):
    """X as a [rows, features] matrix (a vector is one row), optionally cast."""
    X = jnp.reshape(X, (1, -1)) if X.ndim == 1 else X
    return X if dtype is None else X.astype(dtype)


def _compute_dtype(X):
    return jnp.float64 if X.dtype == jnp.float64 else jnp.float32


def _pick(*candidates):
    """The first attribute given (tensor forms first), as a numpy array, or None."""
    return next((np.asarray(c) for c in candidates if c is not None), None)


# Strings


def _string_labels(node):
    """A classifier's host tail: label indices (its first output, computed compiled) become its string labels."""
    labels = node.attrs.get("classlabels_strings")
    if labels is None:
        return None
    table = np.array(list(labels), object)

    def to_strings(results: tuple) -> tuple:
        return (table[np.asarray(results[0], np.int64)], *results[1:])

    return to_strings


def _class_labels(ints, strings) -> np.ndarray:
    """The int64 labels a classifier computes: its int labels, or the indices of its string labels."""
    if strings is not None:
        return np.arange(len(strings), dtype=np.int64)
    return np.asarray(ints if ints is not None else (), np.int64)


def _is_text(values) -> bool:
    return values is not None and (np.asarray(values).dtype.kind in "OSU" or (
        isinstance(values, tuple) and any(isinstance(v, (str, bytes)) for v in values)))


def _text_array(values) -> np.ndarray:
    return np.array([v.decode() if isinstance(v, bytes) else v for v in np.asarray(values, object).reshape(-1)],
                    object)


def _lookup(X, keys: np.ndarray, values: np.ndarray, default) -> np.ndarray:
    """numpy: each element of X equal to a key becomes that key's value (the first listed wins), else `default`;
    a NaN key matches NaN."""
    X = np.asarray(X)
    table, nan_value = {}, None
    for k, v in zip(keys.tolist(), values.tolist()):
        if isinstance(k, float) and math.isnan(k):
            nan_value = v if nan_value is None else nan_value
        else:
            table.setdefault(k.decode() if isinstance(k, bytes) else k, v)
    out_dtype = object if values.dtype == object else values.dtype

    def one(x):
        if isinstance(x, float) and math.isnan(x):
            return default if nan_value is None else nan_value
        return table.get(x.decode() if isinstance(x, bytes) else x, default)

    flat = [one(x) for x in X.reshape(-1).tolist()]
    return np.array(flat, out_dtype).reshape(X.shape) if flat else np.empty(X.shape, out_dtype)


# Tree ensembles

_MODE_CODES = {"BRANCH_LEQ": 0, "BRANCH_LT": 1, "BRANCH_GTE": 2, "BRANCH_GT": 3, "BRANCH_EQ": 4, "BRANCH_NEQ": 5}
_MEMBER = 6  # TreeEnsemble's BRANCH_MEMBER
_COMPARE = (jnp.less_equal, jnp.less, jnp.greater_equal, jnp.greater, jnp.equal, jnp.not_equal)


@dataclass(frozen=True)
class _Forest:
    """All trees as flat node tables. Leaves point to themselves, so descending `depth` times from the roots
    lands every row on its leaf in every tree at once."""

    roots: np.ndarray  # [trees]
    feature: np.ndarray  # [nodes]
    split: np.ndarray  # [nodes]
    mode: np.ndarray  # [nodes], codes of _MODE_CODES or _MEMBER
    true: np.ndarray  # [nodes], next node when the comparison holds
    false: np.ndarray  # [nodes]
    missing_true: np.ndarray  # [nodes] bool: a NaN feature takes the true branch
    members: np.ndarray | None  # [nodes, m] the sets of BRANCH_MEMBER nodes, padded with NaN
    weights: np.ndarray  # [nodes, targets] leaf weights, already combined per target by the aggregate function
    scored: np.ndarray  # [nodes, targets] bool: the leaf carries a weight for the target
    depth: int

    def leaves(self, X):
        """The leaf each row reaches in each tree, [rows, trees]."""
        branch = self.true != np.arange(len(self.true))
        used = self.feature[branch]
        if used.size and (used.min() < 0 or used.max() >= X.shape[1]):
            bad = int(used[(used < 0) | (used >= X.shape[1])][0])
            raise ValueError(f"a tree node reads feature {bad}, but the input has {X.shape[1]} features")
        feature = np.where(branch, self.feature, 0).astype(np.int32)  # leaves read feature 0, unused
        true, false = self.true.astype(np.int32), self.false.astype(np.int32)
        mode = jnp.asarray(self.mode, jnp.int8)
        branch_modes = np.unique(self.mode[branch])
        pairs = X.shape[0] * len(self.roots)
        if self.split.dtype == np.float32 and (not isinstance(pairs, int) or pairs >= _PACKED_FROM):
            # one row of the table per node: a descent step reads one cache line per (row, tree), not four
            table = jnp.asarray(np.stack([feature, self.split.view(np.int32), true, false], axis=1))

            def fields(node):
                row = _at(table, node)
                return row[..., 0], lax.bitcast_convert_type(row[..., 1], jnp.float32), row[..., 2], row[..., 3]
        else:
            tables = (jnp.asarray(feature), jnp.asarray(self.split), jnp.asarray(true), jnp.asarray(false))

            def fields(node):
                return tuple(_at(t, node) for t in tables)

        def step(_, node):
            feature_of, threshold, true_of, false_of = fields(node)
            x = jnp.take_along_axis(X, feature_of, axis=1, mode="promise_in_bounds", wrap_negative_indices=False)
            if len(branch_modes) == 1 and branch_modes[0] != _MEMBER:
                go = _COMPARE[branch_modes[0]](x, threshold)
            else:
                go = jnp.zeros(x.shape, bool)
                for m in branch_modes[branch_modes != _MEMBER]:
                    go |= (_at(mode, node) == m) & _COMPARE[m](x, threshold)
                if self.members is not None:
                    go |= jnp.any(x[..., None] == _at(jnp.asarray(self.members), node), axis=-1)
            if self.missing_true.any():
                go |= _at(jnp.asarray(self.missing_true), node) & jnp.isnan(x)
            return jnp.where(go, true_of, false_of)

        start = jnp.broadcast_to(jnp.asarray(self.roots, jnp.int32), (X.shape[0], len(self.roots)))
        return lax.fori_loop(0, self.depth, step, start)

    def scores(self, X, aggregate: str):
        """(scores, scored) per row and target: the leaves' weights combined over the trees (not yet averaged);
        targets no leaf scored are 0."""
        node = self.leaves(X)
        tree_target = self._tree_target()
        if tree_target is not None and aggregate in ("SUM", "AVERAGE"):  # one weight per leaf: a matmul
            onehot = np.eye(self.weights.shape[1], dtype=self.weights.dtype)[tree_target]
            leaf = _at(jnp.asarray(self.weights.sum(1)), node)
            scored = jnp.broadcast_to(jnp.asarray(onehot.any(0)), (X.shape[0], onehot.shape[1]))
            if len(tree_target) <= _ADDED_UP_TO:  # each target's trees added column by column
                zero = jnp.zeros(leaf.shape[:1], leaf.dtype)
                trees = [np.flatnonzero(tree_target == t) for t in range(onehot.shape[1])]
                return jnp.stack([sum((leaf[:, k] for k in ks), zero) for ks in trees], axis=1), scored
            if leaf.size * onehot.shape[1] <= _SUMMED_UP_TO:  # a library matmul's call costs more than the sums
                return jnp.sum(leaf[..., None] * jnp.asarray(onehot), axis=1), scored
            return leaf @ jnp.asarray(onehot), scored
        weights, scored = _at(jnp.asarray(self.weights), node), _at(jnp.asarray(self.scored), node)
        any_scored = scored.any(1)
        if aggregate in ("SUM", "AVERAGE"):
            return weights.sum(1), any_scored
        worst, pick = (jnp.inf, jnp.min) if aggregate == "MIN" else (-jnp.inf, jnp.max)
        best = pick(jnp.where(scored, weights, worst), axis=1)
        return jnp.where(any_scored, best, 0).astype(weights.dtype), any_scored

    def _tree_target(self) -> np.ndarray | None:
        """The one target of each tree when every leaf carries exactly one weight, all for that target; else None."""
        leaf = self.true == np.arange(len(self.true))
        if (self.scored[leaf].sum(1) != 1).any():
            return None
        target = np.full(len(self.true), -1)
        target[leaf] = self.scored[leaf].argmax(1)
        tree_of = self._tree_of()
        per_tree = np.full(len(self.roots), -1)
        per_tree[tree_of[leaf]] = target[leaf]
        return per_tree if (per_tree[tree_of[leaf]] == target[leaf]).all() and (per_tree >= 0).all() else None

    def _tree_of(self) -> np.ndarray:
        """The tree of every node reachable from a root."""
        tree = np.full(len(self.true), -1)
        frontier, owner = self.roots, np.arange(len(self.roots))
        while len(frontier):
            tree[frontier] = owner
            branch = self.true[frontier] != frontier
            frontier = np.concatenate([self.true[frontier[branch]], self.false[frontier[branch]]])
            owner = np.concatenate([owner[branch], owner[branch]])
        return tree


# from this many (row, tree) pairs per descent step the node tables are packed into one (the 100-tree forest on
# 10,000 rows 0.69-0.78x); for a few rows the packed gather cost more than it saved (a 4-row model 1.1-1.3x slower)
_PACKED_FROM = 4096


# up to this many leaf weights x targets, the per-target sums of the leaves' weights are a fused multiply-add, not a
# matmul (treeensemble-sklearn-ml, 4 rows x 30 trees x 3 classes, went to YNNPACK: 0.86x of its call without)
_SUMMED_UP_TO = 4096
# up to this many trees, each target's sum is added column by column, elementwise: XLA fuses it with the post
# transform and the label that follow (xgboost-classifier-ml 0.89x, treeensemble-sklearn-ml 0.97x: a kernel less)
_ADDED_UP_TO = 64


def _at(table, index):
    """table[index] for indices known to be in range (nodes of the forest, features checked at trace): XLA's gather
    without the bounds checks and negative-index wrapping of jnp indexing, which cost the descent loop ~20%."""
    return table.at[index].get(mode="promise_in_bounds", wrap_negative_indices=False)


def _depth(roots: np.ndarray, true: np.ndarray, false: np.ndarray) -> int:
    depth, frontier = 0, np.unique(roots)
    while True:
        branch = frontier[true[frontier] != frontier]
        if not len(branch):
            return depth
        frontier = np.unique(np.concatenate([true[branch], false[branch]]))
        depth += 1
        if depth > len(true):
            raise ValueError("the trees have a cycle")


def _leaf_weights(n_nodes: int, n_targets: int, nodes, targets, weights, aggregate: str, dtype):
    """[nodes, targets] weights (several weights of a leaf for one target combine like the trees do) and flags."""
    scored = np.zeros((n_nodes, n_targets), bool)
    scored[nodes, targets] = True
    if aggregate in ("MIN", "MAX"):
        table = np.full((n_nodes, n_targets), np.inf if aggregate == "MIN" else -np.inf, dtype)
        (np.minimum if aggregate == "MIN" else np.maximum).at(table, (nodes, targets), weights)
        table[~scored] = 0
    else:
        table = np.zeros((n_nodes, n_targets), dtype)
        np.add.at(table, (nodes, targets), weights)
    return table, scored


def _forest_from_ids(treeids, nodeids, featureids, modes, values, truenodeids, falsenodeids, missing, w_treeids,
                     w_nodeids, w_targets, w_weights, n_targets: int, aggregate: str, dtype) -> _Forest:
    """TreeEnsembleClassifier/Regressor's node tuples; a tree's root is its first node listed, as in onnxruntime."""
    treeids, nodeids = np.asarray(treeids, np.int64), np.asarray(nodeids, np.int64)
    n = len(treeids)
    span = int(nodeids.max(initial=0)) + 1
    keys = treeids * span + nodeids
    order = np.argsort(keys, kind="stable")

    def find(trees, ids):
        wanted = np.asarray(trees, np.int64) * span + np.asarray(ids, np.int64)
        pos = np.clip(np.searchsorted(keys[order], wanted), 0, n - 1)
        return order[pos], keys[order][pos] == wanted

    modes = np.asarray(modes)
    leaf = modes == "LEAF"
    true, true_ok = find(treeids, truenodeids)
    false, false_ok = find(treeids, falsenodeids)
    if not (true_ok | leaf).all() or not (false_ok | leaf).all():
        raise ValueError("a node's child is not among the nodes of its tree")
    self_ = np.arange(n)
    true, false = np.where(leaf, self_, true), np.where(leaf, self_, false)
    roots = np.sort(np.unique(treeids, return_index=True)[1])
    w_nodes, found = find(w_treeids, w_nodeids)
    keep = found & leaf[w_nodes]  # onnxruntime ignores weights on branch nodes
    weights, scored = _leaf_weights(n, n_targets, w_nodes[keep], np.asarray(w_targets)[keep],
                                    np.asarray(w_weights, dtype)[keep], aggregate, dtype)
    mode = np.select([modes == name for name in _MODE_CODES], list(_MODE_CODES.values()), 0).astype(np.int8)
    tracks = np.zeros(n, bool)
    if missing is not None:
        tracks[: len(missing)] = np.asarray(missing, bool)[:n]
    return _Forest(roots, np.asarray(featureids, np.int64), np.asarray(values, dtype), mode, true, false, tracks,
                   None, weights, scored, _depth(roots, true, false))


def _ensemble_scores(X, aggregate: str, n_targets: int, forest_args: dict):
    """(scores, scored) of TreeEnsembleClassifier/Regressor, averaged but without base values."""
    X = _rows(X, _compute_dtype(X))
    forest = _forest_from_ids(**forest_args, n_targets=n_targets, aggregate=aggregate, dtype=np.dtype(X.dtype))
    scores, scored = forest.scores(X, aggregate)
    return (scores / len(forest.roots) if aggregate == "AVERAGE" else scores), scored


def _add_base(scores, scored, base_values):
    """onnxruntime adds a target's base value only where some leaf scored it: other targets stay 0."""
    if base_values is None or len(base_values) != scores.shape[1]:
        return scores
    return jnp.where(scored, scores + np.asarray(base_values, scores.dtype), 0)


@op("TreeEnsembleRegressor", 1, domain="ai.onnx.ml")
def TreeEnsembleRegressor(X, *, aggregate_function="SUM", base_values=None, base_values_as_tensor=None,
                          n_targets=None, nodes_falsenodeids=None, nodes_featureids=None, nodes_hitrates=None,
                          nodes_hitrates_as_tensor=None, nodes_missing_value_tracks_true=None, nodes_modes=None,
                          nodes_nodeids=None, nodes_treeids=None, nodes_truenodeids=None, nodes_values=None,
                          nodes_values_as_tensor=None, post_transform="NONE", target_ids=None, target_nodeids=None,
                          target_treeids=None, target_weights=None, target_weights_as_tensor=None):
    """Float32 scores [rows, n_targets]."""
    n_targets = n_targets or int(np.max(target_ids, initial=0)) + 1
    forest_args = dict(
        treeids=nodes_treeids, nodeids=nodes_nodeids, featureids=nodes_featureids, modes=nodes_modes,
        values=_pick(nodes_values_as_tensor, nodes_values), truenodeids=nodes_truenodeids,
        falsenodeids=nodes_falsenodeids, missing=nodes_missing_value_tracks_true, w_treeids=target_treeids,
        w_nodeids=target_nodeids, w_targets=target_ids, w_weights=_pick(target_weights_as_tensor, target_weights),
    )
    scores, scored = _ensemble_scores(X, aggregate_function, n_targets, forest_args)
    scores = _add_base(scores, scored, _pick(base_values_as_tensor, base_values))
    return _transform(scores, post_transform).astype(jnp.float32)


@op("TreeEnsembleClassifier", 1, domain="ai.onnx.ml", host_tail=_string_labels)
def TreeEnsembleClassifier(X, *, base_values=None, base_values_as_tensor=None, class_ids=None, class_nodeids=None,
                           class_treeids=None, class_weights=None, class_weights_as_tensor=None,
                           classlabels_int64s=None, classlabels_strings=None, nodes_falsenodeids=None,
                           nodes_featureids=None, nodes_hitrates=None, nodes_hitrates_as_tensor=None,
                           nodes_missing_value_tracks_true=None, nodes_modes=None, nodes_nodeids=None,
                           nodes_treeids=None, nodes_truenodeids=None, nodes_values=None,
                           nodes_values_as_tensor=None, post_transform="NONE"):
    """Returns (labels [rows], float32 scores [rows, classes]); string labels as their indices (see the tail)."""
    labels = _class_labels(classlabels_int64s, classlabels_strings)
    weights = _pick(class_weights_as_tensor, class_weights)
    forest_args = dict(
        treeids=nodes_treeids, nodeids=nodes_nodeids, featureids=nodes_featureids, modes=nodes_modes,
        values=_pick(nodes_values_as_tensor, nodes_values), truenodeids=nodes_truenodeids,
        falsenodeids=nodes_falsenodeids, missing=nodes_missing_value_tracks_true, w_treeids=class_treeids,
        w_nodeids=class_nodeids, w_targets=class_ids, w_weights=weights,
    )
    scores, scored = _ensemble_scores(X, "SUM", len(labels), forest_args)
    base = _pick(base_values_as_tensor, base_values)
    if len(labels) == 2:
        binary = len(np.unique(class_ids)) == 1
        return _binary_tree_classifier(scores, scored, base, labels, post_transform, binary, bool((weights >= 0).all()))
    if base is not None and len(base) == len(labels):  # every class is scored then
        scores, scored = scores + base.astype(scores.dtype), jnp.ones_like(scored)
    label = _best_label(jnp.where(scored, scores, -jnp.inf), labels)
    return label, _transform(scores, post_transform).astype(jnp.float32)


def _best_label(scores, labels: np.ndarray):
    """The label of each row's highest score, the first of ties (a NaN wins, as in jnp.argmax)."""
    index = arg_extreme(scores, 1, largest=True)
    return index if np.array_equal(labels, np.arange(len(labels))) else jnp.asarray(labels)[index]


def _binary_tree_classifier(scores, scored, base, labels, post_transform, binary: bool, all_positive: bool):
    """onnxruntime's two-class rules: which score decides the label, and how a row that scored only the first
    class gets its two columns. `binary`: the weights are all for one class."""
    s0, s1, has0, has1 = scores[:, 0], scores[:, 1], scored[:, 0], scored[:, 1]
    if base is not None and len(base) == 2:  # onnxruntime derives the scores from the first class's sum here
        base = base.astype(scores.dtype)
        s1, s0 = jnp.where(has1, base[1] + s0, s1 + base[1]), jnp.where(has1, -(base[1] + s0), s0 + base[0])
        two_columns = jnp.ones_like(has1)
    elif base is not None and len(base) == 1:  # onnxruntime adds the one base value to the first class's score
        s0, has0 = s0 + base.astype(scores.dtype)[0], jnp.ones_like(has0)
        two_columns = has1
    else:
        two_columns = has1
    decisive = jnp.where(has1, s1, jnp.where(has0, s0, 0))
    if binary:
        label = jnp.where(decisive > (0.5 if all_positive else 0), labels[1], labels[0])
    else:
        label = jnp.where(decisive > 0, 1, 0).astype(jnp.int64)  # onnxruntime's literal 0/1, not the labels
    both = _TRANSFORMS[post_transform](jnp.stack([jnp.where(has0, s0, 0), jnp.where(has1, s1, 0)], axis=1))
    if post_transform == "PROBIT":
        one = jnp.stack([_probit(s0), s0], axis=1)
    elif post_transform == "LOGISTIC":
        one = jax.nn.sigmoid(jnp.stack([-s0, s0], axis=1))
    else:
        one = jnp.stack([1 - s0 if binary and all_positive else -s0, s0], axis=1)
    return label, jnp.where(two_columns[:, None], both, one).astype(jnp.float32)


_AGGREGATES = ("AVERAGE", "SUM", "MIN", "MAX")
_POST_TRANSFORMS = ("NONE", "SOFTMAX", "LOGISTIC", "SOFTMAX_ZERO", "PROBIT")


@op("TreeEnsemble", 5, domain="ai.onnx.ml")
def TreeEnsemble(X, *, aggregate_function=1, leaf_targetids, leaf_weights, membership_values=None, n_targets=None,
                 nodes_falseleafs, nodes_falsenodeids, nodes_featureids, nodes_hitrates=None,
                 nodes_missing_value_tracks_true=None, nodes_modes, nodes_splits, nodes_trueleafs, nodes_truenodeids,
                 post_transform=0, tree_roots):
    """Scores [rows, n_targets] in X's type. Node i is index i, leaf j is index len(nodes) + j of one table."""
    aggregate = _AGGREGATES[aggregate_function]
    dtype = np.dtype(np.float64 if X.dtype == jnp.float64 else np.float32)
    n, n_leaves = len(nodes_featureids), len(leaf_targetids)
    leaf_ids = n + np.arange(n_leaves)
    true = np.concatenate([np.where(nodes_trueleafs, n, 0) + nodes_truenodeids, leaf_ids])
    false = np.concatenate([np.where(nodes_falseleafs, n, 0) + nodes_falsenodeids, leaf_ids])
    roots = np.asarray(tree_roots)
    lone_leaf = (np.asarray(nodes_trueleafs)[roots] & np.asarray(nodes_falseleafs)[roots]).astype(bool) & (
        np.asarray(nodes_truenodeids)[roots] == np.asarray(nodes_falsenodeids)[roots])
    roots = np.where(lone_leaf, n + roots, roots)  # a tree that is a single leaf names that leaf
    mode = np.concatenate([np.asarray(nodes_modes, np.int8), np.zeros(n_leaves, np.int8)])
    n_targets = n_targets or int(np.max(leaf_targetids, initial=0)) + 1
    weights, scored = _leaf_weights(n + n_leaves, n_targets, leaf_ids, np.asarray(leaf_targetids),
                                    np.asarray(leaf_weights, dtype), aggregate, dtype)
    missing = np.zeros(n + n_leaves, bool)
    if nodes_missing_value_tracks_true is not None:
        missing[:n] = np.asarray(nodes_missing_value_tracks_true, bool)
    forest = _Forest(roots, np.concatenate([nodes_featureids, np.zeros(n_leaves, np.int64)]),
                     np.concatenate([np.asarray(nodes_splits, dtype), np.zeros(n_leaves, dtype)]), mode, true, false,
                     missing, _member_sets(mode, membership_values, dtype), weights, scored, _depth(roots, true, false))
    scores, _ = forest.scores(_rows(X, dtype), aggregate)
    scores = scores / len(roots) if aggregate == "AVERAGE" else scores
    return _transform(scores, _POST_TRANSFORMS[post_transform]).astype(X.dtype)


def _member_sets(mode: np.ndarray, membership_values, dtype) -> np.ndarray | None:
    """[nodes, m]: each BRANCH_MEMBER node's NaN-terminated run of membership_values, padded with NaN."""
    members = np.flatnonzero(mode == _MEMBER)
    if not len(members):
        return None
    values = np.asarray(membership_values, dtype)
    runs = np.split(values, np.flatnonzero(np.isnan(values)) + 1)
    sets = [run[~np.isnan(run)] for run in runs[: len(members)]]
    table = np.full((len(mode), max(len(s) for s in sets)), np.nan, dtype)
    for node, s in zip(members, sets):
        table[node, : len(s)] = s
    return table


# Linear models and SVMs


@op("LinearRegressor", 1, domain="ai.onnx.ml")
def LinearRegressor(X, *, coefficients=None, intercepts=None, post_transform="NONE", targets=1):
    """Float32 X @ coefficients^T + intercepts, [rows, targets]."""
    x = _rows(X, jnp.float32)
    y = x @ jnp.asarray(np.reshape(np.asarray(coefficients, np.float32), (targets, -1)).T)
    if intercepts is not None and len(intercepts) == targets:
        y = y + np.asarray(intercepts, np.float32)
    return _transform(y, post_transform)


@op("LinearClassifier", 1, domain="ai.onnx.ml", host_tail=_string_labels)
def LinearClassifier(X, *, classlabels_ints=None, classlabels_strings=None, coefficients, intercepts=None,
                     multi_class=0, post_transform="NONE"):
    """Returns (int64 labels [rows], float32 scores [rows, classes]); with one row of coefficients (two labels)
    the score s becomes the columns (1 - s, s). String labels as their indices (see the tail)."""
    x = _rows(X, jnp.float32)
    classes = len(intercepts) if intercepts is not None else len(coefficients) // x.shape[1]
    scores = x @ jnp.asarray(np.reshape(np.asarray(coefficients, np.float32), (classes, -1)).T)
    if intercepts is not None:
        scores = scores + np.asarray(intercepts, np.float32)
    labels = _class_labels(classlabels_ints, classlabels_strings)
    if classes > 1:
        return _best_label(scores, labels), _transform(scores, post_transform)
    label = jnp.where(scores[:, 0] > 0, labels[1], labels[0])
    if post_transform in ("LOGISTIC", "PROBIT"):  # onnxruntime skips the softmaxes of a single score
        scores = _TRANSFORMS[post_transform](scores)
    return label, jnp.concatenate([1 - scores, scores], axis=1)


def _kernel(x, vectors, kernel_type: str, kernel_params):
    """[rows, vectors] kernel values; kernel_params are (gamma, coef0, degree)."""
    gamma, coef0, degree = (tuple(kernel_params or ()) + (0.0, 0.0, 0.0))[:3]
    degree = int(degree) if float(degree).is_integer() else degree  # an integer power of a negative base is defined
    if kernel_type == "RBF":
        return jnp.exp(-gamma * jnp.sum(jnp.square(x[:, None, :] - vectors), axis=-1))
    dot = x @ vectors.T
    if kernel_type == "POLY":
        return (gamma * dot + coef0) ** degree
    if kernel_type == "SIGMOID":
        return jnp.tanh(gamma * dot + coef0)
    return dot


@op("SVMRegressor", 1, domain="ai.onnx.ml")
def SVMRegressor(X, *, coefficients=None, kernel_params=None, kernel_type="LINEAR", n_supports=0, one_class=0,
                 post_transform="NONE", rho=None, support_vectors=None):
    """Float32 [rows, 1]; post_transform is ignored, as in onnxruntime."""
    x = _rows(X, jnp.float32)
    coefficients = np.asarray(coefficients, np.float32)
    if n_supports:
        vectors = np.reshape(np.asarray(support_vectors, np.float32), (n_supports, -1))
        y = _kernel(x, vectors, kernel_type, kernel_params) @ coefficients[:, None] + rho[0]
    else:
        y = x @ coefficients[:, None] + rho[0]
    return jnp.where(y > 0, 1.0, -1.0).astype(jnp.float32) if one_class else y.astype(jnp.float32)


@op("SVMClassifier", 1, domain="ai.onnx.ml", host_tail=_string_labels)
def SVMClassifier(X, *, classlabels_ints=None, classlabels_strings=None, coefficients=None, kernel_params=None,
                  kernel_type="LINEAR", post_transform="NONE", prob_a=None, prob_b=None, rho=None,
                  support_vectors=None, vectors_per_class=None):
    """Returns (int64 labels, float32 scores): one-vs-one decision values (two columns for two classes), or
    class probabilities when prob_a/prob_b are given, or one score per class for a linear SVM. String labels as
    their indices (see the tail)."""
    x = _rows(X, jnp.float32)
    labels = _class_labels(classlabels_ints, classlabels_strings)
    coefficients = np.asarray(coefficients, np.float32)
    if not vectors_per_class or not sum(vectors_per_class):
        return _linear_svm(x, labels, coefficients, rho, prob_a, post_transform)
    vectors = np.reshape(np.asarray(support_vectors, np.float32), (sum(vectors_per_class), -1))
    kernels = _kernel(x, vectors, kernel_type, kernel_params)
    decision, wins, losses = _one_vs_one(np.asarray(vectors_per_class), np.reshape(coefficients, (len(labels) - 1, -1)))
    pair_scores = kernels @ decision + np.asarray(rho, np.float32)
    votes = (pair_scores > 0).astype(jnp.int32) @ wins + (pair_scores <= 0).astype(jnp.int32) @ losses
    label = _best_label(votes, labels)
    if prob_a:
        pairwise = 1 - jax.nn.sigmoid(pair_scores * np.asarray(prob_a, np.float32) + np.asarray(prob_b, np.float32))
        return label, _transform(_multiclass_probability(jnp.clip(pairwise, 1e-7, 1 - 1e-7), len(labels)),
                                 post_transform)
    if len(labels) > 2:
        return label, _transform(pair_scores, post_transform)
    s = pair_scores[:, :1]
    if post_transform == "NONE":
        return label, jnp.concatenate([-s, s], axis=1)
    if post_transform in ("LOGISTIC", "PROBIT"):  # as in LinearClassifier, the softmaxes of one score are skipped
        s = _TRANSFORMS[post_transform](s)
    return label, jnp.concatenate([1 - s, s], axis=1)


def _linear_svm(x, labels, coefficients, rho, prob_a, post_transform):
    scores = x @ np.reshape(coefficients, (len(labels), -1)).T + rho[0]
    label = _best_label(scores, labels)
    if len(labels) == 2 and not prob_a:  # onnxruntime leans to the second class on a positive top score
        top = jnp.max(scores, axis=1)
        positive = top >= 0.5 if (coefficients >= 0).all() else top > 0
        label = jnp.where(positive, labels[1], label)
    return label, _transform(scores, post_transform)


def _one_vs_one(vectors_per_class: np.ndarray, coefficients: np.ndarray):
    """libsvm's pairs (i < j) as matrices: decision [vectors, pairs] so that kernels @ decision + rho are the
    pair scores, and the [pairs, classes] one-hot tables of the class a pair's vote goes to on a positive
    (wins) or non-positive (losses) score."""
    classes = len(vectors_per_class)
    start = np.concatenate([[0], np.cumsum(vectors_per_class)])
    pairs = [(i, j) for i in range(classes) for j in range(i + 1, classes)]
    decision = np.zeros((start[-1], len(pairs)), np.float32)
    for p, (i, j) in enumerate(pairs):
        decision[start[i]:start[i + 1], p] = coefficients[j - 1, start[i]:start[i + 1]]
        decision[start[j]:start[j + 1], p] = coefficients[i, start[j]:start[j + 1]]
    eye = np.eye(classes, dtype=np.int32)
    return decision, eye[[i for i, _ in pairs]], eye[[j for _, j in pairs]]


def _multiclass_probability(pairwise, classes: int):
    """Class probabilities from the pairwise ones (Wu, Lin and Weng's second method), as libsvm and onnxruntime
    iterate it: at most 100 sweeps, a row stopping once its error is below 0.005 / classes."""
    r = jnp.zeros(pairwise.shape[:1] + (classes, classes), pairwise.dtype)
    iu, ju = np.triu_indices(classes, 1)
    r = r.at[:, iu, ju].set(pairwise).at[:, ju, iu].set(1 - pairwise)
    rt = jnp.swapaxes(r, 1, 2)
    off_diagonal = 1 - np.eye(classes, dtype=pairwise.dtype)
    Q = jnp.where(off_diagonal == 0, jnp.sum(jnp.square(rt) * off_diagonal, -1)[:, :, None], -rt * r)
    eps = 0.005 / classes

    def sweep(_, carry):
        p, done = carry
        Qp = jnp.einsum("bij,bj->bi", Q, p)
        pQp = jnp.sum(p * Qp, -1)
        done = done | (jnp.max(jnp.abs(Qp - pQp[:, None]), -1) < eps)
        new_p = p
        for i in range(classes):
            diff = (pQp - Qp[:, i]) / Q[:, i, i]
            new_p = new_p.at[:, i].add(diff)
            pQp = (pQp + diff * (diff * Q[:, i, i] + 2 * Qp[:, i])) / (1 + diff) / (1 + diff)
            Qp = (Qp + diff[:, None] * Q[:, i, :]) / (1 + diff[:, None])
            new_p = new_p / (1 + diff[:, None])
        return jnp.where(done[:, None], p, new_p), done

    start = jnp.full(pairwise.shape[:1] + (classes,), 1 / classes, pairwise.dtype)
    return lax.fori_loop(0, 100, sweep, (start, jnp.zeros(pairwise.shape[:1], bool)))[0]


# Feature transformers


@op("Binarizer", 1, domain="ai.onnx.ml")
def Binarizer(X, *, threshold=0.0):
    return jnp.where(X > threshold, 1, 0).astype(X.dtype)


@op("Scaler", 1, domain="ai.onnx.ml")
def Scaler(X, *, offset=None, scale=None):
    """Float32 (X - offset) * scale, per feature or for all."""
    x = X.astype(_compute_dtype(X))
    return ((x - np.asarray(offset, x.dtype)) * np.asarray(scale, x.dtype)).astype(jnp.float32)


@op("Normalizer", 1, domain="ai.onnx.ml")
def Normalizer(X, *, norm="MAX"):
    """Float32 rows divided by their max, L1 or L2 norm; rows whose norm is 0 are copied."""
    x = X.astype(jnp.float32)
    if norm == "MAX":
        div = jnp.max(x, -1, keepdims=True)
    elif norm == "L1":
        div = jnp.sum(jnp.abs(x), -1, keepdims=True)
    else:
        div = jnp.sqrt(jnp.sum(jnp.square(x), -1, keepdims=True))
    return jnp.where(div != 0, x / jnp.where(div != 0, div, 1), x)


@op("Imputer", 1, domain="ai.onnx.ml")
def Imputer(X, *, imputed_value_floats=None, imputed_value_int64s=None, replaced_value_float=0.0,
            replaced_value_int64=0):
    """Replaces `replaced_value` (NaN matching NaN) by the imputed value of the feature (or the only one)."""
    floating = jnp.issubdtype(X.dtype, jnp.floating)
    imputed = np.asarray(imputed_value_floats if floating else imputed_value_int64s).astype(X.dtype)
    replaced = replaced_value_float if floating else replaced_value_int64
    hit = jnp.isnan(X) if floating and math.isnan(replaced) else X == replaced
    per_feature = imputed if len(imputed) == X.shape[-1] else imputed[0]
    return jnp.where(hit, per_feature, X)


@op("OneHotEncoder", 1, domain="ai.onnx.ml", host=lambda node: node.attrs.get("cats_strings") is not None)
def OneHotEncoder(X, *, cats_int64s=None, cats_strings=None, zeros=1):
    """Float32 one-hot of X's (truncated to int64) category, on a new last axis; unknown categories are all
    zeros (zeros=0 asks for an error instead, which a compiled graph cannot raise). String categories run on the
    host, where zeros=0 does raise."""
    if cats_strings is not None:
        cats = list(_text_array(cats_strings))
        words = _text_array(X) if np.size(X) else np.empty(0, object)
        index = {c: i for i, c in reversed(list(enumerate(cats)))}  # a repeated category keeps its first slot
        out = np.zeros((len(words), len(cats)), np.float32)
        for row, word in enumerate(words):
            if word in index:
                out[row, index[word]] = 1
            elif not zeros:
                raise ValueError(f"OneHotEncoder: {word!r} is not among the categories and zeros=0")
        return out.reshape(np.shape(X) + (len(cats),))
    cats = np.asarray(cats_int64s, np.int64)
    last = np.array([c not in cats[i + 1:] for i, c in enumerate(cats)])  # a repeated category keeps its last slot
    return ((X.astype(jnp.int64)[..., None] == cats) & last).astype(jnp.float32)


@op("ArrayFeatureExtractor", 1, domain="ai.onnx.ml")
def ArrayFeatureExtractor(X, Y):
    """X's last axis at the indices Y (flattened); a vector gives one row."""
    picked = jnp.take(X, jnp.ravel(Y), axis=-1)
    return jnp.reshape(picked, (1, -1)) if X.ndim == 1 else picked


@op("FeatureVectorizer", 1, domain="ai.onnx.ml")
def FeatureVectorizer(*inputs, inputdimensions=None):
    """Float32 [rows, sum(inputdimensions)]: each input's features, cut or zero-padded to its dimension."""
    parts = []
    for x, size in zip(inputs, inputdimensions):
        x = _rows(x) if x.ndim == 1 else jnp.reshape(x, (x.shape[0], -1))
        x = x[:, :size].astype(jnp.float32)
        parts.append(jnp.pad(x, ((0, 0), (0, size - x.shape[1]))))
    return jnp.concatenate(parts, axis=1)


def _label_encoder_strings(node) -> bool:
    """A LabelEncoder reading or making strings runs on the host."""
    return any(_is_text(node.attrs.get(name)) for name in ("keys_strings", "values_strings", "keys_tensor",
                                                              "values_tensor"))


@op("LabelEncoder", 1, domain="ai.onnx.ml", host=True)
def LabelEncoder_1(X, *, classes_strings=None, default_int64=-1, default_string="_Unused"):
    """Strings become their index in classes_strings (or default_int64); int64s become the class at that index
    (or default_string)."""
    classes = _text_array(classes_strings if classes_strings is not None else ())
    X = np.asarray(X)
    if X.dtype == object:
        return _lookup(X, classes, np.arange(len(classes), dtype=np.int64), np.int64(default_int64))
    return _lookup(X, np.arange(len(classes), dtype=np.int64), classes, default_string)


@op("LabelEncoder", 2, domain="ai.onnx.ml", host=_label_encoder_strings)
def LabelEncoder_2(X, *, default_float=-0.0, default_int64=-1, default_string="_Unused", keys_floats=None,
                   keys_int64s=None, keys_strings=None, values_floats=None, values_int64s=None, values_strings=None):
    """A repeated key keeps its first value, as in onnxruntime."""
    keys = _pick(None if keys_strings is None else _text_array(keys_strings), keys_int64s,
                 None if keys_floats is None else np.float32(keys_floats))
    values = _pick(None if values_strings is None else _text_array(values_strings), values_int64s,
                   None if values_floats is None else np.float32(values_floats))
    default = {"f": default_float, "O": default_string}.get(values.dtype.kind, default_int64)
    default = default if values.dtype == object else values.dtype.type(default)
    if keys.dtype == object or values.dtype == object:
        return _lookup(X, keys, values, default)
    return _label_encode(X, keys, values, default)


@op("LabelEncoder", 4, domain="ai.onnx.ml", host=_label_encoder_strings)
def LabelEncoder(X, *, default_float=-0.0, default_int64=-1, default_string="_Unused", default_tensor=None,
                 keys_floats=None, keys_int64s=None, keys_strings=None, keys_tensor=None, values_floats=None,
                 values_int64s=None, values_strings=None, values_tensor=None):
    """A repeated key keeps its last value, as the spec says from this version on."""
    keys = _pick(keys_tensor, None if keys_strings is None else _text_array(keys_strings), keys_int64s,
                 None if keys_floats is None else np.float32(keys_floats))
    values = _pick(values_tensor, None if values_strings is None else _text_array(values_strings), values_int64s,
                   None if values_floats is None else np.float32(values_floats))
    if values.dtype.kind in "OSU":
        values = _text_array(values)
    if keys.dtype.kind in "OSU":
        keys = _text_array(keys)
    if default_tensor is not None:
        given = np.asarray(default_tensor).reshape(-1)[0]
        default = (given.decode() if isinstance(given, bytes) else str(given)) if values.dtype == object else \
            values.dtype.type(given)
    elif values.dtype == object:
        default = default_string
    else:
        default = values.dtype.type(default_float if values.dtype.kind == "f" else default_int64)
    if keys.dtype == object or values.dtype == object:
        return _lookup(X, keys[::-1], values[::-1], default)
    return _label_encode(X, keys[::-1], values[::-1], default)


@op("CategoryMapper", 1, domain="ai.onnx.ml", host=True)
def CategoryMapper(X, *, cats_int64s=None, cats_strings=None, default_int64=-1, default_string="_Unused"):
    """Strings become their paired int64 (or default_int64), int64s their paired string (or default_string)."""
    strings = _text_array(cats_strings if cats_strings is not None else ())
    ints = np.asarray(cats_int64s if cats_int64s is not None else (), np.int64)
    if np.asarray(X).dtype == object:
        return _lookup(X, strings, ints, np.int64(default_int64))
    return _lookup(X, ints, strings, default_string)


@op("ZipMap", 1, domain="ai.onnx.ml", host=True)
def ZipMap(X, *, classlabels_int64s=None, classlabels_strings=None):
    """A sequence of maps, one per row of X ([rows, classes]): class label -> score, as a list of dicts like
    onnxruntime returns."""
    labels = (_text_array(classlabels_strings).tolist() if classlabels_strings is not None
              else [int(v) for v in classlabels_int64s])
    X = np.asarray(X)
    rows = X.reshape(1, -1) if X.ndim == 1 else X
    if rows.shape[-1] != len(labels):
        raise ValueError(f"ZipMap: X has {rows.shape[-1]} columns for {len(labels)} class labels")
    return [dict(zip(labels, row.tolist())) for row in rows]


@op("DictVectorizer", 1, domain="ai.onnx.ml", host=True)
def DictVectorizer(X, *, int64_vocabulary=None, string_vocabulary=None):
    """A map (or a sequence of maps) -> [maps, vocabulary] with each key's value at its vocabulary slot, 0
    elsewhere, in the declared value type of a graph's map input (host_numpy.Map), else in its values' type: numpy
    values keep theirs, untyped Python floats give float32 and ints int64."""
    vocabulary = (_text_array(string_vocabulary).tolist() if string_vocabulary is not None
                  else [int(v) for v in int64_vocabulary])
    slot = {k: i for i, k in enumerate(vocabulary)}
    maps = [m.item() if isinstance(m, np.ndarray) else m for m in (X if isinstance(X, list) else [X])]
    values = [v for m in maps for v in m.values()]
    declared = {getattr(m, "value_dtype", None) for m in maps}
    if len(declared) == 1 and None not in declared:
        dtype = declared.pop()
    elif values and all(isinstance(v, np.generic) for v in values):
        dtype = np.result_type(*values)
    elif values and all(isinstance(v, (str, bytes)) for v in values):
        dtype = np.dtype(object)
    elif values and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        dtype = np.dtype(np.int64)
    else:
        dtype = np.dtype(np.float32)
    out = np.zeros((len(maps), len(vocabulary)), object if dtype.kind in "OSU" else dtype)
    if dtype.kind in "OSU":
        out[:] = ""
    for row, m in enumerate(maps):
        for key, value in m.items():
            key = key.decode() if isinstance(key, bytes) else key
            if key in slot:
                out[row, slot[key]] = value
    return out


def _label_encode(X, keys: np.ndarray, values: np.ndarray, default):
    """Each X equal to a key becomes that key's value (the first listed if repeated), anything else the default;
    a NaN key matches NaN."""
    keys = keys.astype(X.dtype)
    nan = np.isnan(keys) if keys.dtype.kind == "f" else np.zeros(len(keys), bool)
    order = np.argsort(keys[~nan], kind="stable")
    sorted_keys, sorted_values = keys[~nan][order], values[~nan][order]
    y = jnp.full(X.shape, default, values.dtype)
    if len(sorted_keys):
        pos = jnp.clip(jnp.searchsorted(sorted_keys, X), 0, len(sorted_keys) - 1)
        y = jnp.where(jnp.asarray(sorted_keys)[pos] == X, jnp.asarray(sorted_values)[pos], y)
    if nan.any():
        y = jnp.where(jnp.isnan(X), values[nan][0], y)
    return y
