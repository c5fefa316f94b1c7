import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from oracle import arrays, check_node, shapes


@given(st.data())
def test_add_broadcasts_like_reference(data):
    shape = data.draw(shapes())
    a = data.draw(arrays(np.float32, shape))
    b = data.draw(arrays(np.float32, shape[-1:] if shape else ()))
    check_node("Add", [a, b])
