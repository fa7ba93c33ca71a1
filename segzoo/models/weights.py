"""Copy weights between models by layer name (staged training, `--init-from`).

FCN-16s starts from FCN-32s and FCN-8s from FCN-16s (Long et al. 2015):
every layer the two nets share by name (VGG16, fc6, fc7, score_fr) is
copied. When the class counts differ, the class-dependent layers (score and
upsampling layers, see `FCN.class_dependent_layers`) do not match in shape
and are skipped, keeping their fresh initialisation; the report says so.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os


@dataclasses.dataclass
class WeightLoadReport:
    """What `load_weights_by_name` did, by layer name.

    Attributes:
        loaded: layers whose weights were copied.
        skipped_mismatched: layer name -> (target shapes, source shapes), not copied.
        missing_in_source: target layers with weights that the source lacks
            (they keep their initialisation).
        not_copied: target layers left at their initialisation because `skip` names them.
        unused_in_source: source layers with weights that the target lacks.
        class_dependent: the target's `class_dependent_layers` (a skip there is
            expected when the class count changes; elsewhere the architectures differ).
    Names are layer paths: a composite layer whose shapes differ is matched
    sublayer by sublayer ("roi_heads/box_predictor/cls_score").
    """

    loaded: list = dataclasses.field(default_factory=list)
    skipped_mismatched: dict = dataclasses.field(default_factory=dict)
    missing_in_source: list = dataclasses.field(default_factory=list)
    not_copied: list = dataclasses.field(default_factory=list)
    unused_in_source: list = dataclasses.field(default_factory=list)
    class_dependent: tuple = ()

    def is_class_dependent(self, name) -> bool:
        return any(name == layer or name.startswith(layer + "/") for layer in self.class_dependent)

    def __str__(self):
        lines = [f"loaded {len(self.loaded)} layers by name"]
        for name, (target, source) in self.skipped_mismatched.items():
            why = "class count differs" if self.is_class_dependent(name) else "architecture differs"
            lines.append(f"  skipped {name}: shapes {target} here, {source} in the source ({why})")
        if self.missing_in_source:
            lines.append(f"  not in the source (kept initialisation): "
                         f"{', '.join(self.missing_in_source)}")
        if self.not_copied:
            lines.append(f"  not copied (kept initialisation): {', '.join(self.not_copied)}")
        if self.unused_in_source:
            lines.append(f"  unused source layers: {', '.join(self.unused_in_source)}")
        return "\n".join(lines)


def _layers_with_weights(model) -> dict:
    return {layer.name: layer for layer in model.layers if layer.weights}


def _sublayers_with_weights(layer) -> dict:
    return {sub.name: sub for sub in layer._flatten_layers(include_self=False, recursive=False) if sub.weights}


def _copy_by_name(model, source, skip_mismatched, report, prefix, skip=()):
    """Copies layer by layer; a composite layer whose shapes differ is matched sublayer by sublayer
    (e.g. a detector's RoI heads: the class-independent heads load, the predictors are skipped)."""
    target_layers = _layers_with_weights(model) if not prefix else _sublayers_with_weights(model)
    source_layers = _layers_with_weights(source) if not prefix else _sublayers_with_weights(source)
    for name, layer in target_layers.items():
        path = prefix + name
        if any(fnmatch.fnmatchcase(path, pattern) for pattern in skip):
            report.not_copied.append(path)
            continue
        if name not in source_layers:
            report.missing_in_source.append(path)
            continue
        values = source_layers[name].get_weights()
        target_shapes = [tuple(w.shape) for w in layer.weights]
        source_shapes = [tuple(v.shape) for v in values]
        if target_shapes != source_shapes:
            if _sublayers_with_weights(layer) and _sublayers_with_weights(source_layers[name]):
                _copy_by_name(layer, source_layers[name], skip_mismatched, report, prefix=path + "/",
                              skip=skip)
                continue
            if not skip_mismatched:
                raise ValueError(
                    f"layer {path!r}: weight shapes {target_shapes} in the model but "
                    f"{source_shapes} in the source; pass skip_mismatched=True to skip it"
                )
            report.skipped_mismatched[path] = (target_shapes, source_shapes)
            continue
        layer.set_weights(values)
        report.loaded.append(path)
    report.unused_in_source += [prefix + name for name in source_layers if name not in target_layers]


def load_weights_by_name(model, source, skip_mismatched=True, verbose=True, skip=()) -> WeightLoadReport:
    """Copies weights from `source` into `model`, layer by layer, where names match.

    Args:
        model: the Keras model to initialise (its top-level layers are matched).
        source: a Keras model, or a path to a `.keras` checkpoint (or a run
            directory holding `model.keras`), loaded with safe_mode=True.
        skip_mismatched: skip layers whose weight shapes differ (e.g. the
            class-dependent layers when the class count changes); False raises.
        verbose: print the report.
        skip: `fnmatch` patterns of layer paths to leave at their initialisation even where
            the source has them (e.g. ("roi_heads",): a detector's trunk only; ("score*",
            "upscore*"): an FCN's VGG16 and fc6 / fc7 only).
    Returns:
        `WeightLoadReport`.
    Raises:
        ValueError: shapes differ and `skip_mismatched` is False, or no layer matches.
    """
    if isinstance(source, (str, os.PathLike)):
        from segzoo.models.base import load_checkpoint

        source = load_checkpoint(source)
    report = WeightLoadReport(class_dependent=tuple(model.class_dependent_layers))
    _copy_by_name(model, source, skip_mismatched, report, prefix="", skip=tuple(skip))
    if not report.loaded:
        raise ValueError(
            f"no layer of {model.name!r} matches a layer of {source.name!r} by name and shape; "
            "is the source the right kind of model?"
        )
    if verbose:
        print(report)
    return report
