"""String tensors stay on the host, composed with compiled numeric segments."""

import numpy as np
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
