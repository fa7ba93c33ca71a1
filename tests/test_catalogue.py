"""`segzoo list` reads segzoo.catalogue: it must equal the registry and the built models."""

import subprocess
import sys
import time

import pytest

import segzoo
from segzoo.catalogue import CATALOGUE
from segzoo.registry import get_model_spec

# Built in the default tier; the FCNs (134M parameters each) in the slow tier
# (tests/models/test_fcn.py pins their counts by building them too).
CHEAP = ("mask_rcnn", "unet")


def _builtin_names():
    return sorted(n for n in segzoo.list_models()
                  if get_model_spec(n).builder.__module__.startswith("segzoo."))


def test_catalogue_lists_every_builtin_model_with_its_registry_entry():
    assert sorted(CATALOGUE) == _builtin_names()
    for name, (task, description, _) in CATALOGUE.items():
        spec = get_model_spec(name)
        assert (task, description) == (spec.task, spec.description), name


def _count(name):
    spec = get_model_spec(name)
    return spec.builder(**spec.default_kwargs).count_params()


@pytest.mark.parametrize("name", CHEAP)
def test_catalogue_parameter_counts_equal_built_models(name):
    assert CATALOGUE[name][2] == _count(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(CATALOGUE) - set(CHEAP)))
def test_catalogue_parameter_counts_equal_built_fcns(name):
    assert CATALOGUE[name][2] == _count(name)


def test_segzoo_list_answers_without_tensorflow():
    code = ("import sys, time; t = time.perf_counter(); from segzoo.cli import main; main(['list']); "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported'; "
            "print('seconds', time.perf_counter() - t)")
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    wall = time.monotonic() - start
    assert result.returncode == 0, result.stderr
    assert "fcn8s" in result.stdout and "134,489,759" in result.stdout and result.stderr == ""
    seconds = float(result.stdout.split("seconds")[-1])
    assert seconds < 0.5, seconds  # the command itself, after the interpreter started
    assert wall < 10, wall  # interpreter start-up included, on a loaded machine
