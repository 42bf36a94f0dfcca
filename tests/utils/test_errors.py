import pytest

from metric_runner.utils.errors import (
    InvalidArgumentError,
    InvalidArgumentTypeError,
    UnacceptedArgumentError,
    UnsupportedInputError,
)


@pytest.mark.parametrize(
    "error_class, caught_as",
    [
        (InvalidArgumentError, (ValueError, AssertionError)),
        (UnsupportedInputError, (ValueError, NotImplementedError)),
        (InvalidArgumentTypeError, (TypeError, AssertionError)),
        (UnacceptedArgumentError, (ValueError, TypeError)),
    ],
)
def test_each_error_is_caught_by_our_type_and_by_pmls(error_class, caught_as):
    for base in caught_as:
        with pytest.raises(base, match="names the fix"):
            raise error_class("names the problem and names the fix")
