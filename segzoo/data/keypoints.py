"""Keypoint names, skeletons and the horizontal-flip permutation.

A keypoint dataset names its K keypoints (COCO: a category's `keypoints`
list) and may give a skeleton (pairs of keypoint indices, drawn as lines).
Keypoints are float32 `[N, K, 3]`: (x, y) in image pixels as the annotation
file gives them (COCO: pixel indices, used unchanged as torchvision does) and
v = 0 not labelled, 1 labelled but hidden, 2 visible.

A horizontal flip mirrors x and also exchanges the keypoints whose names
differ only by a `left` / `right` word (COCO's `left_eye` <-> `right_eye`,
`top_left` <-> `top_right`): a mirrored left eye is the right eye of the
mirrored person. `flip_indices` gives that permutation.
"""

from __future__ import annotations

import re
import warnings

# COCO person keypoints (person_keypoints_*.json), in COCO's order.
COCO_PERSON_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
# COCO's skeleton, 0-based (the JSON's `skeleton` is 1-based).
COCO_PERSON_SKELETON = tuple(
    (a - 1, b - 1)
    for a, b in (
        (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8),
        (7, 9), (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7),
    )
)  # fmt: skip

_SIDE = re.compile(r"(?<![a-z])(left|right)(?![a-z])", re.IGNORECASE)


def _mirror_name(name: str) -> str:
    def swap(match):
        word = match.group(0)
        other = "right" if word.lower() == "left" else "left"
        if word.isupper():
            return other.upper()
        return other.capitalize() if word[0].isupper() else other

    return _SIDE.sub(swap, name)


def flip_indices(names) -> list[int]:
    """The keypoint permutation of a horizontal flip.

    Args:
        names: the K keypoint names.

    Returns:
        list of K ints: flipped keypoint k takes the (mirrored) position of
        keypoint `indices[k]`, i.e. `flipped = keypoints[..., indices, :]`.
        A name with a `left` / `right` word maps to the name with the other
        word (ignoring case); names without one (and, with a warning, names
        whose partner is missing) map to themselves. COCO person: [0, 2, 1, 4, 3, 6, 5, ...].
    """
    names = [str(n) for n in names]
    index = {n.lower(): i for i, n in enumerate(names)}  # names match ignoring case
    if len(index) != len(names):
        raise ValueError(f"keypoint names must be distinct, got {names}")
    indices, unpaired = [], []
    for i, name in enumerate(names):
        partner = _mirror_name(name).lower()
        if partner != name.lower() and partner not in index:
            unpaired.append(name)
        indices.append(index.get(partner, i))
    if unpaired:
        warnings.warn(
            f"keypoints {unpaired} have no left/right partner among {names}; a horizontal "
            "flip leaves them in place",
            stacklevel=2,
        )
    return indices


def check_skeleton(skeleton, num_keypoints: int, source: str = "skeleton") -> tuple:
    """0-based skeleton pairs as a tuple of (i, j) int pairs, each in 0..K-1.

    Raises:
        ValueError: a pair is not two indices in range (`source` names the file).
    """
    pairs = []
    for pair in skeleton or ():
        if len(pair) != 2 or not all(0 <= int(v) < num_keypoints for v in pair):
            raise ValueError(
                f"{source}: skeleton pair {list(pair)} is not two keypoint indices in "
                f"0..{num_keypoints - 1}"
            )
        pairs.append((int(pair[0]), int(pair[1])))
    return tuple(pairs)
