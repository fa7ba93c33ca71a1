import numpy as np
import pytest

from segzoo.blocks import CropToReference
from tests.layer_testing import check_layer


@pytest.mark.parametrize("offset,expected_slice", [
    (0, (slice(0, 4), slice(0, 3))),
    (2, (slice(2, 6), slice(2, 5))),
    ((1, 3), (slice(1, 5), slice(3, 6))),
    ("center", (slice(1, 5), slice(2, 5))),
])
def test_crop_to_reference(offset, expected_slice):
    x = np.random.default_rng(0).uniform(size=(2, 7, 8, 3)).astype(np.float32)
    reference = np.zeros((2, 4, 3, 1), np.float32)
    out = check_layer(CropToReference, {"offset": offset}, [x, reference],
                      expected_output_shape=(2, 4, 3, 3))
    np.testing.assert_array_equal(out, x[:, expected_slice[0], expected_slice[1], :])


def test_bad_offset_raises():
    with pytest.raises(ValueError, match="offset"):
        CropToReference(-1)
    with pytest.raises(ValueError, match="offset"):
        CropToReference("middle")
