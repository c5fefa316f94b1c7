"""scikit-learn pipelines converted by skl2onnx: onnx_jax against scikit-learn itself and against onnxruntime.

Labels must be identical; probabilities, scores and distances (float32 in the models, float64 in scikit-learn)
agree closely with scikit-learn and more closely with onnxruntime, which computes in float32 as we do.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

import onnx_jax

sklearn = pytest.importorskip("sklearn")
skl2onnx = pytest.importorskip("skl2onnx")

OPSETS = {"": 17, "ai.onnx.ml": 3}
VS_SKLEARN = dict(rtol=1e-4, atol=1e-5)
VS_ORT = dict(rtol=1e-5, atol=1e-6)


def data(classes=("cat", "dog", "emu"), rows=80, features=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype(np.float32)
    index = (x[:, 0] + x[:, 1] > 0).astype(int) + (len(classes) > 2) * (x[:, 2] > 0.5)
    return x, np.asarray(classes)[index]


def convert(estimator, x, **options):
    from skl2onnx import to_onnx

    return to_onnx(estimator, x[:1], options=options or None, target_opset=OPSETS)


def run_ort(model, x):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})


def run_ours(model, x):
    return list(onnx_jax.prepare(model).run([x]))


def check_classifier(estimator, x, expected_labels_dtype=object):
    """Labels and probabilities against scikit-learn's predict/predict_proba, and both outputs against
    onnxruntime."""
    model = convert(estimator, x, zipmap=False)
    labels, probabilities = run_ours(model, x)
    ort_labels, ort_probabilities = run_ort(model, x)
    assert labels.dtype == expected_labels_dtype
    assert labels.tolist() == ort_labels.tolist() == estimator.predict(x).tolist()
    np.testing.assert_allclose(probabilities, ort_probabilities, **VS_ORT)
    np.testing.assert_allclose(probabilities, estimator.predict_proba(x), **VS_SKLEARN)


def test_scaler_logistic_regression_with_string_labels():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = data()
    check_classifier(make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y), x)


def test_scaler_logistic_regression_with_string_labels_and_zip_map():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = data()
    estimator = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
    model = convert(estimator, x)  # ZipMap: probabilities as a list of {label: probability}
    labels, maps = run_ours(model, x)
    ort_labels, ort_maps = run_ort(model, x)
    assert labels.tolist() == ort_labels.tolist() == estimator.predict(x).tolist()
    assert isinstance(maps, list) and len(maps) == len(ort_maps) == len(x)
    expected = estimator.predict_proba(x)
    for row, (ours, theirs) in enumerate(zip(maps, ort_maps)):
        assert isinstance(ours, dict) and sorted(ours) == sorted(theirs) == sorted(estimator.classes_)
        np.testing.assert_allclose([ours[k] for k in theirs], list(theirs.values()), **VS_ORT)
        np.testing.assert_allclose([ours[k] for k in estimator.classes_], expected[row], **VS_SKLEARN)


def test_random_forest():
    from sklearn.ensemble import RandomForestClassifier

    x, y = data()
    check_classifier(RandomForestClassifier(n_estimators=10, max_depth=5, random_state=0).fit(x, y), x)


def test_gradient_boosting():
    from sklearn.ensemble import GradientBoostingClassifier

    x, y = data()
    check_classifier(GradientBoostingClassifier(n_estimators=10, max_depth=3, random_state=0).fit(x, y), x)
    x, y = data(classes=np.int64([3, 8]))
    check_classifier(GradientBoostingClassifier(n_estimators=10, max_depth=3, random_state=0).fit(x, y), x,
                     np.int64)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # SVC(probability=True) is deprecated
def test_svc():
    from sklearn.svm import SVC

    x, y = data()
    estimator = SVC(probability=True, random_state=0).fit(x, y)
    model = convert(estimator, x, zipmap=False)
    labels, probabilities = run_ours(model, x)
    ort_labels, ort_probabilities = run_ort(model, x)
    assert labels.tolist() == ort_labels.tolist()
    np.testing.assert_allclose(probabilities, ort_probabilities, **VS_ORT)
    # libsvm's labels come from one-vs-one votes, its probabilities from Platt scaling: they can disagree, and
    # both runtimes follow the votes as scikit-learn's predict does
    assert labels.tolist() == estimator.predict(x).tolist()
    np.testing.assert_allclose(probabilities, estimator.predict_proba(x), rtol=1e-3, atol=1e-4)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_pca_mlp():
    from sklearn.decomposition import PCA
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline

    x, y = data(features=6)
    estimator = make_pipeline(PCA(n_components=3), MLPClassifier(hidden_layer_sizes=(16,), max_iter=300,
                                                                  random_state=0))
    check_classifier(estimator.fit(x, y), x)


def test_kmeans():
    from sklearn.cluster import KMeans

    x, _ = data()
    estimator = KMeans(n_clusters=3, n_init=3, random_state=0).fit(x)
    model = convert(estimator, x)
    labels, distances = run_ours(model, x)
    ort_labels, ort_distances = run_ort(model, x)
    assert labels.tolist() == ort_labels.tolist() == estimator.predict(x).tolist()
    np.testing.assert_allclose(distances, ort_distances, **VS_ORT)
    np.testing.assert_allclose(distances, estimator.transform(x), **VS_SKLEARN)
