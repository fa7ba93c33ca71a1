"""Structure rules of the package, checked on the source (no TensorFlow needed).

- Generic code (training/, export/, commands/) asks models through the contract
  of `segzoo.models.base`, never with `getattr` / `hasattr` probes or class names.
- The training modules import each other without a cycle.
- The registered Keras names of the test models are unique.
- Library error messages name Python arguments, never CLI flags (`segzoo.errors`):
  only `segzoo/cli.py` and `segzoo/commands/` spell `--flag` in a raise or warning.
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


_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]+")


def _message_nodes(tree):
    """The expressions of `raise X(...)`, `*Error(...)` / `*Warning(...)` calls and
    `warnings.warn(...)`, with the module-level strings they name (e.g. a `_BLOCKER`)."""
    constants = {target.id: node.value for node in tree.body if isinstance(node, ast.Assign)
                 for target in node.targets if isinstance(target, ast.Name)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            yield node.exc
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name == "warn" or name.endswith(("Error", "Exception", "Warning")):
                yield node
        else:
            continue
        for inner in ast.walk(node):
            if isinstance(inner, ast.Name) and inner.id in constants:
                yield constants[inner.id]


def flags_in_messages(source: str) -> list[str]:
    """`LINE: text` of every string literal with a `--flag` inside an error message."""
    found = []
    for message in _message_nodes(ast.parse(source)):
        for node in ast.walk(message):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and _FLAG.search(node.value):
                found.append(f"{node.lineno}: {node.value}")
    return sorted(set(found), key=lambda text: int(text.split(":")[0]))


def test_flag_check_finds_flags_in_messages_only():
    source = (
        '"""Docstring: `segzoo export --format tflite`."""\n'
        'BLOCKER = "export it as a SavedModel (--format saved_model)"\n'
        'def f(x):\n'
        '    """--quantize in a docstring is fine."""\n'
        '    # --comment too\n'
        '    if x:\n'
        '        raise ValueError(f"--quantize {x!r} applies to tflite")\n'
        '    if x == 2:\n'
        '        raise ValueError(BLOCKER)\n'
        '    warnings.warn("pass --model-arg min_size=3")\n'
        '    return "a-b --- c"\n')
    assert [line.split(":")[0] for line in flags_in_messages(source)] == ["2", "7", "10"]


LIBRARY = [p for p in sorted(ROOT.rglob("*.py"))
           if p.name != "cli.py" or p.parent != ROOT
           if "commands" not in p.relative_to(ROOT).parts]


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(ROOT)))
def test_library_messages_name_arguments_not_flags(path):
    assert not flags_in_messages(path.read_text()), (
        f"{path.relative_to(ROOT)}: name the Python argument with segzoo.errors.arg(...) "
        "(the CLI shows it as the flag)")
