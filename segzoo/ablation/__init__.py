"""`segzoo ablate`: the seed's ablation experiments as one command.

    segzoo ablate mask_rcnn [--minutes 40] [--studies roi_pooler,mask_loss,mask_head,mask_scoring]
    segzoo ablate fcn [--minutes 30] [--studies upsampling,skips] [--seeds 3] --out runs/ablate-fcn

`studies` holds the studies and variants as data, `runner` trains each run
through the common fit loop and evaluates it with `segzoo eval`'s evaluator,
`report` writes OUT/ablation.json, .md and .png.
"""

from segzoo.ablation.runner import evaluate_checkpoint, run_ablation
from segzoo.ablation.studies import FAMILIES, get_family, select_studies

__all__ = ["run_ablation", "evaluate_checkpoint", "FAMILIES", "get_family", "select_studies"]
