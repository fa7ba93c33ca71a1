"""The runner on a tiny family: files equal a fresh `segzoo eval`, resume, seeds, budgets."""

import json
import os

import numpy as np
import pytest

from segzoo import cli
from segzoo.ablation import runner
from segzoo.ablation.studies import Claim, Study, Variant
from tests.ablation.helpers import tiny_family

KEYS = ("pixel_accuracy", "mean_accuracy", "mean_iou", "fw_iou")


def _ablate(out, **kwargs):
    kwargs.setdefault("epochs", 1)
    kwargs.setdefault("eval_images", 3)
    return runner.run_ablation(tiny_family(), out=str(out), verbose=0, log=lambda *a: None,
                               **kwargs)


def _segzoo_eval(capsys, checkpoint, max_images):
    capsys.readouterr()
    assert cli.main(["eval", "--checkpoint", checkpoint, "--max-images", str(max_images),
                     "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_files_equal_a_fresh_segzoo_eval_and_stages_initialise(tmp_path, capsys):
    content = _ablate(tmp_path)
    saved = json.loads((tmp_path / "ablation.json").read_text())
    assert saved["partial"] is False and [r["variant"] for r in saved["records"]] == [
        "w4", "w8", "w4", "w4 again"]
    md = (tmp_path / "ablation.md").read_text()
    for record in saved["records"]:
        (seed,) = record["per_seed"]
        fresh = _segzoo_eval(capsys, str(tmp_path / seed["checkpoint"]), 3)
        for key in KEYS:
            assert record["metrics"][key] == pytest.approx(fresh[key], abs=1e-12)
        row = "| " + " | ".join(f"{100 * fresh[k]:.1f}" for k in KEYS)
        assert row in md.replace("**", "")
        assert record["epochs"] == 1.0 and seed["steps"] == 2
    assert content["winners"] == saved["winners"]
    # the shared "w4" of both studies is one run; the second stage started from it
    assert sorted(os.listdir(tmp_path / "runs")) == ["tiny_segmenter",
                                                     "tiny_segmenter-from-tiny_segmenter",
                                                     "tiny_segmenter-width=8"]
    staged = json.loads((tmp_path / "runs" / "tiny_segmenter-from-tiny_segmenter" / "seed0"
                         / "metrics.json").read_text())
    assert staged["recipe"]["init_from"] == str(tmp_path / "runs" / "tiny_segmenter" / "seed0"
                                                / "model.keras")
    assert (tmp_path / "ablation.png").stat().st_size > 1000


def test_interrupted_ablation_resumes_with_the_unfinished_runs(tmp_path, monkeypatch):
    real = runner._train_and_evaluate
    trained = []

    def interrupted(run, *args, **kwargs):
        trained.append(run.key)
        if len(trained) == 2:  # killed mid-run: a run directory without done.json
            os.makedirs(run.directory(args[1]), exist_ok=True)
            raise KeyboardInterrupt
        return real(run, *args, **kwargs)

    monkeypatch.setattr(runner, "_train_and_evaluate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _ablate(tmp_path, studies=["width"])
    first = tmp_path / "runs" / "tiny_segmenter" / "seed0"
    assert (first / "done.json").exists()
    assert not (tmp_path / "runs" / "tiny_segmenter-width=8" / "seed0" / "done.json").exists()
    stamp = (first / "model.keras").stat().st_mtime_ns
    saved = json.loads((tmp_path / "ablation.json").read_text())
    assert saved["partial"] is True

    trained.clear()
    monkeypatch.setattr(runner, "_train_and_evaluate", lambda run, *a, **k: (trained.append(run.key),
                                                                             real(run, *a, **k))[1])
    content = _ablate(tmp_path, studies=["width"])
    assert trained == ["tiny_segmenter-width=8"]
    assert (first / "model.keras").stat().st_mtime_ns == stamp
    assert content["partial"] is False and all(r["per_seed"] for r in content["records"])
    trained.clear()
    _ablate(tmp_path, studies=["width"])  # everything finished: nothing is trained again
    assert trained == []
    with pytest.raises(ValueError, match=r"other settings \(epochs: 1\)"):
        _ablate(tmp_path, epochs=2, studies=["width"])


def test_seeds_aggregate_the_per_seed_checkpoints(tmp_path):
    one = Study("one", (Variant("w4", "tiny_segmenter", {"width": 4}),),
                Claim("-", winners=("w4",), metric="mean_iou"))
    content = runner.run_ablation(tiny_family(studies=(one,)), out=str(tmp_path), epochs=1,
                                  eval_images=3, seeds=2, verbose=0, log=lambda *a: None)
    for record in content["records"]:
        per_seed = record["per_seed"]
        assert [p["seed"] for p in per_seed] == [0, 1]
        values = [p["metrics"]["mean_iou"] for p in per_seed]
        assert record["metrics"]["mean_iou"] == pytest.approx(np.mean(values))
        assert record["metrics_std"]["mean_iou"] == pytest.approx(np.std(values, ddof=1))
        done = [json.loads((tmp_path / p["checkpoint"]).with_name("done.json").read_text())
                for p in per_seed]
        assert [d["seed"] for d in done] == [0, 1]
    assert "±" in (tmp_path / "ablation.md").read_text()


def test_time_budget_is_split_over_the_runs(tmp_path):
    content = _ablate(tmp_path, epochs=None, minutes=0.5, studies=["width"])
    limits = []
    for record in content["records"]:
        (seed,) = record["per_seed"]
        done = json.loads((tmp_path / seed["checkpoint"]).with_name("done.json").read_text())
        limits.append(done["train_limit_seconds"])
        assert done["train_seconds"] >= done["train_limit_seconds"] >= 1.0 and done["steps"] >= 1
        metrics = json.loads((tmp_path / seed["checkpoint"]).with_name("metrics.json").read_text())
        assert metrics["stopped"] == "time_limit" and metrics["recipe"]["schedule"] == "constant"
        assert metrics["recipe"]["epochs"] > 1000  # trained until the limit, not for epochs
    # the limits share the 30 s (less the measured build / evaluation time, at least 1 s a run)
    assert sum(limits) <= 30.0 or limits == [1.0, 1.0]
    assert limits[0] == pytest.approx(0.7 * 30.0 / 2, abs=1.0) or limits[0] == 1.0


@pytest.mark.parametrize("kwargs, message", [
    ({"minutes": 1, "epochs": 1}, "give minutes or epochs, not both"),
    ({"seeds": 0}, "seeds must be a positive integer, got 0"),
    ({"minutes": -1, "epochs": None}, "minutes must be > 0"),
    ({"studies": ["depth"]}, "studies='depth': unknown study for tiny"),
])
def test_bad_arguments_are_value_errors(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        _ablate(tmp_path, **kwargs)


def _pretrained_family():
    from segzoo.ablation.studies import Pretraining

    return tiny_family(pretraining=Pretraining(Variant("pre", "tiny_segmenter", {"width": 4}),
                                               skip=("score",), share=0.5))


def test_a_shared_pretraining_starts_every_unstaged_variant(tmp_path):
    family = _pretrained_family()
    runs = runner.plan_runs(family, family.studies, [0, 1])
    assert [(r.key, r.seed) for r in runs] == [
        ("pretraining-tiny_segmenter", 0), ("tiny_segmenter", 0), ("tiny_segmenter-width=8", 0),
        ("tiny_segmenter-from-tiny_segmenter", 0),
        ("pretraining-tiny_segmenter", 1), ("tiny_segmenter", 1), ("tiny_segmenter-width=8", 1),
        ("tiny_segmenter-from-tiny_segmenter", 1)]
    # share 0.5: both seeds' pre-training weigh as much as the 6 variant runs
    assert [r.weight for r in runs if r.pretraining] == [3.0, 3.0]
    assert {(r.init_from, r.skip) for r in runs if not r.pretraining and "from-" not in r.key} == {
        ("pretraining-tiny_segmenter", ("score",))}
    assert {(r.init_from, r.skip) for r in runs if "from-" in r.key} == {("tiny_segmenter", ())}

    # (w8 shares no layer shape with the width-4 pre-training: only the staged study runs)
    content = runner.run_ablation(family, out=str(tmp_path), epochs=1, eval_images=3,
                                  studies=["staged"], verbose=0, log=lambda *a: None)
    pre_dir = tmp_path / "runs" / "pretraining-tiny_segmenter" / "seed0"
    for key, init, skip in (("tiny_segmenter", pre_dir, ["score"]),
                            ("tiny_segmenter-from-tiny_segmenter",
                             tmp_path / "runs" / "tiny_segmenter" / "seed0", [])):
        recipe = json.loads((tmp_path / "runs" / key / "seed0" / "metrics.json").read_text())["recipe"]
        assert recipe["init_from"] == str(init / "model.keras") and recipe["init_skip"] == skip
    pre = content["pretraining"]
    assert pre["run"] == "pretraining-tiny_segmenter" and [p["seed"] for p in pre["per_seed"]] == [0]
    assert pre["per_seed"][0]["steps"] == 2 and "mean_iou" in pre["per_seed"][0]["metrics"]
    assert [r["variant"] for r in content["records"]] == ["w4", "w4 again"]
    md = (tmp_path / "ablation.md").read_text()
    assert "shared pre-training per seed" in md and "except score" in md


def test_the_pretraining_gets_its_share_of_a_time_budget(tmp_path):
    content = runner.run_ablation(_pretrained_family(), out=str(tmp_path), minutes=0.5,
                                  eval_images=3, studies=["staged"], verbose=0, log=lambda *a: None)
    done = json.loads((tmp_path / content["pretraining"]["per_seed"][0]["checkpoint"])
                      .with_name("done.json").read_text())
    # the first run's limit: (30 s - 3 runs x the 3 s overhead guess) x weight 2 / weight 4
    assert done["pretraining"] and done["train_limit_seconds"] == pytest.approx(
        (30.0 - 3 * 0.3 * 30.0 / 3) * 2 / 4, abs=1.0)
    assert ("0.5 min budget: 50% to the shared pre-training, the rest split evenly over the "
            "variants' runs") in (tmp_path / "ablation.md").read_text()


def test_a_resumed_time_budget_reserves_the_overhead_its_finished_runs_measured(tmp_path,
                                                                                monkeypatch):
    real = runner._train_and_evaluate
    limits = []

    def interrupted(run, family, out, train_seconds, *args, **kwargs):
        limits.append(train_seconds)
        if len(limits) == 2:
            raise KeyboardInterrupt
        return real(run, family, out, train_seconds, *args, **kwargs)

    monkeypatch.setattr(runner, "_train_and_evaluate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _ablate(tmp_path, epochs=None, minutes=0.5, studies=["width"])
    first = json.loads((tmp_path / "runs" / "tiny_segmenter" / "seed0" / "done.json").read_text())
    assert 0 < first["overhead_seconds"] < 30
    limits.clear()
    monkeypatch.setattr(runner, "_train_and_evaluate",
                        lambda run, family, out, train_seconds, *a, **k: (
                            limits.append(train_seconds),
                            real(run, family, out, train_seconds, *a, **k))[1])
    _ablate(tmp_path, epochs=None, minutes=0.5, studies=["width"])
    # the run left has what an uninterrupted ablation leaves it: the 30 s less what the first run
    # took, less the overhead it measured (not the first invocation's 30% guess)
    used = first["train_seconds"] + first["overhead_seconds"]
    assert limits == [pytest.approx(max(1.0, 30.0 - used - first["overhead_seconds"]), abs=0.5)]
