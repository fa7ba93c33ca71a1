"""Keypoint metadata of keypoint models: names, skeleton, and the horizontal-flip permutation.

COCO's person category (`person_keypoints_*.json`) names 17 keypoints and
draws a skeleton of 19 limbs; COCO's JSON writes the skeleton 1-based, here
pairs are 0-based indices into the names. A horizontal flip mirrors x and
swaps every `left_*` keypoint with its `right_*` twin (`flip_permutation`).
"""

from __future__ import annotations

COCO_PERSON_KEYPOINT_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle",
)
# COCO's "skeleton" of the person category, converted from 1-based to 0-based indices.
COCO_PERSON_SKELETON = tuple((a - 1, b - 1) for a, b in (
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8), (7, 9), (8, 10),
    (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7),
))


def flip_permutation(names) -> list[int]:
    """Index map of a horizontal flip: keypoint i of the flipped instance is keypoint `perm[i]`.

    `left_X` <-> `right_X` (also "left" / "right" anywhere in the name, any
    case, when the twin exists); other keypoints map to themselves.
    """
    names = [str(n) for n in names]
    index = {name: i for i, name in enumerate(names)}
    perm = []
    for i, name in enumerate(names):
        lower = name.lower()
        twin = None
        for a, b in (("left", "right"), ("right", "left")):
            if a in lower:
                start = lower.index(a)
                candidate = name[:start] + _same_case(name[start:start + len(a)], b) + name[start + len(a):]
                twin = index.get(candidate)
                break
        perm.append(i if twin is None else twin)
    return perm


def _same_case(template, word):
    if template.isupper():
        return word.upper()
    if template[:1].isupper():
        return word.capitalize()
    return word


def resolve_keypoint_metadata(num_keypoints, names=None, skeleton=None):
    """(names, skeleton) of a model with `num_keypoints` (0: no keypoint branch -> ([], [])).

    Defaults: COCO's person names and skeleton when K == 17, else "keypoint_i"
    and no limbs. Raises ValueError on a wrong count or an out-of-range pair.
    """
    num_keypoints = int(num_keypoints)
    if num_keypoints == 0:
        if names or skeleton:
            raise ValueError("keypoint_names / keypoint_skeleton need a keypoint branch (keypoints=True)")
        return [], []
    if names is None:
        names = COCO_PERSON_KEYPOINT_NAMES if num_keypoints == 17 else [f"keypoint_{i}" for i in range(num_keypoints)]
    names = [str(n) for n in names]
    if len(names) != num_keypoints:
        raise ValueError(f"keypoint_names has {len(names)} entries but num_keypoints={num_keypoints}")
    if skeleton is None:
        skeleton = COCO_PERSON_SKELETON if tuple(names) == COCO_PERSON_KEYPOINT_NAMES else []
    pairs = []
    for pair in skeleton:
        a, b = (int(v) for v in pair)
        if not (0 <= a < num_keypoints and 0 <= b < num_keypoints):
            raise ValueError(f"keypoint_skeleton pair {list(pair)} is out of range for {num_keypoints} "
                             "keypoints (pairs are 0-based indices)")
        pairs.append((a, b))
    return names, pairs
