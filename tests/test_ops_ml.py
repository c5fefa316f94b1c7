"""Property tests for ops/ml.py (ai.onnx.ml) against onnxruntime, plus onnx.reference where it agrees with it,
scikit-learn models converted by skl2onnx, and the real ai.onnx.ml models in shared/models."""

from __future__ import annotations

import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from onnx import helper
from onnx.reference import ReferenceEvaluator

import onnx_jax
from onnx_jax.errors import NodeExecutionError
from oracle import assert_close, node_model

ML = "ai.onnx.ml"
# Every example compiles a model: shrinking a failure would take many minutes, so these tests report it unshrunk.
SOME = settings(max_examples=12, phases=[Phase.explicit, Phase.reuse, Phase.generate])
FEW = settings(max_examples=4, phases=[Phase.explicit, Phase.reuse, Phase.generate])


def ml_model(op_type, inputs, n_outputs=1, *, opset=3, **attrs):
    model = node_model(op_type, inputs, n_outputs, opset=opset, domain=ML, **attrs)
    del model.opset_import[1:]
    model.opset_import.append(helper.make_opsetid("", 17))
    return model


def run_ours(model, inputs):
    return list(onnx_jax.prepare(model).run(inputs))


def run_ort(model, inputs):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {f"x{i}": x for i, x in enumerate(inputs)})


def check_ort(op_type, inputs, n_outputs=1, *, opset=3, rtol=1e-5, atol=1e-5, **attrs):
    model = ml_model(op_type, inputs, n_outputs, opset=opset, **attrs)
    assert_close(run_ours(model, inputs), run_ort(model, inputs), rtol, atol)


def check_reference(op_type, inputs, n_outputs=1, *, opset=3, rtol=1e-5, atol=1e-6, **attrs):
    model = ml_model(op_type, inputs, n_outputs, opset=opset, **attrs)
    ref = ReferenceEvaluator(model).run(None, {f"x{i}": x for i, x in enumerate(inputs)})
    assert_close(run_ours(model, inputs), ref, rtol, atol)


GRID = np.float32([-2, -1, -0.5, 0, 0.5, 1, 2])  # thresholds and inputs share values, so EQ and NEQ matter


def features(data, rows, n_features, *, nan=True):
    values = list(GRID) + ([np.nan] if nan else [])
    return np.float32(data.draw(st.lists(st.sampled_from(values), min_size=rows * n_features,
                                         max_size=rows * n_features))).reshape(rows, n_features)


# Tree ensembles


def random_trees(data, n_features, n_targets, *, modes):
    """Node and leaf tuples of TreeEnsembleRegressor/Classifier for a few random trees."""
    nodes = {k: [] for k in ("treeids", "nodeids", "featureids", "modes", "values", "truenodeids", "falsenodeids",
                             "missing")}
    leaves = {k: [] for k in ("treeids", "nodeids", "ids", "weights")}
    mode = data.draw(st.sampled_from(modes))  # most trees use one mode; sometimes they mix
    mixed = data.draw(st.booleans())
    for tree in range(data.draw(st.integers(1, 4))):
        ids = iter(range(31))

        def grow(depth):
            node = next(ids)
            is_leaf = depth == 0 or data.draw(st.booleans()) and depth < 3
            for key, value in zip(("treeids", "nodeids", "featureids", "values", "missing"),
                                  (tree, node, data.draw(st.integers(0, n_features - 1)),
                                   float(data.draw(st.sampled_from(GRID))), int(data.draw(st.booleans())))):
                nodes[key].append(value)
            nodes["modes"].append("LEAF" if is_leaf else data.draw(st.sampled_from(modes)) if mixed else mode)
            at = len(nodes["truenodeids"])
            nodes["truenodeids"].append(0)
            nodes["falsenodeids"].append(0)
            if is_leaf:
                for target in data.draw(st.lists(st.integers(0, n_targets - 1), min_size=1, max_size=3, unique=True)):
                    leaves["treeids"].append(tree)
                    leaves["nodeids"].append(node)
                    leaves["ids"].append(target)
                    leaves["weights"].append(float(data.draw(st.sampled_from([-1.5, -0.25, 0.0, 0.5, 1.0, 2.0]))))
            else:
                nodes["truenodeids"][at] = grow(depth - 1)
                nodes["falsenodeids"][at] = grow(depth - 1)
            return node

        first = len(nodes["treeids"])
        grow(data.draw(st.integers(0, 3)))
        # node ids need not follow the listing order (onnxruntime wants them below the node count)
        relabel = data.draw(st.permutations(range(len(nodes["treeids"]) - first)))
        for key in ("nodeids", "truenodeids", "falsenodeids"):
            nodes[key][first:] = [relabel[i] for i in nodes[key][first:]]
        leaves["nodeids"] = [relabel[i] if t == tree else i for t, i in zip(leaves["treeids"], leaves["nodeids"])]
    return nodes, leaves


BRANCHES = ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ"]
TRANSFORMS = ["NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO", "PROBIT"]


def node_attrs(nodes):
    return {f"nodes_{k}" if k != "missing" else "nodes_missing_value_tracks_true": v for k, v in nodes.items()}


@SOME
@given(st.data())
def test_tree_ensemble_regressor_matches_onnxruntime(data):
    n_features, n_targets = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    nodes, leaves = random_trees(data, n_features, n_targets, modes=BRANCHES)
    aggregate = data.draw(st.sampled_from(["SUM", "AVERAGE", "MIN", "MAX"]))
    post = data.draw(st.sampled_from(TRANSFORMS if aggregate != "MIN" else TRANSFORMS[:4]))
    base = data.draw(st.sampled_from([None, [0.5 - i for i in range(n_targets)]]))
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    x = features(data, data.draw(st.integers(1, 6)), n_features).astype(dtype)
    if data.draw(st.booleans()):  # 4096+ rows: float32 trees descend through one packed node table
        x = np.tile(x, (4096 // len(x) + 1, 1))
    attrs = dict(node_attrs(nodes), target_treeids=leaves["treeids"], target_nodeids=leaves["nodeids"],
                 target_ids=leaves["ids"], target_weights=leaves["weights"], n_targets=n_targets,
                 aggregate_function=aggregate, post_transform=post)
    if base is not None:
        attrs["base_values"] = base
    check_ort("TreeEnsembleRegressor", [x], opset=1, rtol=1e-4, atol=1e-4, **attrs)


@SOME
@given(st.data())
def test_tree_ensemble_classifier_matches_onnxruntime(data):
    n_features, n_classes = data.draw(st.integers(1, 3)), data.draw(st.sampled_from([2, 2, 3, 4]))
    nodes, leaves = random_trees(data, n_features, n_classes, modes=BRANCHES)
    if data.draw(st.booleans()):  # one class only: the 'binary case' of onnxruntime
        leaves["ids"] = [data.draw(st.integers(0, n_classes - 1))] * len(leaves["ids"])
    if data.draw(st.booleans()):
        leaves["weights"] = [abs(w) for w in leaves["weights"]]
    base = data.draw(st.sampled_from([None, [0.5 - i for i in range(n_classes)]]))
    dtype = data.draw(st.sampled_from([np.float32, np.float64, np.int64]))
    x = features(data, data.draw(st.integers(1, 6)), n_features, nan=dtype != np.int64).astype(dtype)
    attrs = dict(node_attrs(nodes), class_treeids=leaves["treeids"], class_nodeids=leaves["nodeids"],
                 class_ids=leaves["ids"], class_weights=leaves["weights"],
                 classlabels_int64s=list(range(10, 10 + n_classes)),
                 post_transform=data.draw(st.sampled_from(TRANSFORMS[:4])))
    if base is not None:
        attrs["base_values"] = base
    check_ort("TreeEnsembleClassifier", [x], 2, opset=1, rtol=1e-4, atol=1e-4, **attrs)


def v5_attrs(data, n_features, n_targets, *, member):
    """TreeEnsemble (ai.onnx.ml 5) attributes for a few random trees, nodes and leaves in separate tables."""
    attrs = {k: [] for k in ("nodes_featureids", "nodes_modes", "nodes_splits", "nodes_truenodeids",
                             "nodes_trueleafs", "nodes_falsenodeids", "nodes_falseleafs", "leaf_targetids",
                             "leaf_weights", "tree_roots", "nodes_missing_value_tracks_true", "membership_values")}

    def leaf():
        attrs["leaf_targetids"].append(data.draw(st.integers(0, n_targets - 1)))
        attrs["leaf_weights"].append(float(data.draw(st.sampled_from([-1.0, 0.5, 2.0, 3.0]))))
        return len(attrs["leaf_targetids"]) - 1

    def grow(depth):
        index = len(attrs["nodes_featureids"])
        mode = data.draw(st.sampled_from(range(7 if member else 6)))
        attrs["nodes_featureids"].append(data.draw(st.integers(0, n_features - 1)))
        attrs["nodes_modes"].append(mode)
        attrs["nodes_splits"].append(float(data.draw(st.sampled_from(GRID))))
        attrs["nodes_missing_value_tracks_true"].append(int(data.draw(st.booleans())))
        if mode == 6:
            # onnxruntime only implements integer members
            attrs["membership_values"] += data.draw(st.lists(st.integers(-2, 2), min_size=1, max_size=3,
                                                             unique=True)) + [np.nan]
        for side in ("true", "false"):
            is_leaf = depth == 0 or data.draw(st.booleans())
            attrs[f"nodes_{side}leafs"].append(int(is_leaf))
            attrs[f"nodes_{side}nodeids"].append(0)
        for side in ("true", "false"):
            is_leaf = attrs[f"nodes_{side}leafs"][index]
            attrs[f"nodes_{side}nodeids"][index] = leaf() if is_leaf else grow(depth - 1)
        return index

    for _ in range(data.draw(st.integers(1, 4))):
        attrs["tree_roots"].append(grow(data.draw(st.integers(0, 3))))
    return attrs


def tensor(name, values, dtype):
    return helper.make_tensor(name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), (len(values),),
                              np.asarray(values, dtype))


@SOME
@given(st.data())
def test_tree_ensemble_5_matches_onnxruntime(data):
    n_features, n_targets = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    attrs = v5_attrs(data, n_features, n_targets, member=True)
    for name in ("nodes_splits", "leaf_weights", "membership_values"):
        attrs[name] = tensor(name, attrs[name], dtype)
    attrs["nodes_modes"] = tensor("nodes_modes", attrs["nodes_modes"], np.uint8)
    if not len(attrs["membership_values"].dims) or not attrs["membership_values"].dims[0]:
        del attrs["membership_values"]
    aggregate = data.draw(st.integers(0, 3))
    # whole numbers: onnxruntime tests set membership on the input truncated to an integer
    x = np.trunc(features(data, data.draw(st.integers(1, 6)), n_features)).astype(dtype)
    post = data.draw(st.sampled_from([0, 1, 2, 3, 4] if aggregate != 2 else [0, 1, 2, 3]))
    ours = ml_model("TreeEnsemble", [x], opset=5, n_targets=n_targets, aggregate_function=aggregate,
                    post_transform=post, **attrs)
    # onnxruntime reads post_transform 1 as LOGISTIC and 2 as SOFTMAX; the spec says 1 is SOFTMAX, 2 LOGISTIC
    theirs = ml_model("TreeEnsemble", [x], opset=5, n_targets=n_targets, aggregate_function=aggregate,
                      post_transform={1: 2, 2: 1}.get(post, post), **attrs)
    assert_close(run_ours(ours, [x]), run_ort(theirs, [x]), 1e-4, 1e-4)


@SOME
@given(st.data())
def test_tree_ensemble_5_sums_like_the_reference(data):
    """onnx.reference applies no post transform and starts MIN/MAX at the dtype's extremes: compare SUM/AVERAGE."""
    n_features, n_targets = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    attrs = v5_attrs(data, n_features, n_targets, member=False)
    for name in ("nodes_splits", "leaf_weights"):
        attrs[name] = tensor(name, attrs[name], np.float32)
    attrs["nodes_modes"] = tensor("nodes_modes", attrs["nodes_modes"], np.uint8)
    del attrs["membership_values"]
    x = features(data, data.draw(st.integers(1, 6)), n_features, nan=False)
    check_reference("TreeEnsemble", [x], opset=5, n_targets=n_targets,
                    aggregate_function=data.draw(st.sampled_from([0, 1])), **attrs)


def test_tree_ensemble_traverses_many_trees_and_rows_at_once():
    rng = np.random.default_rng(0)
    n_trees, depth, n_features = 20, 6, 8
    attrs = {k: [] for k in ("nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_values", "nodes_modes",
                             "nodes_truenodeids", "nodes_falsenodeids", "target_treeids", "target_nodeids",
                             "target_ids", "target_weights")}
    for tree in range(n_trees):  # complete binary trees, heap numbered
        for node in range(2 ** (depth + 1) - 1):
            leaf = node >= 2 ** depth - 1
            for key, value in (("treeids", tree), ("nodeids", node), ("featureids", int(rng.integers(n_features))),
                               ("values", float(rng.normal())), ("modes", "LEAF" if leaf else "BRANCH_LEQ"),
                               ("truenodeids", 0 if leaf else 2 * node + 1),
                               ("falsenodeids", 0 if leaf else 2 * node + 2)):
                attrs[f"nodes_{key}"].append(value)
            if leaf:
                for key, value in (("treeids", tree), ("nodeids", node), ("ids", 0), ("weights", rng.normal())):
                    attrs[f"target_{key}"].append(value)
    x = rng.normal(size=(3000, n_features)).astype(np.float32)
    check_ort("TreeEnsembleRegressor", [x], opset=1, n_targets=1, **attrs)


def test_a_tree_reading_a_feature_the_input_lacks_is_an_error_naming_the_node():
    attrs = dict(nodes_treeids=[0, 0, 0], nodes_nodeids=[0, 1, 2], nodes_featureids=[5, 0, 0],
                 nodes_values=[0.5, 0, 0], nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF"], nodes_truenodeids=[1, 0, 0],
                 nodes_falsenodeids=[2, 0, 0], target_treeids=[0, 0], target_nodeids=[1, 2], target_ids=[0, 0],
                 target_weights=[1.0, 2.0], n_targets=1)
    model = ml_model("TreeEnsembleRegressor", [np.zeros((2, 3), np.float32)], opset=1, **attrs)
    with pytest.raises(NodeExecutionError, match="TreeEnsembleRegressor.*feature 5.*3 features"):
        run_ours(model, [np.zeros((2, 3), np.float32)])


# Linear models and SVMs


@SOME
@given(st.data())
def test_linear_classifier_matches_onnxruntime(data):
    n_features, classes = data.draw(st.integers(1, 4)), data.draw(st.sampled_from([1, 2, 3]))
    labels = [3, 7] if classes == 1 else list(range(4, 4 + classes))
    coefficients = np.float32(data.draw(st.lists(st.sampled_from(GRID), min_size=classes * n_features,
                                                 max_size=classes * n_features)))
    x = features(data, data.draw(st.integers(1, 5)), n_features, nan=False).astype(
        data.draw(st.sampled_from([np.float32, np.float64, np.int64, np.int32])))
    post = data.draw(st.sampled_from(TRANSFORMS[:4] if classes == 1 and len(labels) == 2 else TRANSFORMS))
    check_ort("LinearClassifier", [x], 2, opset=1, coefficients=list(coefficients),
              intercepts=[0.25 * (i + 1) for i in range(classes)], classlabels_ints=labels, post_transform=post)


@SOME
@given(st.data())
def test_linear_regressor_matches_onnxruntime(data):
    n_features, targets = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 3))
    coefficients = data.draw(st.lists(st.sampled_from(GRID.tolist()), min_size=targets * n_features,
                                       max_size=targets * n_features))
    x = features(data, data.draw(st.integers(1, 5)), n_features, nan=False)
    check_ort("LinearRegressor", [x], opset=1, coefficients=coefficients, targets=targets,
              intercepts=[0.5] * targets, post_transform=data.draw(st.sampled_from(TRANSFORMS)))


KERNELS = {"LINEAR": [0.0, 0.0, 0.0], "POLY": [0.5, 1.0, 2.0], "RBF": [0.3, 0.0, 0.0], "SIGMOID": [0.2, 0.1, 0.0]}


@SOME
@given(st.data())
def test_svm_classifier_matches_onnxruntime(data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    classes, n_features = data.draw(st.sampled_from([2, 3])), data.draw(st.integers(1, 3))
    kernel = data.draw(st.sampled_from(list(KERNELS)))
    attrs = dict(classlabels_ints=list(range(1, classes + 1)), kernel_type=kernel,
                 post_transform=data.draw(st.sampled_from(TRANSFORMS[:4])))
    if data.draw(st.booleans()):  # a linear SVM: one row of coefficients per class
        attrs.update(coefficients=rng.normal(size=classes * n_features).tolist(), rho=[0.1],
                     kernel_params=[0.0, 0.0, 0.0])
    else:
        per_class = [int(v) for v in rng.integers(1, 4, classes)]
        attrs.update(vectors_per_class=per_class, support_vectors=rng.normal(size=sum(per_class) * n_features).tolist(),
                     coefficients=rng.normal(size=(classes - 1) * sum(per_class)).tolist(),
                     rho=rng.normal(size=classes * (classes - 1) // 2).tolist(), kernel_params=KERNELS[kernel])
        if data.draw(st.booleans()):
            attrs.update(prob_a=(-rng.uniform(0.5, 2, classes * (classes - 1) // 2)).tolist(),
                         prob_b=rng.normal(size=classes * (classes - 1) // 2).tolist())
    x = rng.normal(size=(data.draw(st.integers(1, 6)), n_features)).astype(np.float32)
    check_ort("SVMClassifier", [x], 2, opset=1, rtol=1e-4, atol=1e-4, **attrs)


@SOME
@given(st.data())
def test_svm_regressor_matches_onnxruntime(data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    n_features, n_supports = data.draw(st.integers(1, 3)), data.draw(st.integers(0, 4))
    kernel = data.draw(st.sampled_from(list(KERNELS)))
    attrs = dict(kernel_type=kernel, kernel_params=KERNELS[kernel], rho=[0.3],
                 n_supports=n_supports, one_class=int(data.draw(st.booleans())))
    if n_supports:
        attrs.update(support_vectors=rng.normal(size=n_supports * n_features).tolist(),
                     coefficients=rng.normal(size=n_supports).tolist())
    else:
        attrs.update(coefficients=rng.normal(size=n_features).tolist())
    x = rng.normal(size=(data.draw(st.integers(1, 5)), n_features)).astype(np.float32)
    check_ort("SVMRegressor", [x], opset=1, rtol=1e-4, atol=1e-4, **attrs)


# Feature transformers


@SOME
@given(st.data())
def test_scaler_normalizer_binarizer_match_onnxruntime(data):
    n_features = data.draw(st.integers(1, 4))
    dtype = data.draw(st.sampled_from([np.float32, np.float64, np.int64, np.int32]))
    x = features(data, data.draw(st.integers(1, 4)), n_features, nan=False)
    x = (x * 2).astype(dtype)
    per_feature = data.draw(st.booleans())
    size = n_features if per_feature else 1
    check_ort("Scaler", [x], opset=1, offset=[0.5] * size, scale=[1.5 + i for i in range(size)])
    check_ort("Normalizer", [x], opset=1, norm=data.draw(st.sampled_from(["MAX", "L1", "L2"])))
    if dtype == np.float32:  # onnxruntime has no other Binarizer
        check_ort("Binarizer", [x], opset=1, threshold=float(data.draw(st.sampled_from(GRID))))


@SOME
@given(st.data())
def test_imputer_one_hot_feature_extractor_vectorizer_match_onnxruntime(data):
    n_features = data.draw(st.integers(1, 4))
    x = features(data, data.draw(st.integers(1, 4)), n_features)
    replaced = data.draw(st.sampled_from([np.nan, 0.5]))
    check_ort("Imputer", [x], opset=1, imputed_value_floats=[9.0] * data.draw(st.sampled_from([1, n_features])),
              replaced_value_float=float(replaced))
    ints = np.nan_to_num(x).astype(np.int64)
    check_ort("Imputer", [ints], opset=1, imputed_value_int64s=[7], replaced_value_int64=0)
    cats = data.draw(st.lists(st.integers(-2, 2), min_size=1, max_size=4))
    check_ort("OneHotEncoder", [data.draw(st.sampled_from([ints, np.nan_to_num(x)]))], opset=1, cats_int64s=cats)
    indices = np.int64(data.draw(st.lists(st.integers(0, n_features - 1), min_size=1, max_size=3)))
    check_ort("ArrayFeatureExtractor", [x, indices.reshape(data.draw(st.sampled_from([(-1,), (1, -1)])))], opset=1)
    check_ort("ArrayFeatureExtractor", [x[0], indices], opset=1)
    dims = data.draw(st.lists(st.integers(1, 5), min_size=1, max_size=3))
    parts = [features(data, x.shape[0], data.draw(st.integers(1, 4))) for _ in dims]
    check_ort("FeatureVectorizer", parts, opset=1, inputdimensions=dims)


@FEW
@given(st.data())
def test_transformers_match_the_reference(data):
    n_features = data.draw(st.integers(1, 4))
    x = features(data, data.draw(st.integers(1, 4)), n_features, nan=False)
    check_reference("Binarizer", [x], opset=1, threshold=0.5)
    check_reference("Scaler", [x], opset=1, offset=[0.5] * n_features, scale=[2.0] * n_features)
    check_reference("Imputer", [x], opset=1, imputed_value_floats=[9.0], replaced_value_float=0.5)
    check_reference("OneHotEncoder", [x.astype(np.int64)], opset=1, cats_int64s=[-2, 0, 1])
    check_reference("ArrayFeatureExtractor", [x, np.int64([n_features - 1, 0])], opset=1)
    check_reference("FeatureVectorizer", [x, x], opset=1, inputdimensions=[n_features + 1, 1])
    check_reference("LinearRegressor", [x], opset=1, coefficients=[0.5] * (2 * n_features), intercepts=[1.0, -1.0],
                    targets=2)
    nodes, leaves = random_trees(data, n_features, 2, modes=BRANCHES)
    check_reference("TreeEnsembleRegressor", [x], opset=1, n_targets=2, target_treeids=leaves["treeids"],
                    target_nodeids=leaves["nodeids"], target_ids=leaves["ids"], target_weights=leaves["weights"],
                    **node_attrs(nodes))


@SOME
@given(st.data())
def test_label_encoder_matches_onnxruntime(data):
    opset = data.draw(st.sampled_from([2, 4]))
    # a repeated key keeps its first value in opset 2 (onnxruntime) but its last in opset 4 (the spec; onnxruntime
    # keeps the first)
    keys = data.draw(st.lists(st.integers(-3, 3), min_size=1, max_size=5, unique=opset == 4))
    values = data.draw(st.lists(st.integers(-9, 9), min_size=len(keys), max_size=len(keys)))
    x = np.int64(data.draw(st.lists(st.integers(-4, 4), min_size=1, max_size=6)))
    if data.draw(st.booleans()):
        attrs = dict(keys_int64s=keys, values_floats=[v / 2 for v in values], default_float=0.25)
    else:
        x = x.astype(np.float32) / 2
        attrs = dict(keys_floats=[k / 2 for k in keys], values_int64s=values)
        if opset == 4:  # onnxruntime matches NaN keys from opset 4 on (the spec: from opset 2 on)
            attrs["keys_floats"].append(float("nan"))
            attrs["values_int64s"].append(42)
            x[0] = np.nan
    check_ort("LabelEncoder", [x], opset=opset, **attrs)


def test_label_encoder_tensor_attributes():
    x = np.float64([1.5, 2.0, np.nan, 7.0])
    attrs = dict(keys_tensor=helper.make_tensor("k", onnx.TensorProto.DOUBLE, (3,), [2.0, 1.5, np.nan]),
                 values_tensor=helper.make_tensor("v", onnx.TensorProto.INT64, (3,), [20, 15, 99]),
                 default_tensor=helper.make_tensor("d", onnx.TensorProto.INT64, (1,), [-5]))
    check_ort("LabelEncoder", [x], opset=4, **attrs)
    check_reference("LabelEncoder", [np.int64([3, 1, 9])], opset=4,
                    keys_tensor=helper.make_tensor("k", onnx.TensorProto.INT64, (2,), [1, 3]),
                    values_tensor=helper.make_tensor("v", onnx.TensorProto.FLOAT, (2,), [0.5, 1.5]),
                    default_tensor=helper.make_tensor("d", onnx.TensorProto.FLOAT, (1,), [-1.0]))


# Strings: ops reading or making strings run on the host; classifiers compute label indices compiled


def string_model(op_type, x, out_type, *, opset=3, **attrs):
    """A one-node ai.onnx.ml model with a declared input (strings need their type) and output."""
    from onnx_jax.dtypes import to_onnx_dtype

    node = helper.make_node(op_type, ["x0"], ["y0"], domain=ML, **attrs)
    graph = helper.make_graph([node], op_type.lower(), [helper.make_tensor_value_info("x0", to_onnx_dtype(x.dtype),
                                                                                      x.shape)],
                              [helper.make_tensor_value_info("y0", out_type, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid(ML, opset), helper.make_opsetid("", 17)])


WORDS = np.array(["cat", "dog", "emu", "", "dog"], object)
STRING, INT64, FLOAT = onnx.TensorProto.STRING, onnx.TensorProto.INT64, onnx.TensorProto.FLOAT


@pytest.mark.parametrize("opset", [2, 4])
def test_label_encoder_strings_match_onnxruntime(opset):
    words = dict(keys_strings=["dog", "cat", "dog"], values_int64s=[7, 8, 9], default_int64=-3)
    if opset == 4:
        words = dict(keys_strings=["dog", "cat"], values_int64s=[7, 8], default_int64=-3)
    cases = [
        (WORDS, INT64, words),
        (np.int64([[1, 5], [2, 1]]), STRING, dict(keys_int64s=[1, 2], values_strings=["one", "two"],
                                                    default_string="?")),
        (np.float32([0.5, 2.0, 7.0]), STRING, dict(keys_floats=[0.5, 2.0], values_strings=["half", "two"])),
        (WORDS.reshape(1, 5), STRING, dict(keys_strings=["cat", "emu"], values_strings=["CAT", "EMU"])),
    ]
    for x, out, attrs in cases:
        model = string_model("LabelEncoder", x, out, opset=opset, **attrs)
        assert_close(run_ours(model, [x]), run_ort(model, [x]))


def test_label_encoder_string_tensor_attributes_match_onnxruntime():
    keys = helper.make_tensor("k", STRING, (3,), [b"cat", b"dog", b"emu"])
    model = string_model("LabelEncoder", WORDS, INT64, opset=4, keys_tensor=keys,
                         values_tensor=helper.make_tensor("v", INT64, (3,), [10, 20, 30]),
                         default_tensor=helper.make_tensor("d", INT64, (1,), [-7]))
    assert_close(run_ours(model, [WORDS]), run_ort(model, [WORDS]))
    x = np.int64([30, 10, 5])
    model = string_model("LabelEncoder", x, STRING, opset=4, keys_tensor=helper.make_tensor("k", INT64, (2,), [10, 30]),
                         values_tensor=helper.make_tensor("v", STRING, (2,), [b"ten", b"thirty"]),
                         default_tensor=helper.make_tensor("d", STRING, (1,), [b"none"]))
    assert_close(run_ours(model, [x]), run_ort(model, [x]))


def test_label_encoder_1_and_category_mapper_match_onnxruntime():
    for op_type, opset, names in [("LabelEncoder", 1, dict(classes_strings=["emu", "cat", "dog"])),
                                  ("CategoryMapper", 3, dict(cats_strings=["emu", "cat", "dog"],
                                                              cats_int64s=[5, 6, 7]))]:
        model = string_model(op_type, WORDS, INT64, opset=opset, default_int64=-9, **names)
        assert_close(run_ours(model, [WORDS]), run_ort(model, [WORDS]))
        x = np.int64([[0, 5, 7], [2, 1, -1]])
        model = string_model(op_type, x, STRING, opset=opset, default_string="nope", **names)
        assert_close(run_ours(model, [x]), run_ort(model, [x]))


def test_one_hot_encoder_strings_match_onnxruntime():
    x = WORDS.reshape(1, 5)
    model = string_model("OneHotEncoder", x, FLOAT, cats_strings=["dog", "emu", "yak"], zeros=1)
    assert_close(run_ours(model, [x]), run_ort(model, [x]))


def test_classifiers_with_string_labels_match_onnxruntime():
    """The scores are compiled, the labels come from a host step after them."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 3)).astype(np.float32)
    labels = ["cat", "dog", "emu"]
    cases = [
        ("LinearClassifier", dict(coefficients=list(rng.normal(size=9)), intercepts=[0.1, -0.2, 0.3],
                                  post_transform="SOFTMAX")),
        ("LinearClassifier", dict(classlabels_strings=labels[:2], coefficients=[1.0, -1.0, 0.5], intercepts=[0.2],
                                  post_transform="LOGISTIC")),
        ("SVMClassifier", dict(coefficients=list(rng.normal(size=9)), rho=[0.1], kernel_type="LINEAR",
                               kernel_params=[0.1, 0.0, 3.0])),
        ("TreeEnsembleClassifier", dict(
            nodes_treeids=[0, 0, 0], nodes_nodeids=[0, 1, 2], nodes_featureids=[0, 0, 0],
            nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF"], nodes_values=[0.0, 0, 0], nodes_truenodeids=[1, 0, 0],
            nodes_falsenodeids=[2, 0, 0], class_treeids=[0, 0, 0, 0], class_nodeids=[1, 1, 2, 2],
            class_ids=[0, 1, 1, 2], class_weights=[0.7, 0.3, 0.4, 0.6])),
    ]
    for op_type, attrs in cases:
        attrs.setdefault("classlabels_strings", labels)
        node = helper.make_node(op_type, ["x0"], ["label", "scores"], domain=ML, **attrs)
        graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x0", FLOAT, x.shape)],
                                  [helper.make_tensor_value_info("label", STRING, None),
                                   helper.make_tensor_value_info("scores", FLOAT, None)])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid(ML, 3), helper.make_opsetid("", 17)])
        rep = onnx_jax.prepare(model)
        ours = list(rep.run([x]))
        assert_close(ours, run_ort(model, [x]), 1e-5, 1e-5)
        assert rep.program.plan[rep.program.graph.nodes[0]].host_tail is not None


def test_string_label_classifier_folds_when_its_input_is_constant():
    model = string_model("LinearClassifier", np.float32([[1.0]]), STRING, classlabels_strings=["no", "yes"],
                         coefficients=[2.0], intercepts=[-1.0])
    constant = helper.make_node("Constant", [], ["x0"], value=onnx.numpy_helper.from_array(np.float32([[0.0], [3.0]])))
    model.graph.node.insert(0, constant)
    del model.graph.input[:]
    assert run_ours(model, [])[0].tolist() == ["no", "yes"]


def test_zip_map_matches_onnxruntime():
    """ZipMap runs on the host; its output is a list of dicts, as onnxruntime returns."""
    from onnx_jax.ops.ml import ZipMap

    x = np.random.default_rng(1).random((4, 3)).astype(np.float32)
    for attrs in (dict(classlabels_strings=["a", "b", "c"]), dict(classlabels_int64s=[3, 1, 2])):
        key = STRING if "classlabels_strings" in attrs else INT64
        node = helper.make_node("ZipMap", ["x0"], ["y0"], domain=ML, **attrs)
        out = helper.make_value_info("y0", helper.make_sequence_type_proto(
            helper.make_map_type_proto(key, helper.make_tensor_type_proto(FLOAT, None))))
        graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x0", FLOAT, x.shape)], [out])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid(ML, 1), helper.make_opsetid("", 17)])
        expected = run_ort(model, [x])[0]
        ours = ZipMap(x, **attrs)
        assert isinstance(ours, list) and [sorted(m) for m in ours] == [sorted(m) for m in expected]
        for a, b in zip(ours, expected):  # a map: onnxruntime sorts its keys, the values are what matter
            np.testing.assert_allclose([a[k] for k in b], list(b.values()), rtol=1e-6)


def zip_map_model():
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    x = np.random.default_rng(2).normal(size=(30, 2)).astype(np.float32)
    y = np.array(["no", "yes"])[(x[:, 0] > 0).astype(int)]
    return to_onnx(LogisticRegression().fit(x, y), x[:1], target_opset={"": 17, ML: 3}), x


def test_zip_map_output_comes_back_as_a_list_of_dicts():
    pytest.importorskip("skl2onnx")
    model, x = zip_map_model()
    ours, expected = onnx_jax.prepare(model).run([x]), run_ort_named(model, x)
    assert ours[0].tolist() == expected[0].tolist()
    assert isinstance(ours[1], list) and len(ours[1]) == len(expected[1])
    for a, b in zip(ours[1], expected[1]):
        assert sorted(a) == sorted(b)
        np.testing.assert_allclose([a[k] for k in b], list(b.values()), rtol=1e-5, atol=1e-6)


def dict_vectorizer_model(key, vocabulary, value_type=FLOAT):
    node = helper.make_node("DictVectorizer", ["x0"], ["y0"], domain=ML, **vocabulary)
    map_type = helper.make_map_type_proto(key, helper.make_tensor_type_proto(value_type, None))
    graph = helper.make_graph([node], "g", [helper.make_value_info("x0", map_type)],
                              [helper.make_tensor_value_info("y0", value_type, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid(ML, 1), helper.make_opsetid("", 17)])


def test_dict_vectorizer_matches_onnxruntime():
    # Python ints and float64 values in a map of floats: the declared float32 comes out, as from onnxruntime
    for key, vocabulary, values in [
        (STRING, dict(string_vocabulary=["a", "b", "c"]), [{"a": 1.5, "c": -2.0, "z": 3.0}, {"a": 1, "b": 2}]),
        (INT64, dict(int64_vocabulary=[4, 2]), [{2: 0.25, 9: 1.0}, {np.int64(4): np.float64(0.5), True: 3}]),
    ]:
        model = dict_vectorizer_model(key, vocabulary)
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        for value in values:
            ours = run_ours(model, {"x0": value})
            assert ours[0].dtype == np.float32
            assert_close(ours, session.run(None, {"x0": value}))


def test_an_empty_map_gives_the_declared_value_type():
    for value_type, dtype in [(FLOAT, np.float32), (onnx.TensorProto.DOUBLE, np.float64), (INT64, np.int64)]:
        rep = onnx_jax.prepare(dict_vectorizer_model(STRING, dict(string_vocabulary=["a", "b"]), value_type))
        for value in ({}, {"a": 2}):
            (out,) = rep.run({"x0": value})
            assert out.dtype == dtype and out.tolist() == [[value.get("a", 0), 0]]


def test_map_input_of_other_types_is_refused_by_name():
    model = dict_vectorizer_model(STRING, dict(string_vocabulary=["a", "b"]))
    rep = onnx_jax.prepare(model)
    for value, what in [
        ({1: 1.5}, "'x0' holds strings, got 1 (int) in it (in its keys: it is a map from strings to float32)"),
        ({1.5: 1.0}, "'x0' holds strings, got 1.5 (float) in it (in its keys"),
        ({"a": "x"}, "'x0': cannot convert a list of text to float32 (in its values: it is a map from strings"),
        ({"a": [1.0, 2.0]}, "'x0' is a map from strings to float32: its values must be scalars"),
        ({"a": True, "b": 1e40}, "'x0' is float32: 1e+40 in the list does not fit it"),
        ([1.0], "'x0' is a map from strings to float32: pass a dict, got list"),
    ]:
        with pytest.raises(onnx_jax.InvalidInputError, match=re.escape(what)):
            rep.run({"x0": value})
    ints = onnx_jax.prepare(dict_vectorizer_model(STRING, dict(string_vocabulary=["a", "b"]), INT64))
    for value, what in [({"a": 1.5}, "1.5"), ({"a": 2**63}, "9223372036854775808")]:
        with pytest.raises(onnx_jax.InvalidInputError, match=f"'x0' is int64: {what} in the list does not fit it"):
            ints.run({"x0": value})
    value = {"b": 3}
    out = ints.run({"x0": value})[0]
    assert out.dtype == np.int64 and out.tolist() == [[0, 3]]
    assert type(value["b"]) is int  # the caller's dict is left as it was


# scikit-learn models through skl2onnx


sklearn = pytest.importorskip("sklearn")
skl2onnx = pytest.importorskip("skl2onnx")


def sklearn_cases():
    """name: (estimator, number of classes, 0 for a regressor)."""
    from sklearn import ensemble, linear_model, pipeline, preprocessing, svm

    return {
        "random_forest_3": (ensemble.RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0), 3),
        "random_forest_2": (ensemble.RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0), 2),
        "gradient_boosting_3": (ensemble.GradientBoostingClassifier(n_estimators=5, max_depth=3, random_state=0), 3),
        "gradient_boosting_2": (ensemble.GradientBoostingClassifier(n_estimators=5, max_depth=3, random_state=0), 2),
        "forest_regressor": (ensemble.RandomForestRegressor(n_estimators=5, max_depth=4, random_state=0), 0),
        "gb_regressor": (ensemble.GradientBoostingRegressor(n_estimators=5, max_depth=3, random_state=0), 0),
        "logistic_3": (linear_model.LogisticRegression(max_iter=500), 3),
        "logistic_2": (linear_model.LogisticRegression(max_iter=500), 2),
        "linear": (linear_model.LinearRegression(), 0),
        "svc_3": (svm.SVC(probability=True, random_state=0), 3),
        "svc_2": (svm.SVC(kernel="poly", random_state=0), 2),
        "svr": (svm.SVR(), 0),
        "scaled_logistic": (pipeline.make_pipeline(preprocessing.StandardScaler(), preprocessing.Normalizer(),
                                                   linear_model.LogisticRegression(max_iter=500)), 2),
    }


@pytest.mark.filterwarnings("ignore::FutureWarning")  # SVC(probability=True) is deprecated
@pytest.mark.parametrize("name", list(sklearn_cases()))
def test_sklearn_models_match_onnxruntime(name):
    from skl2onnx import to_onnx

    estimator, classes = sklearn_cases()[name]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4)).astype(np.float32)
    if classes:
        y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (classes == 3) * (x[:, 2] > 0.5)
    else:
        y = x @ np.float32([1, -2, 0.5, 0])
    model = estimator.fit(x, y)
    proto = to_onnx(model, x[:1], options={"zipmap": False} if classes else None, target_opset={"": 17, ML: 3})
    assert_close(list(onnx_jax.prepare(proto).run([x])), run_ort_named(proto, x), 1e-4, 1e-4)


def run_ort_named(model, x):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})


# Real models

