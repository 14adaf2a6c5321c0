"""RLE masks: decoding refuses sizes before allocating; encode/decode round-trips."""

import re

import numpy as np
import pytest

from edgeseg.runtimes.pipeline.rle import rle_decode, rle_encode

# --------------------------------------------------------------------------------------
# RLE and COCO conversion
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rle, problem",
    [
        ({"size": [100_000, 100_000], "counts": "0"}, "more than 100,000,000 pixels"),
        ({"size": [4, 5], "counts": [15, 10]}, "cover 25 pixels"),
        ({"size": [4, 5], "counts": [-5, 30]}, "run outside 0..20"),
        ({"size": [4, 5], "counts": [2**62, 2**62, 20]}, "run outside 0..20"),
        ({"size": [4, 5], "counts": [10**30]}, "flat list of integers"),
        ({"size": [4, 5], "counts": [1.5, 18.5]}, "flat list of integers"),
        ({"size": [4, 5], "counts": [[20]]}, "flat list of integers"),
        ({"size": [4, 5], "counts": "\x7f"}, "outside COCO's alphabet"),
        ({"size": [4, 5], "counts": "o"}, "ends inside a value"),
        ({"size": [4, 5], "counts": "o" * 20 + "0"}, "more than 13 characters"),
        ({"size": [4, 5], "counts": None}, "string or a list"),
        ({"size": [True, 5], "counts": [5]}, "two non-negative integers"),
        ({"size": "45", "counts": [5]}, "must be [H, W]"),
        ([1, 2], "mapping with 'size' and 'counts'"),
    ],
)
def test_rle_decode_refuses_before_allocating(rle, problem):
    with pytest.raises(ValueError, match=re.escape(problem)):
        rle_decode(rle)


def test_rle_round_trip_still_holds():
    mask = np.zeros((30, 40), bool)
    mask[5:20, 8:33] = True
    np.testing.assert_array_equal(rle_decode(rle_encode(mask)), mask)
    assert rle_decode({"size": [30, 40], "counts": [1200]}).sum() == 0
