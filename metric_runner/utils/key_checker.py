"""Checks the keys of a trainer's dicts (models, loss_funcs, optimizers, ...) against a schema.

Each `KeyChecker` lists the allowed keys, the "important" ones (a missing one is a warning) and
the "essential" ones (a missing one is an error). `keys`, `important` and `essential` may be
callables `f(key_checker, children)`, so that e.g. the allowed optimizer names follow the allowed
model names even after a subclass changes them. Each key is a regular expression that must match
a whole given key ("classifier_[0-9]+" allows "classifier_0"); PML matches only a prefix and so
lets e.g. "trunk2" pass as "trunk", which the trainer then silently ignores.
"""

import re

from . import common_functions as c_f
from .errors import InvalidArgumentError


def default_important(key_checker, children):
    return resolve(key_checker.keys, key_checker, children)


def matches_any(key, patterns):
    return any(re.fullmatch(pattern, key) for pattern in patterns)


def resolve(value, key_checker, children):
    return value(key_checker, children) if callable(value) else value


class KeyChecker:
    def __init__(self, keys, warn_empty=True, important=default_important, essential=None):
        self.keys = keys
        self.warn_empty = warn_empty
        self.important = important
        self.essential = [] if essential is None else essential


class KeyCheckerDict:
    """`children` maps an attribute name (e.g. "models") to its KeyChecker."""

    def __init__(self, children):
        self.children = children

    def verify(self, obj):
        for name, key_checker in self.children.items():
            self._verify_prop(getattr(obj, name, None), name, key_checker)

    def _verify_prop(self, obj, obj_name, s):
        """None means "not given" (e.g. loss_weights=None: the trainer fills in defaults)."""
        if obj is None:
            return
        given = list(obj)
        allowed = resolve(s.keys, s, self.children)
        essential = resolve(s.essential, s, self.children)
        if s.warn_empty and not given:
            c_f.LOGGER.warning(f"{obj_name} is empty")
        unknown = [k for k in given if not matches_any(k, allowed)]
        if unknown:
            raise InvalidArgumentError(
                f"{obj_name} keys must be one of {', '.join(allowed)}; got unknown "
                f"{', '.join(repr(k) for k in unknown)}. Rename or remove them."
            )
        for key in resolve(s.important, s, self.children):
            if key not in essential and not any(re.fullmatch(key, k) for k in given):
                c_f.LOGGER.warning(f'{obj_name} is missing "{key}"')
        for key in essential:
            if not any(re.fullmatch(key, k) for k in given):
                raise InvalidArgumentError(
                    f'{obj_name} must contain "{key}"; add it to the {obj_name} dict.'
                )
