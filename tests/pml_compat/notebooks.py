"""Run PML's example notebooks against metric_runner, with only their data replaced.

The notebooks live in ``../shared/pml-notebooks`` (next to the repository, not inside it: they are
PML's, MIT-licensed, and never copied here). A user's clone has no such folder, so every entry point
skips the calling test when it is absent.

What the harness changes, and nothing else (the library calls stay exactly as written):

- ``!pip``/``!git``/``%matplotlib`` lines are dropped;
- ``pytorch_metric_learning`` becomes ``metric_runner``;
- every string constant ``"cuda"``/``"cuda:..."`` becomes ``"cpu"`` (extra constant swaps, such as
  ``{"nccl": "gloo"}``, through ``constants``);
- top-level assignments named in ``assignments`` get the given value (``num_epochs=1``);
- the data: ``datasets`` maps torchvision dataset names to stand-in classes (``StandInMNIST``,
  ``StandInCIFAR10``, ``StandInCIFAR100``: generated, class-structured images with torchvision's
  types and shapes), patched into ``torchvision.datasets`` while the notebook runs; ``modules``
  puts stand-in modules into ``sys.modules`` (a cloned repository, a pretrained-weights module);
  ``patches`` replaces any other ``"module.attribute"`` (a weight download) for the run.

Usage::

    from tests.pml_compat.notebooks import StandInMNIST, run_notebook

    run = run_notebook(
        "TripletMarginLossMNIST",
        cwd=tmp_path,
        datasets={"MNIST": StandInMNIST.sized(train=512, test=128)},
        assignments={"num_epochs": 1},
    )
    run.namespace["model"], run.output  # the notebook's globals and everything it printed
"""

import ast
import contextlib
import io
import json
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image

NOTEBOOKS_DIR = Path(__file__).parents[2].parent / "shared" / "pml-notebooks"
MAGIC_PREFIXES = ("!", "%")


@dataclass
class NotebookRun:
    namespace: dict  # the notebook's globals after its last cell
    output: str  # everything its cells printed


def notebook_path(name):
    """The notebook file, or skip the test when the shared notebooks are not next to the repo."""
    path = NOTEBOOKS_DIR / f"{name}.ipynb"
    if not NOTEBOOKS_DIR.is_dir():
        pytest.skip(f"PML's example notebooks are not available ({NOTEBOOKS_DIR} is absent)")
    if not path.is_file():
        raise FileNotFoundError(f"no notebook {path.name} in {NOTEBOOKS_DIR}")
    return path


def notebook_cells(name, library="metric_runner"):
    """The notebook's code cells, magics dropped and ``pytorch_metric_learning`` swapped for
    `library`, as source strings."""
    cells = json.loads(notebook_path(name).read_text())["cells"]
    sources = []
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        lines = "".join(cell["source"]).splitlines()
        kept = [line for line in lines if not line.lstrip().startswith(MAGIC_PREFIXES)]
        source = "\n".join(kept).replace("pytorch_metric_learning", library)
        if source.strip():
            sources.append(source)
    return sources


class _CellRewriter(ast.NodeTransformer):
    """Swaps string constants (devices, backends) and the values of named top-level assignments."""

    def __init__(self, constants, assignments):
        self.constants = constants
        self.assignments = assignments

    def visit_Constant(self, node):
        if isinstance(node.value, str):
            if node.value == "cuda" or node.value.startswith("cuda:"):
                return ast.copy_location(ast.Constant("cpu"), node)
            if node.value in self.constants:
                return ast.copy_location(ast.Constant(self.constants[node.value]), node)
        return node

    def visit_Assign(self, node):
        self.generic_visit(node)
        targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
        overridden = [name for name in targets if name in self.assignments]
        if overridden:
            node.value = ast.copy_location(ast.Constant(self.assignments[overridden[0]]), node)
        return node


def _compile_cell(source, index, name, rewriter):
    tree = ast.fix_missing_locations(rewriter.visit(ast.parse(source)))
    return compile(tree, f"<{name} cell {index}>", "exec")


@contextlib.contextmanager
def _working_directory(path):
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


@contextlib.contextmanager
def _stand_in_modules(modules):
    """Puts `modules` into sys.modules and takes only those out again. mock.patch.dict would
    also drop every module the notebook imported: the next notebook would then import fresh
    copies of some library modules beside the old ones (classes isinstance no longer
    recognises; protobuf descriptors registered twice, which crashes the process)."""
    saved = {name: sys.modules[name] for name in modules if name in sys.modules}
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name in modules:
            if name in saved:
                sys.modules[name] = saved[name]
            else:
                sys.modules.pop(name, None)


def run_notebook(
    name,
    *,
    cwd,
    datasets=None,
    modules=None,
    patches=None,
    assignments=None,
    constants=None,
    library="metric_runner",
):
    """Execute notebook `name` (file stem) cell by cell in one namespace, on CPU, inside `cwd`.

    datasets: {"MNIST": StandInMNIST, ...} patched into torchvision.datasets.
    modules: {"package_name": module} put into sys.modules (stand-ins for cloned repositories).
    patches: {"package.module.attribute": replacement} for anything else outside the library.
    assignments: {"num_epochs": 1} replaces the value of those top-level assignments.
    constants: {"nccl": "gloo"} replaces those string constants ("cuda" -> "cpu" always).
    library: the package imported in place of pytorch_metric_learning; pass
    "pytorch_metric_learning" to run the same notebook on PML for a side-by-side comparison.
    Returns a NotebookRun; an exception in a cell propagates with the cell's index in its traceback.
    """
    import matplotlib

    matplotlib.use("Agg")  # figures are drawn but never shown
    import matplotlib.pyplot as plt
    import torchvision.datasets

    rewriter = _CellRewriter(constants or {}, assignments or {})
    codes = [
        _compile_cell(source, i, name, rewriter)
        for i, source in enumerate(notebook_cells(name, library))
    ]
    namespace = {"__name__": "__main__"}
    output = io.StringIO()
    with contextlib.ExitStack() as stack:
        stack.enter_context(_working_directory(cwd))
        stack.enter_context(_stand_in_modules(modules or {}))
        for attribute, stand_in in (datasets or {}).items():
            stack.enter_context(mock.patch.object(torchvision.datasets, attribute, stand_in))
        for target, replacement in (patches or {}).items():
            stack.enter_context(mock.patch(target, replacement))
        stack.enter_context(contextlib.redirect_stdout(output))
        stack.enter_context(warnings.catch_warnings())
        warnings.filterwarnings("ignore", message=".*non-interactive.*")
        for code in codes:
            try:
                exec(code, namespace)
            finally:
                plt.close("all")  # a notebook opens a figure per image; keep memory flat
    return NotebookRun(namespace=namespace, output=output.getvalue())


class _StandInImageDataset(torch.utils.data.Dataset):
    """Generated images with torchvision's dataset interface and types. Each class has its own
    fixed random pattern and every image is that pattern plus noise, so a model can learn it."""

    image_shape = (28, 28)  # (H, W) for grey images, (H, W, 3) for colour ones
    num_classes = 10
    sizes = {True: 600, False: 200}  # train -> number of images

    def __init__(self, root, train=True, transform=None, target_transform=None, download=False):
        self.root = root
        self.train = train
        self.transform = transform
        self.target_transform = target_transform
        self.classes = [f"class_{i}" for i in range(self.num_classes)]
        self.data, targets = self._generate(self.sizes[train], seed=0 if train else 1)
        self.targets = self._store_targets(targets)

    @classmethod
    def sized(cls, train, test):
        """A subclass with `train` training and `test` test images."""
        return type(cls.__name__, (cls,), {"sizes": {True: train, False: test}})

    def _generate(self, size, seed):
        prototypes = np.random.RandomState(1234).randint(
            0, 256, (self.num_classes, *self.image_shape)
        )
        generator = np.random.RandomState(seed)
        targets = np.arange(size) % self.num_classes
        generator.shuffle(targets)
        noise = generator.normal(0, 40, (size, *self.image_shape))
        images = np.clip(prototypes[targets] + noise, 0, 255).astype(np.uint8)
        return self._store_images(images), targets

    def _store_images(self, images):
        return images

    def _store_targets(self, targets):
        return targets.tolist()

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        image = Image.fromarray(np.asarray(self.data[index]))
        target = int(self.targets[index])
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target


class StandInMNIST(_StandInImageDataset):
    """torchvision.datasets.MNIST's types: `data` uint8 tensor (N, 28, 28), `targets` int64
    tensor, items (PIL "L" image, int)."""

    def _store_images(self, images):
        return torch.from_numpy(images)

    def _store_targets(self, targets):
        return torch.from_numpy(targets).long()


class StandInCIFAR10(_StandInImageDataset):
    """torchvision.datasets.CIFAR10's types: `data` uint8 array (N, 32, 32, 3), `targets` list of
    int, items (PIL "RGB" image, int)."""

    image_shape = (32, 32, 3)


class StandInCIFAR100(StandInCIFAR10):
    """torchvision.datasets.CIFAR100's types, 100 classes."""

    num_classes = 100
    sizes = {True: 1000, False: 500}
