"""String tensors stay on the host, composed with compiled numeric segments."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import onnx_jax
from oracle import check_node

words = st.lists(st.sampled_from(["Apple", "apple", "BANANA", "kiwi", "the", "A b", ""]), min_size=1, max_size=6)


def test_strings_feed_a_numeric_segment_and_come_back_out():
    nodes = [
        helper.make_node("StringNormalizer", ["text"], ["lower"], case_change_action="LOWER"),
        helper.make_node("Constant", [], ["target"], value=numpy_helper.from_array(np.array(["apple"], object))),
        helper.make_node("Equal", ["lower", "target"], ["hit"]),
        helper.make_node("Cast", ["hit"], ["hitf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["hitf", "weight"], ["score"]),
    ]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("text", TensorProto.STRING, [None]),
         helper.make_tensor_value_info("weight", TensorProto.FLOAT, [None])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("lower", TensorProto.STRING, None)],
    )
    rep = onnx_jax.prepare(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]))
    for text in (["Apple", "pear", "APPLE"], ["kiwi", "apple", "x"]):
        score, lower = rep.run({"text": np.array(text), "weight": np.float32([1, 2, 3])})
        expected = np.array([w.lower() == "apple" for w in text], np.float32) * np.float32([1, 2, 3])
        np.testing.assert_array_equal(score, expected)
        assert lower.dtype == object and lower.tolist() == [w.lower() for w in text]


def test_a_string_input_takes_text_and_refuses_anything_else_by_name():
    graph = helper.make_graph([helper.make_node("Identity", ["text"], ["same"])], "g",
                              [helper.make_tensor_value_info("text", TensorProto.STRING, [None])],
                              [helper.make_tensor_value_info("same", TensorProto.STRING, None)])
    rep = onnx_jax.prepare(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]))
    for text in (np.array(["a", "bc"]), ["a", "bc"], np.array([b"a", b"bc"]), np.array(["a", b"bc"], object)):
        (same,) = rep.run({"text": text})
        assert same.dtype == object and same.tolist() == list(np.asarray(text).tolist())
    for text, culprit in ((np.float32([1, 2]), "1.0"), ([1, 2], "1 (int)"), (np.array(["a", None], object), "None")):
        with pytest.raises(onnx_jax.InvalidInputError, match=rf"'text' holds strings, got {re.escape(culprit)}"):
            rep.run({"text": text})


@settings(max_examples=10)
@given(words, st.sampled_from(["NONE", "LOWER", "UPPER"]))
def test_string_normalizer_case_change_matches_reference(text, action):
    text = [w for w in text if w] or ["x"]  # onnx.reference also drops empty strings, which the spec keeps
    check_node("StringNormalizer", [np.array(text, object)], case_change_action=action)


@settings(max_examples=10)
@given(words, st.sampled_from(["NONE", "LOWER", "UPPER"]), st.booleans())
def test_string_normalizer_stopwords_follow_the_spec(text, action, case_sensitive):
    """Stop words match case-insensitively unless is_case_sensitive (onnx.reference ignores that flag)."""
    stops = ["the", "apple"]
    model_node = helper.make_node("StringNormalizer", ["x"], ["y"], case_change_action=action,
                                  is_case_sensitive=int(case_sensitive), stopwords=stops)
    graph = helper.make_graph([model_node], "g", [helper.make_tensor_value_info("x", TensorProto.STRING, [None])],
                              [helper.make_tensor_value_info("y", TensorProto.STRING, None)])
    (y,) = onnx_jax.prepare(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])).run(
        [np.array(text, object)])
    fold = (lambda w: w) if case_sensitive else str.lower
    kept = [w for w in text if fold(w) not in {fold(s) for s in stops}]
    kept = [{"LOWER": w.lower(), "UPPER": w.upper()}.get(action, w) for w in kept] or [""]
    assert y.tolist() == kept


@settings(max_examples=10)
@given(words, words)
def test_string_concat_matches_reference(a, b):
    n = min(len(a), len(b))
    check_node("StringConcat", [np.array(a[:n], object), np.array(b[:n], object)])


@settings(max_examples=10)
@given(words, st.sampled_from([None, " ", "a"]), st.sampled_from([None, 1, 2]))
def test_string_split_matches_reference(text, delimiter, maxsplit):
    attrs = {k: v for k, v in {"delimiter": delimiter, "maxsplit": maxsplit}.items() if v is not None}
    check_node("StringSplit", [np.array(text, object)], 2, **attrs)


@settings(max_examples=10)
@given(words)
def test_regex_full_match_matches_reference(text):
    check_node("RegexFullMatch", [np.array(text, object)], pattern="[a-z]+")


def _cast_model(from_type, to_type):
    node = helper.make_node("Cast", ["x"], ["y"], to=to_type)
    graph = helper.make_graph([node], "cast", [helper.make_tensor_value_info("x", from_type, None)],
                              [helper.make_tensor_value_info("y", to_type, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])


def _ort(model, feeds):
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


def test_cast_numbers_to_strings_and_back_matches_onnxruntime():
    """Cast to STRING runs on the host, after the compiled segment that computes the numbers."""
    cases = [
        (TensorProto.FLOAT, np.float32([1.0, 0.1, 0.3, 1e20, np.nan, -np.inf, 3.1415927, 1e-7, -0.0, 123456.0, 1e16])),
        (TensorProto.DOUBLE, np.float64([1.0, 0.1, 2.5e-300, 1 / 3, 0.1 + 0.2, 123456789.0])),
        (TensorProto.FLOAT16, np.float16([0.3, 1 / 3])),
        (TensorProto.INT64, np.int64([[1, -5], [0, 2**40]])),
        (TensorProto.BOOL, np.array([True, False])),
    ]
    for from_type, x in cases:
        model = _cast_model(from_type, TensorProto.STRING)
        ours, expected = onnx_jax.prepare(model).run([x])[0], _ort(model, {"x": x})[0]
        assert ours.dtype == object and ours.shape == expected.shape and ours.tolist() == expected.tolist()
    text = np.array(["1.5", "  2", "nan", "-INF", "1e3", "-0.25"], object)
    for to_type, dtype in [(TensorProto.FLOAT, np.float32), (TensorProto.DOUBLE, np.float64)]:
        model = _cast_model(TensorProto.STRING, to_type)
        ours, expected = onnx_jax.prepare(model).run([text])[0], _ort(model, {"x": text})[0]
        assert ours.dtype == dtype
        np.testing.assert_array_equal(ours, expected)
    model = _cast_model(TensorProto.STRING, TensorProto.INT64)
    ints = np.array([["12", "-3"], ["0", "7"]], object)
    np.testing.assert_array_equal(onnx_jax.prepare(model).run([ints])[0], _ort(model, {"x": ints})[0])


def test_numbers_made_strings_fold_when_constant():
    nodes = [helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.float32([0.5, 2.0]))),
             helper.make_node("Cast", ["c"], ["y"], to=TensorProto.STRING)]
    graph = helper.make_graph(nodes, "g", [], [helper.make_tensor_value_info("y", TensorProto.STRING, None)])
    rep = onnx_jax.prepare(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]))
    assert rep.run([])[0].tolist() == ["0.5", "2"]


TFIDF = dict(max_gram_length=2, max_skip_count=1, min_gram_length=1, ngram_counts=[0, 4], ngram_indexes=[0, 1, 2, 3, 4, 5],
             weights=[0.5, 1.0, 2.0, 1.5, 3.0, 0.25])


@pytest.mark.parametrize("mode", ["TF", "IDF", "TFIDF"])
@pytest.mark.parametrize("strings", [False, True])
def test_tfidf_vectorizer_matches_reference_and_onnxruntime(mode, strings):
    pool = [2, 3, 5, 4, 2, 3, 5, 4]  # unigrams 2 3 5 4, bigrams (2 3) (5 4)
    x = np.int32([[1, 2, 3, 5, 4, 2], [2, 3, 3, 5, 5, 4]])
    attrs = dict(TFIDF, mode=mode, pool_int64s=pool)
    if strings:
        words = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}
        attrs = dict(TFIDF, mode=mode, pool_strings=[words[p] for p in pool])
        x = np.vectorize(words.get, otypes=[object])(x)
    check_node("TfIdfVectorizer", [x], opset=9, **attrs)
    model = node_model_typed(x, attrs)
    np.testing.assert_allclose(onnx_jax.prepare(model).run([x])[0], _ort(model, {"x": x})[0], rtol=1e-6)


def node_model_typed(x, attrs):
    elem = TensorProto.STRING if x.dtype == object else TensorProto.INT32
    node = helper.make_node("TfIdfVectorizer", ["x"], ["y"], **attrs)
    graph = helper.make_graph([node], "tfidf", [helper.make_tensor_value_info("x", elem, x.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)])
