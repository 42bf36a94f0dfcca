"""setup.cfg declares exactly what the package imports: every third-party import is a declared
runtime dependency (or an optional one, imported under `try`), every declared dependency is
used, and every module imports with only the runtime dependencies installed."""

import ast
import configparser
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("metric_runner", "hydra_plugins")
# Declared dependencies the package uses without importing them by their own name.
USED_INDIRECTLY = {
    "tensorboard": "torch.utils.tensorboard writes through it",
}
# Packages installed only with the dev extra: the package must import without them.
DEV_ONLY = ("pytorch_metric_learning", "pytest", "xdist")


def requirement_names(text):
    names = []
    for line in text.strip().splitlines():
        match = re.match(r"\s*([A-Za-z0-9_.\-]+)", line)
        if match:
            names.append(match.group(1).lower().replace("_", "-"))
    return names


def declared():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    runtime = requirement_names(config["options"]["install_requires"])
    extras = {
        name: requirement_names(value) for name, value in config["options.extras_require"].items()
    }
    return runtime, extras


def source_files():
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def optional_import(node, parents):
    """An import inside `try: ... except ImportError` is optional by construction, and so is
    one inside a function, which runs only where its feature is used (submitit's, under the
    SLURM launcher): such a package may come with an extra instead of install_requires."""
    for parent in parents.get(node, ()):
        if isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return True
        if isinstance(parent, ast.Try) and any(
            handler.type is not None
            and re.search(r"ImportError|ModuleNotFoundError", ast.unparse(handler.type))
            for handler in parent.handlers
        ):
            return True
    return False


def third_party_imports():
    """{top-level module: 'required' | 'optional'} over the package's source."""
    found = {}
    for path in source_files():
        tree = ast.parse(path.read_text())
        parents = {}
        for parent in ast.walk(tree):
            for child in ast.iter_child_nodes(parent):
                parents[child] = [parent, *parents.get(parent, [])]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            kind = "optional" if optional_import(node, parents) else "required"
            for module in modules:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top in PACKAGES:
                    continue
                if found.get(top) != "required":
                    found[top] = kind
    return found


def distribution_of(module):
    distributions = importlib.metadata.packages_distributions().get(module, [module])
    return distributions[0].lower().replace("_", "-")


def test_every_required_import_is_a_declared_runtime_dependency():
    runtime, _ = declared()
    missing = {
        module: distribution_of(module)
        for module, kind in third_party_imports().items()
        if kind == "required" and distribution_of(module) not in runtime
    }
    assert not missing, f"imported but not in install_requires: {missing}"


def test_every_optional_import_is_declared_in_an_extra():
    runtime, extras = declared()
    everywhere = set(runtime).union(*extras.values())
    optional = {m for m, kind in third_party_imports().items() if kind == "optional"}
    undeclared = {m for m in optional if distribution_of(m) not in everywhere}
    # An optional import may name a package we do not ship an extra for (umap-learn for
    # scatter plots); it must then be guarded, which `optional` already proves.
    assert undeclared <= {"umap"}, f"optional imports without an extra: {undeclared}"


def test_every_declared_runtime_dependency_is_used():
    runtime, _ = declared()
    imported = {distribution_of(module) for module in third_party_imports()}
    unused = [name for name in runtime if name not in imported and name not in USED_INDIRECTLY]
    assert not unused, f"declared in install_requires but never imported: {unused}"


def test_every_module_imports_without_the_dev_extra():
    """A fresh process where the dev-only packages cannot be imported imports every module."""
    modules = [
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in source_files()
    ]
    script = f"""
import importlib, importlib.abc, sys
class BlockDevOnly(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {DEV_ONLY!r}:
            raise ImportError(f'{{name}} is a dev-only package')
        return None
sys.meta_path.insert(0, BlockDevOnly())
for module in {modules!r}:
    importlib.import_module(module)
print('imported', len({modules!r}))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"imported {len(modules)}" in result.stdout
