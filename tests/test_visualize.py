import numpy as np

from segzoo.visualize import draw_keypoints, instance_overlay


def test_draw_keypoints_dots_and_skeleton():
    image = np.zeros((64, 64, 3), np.uint8)
    color = np.uint8([[200, 10, 30]])
    # (x, y, score): points 0 and 1 shown, 2 below the threshold, 3 unlabelled (v = 0).
    points = np.float32([[[10, 10, 2], [50, 10, 1], [30, 50, -1.0], [50, 50, 0]]])
    out = draw_keypoints(image, points, skeleton=[(0, 1), (1, 2), (0, 3)], colors=color)
    np.testing.assert_array_equal(out[10, 10], color[0])
    np.testing.assert_array_equal(out[10, 50], color[0])
    assert out[10, 30].any()  # the 0-1 bone
    assert not out[50, 30].any() and not out[50, 50].any()  # not drawn
    assert not out[30, 40].any() and not out[30, 30].any()  # no bone to a hidden point
    assert not image.any()  # the input is left as it was


def test_instance_overlay_draws_keypoints_in_the_instance_colour():
    image = np.full((48, 48, 3), 128, np.uint8)
    points = np.float32([[[20, 30, 0.9]]])
    plain = instance_overlay(image, [[5, 5, 40, 40]], None, [1], [0.9], ["bg", "thing"])
    drawn = instance_overlay(image, [[5, 5, 40, 40]], None, [1], [0.9], ["bg", "thing"],
                             keypoints=points)
    assert (plain != drawn).any()
    np.testing.assert_array_equal(drawn[30, 20], drawn[25, 5])  # dot colour == box edge colour
