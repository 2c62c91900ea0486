"""The package's layering: imports run one way, and the light modules need no TensorFlow."""

import ast
import os
import subprocess
import sys

import pytest

from helpers import ROOT

PACKAGE = ROOT / "nst_tf"


def import_graph(package=PACKAGE):
    """``{module: {nst_tf modules it imports}}`` from the source of `package`.

    Walks every node of each module's syntax tree, so imports inside functions and
    methods count as much as those at the top.
    """
    graph = {}
    for path in sorted(package.glob("*.py")):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "nst_tf":
                deps |= {a.name for a in node.names} if node.module == "nst_tf" else {node.module.split(".")[1]}
            elif isinstance(node, ast.Import):
                deps |= {a.name.split(".")[1] for a in node.names if a.name.startswith("nst_tf.")}
        graph[path.stem] = {d for d in deps if (package / f"{d}.py").exists()} - {path.stem}
    return graph


def find_cycle(graph):
    """One import cycle as a list of modules, or None."""
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == "open":
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                cycle = visit(dep, stack + [dep])
                if cycle:
                    return cycle
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node, [node])
            if cycle:
                return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_import_graph_sees_function_local_imports(tmp_path):
    (tmp_path / "a.py").write_text("import os\n\ndef f():\n    from nst_tf import b\n")
    (tmp_path / "b.py").write_text("class B:\n    def g(self):\n        import nst_tf.c\n")
    (tmp_path / "c.py").write_text("def h():\n    from nst_tf.a import f\n")
    assert import_graph(tmp_path) == {"a": {"b"}, "b": {"c"}, "c": {"a"}}


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert {"images", "cli", "transformer", "stylizer", "signatures"} <= set(graph)
    assert find_cycle(graph) is None, find_cycle(graph)


# The network's modules, each importing none listed after it (export loads a .keras file through the stylizer).
_NETWORK_LAYERS = ["signatures", "layers", "transformer", "inference", "stylizer", "export"]


def test_the_network_modules_import_one_way():
    graph = import_graph()
    for index, module in enumerate(_NETWORK_LAYERS):
        above = set(_NETWORK_LAYERS[index + 1:])
        assert not graph[module] & above, (module, graph[module] & above)
    assert graph["signatures"] == set()


def test_the_light_modules_import_without_tensorflow():
    code = ("import sys\n"
            "import nst_tf, nst_tf.images, nst_tf.errors, nst_tf.files, nst_tf.config, nst_tf.backbones, "
            "nst_tf.memory, nst_tf.color, nst_tf.signatures, nst_tf.cli\n"
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0 and run.stdout.strip() == "[]", run.stderr


@pytest.mark.slow
def test_keras_loads_a_shipped_network_after_import_nst_tf():
    code = ("import nst_tf, keras\n"
            "model = keras.models.load_model('saved_models/styles/styles.keras')\n"
            "print(type(model).__module__, type(model).__name__)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0 and run.stdout.split()[-1] == "TransformerNet", run.stderr


def test_every_public_name_resolves_from_its_module():
    import nst_tf

    assert nst_tf.__all__ == sorted(nst_tf.__all__)
    assert {"export_model", "load_stylizer", "stylize", "TransformerNet"} <= set(nst_tf.__all__)
    for name in nst_tf.__all__:
        value = getattr(nst_tf, name)
        assert getattr(value, "__name__", name) == name or name.isupper(), name
    assert nst_tf.data.__name__ == "nst_tf.data"  # Submodules are reachable as attributes too.
    with pytest.raises(AttributeError, match="no attribute 'stylise'"):
        nst_tf.stylise  # noqa: B018


def test_the_version_has_one_source():
    import configparser

    import nst_tf

    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    assert setup["metadata"]["version"] == "attr: nst_tf.__version__"
    assert nst_tf.__version__.count(".") == 2
