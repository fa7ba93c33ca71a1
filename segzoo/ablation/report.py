"""The ablation report: OUT/ablation.json, OUT/ablation.md, OUT/ablation.png.

`ablation.json`:

    {"family", "data", "seeds": [0, ...], "budget": {...}, "partial": bool,
     "records": [{"study", "variant", "model", "model_args", "init_from", "run",
                  "metrics": {key: mean}, "metrics_std": {key: sample std (ddof 1; 0 for
                  one seed)}, "per_seed": [{"seed", "metrics", "train_seconds", "steps",
                  "epochs"}], "train_seconds": mean, "epochs": mean, "steps": mean}, ...],
     "winners": {study: variant}, "claims": [{"study", "claim", "held", "verdict"}],
     "pretraining": null | {"run", "model", "model_args", "skip", "share",
                            "per_seed": [{"seed", "metrics", "train_seconds", "steps", "epochs",
                                          "checkpoint"}]}}

Metrics are `segzoo eval --json`'s (0..1). The Markdown tables show them as
percentages with one decimal (the papers' layout: a row per variant, AP /
AP50 / AP75 then the box APs; or pixel acc. / mean acc. / mean IU / f.w. IU),
"mean ± std" with several seeds; the winning variant of each study (highest
mean on the claim's metric) is in bold, and a line per study says whether the
seed's claim held on this data (and whether the difference exceeds the spread
over seeds).
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from segzoo.ablation.studies import Family, Study


def _mean_std(values):
    values = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not values:
        return None, None
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return float(np.mean(values)), std


def _per_seed(done: dict) -> dict:
    """What a report keeps of one run's done.json."""
    return {k: done[k] for k in ("seed", "metrics", "train_seconds", "steps", "epochs", "checkpoint")}


def build_records(family: Family, studies, seeds, results) -> list[dict]:
    """One record per (study, variant) with the seeds that are finished in `results`
    ({(run key, seed): done.json dict})."""
    from segzoo.ablation.runner import variant_keys

    keys_of_metrics = [key for key, _ in family.metrics]
    records = []
    for study in studies:
        keys = variant_keys(study)
        for variant in study.variants:
            per_seed = [results[(keys[variant.name], s)] for s in seeds
                        if (keys[variant.name], s) in results]
            metrics, spread = {}, {}
            for key in keys_of_metrics:
                metrics[key], spread[key] = _mean_std(r["metrics"].get(key) for r in per_seed)
            records.append({
                "study": study.name, "variant": variant.name, "model": variant.model,
                "model_args": {**family.model_args, **variant.model_args},
                "init_from": variant.init_from, "run": keys[variant.name],
                "metrics": metrics, "metrics_std": spread,
                "per_seed": [_per_seed(r) for r in per_seed],
                "train_seconds": _mean_std(r["train_seconds"] for r in per_seed)[0],
                "epochs": _mean_std(r["epochs"] for r in per_seed)[0],
                "steps": _mean_std(r["steps"] for r in per_seed)[0],
            })
    return records


def pretraining_record(family: Family, seeds, results) -> dict | None:
    """The shared pre-training runs of `results` (None when the family has none)."""
    from segzoo.ablation.runner import pretraining_key

    pre = family.pretraining
    if pre is None:
        return None
    key = pretraining_key(family)
    return {
        "run": key, "model": pre.variant.model,
        "model_args": {**family.model_args, **pre.variant.model_args},
        "skip": list(pre.skip), "share": pre.share,
        "per_seed": [_per_seed(results[(key, s)]) for s in seeds if (key, s) in results],
    }


def _study_records(records, study):
    return [r for r in records if r["study"] == study.name]


def winner(records, study: Study) -> str | None:
    """The variant with the highest mean on the claim's metric (ties: the first listed)."""
    scored = [(r["metrics"].get(study.claim.metric), i, r["variant"])
              for i, r in enumerate(_study_records(records, study))]
    scored = [(v, -i, name) for v, i, name in scored if v is not None]
    return max(scored)[2] if scored else None


def check_claim(records, study: Study, num_seeds: int) -> dict:
    """Whether the seed's claim held on these numbers: {"study", "claim", "held", "verdict"}."""
    claim = study.claim
    rows = {r["variant"]: r for r in _study_records(records, study)}
    value = {name: r["metrics"].get(claim.metric) for name, r in rows.items()}
    std = {name: r["metrics_std"].get(claim.metric) or 0.0 for name, r in rows.items()}
    result = {"study": study.name, "claim": claim.text, "held": None}
    if any(v is None for v in value.values()) or len(value) < len(study.variants):
        result["verdict"] = f"not decided: some variants have no {claim.metric} yet"
        return result
    metric = claim.metric
    if max(value.values()) - min(value.values()) < 1e-9:
        result["verdict"] = (f"not decided: every variant has {metric} {100 * value[next(iter(value))]:.1f} "
                             "(the budget did not train them apart)")
        return result
    if claim.order:
        chain = [value[n] for n in claim.order]
        held = all(a < b for a, b in zip(chain, chain[1:], strict=False))
        detail = ", ".join(f"{n} {100 * value[n]:.1f}" for n in claim.order) + (
            "" if held else " (expected strictly increasing)")
        margins = [(claim.order[i], claim.order[i + 1]) for i in range(len(claim.order) - 1)]
    else:
        best = winner(records, study)
        tied = [n for n in value if n != best and abs(value[n] - value[best]) < 1e-9]
        if tied and any((n in claim.winners) != (best in claim.winners) for n in tied):
            result["verdict"] = (f"not decided: {', '.join([best, *tied])} tie at {metric} "
                                 f"{100 * value[best]:.1f}")
            return result
        held = best in claim.winners
        detail = f"best {metric}: {best} {100 * value[best]:.1f}"
        others = [n for n in value if n not in claim.winners]
        top = max(claim.winners, key=lambda n: value[n])
        margins = [(o, top) for o in others]
        if held and claim.largest_gain_at:
            gains = {m: min(rows[top]["metrics"][m] - rows[o]["metrics"][m] for o in others)
                     for m in claim.gain_metrics}
            at = max(gains, key=gains.get)
            detail += "; smallest margin over the others per metric: " + ", ".join(
                f"{m} {100 * g:+.1f}" for m, g in gains.items())
            if at != claim.largest_gain_at:
                held = False
                detail += f" (largest at {at}, not {claim.largest_gain_at})"
    verdict = ("held" if held else "did not hold") + f" ({detail})"
    if num_seeds > 1:
        clear = all(abs(value[b] - value[a]) > std[a] + std[b] for a, b in margins)
        verdict += ("; every gap exceeds the seeds' spread" if clear
                    else "; some gaps are within the seeds' spread (noise)")
    result.update(held=bool(held), verdict=verdict)
    return result


def _cell(mean, std, num_seeds):
    if mean is None:
        return "–"
    text = f"{100 * mean:.1f}"
    if num_seeds > 1:
        text += f" ± {100 * (std or 0.0):.1f}"
    return text


def markdown(content: dict, family: Family, studies) -> str:
    """The tables of OUT/ablation.md."""
    num_seeds = len(content["seeds"])
    budget = content["budget"]
    if budget.get("epochs") is not None:
        how = f"{budget['epochs']} epoch(s) per run"
    else:
        how = f"{budget['minutes']:g} min budget split evenly over the runs"
        if content.get("pretraining"):
            how = (f"{budget['minutes']:g} min budget: {100 * content['pretraining']['share']:.0f}% "
                   "to the shared pre-training, the rest split evenly over the variants' runs")
    lines = [
        f"# segzoo ablate {family.name} on {content['data']}",
        "",
        f"{how}; seeds {', '.join(map(str, content['seeds']))}; metrics of `segzoo eval` on the "
        f"val split, in %{' (mean ± std over seeds)' if num_seeds > 1 else ''}. "
        "Bold: the best variant of each study.",
    ]
    pre = content.get("pretraining")
    if pre:
        metric = family.studies[0].claim.metric
        done = ", ".join(f"seed {p['seed']}: {p['steps']} steps in {p['train_seconds']:.0f} s, "
                         f"{metric} {100 * p['metrics'][metric]:.1f}" for p in pre["per_seed"])
        share = (f"{100 * pre['share']:.0f}% of the budget" if budget.get("epochs") is None
                 else "the same epochs")
        args = ", ".join(f"{k}={v}" for k, v in pre["model_args"].items())
        lines += ["", f"Every variant's first stage starts from a shared pre-training per seed "
                      f"(the papers' ImageNet initialisation): `{pre['model']}` ({args}) trained for "
                      f"{share} ({done or 'not finished'}); its layers except "
                      f"{', '.join(pre['skip'])} initialise each variant, those start fresh."]
    if content.get("partial"):
        lines += ["", "**Partial: the ablation is still running or was interrupted.**"]
    headers = [h for _, h in family.metrics]
    for study in studies:
        rows = [r for r in content["records"] if r["study"] == study.name]
        best = content["winners"].get(study.name)
        lines += ["", f"## {study.name}", "",
                  "| " + " | ".join([study.name, *headers, "train s", "epochs"]) + " |",
                  "|" + "---|" * (len(headers) + 3)]
        for r in rows:
            cells = [r["variant"], *(_cell(r["metrics"][k], r["metrics_std"][k], num_seeds)
                                     for k, _ in family.metrics)]
            if r["variant"] == best:
                cells = [f"**{c}**" for c in cells]
            extra = ["–" if r["train_seconds"] is None else f"{r['train_seconds']:.0f}",
                     "–" if r["epochs"] is None else f"{r['epochs']:.2f}"]
            lines.append("| " + " | ".join(cells + extra) + " |")
        claim = next(c for c in content["claims"] if c["study"] == study.name)
        lines += ["", f"Seed's claim: {claim['claim']}. On this data: **{claim['verdict']}**."]
    return "\n".join(lines) + "\n"


def plot(path: str, content: dict, family: Family, studies) -> None:
    """Grouped bars: a panel per study, a group per metric, a bar per variant (error bars: std)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k, _ in family.metrics]
    labels = [h for _, h in family.metrics]
    fig, axes = plt.subplots(1, len(studies), figsize=(5.5 * len(studies), 4.2), squeeze=False)
    for ax, study in zip(axes[0], studies, strict=True):
        rows = [r for r in content["records"] if r["study"] == study.name]
        width = 0.8 / max(len(rows), 1)
        x = np.arange(len(keys))
        for i, r in enumerate(rows):
            heights = [100 * (r["metrics"][k] or 0.0) for k in keys]
            errors = [100 * (r["metrics_std"][k] or 0.0) for k in keys]
            label = r["variant"] + (" (best)" if r["variant"] == content["winners"].get(study.name)
                                    else "")
            ax.bar(x + (i - (len(rows) - 1) / 2) * width, heights, width, yerr=errors,
                   capsize=2, label=label)
        ax.set_xticks(x, labels)
        ax.set_title(study.name)
        ax.set_ylabel("%")
        ax.set_ylim(0, 100)
        ax.legend(fontsize=7, loc="upper right")
    fig.suptitle(f"segzoo ablate {family.name} on {content['data']}")
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def write_report(out: str, family: Family, studies, seeds, results, plan, *, partial=False) -> dict:
    """Writes OUT/ablation.json, .md and .png (each atomically); returns the JSON content."""
    records = build_records(family, studies, seeds, results)
    settings = plan["settings"]
    content = {
        "family": family.name, "data": settings["data"], "seeds": list(seeds),
        "budget": {"minutes": settings["minutes"], "epochs": settings["epochs"],
                   "steps_per_epoch": settings["steps_per_epoch"],
                   "eval_images": settings["eval_images"]},
        "recipe": family.recipe.name, "partial": bool(partial), "records": records,
        "winners": {s.name: winner(records, s) for s in studies},
        "pretraining": pretraining_record(family, seeds, results),
    }
    content["claims"] = [check_claim(records, s, len(seeds)) for s in studies]
    tmp = os.path.join(out, f".ablation.json.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(content, f, indent=2)
    os.replace(tmp, os.path.join(out, "ablation.json"))
    tmp = os.path.join(out, f".ablation.md.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(markdown(content, family, studies))
    os.replace(tmp, os.path.join(out, "ablation.md"))
    plot(os.path.join(out, "ablation.png"), content, family, studies)
    return content


__all__ = ["write_report", "build_records", "pretraining_record", "check_claim", "winner", "markdown", "plot"]
