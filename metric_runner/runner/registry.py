"""Registries: the name of every component the runner can build from a config block.

A block names its class and arguments, and nested components are blocks too::

    {name: TripletMarginLoss, margin: 0.1, distance: {name: CosineSimilarity}}
    -> TripletMarginLoss(margin=0.1, distance=CosineSimilarity())

`_target_: my_pkg.my_module.MyLoss` builds a class by import path instead. Every class exported by
the library's component packages (`metric_runner.losses`, `.miners`, ...; `torch.optim` for
optimizers and schedulers) is registered automatically, so a new class needs no edit here; user
classes join with a decorator such as `@register_loss("MyLoss")`.

Blocks are checked against the constructor signatures first (`parse`), so a typo stops the run
before any data is loaded; `Spec.build` then instantiates, filling in what the runner knows
(a sampler's labels, an optimizer's parameters, a trunk's input size) from its context.
"""

import ast
import difflib
import functools
import importlib
import importlib.util
import inspect
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"

# Exported helpers that are not buildable components: abstract bases and mixins.
NOT_A_COMPONENT = re.compile(r"^(Base|Generic)|Mixin$")

# Arguments whose value is itself a component of the given kind (a block, a registered name,
# or the name of a shipped YAML of that group).
NESTED_KINDS = {
    "distance": "distance",
    "reducer": "reducer",
    "reducers": "reducer",
    "default_reducer": "reducer",
    "embedding_regularizer": "regularizer",
    "weight_regularizer": "regularizer",
    "loss": "loss",
    "losses": "loss",
    "miner": "miner",
    "miners": "miner",
}


class ConfigError(ValueError):
    """A configuration mistake; metric-run reports it as one line, without a traceback."""


def snake_case(name):
    """TripletMarginLoss -> triplet_margin_loss, SNRDistance -> snr_distance."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def closest(name, candidates):
    """'; did you mean a or b?' for the candidates closest to name, or '' when none is close."""
    matches = difflib.get_close_matches(str(name), sorted(candidates), n=3, cutoff=0.5)
    return f"; did you mean {' or '.join(matches)}?" if matches else ""


class Registry:
    """Names -> classes for one component kind.

    `modules` are scanned for exported classes (optionally only subclasses of `base`); modules
    that do not exist yet are skipped, and classes registered with `register` win over them.
    """

    def __init__(self, kind, plural, modules=(), base=None, exclude=()):
        self.kind = kind
        self.plural = plural
        self.modules = modules
        self.base = base
        self.exclude = set(exclude)
        self.registered = {}

    def register(self, name=None):
        def decorator(cls):
            self.registered[name or cls.__name__] = cls
            return cls

        return decorator

    def classes(self):
        found = {}
        for module_name in self.modules:
            if importlib.util.find_spec(module_name) is None:
                continue
            module = importlib.import_module(module_name)
            for attr, value in vars(module).items():
                if self.is_component(attr, value, module_name):
                    found[attr] = value
        found.update(self.registered)
        return dict(sorted(found.items()))

    def is_component(self, attr, value, module_name):
        return (
            inspect.isclass(value)
            and value.__module__.startswith(module_name)  # defined there, not just imported
            and not attr.startswith("_")
            and not NOT_A_COMPONENT.search(attr)
            and attr not in self.exclude
            and (self.base is None or (issubclass(value, self.base) and value is not self.base))
        )

    def get(self, name, where):
        classes = self.classes()
        if name in classes:
            return classes[name]
        by_snake_name = {snake_case(n): cls for n, cls in classes.items()}
        if name in by_snake_name:
            return by_snake_name[name]
        hint = closest(name, list(classes) + list(by_snake_name))
        raise ConfigError(
            f"{where}: unknown {self.kind} {name!r}{hint} "
            f"(`metric-run --list {self.plural}` shows all)"
        )


REGISTRIES = {
    "dataset": Registry(
        "dataset", "datasets", ["metric_runner.datasets"], base=torch.utils.data.Dataset
    ),
    # Batch transforms (e.g. RandomAffine) for the self-supervised term's augmented views.
    "augmentation": Registry(
        "augmentation", "augmentations", ["metric_runner.datasets"], base=torch.nn.Module
    ),
    "model": Registry("model", "models", ["metric_runner.models"], base=torch.nn.Module),
    "loss": Registry("loss", "losses", ["metric_runner.losses"]),
    "miner": Registry("miner", "miners", ["metric_runner.miners"]),
    "distance": Registry("distance", "distances", ["metric_runner.distances"]),
    "reducer": Registry("reducer", "reducers", ["metric_runner.reducers"]),
    "regularizer": Registry("regularizer", "regularizers", ["metric_runner.regularizers"]),
    "sampler": Registry(
        "sampler", "samplers", ["metric_runner.samplers"], base=torch.utils.data.Sampler
    ),
    # LBFGS needs a closure at every step, which a training loop over batches does not give.
    "optimizer": Registry(
        "optimizer", "optimizers", ["torch.optim"], base=torch.optim.Optimizer, exclude={"LBFGS"}
    ),
    # Schedulers that take Python callables or other schedulers cannot be written in YAML.
    "scheduler": Registry(
        "scheduler",
        "schedulers",
        ["torch.optim.lr_scheduler"],
        base=torch.optim.lr_scheduler.LRScheduler,
        exclude={"LambdaLR", "MultiplicativeLR", "SequentialLR", "ChainedScheduler"},
    ),
    "tester": Registry(
        "tester", "testers", ["metric_runner.testers", "metric_runner.runner.knn_tester"]
    ),
    "trainer": Registry("trainer", "trainers", ["metric_runner.trainers"]),
}


def register(kind, name=None):
    return REGISTRIES[kind].register(name)


def register_dataset(name=None):
    return register("dataset", name)


def register_model(name=None):
    return register("model", name)


def register_loss(name=None):
    return register("loss", name)


def register_miner(name=None):
    return register("miner", name)


def register_distance(name=None):
    return register("distance", name)


def register_reducer(name=None):
    return register("reducer", name)


def register_regularizer(name=None):
    return register("regularizer", name)


def register_sampler(name=None):
    return register("sampler", name)


def register_optimizer(name=None):
    return register("optimizer", name)


def register_scheduler(name=None):
    return register("scheduler", name)


def register_tester(name=None):
    return register("tester", name)


def register_trainer(name=None):
    return register("trainer", name)


def constructor_parameters(cls):
    """Every keyword the constructor accepts, following `**kwargs` up the class hierarchy
    (PML-style components pass their base class's arguments through **kwargs), minus the ones
    a subclass fixes itself (`super().__init__(mat_based_loss=False, **kwargs)`)."""
    parameters, fixed = {}, set()
    for klass in cls.__mro__:
        if klass in (object, torch.nn.Module) or "__init__" not in vars(klass):
            continue
        forwards_kwargs = False
        for parameter in list(inspect.signature(klass.__init__).parameters.values())[1:]:
            if parameter.kind is inspect.Parameter.VAR_KEYWORD:
                forwards_kwargs = True
            elif (
                parameter.kind is not inspect.Parameter.VAR_POSITIONAL
                and parameter.name not in fixed
            ):
                parameters.setdefault(parameter.name, parameter)
        if not forwards_kwargs:
            break
        fixed |= keywords_passed_to_base(klass)
    return parameters


@functools.cache
def keywords_passed_to_base(klass):
    """Names given explicitly in the `....__init__(name=...)` calls of klass.__init__."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass.__init__)))
    except (OSError, TypeError, SyntaxError):  # no source available: assume none
        return frozenset()
    return frozenset(
        keyword.arg
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "__init__"
        for keyword in node.keywords
        if keyword.arg is not None
    )


def import_target(target, where):
    module_name, _, class_name = str(target).rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as error:
        raise ConfigError(
            f"{where}: cannot import _target_ {target!r} ({error}); give a full path "
            "like my_package.my_module.MyClass"
        ) from None


def to_plain(value):
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


@dataclass
class Spec:
    """A checked component block: the class and its arguments, nested components parsed too."""

    cls: type
    args: dict
    where: str

    def build(self, **context):
        """Instantiate; `context` fills the arguments the constructor accepts and the block
        leaves out (or sets to null)."""
        parameters = constructor_parameters(self.cls)
        kwargs = {k: build_value(v) for k, v in self.args.items()}
        for name, value in context.items():
            if name in parameters and kwargs.get(name) is None:
                kwargs[name] = value
        try:
            return self.cls(**kwargs)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{self.where} ({self.cls.__name__}): {error}") from None


def build_value(value):
    if isinstance(value, Spec):
        return value.build()
    if isinstance(value, list):
        return [build_value(v) for v in value]
    if isinstance(value, dict):
        return {k: build_value(v) for k, v in value.items()}
    return value


def shipped_config(kind, name):
    """conf/<kind>/<name>.yaml as a dict, or None when there is no such file."""
    path = CONF_DIR / kind / f"{name}.yaml"
    if not path.is_file():
        return None
    return OmegaConf.to_container(OmegaConf.load(path))


def parse(kind, block, where=None, provided=()):
    """Check a component block against the registry and the constructor's signature.

    `block` is a dict (`name:` or `_target_:` plus arguments), a registered name, or the name of
    a shipped YAML in conf/<kind>/; `provided` names the arguments the runner fills in. Returns a
    Spec, or None for a null block. Raises ConfigError naming the first mistake.
    """
    where = where or kind
    block = to_plain(block)
    if block is None:
        return None
    if isinstance(block, str):
        block = shipped_config(kind, block) or {"name": block}
    if not isinstance(block, dict):
        raise ConfigError(f"{where}: expected a {kind} name or a block with `name:`, got {block!r}")
    args = dict(block)
    if "_target_" in args:
        cls = import_target(args.pop("_target_"), where)
        args.pop("name", None)
    elif "name" in args:
        cls = REGISTRIES[kind].get(args.pop("name"), where)
    else:
        raise ConfigError(
            f"{where}: a {kind} block needs `name:` (a registered {kind}) or `_target_:` "
            f"(an import path); got keys {sorted(args)}"
        )
    check_arguments(cls, args, where, provided)
    args = {key: parse_argument(key, value, f"{where}.{key}") for key, value in args.items()}
    return Spec(cls, args, where)


def check_arguments(cls, args, where, provided):
    parameters = constructor_parameters(cls)
    for name in args:
        if name not in parameters:
            raise ConfigError(
                f"{where}: {cls.__name__} has no argument {name!r}{closest(name, parameters)} "
                f"(valid: {', '.join(sorted(parameters)) or 'none'})"
            )
    for name, parameter in parameters.items():
        if (
            parameter.default is inspect.Parameter.empty
            and args.get(name) is None
            and name not in provided
        ):
            raise ConfigError(
                f"{where}: {cls.__name__} needs argument {name!r}; set {where}.{name}"
            )


def parse_argument(key, value, where):
    """Nested components become Specs; everything else stays a plain value."""
    kind = NESTED_KINDS.get(key)
    if kind is None:
        if isinstance(value, dict) and ("name" in value or "_target_" in value):
            return parse(kind_of_name(value, where), value, where)
        return value
    if isinstance(value, list):
        return [parse(kind, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict) and "name" not in value and "_target_" not in value:
        # A mapping of components, e.g. MultipleReducers({"pos_loss": ..., "neg_loss": ...}).
        return {k: parse(kind, v, f"{where}.{k}") for k, v in value.items()}
    return parse(kind, value, where)


def kind_of_name(block, where):
    """The kind of a nested block under an argument name the registry does not know."""
    if "_target_" in block:
        return "component"  # built by import path, so only error messages use the kind
    for kind, registry in REGISTRIES.items():
        if block["name"] in registry.classes():
            return kind
    all_names = [name for registry in REGISTRIES.values() for name in registry.classes()]
    raise ConfigError(
        f"{where}: unknown component {block['name']!r}{closest(block['name'], all_names)} "
        "(`metric-run --list` shows all)"
    )


def describe(cls):
    """`Name(arg=default, ...)` for the listing."""
    parts = []
    for name, parameter in constructor_parameters(cls).items():
        if parameter.default is inspect.Parameter.empty:
            parts.append(name)
        else:
            parts.append(f"{name}={parameter.default!r}")
    return f"{cls.__name__}({', '.join(parts)})"


def listing(kinds=None):
    """Every registered component with its arguments and defaults, and the shipped YAMLs;
    `kinds` (e.g. ["losses", "miner"]) narrows it down."""
    known = [name for registry in REGISTRIES.values() for name in (registry.kind, registry.plural)]
    for kind in kinds or ():
        if kind not in known:
            raise ConfigError(f"--list: no component kind {kind!r}{closest(kind, known)}")
    lines = []
    for kind, registry in REGISTRIES.items():
        if kinds and kind not in kinds and registry.plural not in kinds:
            continue
        lines.append(f"{registry.plural}:")
        configs = sorted(p.stem for p in (CONF_DIR / kind).glob("*.yaml"))
        if configs:
            lines.append(f"  configs ({kind}=...): {', '.join(configs)}")
        lines.extend(f"  {describe(cls)}" for cls in registry.classes().values())
    return "\n".join(lines)
