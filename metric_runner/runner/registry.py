"""Registries: the name of every component the runner can build from a config block.

A block names its class and arguments, and nested components are blocks too::

    {name: TripletMarginLoss, margin: 0.1, distance: {name: CosineSimilarity}}
    -> TripletMarginLoss(margin=0.1, distance=CosineSimilarity())

`_target_: my_pkg.my_module.MyLoss` builds a class by import path instead. Every class exported by
the library's component packages (`metric_runner.losses`, `.miners`, ...; `torch.optim` for
optimizers and schedulers) is registered automatically, so a new class needs no edit here; user
classes join with a decorator such as `@register_loss("MyLoss")`.

Blocks are checked against the constructor signatures first (`parse`): argument names, value
types (from the annotations, else the defaults), and whether the class can serve the config slot
it is in (`SLOT_CONTRACTS`: no two-view loss as the training loss), so a mistake stops the run
before any data is loaded; `Spec.build` then instantiates, filling in what the runner knows
(a sampler's labels, an optimizer's parameters, a trunk's input size) from its context.
"""

import ast
import collections.abc
import difflib
import functools
import importlib
import importlib.util
import inspect
import re
import textwrap
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def snake_case(name: str) -> str:
    """TripletMarginLoss -> triplet_margin_loss, SNRDistance -> snr_distance."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def closest(name: object, candidates: Iterable[str]) -> str:
    """'; did you mean a or b?' for the candidates closest to name, or '' when none is close."""
    matches = difflib.get_close_matches(str(name), sorted(candidates), n=3, cutoff=0.5)
    return f"; did you mean {' or '.join(matches)}?" if matches else ""


class Registry:
    """Names -> classes for one component kind.

    `modules` are scanned for exported classes (optionally only subclasses of `base`); modules
    that do not exist yet are skipped, and classes registered with `register` win over them.
    """

    def __init__(
        self,
        kind: str,
        plural: str,
        modules: Sequence[str] = (),
        base: type | None = None,
        exclude: Iterable[str] = (),
    ) -> None:
        self.kind = kind
        self.plural = plural
        self.modules = modules
        self.base = base
        self.exclude = set(exclude)
        self.registered = {}

    def register(self, name: str | None = None) -> Callable[[type], type]:
        def decorator(cls: type) -> type:
            self.registered[name or cls.__name__] = cls
            return cls

        return decorator

    def classes(self) -> dict[str, type]:
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

    def is_component(self, attr: str, value: object, module_name: str) -> bool:
        return (
            inspect.isclass(value)
            and value.__module__.startswith(module_name)  # defined there, not just imported
            and not attr.startswith("_")
            and not NOT_A_COMPONENT.search(attr)
            and attr not in self.exclude
            and (self.base is None or (issubclass(value, self.base) and value is not self.base))
        )

    def get(self, name: str, where: str) -> type:
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
    "tester": Registry("tester", "testers", ["metric_runner.testers"]),
    "trainer": Registry(
        "trainer", "trainers", ["metric_runner.trainers"], exclude={"NonFiniteLossError"}
    ),
    # Extra runner behaviour on the trainer's hooks (the `callbacks:` config key).
    "callback": Registry(
        "callback",
        "callbacks",
        ["metric_runner.runner.callbacks"],
        exclude={"Callback", "TrainerHooks", "SelfSupervisedTerm"},
    ),
}


def register(kind: str, name: str | None = None) -> Callable[[type], type]:
    return REGISTRIES[kind].register(name)


def register_dataset(name: str | None = None) -> Callable[[type], type]:
    return register("dataset", name)


def register_model(name: str | None = None) -> Callable[[type], type]:
    return register("model", name)


def register_loss(name: str | None = None) -> Callable[[type], type]:
    return register("loss", name)


def register_miner(name: str | None = None) -> Callable[[type], type]:
    return register("miner", name)


def register_distance(name: str | None = None) -> Callable[[type], type]:
    return register("distance", name)


def register_reducer(name: str | None = None) -> Callable[[type], type]:
    return register("reducer", name)


def register_regularizer(name: str | None = None) -> Callable[[type], type]:
    return register("regularizer", name)


def register_sampler(name: str | None = None) -> Callable[[type], type]:
    return register("sampler", name)


def register_optimizer(name: str | None = None) -> Callable[[type], type]:
    return register("optimizer", name)


def register_scheduler(name: str | None = None) -> Callable[[type], type]:
    return register("scheduler", name)


def register_tester(name: str | None = None) -> Callable[[type], type]:
    return register("tester", name)


def register_trainer(name: str | None = None) -> Callable[[type], type]:
    return register("trainer", name)


def constructor_parameters(cls: type) -> dict[str, inspect.Parameter]:
    """Every keyword the constructor accepts, in the order a call takes them, following
    `*args`/`**kwargs` up the class hierarchy (PML-style components pass their base class's
    arguments through them), minus the ones a subclass fixes itself
    (`super().__init__(mat_based_loss=False, **kwargs)`)."""
    parameters = {}
    for parameter in forwarded_parameters(cls.__mro__, frozenset()):
        parameters.setdefault(parameter.name, parameter)
    return parameters


def forwarded_parameters(mro: Sequence[type], fixed: frozenset[str]) -> list[inspect.Parameter]:
    """The parameters of the first constructor in `mro` (less the `fixed` names), with the
    next constructor's spliced in where it forwards them: its positional ones at `*args` (so
    `CosFaceLoss(*args, margin=...)` lists num_classes first), all the others at `**kwargs`."""
    for index, klass in enumerate(mro):
        if klass in (object, torch.nn.Module) or "__init__" not in vars(klass):
            continue
        own = list(signature_of(klass.__init__).parameters.values())[1:]
        kinds = {parameter.kind for parameter in own}
        forwards = kinds & {inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD}
        own_names = fixed | {parameter.name for parameter in own}
        base = (
            forwarded_parameters(mro[index + 1 :], own_names | keywords_passed_to_base(klass))
            if forwards
            else []
        )
        by_position = [p for p in base if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
        spliced = []
        for parameter in own:
            if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
                spliced += by_position
            elif parameter.kind is inspect.Parameter.VAR_KEYWORD:
                # Reachable by keyword only: the next constructor cannot get them by position.
                spliced += [
                    p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in base if p not in spliced
                ]
            elif parameter.name not in fixed:
                spliced.append(parameter)
        return spliced
    return []


def signature_of(function: Callable) -> inspect.Signature:
    """The signature with string annotations (`from __future__ import annotations`) resolved
    where possible."""
    try:
        return inspect.signature(function, eval_str=True)
    except Exception:  # an annotation that does not resolve: only the value checks lose it
        return inspect.signature(function)


@functools.cache
def keywords_passed_to_base(klass: type) -> frozenset[str]:
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


def import_target(target: str, where: str) -> type:
    module_name, _, class_name = str(target).rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as error:
        raise ConfigError(
            f"{where}: cannot import _target_ {target!r} ({error}); give a full path "
            "like my_package.my_module.MyClass"
        ) from None


def to_plain(value: Any) -> Any:
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


@dataclass
class Spec:
    """A checked component block: the class and its arguments, nested components parsed too."""

    cls: type
    args: dict
    where: str

    def build(self, **context: Any) -> Any:
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


def build_value(value: Any) -> Any:
    if isinstance(value, Spec):
        return value.build()
    if isinstance(value, list):
        return [build_value(v) for v in value]
    if isinstance(value, dict):
        return {k: build_value(v) for k, v in value.items()}
    return value


def shipped_config(kind: str, name: str) -> dict | None:
    """conf/<kind>/<name>.yaml as a dict, or None when there is no such file. An alias YAML
    (`defaults: [triplet_margin, _self_]`, as Hydra composes it) gives the option it names,
    updated with its own keys, so `loss.loss=triplet` means what `loss=triplet` means."""
    path = CONF_DIR / kind / f"{name}.yaml"
    if not path.is_file():
        return None
    block = OmegaConf.to_container(OmegaConf.load(path))
    composed = {}
    for option in block.pop("defaults", []):
        if option != "_self_":
            composed.update(shipped_config(kind, option) or {})
    return {**composed, **block}


def parse(
    kind: str, block: Any, where: str | None = None, provided: Iterable[str] = ()
) -> Spec | None:
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
    check_slot(cls, where)
    check_arguments(cls, args, where, provided)
    check_argument_values(cls, args, where, provided)
    args = {key: parse_argument(key, value, f"{where}.{key}") for key, value in args.items()}
    return Spec(cls, args, where)


def check_arguments(cls: type, args: dict, where: str, provided: Iterable[str]) -> None:
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


# What an argument's value must be, from its annotation or else its default: a description for
# the error and a test. Numbers take ints and floats alike (PML gives float arguments int
# defaults: margin=4, alpha=40); a string default takes an int too (triplets_per_anchor="all"
# or a count, k="max_bin_count" or a count).
VALUE_KINDS = {
    "bool": ("true or false", lambda value: isinstance(value, bool)),
    "int": ("an integer", lambda value: isinstance(value, int) and not isinstance(value, bool)),
    "number": (
        "a number",
        lambda value: isinstance(value, (int, float)) and not isinstance(value, bool),
    ),
    "str": ("a string", lambda value: isinstance(value, str)),
    "list": ("a list", lambda value: isinstance(value, (list, tuple))),
    "null": ("null", lambda value: value is None),
}
ANNOTATION_KINDS = {bool: "bool", int: "int", float: "number", str: "str", type(None): "null"}


def check_argument_values(cls: type, args: dict, where: str, provided: Iterable[str]) -> None:
    """Each plain value against the type its constructor argument expects, so `margin=abc`
    stops here in one line rather than as a traceback from inside the first training step.
    Components (nested blocks) are checked by `parse`; a null default or no annotation accepts
    anything; null is fine for what the runner fills in."""
    parameters = constructor_parameters(cls)
    for name, value in args.items():
        if name in NESTED_KINDS or is_component_block(value):
            continue
        if value is None and name in provided:  # null: the runner fills it in
            continue
        parameter = parameters[name]
        kinds = expected_kinds(parameter)
        if kinds is None or value_fits(value, kinds, parameter.default):
            continue
        default = parameter.default
        shown_default = (
            f", like the default {readable(default)}"
            if default is not None and default is not inspect.Parameter.empty
            else ""
        )
        shown_value = "null" if value is None else repr(value)
        raise ConfigError(
            f"{where}.{name}: expected {describe_kinds(kinds, default)}{shown_default}; "
            f"got {shown_value}"
        )


def is_component_block(value: object) -> bool:
    return isinstance(value, dict) and ("name" in value or "_target_" in value)


def expected_kinds(parameter: inspect.Parameter) -> tuple[str, ...] | None:
    """The VALUE_KINDS a parameter accepts, or None when anything goes."""
    default = parameter.default
    if parameter.annotation is not inspect.Parameter.empty:
        kinds = annotation_kinds(parameter.annotation)
        # `n_bins: int = None` means "an int, or None for automatic".
        return kinds + ("null",) if kinds is not None and default is None else kinds
    if default is None or default is inspect.Parameter.empty:
        return None
    if isinstance(default, bool):
        return ("bool",)
    if isinstance(default, (int, float)):
        return ("number",)
    if isinstance(default, str):
        return ("str", "int")
    if isinstance(default, (list, tuple)):
        return ("list",)
    return None  # a function, a dtype, an object: not something a YAML value can be


def annotation_kinds(annotation: object) -> tuple[str, ...] | None:
    """The VALUE_KINDS an annotation allows, None when it cannot tell. In a union, members no
    YAML value can be (`lr: float | Tensor`) are left out."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        parts = [annotation_kinds(part) for part in typing.get_args(annotation)]
        known = [part for part in parts if part is not None]
        unknown = [a for a, part in zip(typing.get_args(annotation), parts) if part is None]
        if not known or not all(is_object_type(a) for a in unknown):
            return None
        return tuple(kind for part in known for kind in part)
    if origin is typing.Literal:
        literal_kinds = [expected_kinds_of_value(value) for value in typing.get_args(annotation)]
        return None if None in literal_kinds else tuple(k for kinds in literal_kinds for k in kinds)
    if annotation in ANNOTATION_KINDS:
        return (ANNOTATION_KINDS[annotation],)
    if annotation in (list, tuple) or typing.get_origin(annotation) in (
        list,
        tuple,
        collections.abc.Sequence,
    ):
        return ("list",)
    return None


def is_object_type(annotation: object) -> bool:
    """A class of objects that only code builds (Tensor, Module, Generator), not YAML."""
    return inspect.isclass(annotation) and annotation.__module__ != "builtins"


def expected_kinds_of_value(value: object) -> tuple[str, ...] | None:
    for kind, (_, test) in VALUE_KINDS.items():
        if test(value):
            return (kind,)
    return None


def value_fits(value: object, kinds: Iterable[str], default: object) -> bool:
    if not any(VALUE_KINDS[kind][1](value) for kind in kinds):
        return False
    item_kind = sequence_item_kind(default)
    if item_kind is None or not isinstance(value, (list, tuple)):
        return True
    return all(VALUE_KINDS[item_kind][1](item) for item in value)


def sequence_item_kind(default: object) -> str | None:
    """The kind of every item of a non-empty sequence default when they share one, "number"
    (betas=(0.9, 0.999)) or "str" (include=("precision_at_1", ...)), else None."""
    if not isinstance(default, (list, tuple)) or not default:
        return None
    for kind in ("number", "str"):
        if all(VALUE_KINDS[kind][1](item) for item in default):
            return kind
    return None


def describe_kinds(kinds: Iterable[str], default: object) -> str:
    text = " or ".join(VALUE_KINDS[kind][0] for kind in dict.fromkeys(kinds))
    item_kind = sequence_item_kind(default)
    return text.replace("a list", f"a list of {item_kind}s") if item_kind else text


@dataclass(frozen=True)
class SlotContract:
    """What the runner does with the component in one config slot, as a test of its class and
    the sentence that explains a refusal."""

    fits: Callable[[type], bool]
    refusal: str


def accepts_labels(cls: type) -> bool:
    """Whether `loss(embeddings, labels, ...)` suits cls: the second argument of its forward is
    not the other view (`ref_emb`), and the class does not say `takes_labels = False` (a loss
    that only compares two views, such as VICRegLoss)."""
    if not getattr(cls, "takes_labels", True):
        return False
    call = getattr(cls, "forward", None) or cls.__call__
    parameters = list(signature_of(call).parameters.values())[1:]
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return True
    return len(parameters) >= 2 and parameters[1].name != "ref_emb"


def required_arguments(cls: type) -> set[str]:
    return {
        name
        for name, parameter in constructor_parameters(cls).items()
        if parameter.default is inspect.Parameter.empty
    }


# Keyed by the config path of the block. The runner gives a sampler the labels, batch_size,
# length_before_new_iter and a generator, never the model being trained or the dataset object.
SLOT_CONTRACTS = {
    "loss": SlotContract(
        accepts_labels,
        "compares two views without labels, but the training loss is called as "
        "loss(embeddings, labels, indices_tuple); put it in the self-supervised term "
        "(self_supervised.loss) instead",
    ),
    "self_supervised.loss": SlotContract(
        lambda cls: not accepts_labels(cls),
        "takes labels, but the self-supervised term calls it with two views and no labels; "
        "wrap it: {name: SelfSupervisedLoss, loss: {name: ...}}",
    ),
    "sampler": SlotContract(
        lambda cls: not required_arguments(cls) & {"model", "dataset"},
        "needs the model being trained and the dataset, which the runner does not give a "
        "sampler, so it cannot draw the runner's batches; use it from Python, or "
        "sampler=m_per_class",
    ),
    "tester": SlotContract(
        lambda cls: callable(getattr(cls, "evaluate", None)),
        "has no evaluate(splits, epoch, trunk, embedder), the call the runner evaluates "
        "with; use tester=knn (KNNTester). PML-style testers (tester.test(...)) serve the "
        "Python API",
    ),
}


def check_slot(cls: type, where: str) -> None:
    """Refuse a component that cannot do what the runner asks of its slot."""
    contract = SLOT_CONTRACTS.get(where)
    if contract is not None and not contract.fits(cls):
        raise ConfigError(f"{where}: {cls.__name__} {contract.refusal}")


def parse_argument(key: str, value: Any, where: str) -> Any:
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


def kind_of_name(block: dict, where: str) -> str:
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


def describe(cls: type) -> str:
    """`Name(arg, arg=default, ...)` for the listing: the arguments in the order the
    constructor takes them, with a `*` before a required one that follows defaults (it can
    only be given by keyword, as configs do)."""
    parts, seen_default = [], False
    for name, parameter in constructor_parameters(cls).items():
        if parameter.default is inspect.Parameter.empty:
            if seen_default and "*" not in parts:
                parts.append("*")
            parts.append(name)
        else:
            seen_default = True
            parts.append(f"{name}={readable(parameter.default)}")
    return f"{cls.__name__}({', '.join(parts)})"


def readable(value: object) -> str:
    """A default as a user would write it: functions and classes by their qualified name,
    objects without a meaningful repr by their type, never a memory address."""
    if callable(value) and hasattr(value, "__qualname__"):
        module = getattr(value, "__module__", None)
        return (
            value.__qualname__ if module in (None, "builtins") else f"{module}.{value.__qualname__}"
        )
    text = repr(value)
    if re.search(r" at 0x[0-9a-fA-F]+>$", text):
        return f"<{type(value).__qualname__}>"
    return text


def listing(kinds: list[str] | None = None) -> str:
    """Every registered component with its arguments and defaults, and the shipped YAMLs;
    `kinds` (e.g. ["losses", "miner"]) narrows it down. A kind with nothing registered is
    left out, or named as empty when asked for."""
    known = {
        name: kind for kind, registry in REGISTRIES.items() for name in (kind, registry.plural)
    }
    for kind in kinds or ():
        if kind not in known:
            valid = ", ".join(registry.plural for registry in REGISTRIES.values())
            raise ConfigError(
                f"--list: no component kind {kind!r}{closest(kind, known)} (kinds: {valid})"
            )
    wanted = {known[kind] for kind in kinds or ()}
    lines = []
    for kind, registry in REGISTRIES.items():
        if wanted and kind not in wanted:
            continue
        section = listing_section(kind, registry)
        if section:
            lines += [f"{registry.plural}:", *section]
        elif wanted:
            lines.append(f"{registry.plural}: none registered")
    return "\n".join(lines)


def listing_section(kind: str, registry: Registry) -> list[str]:
    configs = sorted(path.stem for path in (CONF_DIR / kind).glob("*.yaml"))
    lines = [f"  configs ({kind}=...): {', '.join(configs)}"] if configs else []
    return lines + [f"  {describe(cls)}" for cls in registry.classes().values()]
