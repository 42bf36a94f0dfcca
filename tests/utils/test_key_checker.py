"""KeyChecker/KeyCheckerDict: unknown and missing essential keys raise (AssertionError, as in
PML, with our message), missing important keys and empty dicts warn, callables follow the
schema; decisions match PML's KeyCheckerDict on the same inputs."""

import logging
from types import SimpleNamespace

import pytest

from metric_runner.utils.errors import InvalidArgumentError
from metric_runner.utils.key_checker import KeyChecker, KeyCheckerDict


def schema(cls_checker=KeyChecker, cls_dict=KeyCheckerDict):
    return cls_dict(
        {
            "models": cls_checker(["trunk", "embedder"], essential=["trunk"]),
            "optimizers": cls_checker(
                lambda s, d: [f"{k}_optimizer" for k in d["models"].keys], important=[]
            ),
        }
    )


def check(checker, **dicts):
    checker.verify(SimpleNamespace(**dicts))


def test_valid_dicts_pass_and_none_means_not_given(caplog):
    with caplog.at_level(logging.WARNING, logger="metric_runner"):
        check(schema(), models={"trunk": 1, "embedder": 2}, optimizers={"trunk_optimizer": 3})
        check(schema(), models={"trunk": 1, "embedder": 2}, optimizers=None)
    assert caplog.messages == []


def test_unknown_key_raises_with_the_allowed_keys():
    with pytest.raises(InvalidArgumentError) as error:
        check(schema(), models={"trunk": 1}, optimizers={"head_optimizer": 1})
    assert isinstance(error.value, AssertionError) and isinstance(error.value, ValueError)
    assert "optimizers keys must be one of trunk_optimizer, embedder_optimizer" in str(error.value)
    assert "'head_optimizer'" in str(error.value)


def test_missing_essential_raises_and_missing_important_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="metric_runner"):
        with pytest.raises(AssertionError, match='models must contain "trunk"'):
            check(schema(), models={}, optimizers={})
    assert caplog.messages == ["models is empty", 'models is missing "embedder"']


def test_warn_empty_off_and_callable_essential():
    checker = KeyCheckerDict(
        {
            "models": KeyChecker(["trunk"]),
            "weights": KeyChecker(
                lambda s, d: d["models"].keys, warn_empty=False, essential=lambda s, d: ["trunk"]
            ),
        }
    )
    with pytest.raises(AssertionError, match='weights must contain "trunk"'):
        check(checker, models={"trunk": 1}, weights={})


CASES = [
    dict(models={"trunk": 1, "embedder": 2}, optimizers={"trunk_optimizer": 3}),
    dict(models={"trunk": 1}, optimizers={"trunk_optimizer": 3, "x_optimizer": 1}),
    dict(models={"embedder": 1}, optimizers={}),
    dict(models={"trunk": 1, "head": 2}, optimizers={}),
    dict(models={}, optimizers={"embedder_optimizer": 1}),
]


@pytest.mark.parametrize("dicts", CASES)
def test_same_decisions_as_pml(pml, dicts):
    from pytorch_metric_learning.utils import key_checker as pml_key_checker

    outcomes = []
    for checker in (schema(), schema(pml_key_checker.KeyChecker, pml_key_checker.KeyCheckerDict)):
        try:
            check(checker, **dicts)
            outcomes.append(None)
        except AssertionError as error:
            outcomes.append(str(error).split(";")[0])
    assert outcomes[0] == outcomes[1]


def test_keys_are_whole_regular_expressions():
    checker = KeyCheckerDict(
        {"models": KeyChecker(["trunk", "classifier_[0-9]+"], essential=["classifier_[0-9]+"])}
    )
    check(checker, models={"trunk": 1, "classifier_0": 2, "classifier_12": 3})
    with pytest.raises(AssertionError, match='models must contain "classifier_\\[0-9\\]\\+"'):
        check(checker, models={"trunk": 1})
    # PML matches a prefix only, so it would accept "trunk2" and "classifier_1b" silently
    for typo in ("trunk2", "classifier_1b"):
        with pytest.raises(AssertionError, match="models keys must be one of"):
            check(checker, models={"classifier_0": 1, typo: 2})
