"""Structure rules of the package, checked on the source (no TensorFlow needed).

- Generic code (training/, export/, commands/) asks models through the contract
  of `segzoo.models.base`, never with `getattr` / `hasattr` probes or class names.
- The training modules import each other without a cycle.
- The registered Keras names of the test models are unique.
"""

import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "segzoo"
GENERIC = ("training", "export", "commands")


def _sources(*packages):
    for package in packages:
        yield from sorted((ROOT / package).glob("*.py"))


@pytest.mark.parametrize("path", list(_sources(*GENERIC)), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_capability_probing_in_generic_code(path):
    source = path.read_text()
    probes = re.findall(r"\b(?:getattr|hasattr)\((?:self\.)?(?:model|task)\b.*", source)
    class_tests = re.findall(r"type\(\w+\)\.__name__\s*[=!]=.*", source)
    assert not probes and not class_tests, (probes, class_tests)


def _imports(path):
    """Every segzoo module `path` imports (module level and inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("segzoo"):
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.startswith("segzoo"))
    return names


def test_training_modules_import_without_cycles():
    modules = {f"segzoo.training.{p.stem}": p for p in _sources("training") if p.stem != "__init__"}
    graph = {name: {m for m in _imports(path) if m in modules and m != name}
             for name, path in modules.items()}

    def visit(name, stack):
        assert name not in stack, f"import cycle: {' -> '.join([*stack, name])}"
        for dependency in graph[name]:
            visit(dependency, [*stack, name])

    for name in graph:
        visit(name, [])
    task_modules = {"segzoo.training.semantic_task", "segzoo.training.instance_task"}
    for name in task_modules:
        assert not graph[name] & (task_modules | {"segzoo.training.tasks"})


def test_registered_test_model_names_are_unique():
    import keras

    from tests.export import tiny_models
    from tests.training import tiny_model

    registered = keras.saving.get_registered_object
    assert registered(tiny_model.REGISTERED_NAME) is tiny_model.TinySegmenter
    for cls in (tiny_models.TinySegmenter, tiny_models.TinyDetector):
        assert registered(tiny_models.REGISTERED_NAMES[cls.__name__]) is cls
    names = [tiny_model.REGISTERED_NAME, *tiny_models.REGISTERED_NAMES.values()]
    assert len(set(names)) == len(names)
