"""Outputs written channels last by a converter, put back channels first (``backends.layout.channels_first``)."""

import numpy as np
import pytest

from edgeseg.runtimes.backends.layout import channels_first


@pytest.mark.parametrize("h, w", [(32, 32), (32, 40), (40, 32)])
def test_protos_of_an_nhwc_file_are_transposed_even_when_the_shape_cannot_tell(h, w):
    """At a 128-pixel side the protos are 32 wide as well as 32 deep: an NHWC file's (B, h, w, 32) is still channels last."""
    nchw = np.random.RandomState(0).rand(1, 32, h, w).astype(np.float32)
    np.testing.assert_array_equal(channels_first(nchw.transpose(0, 2, 3, 1), 32, nhwc=True), nchw)
    np.testing.assert_array_equal(channels_first(nchw, 32, nhwc=False), nchw)  # an NCHW file (litert-torch) is left alone


def test_preds_are_channels_first_whichever_way_they_were_written():
    preds = np.random.RandomState(1).rand(1, 41, 420).astype(np.float32)
    for nhwc in (True, False):
        np.testing.assert_array_equal(channels_first(preds.transpose(0, 2, 1), 41, nhwc), preds)
        np.testing.assert_array_equal(channels_first(preds, 41, nhwc), preds)
