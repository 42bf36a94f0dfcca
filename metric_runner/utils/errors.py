"""Exception types that keep PML's contract while carrying our clear messages.

PML rejects bad arguments with ``assert`` (so its users catch ``AssertionError``) and unsupported
combinations with ``NotImplementedError``. Our errors are ``ValueError``s with a message naming the
problem and the fix; subclassing both keeps every ``except`` clause written for PML working.
"""


class InvalidArgumentError(ValueError, AssertionError):
    """An argument PML rejects with ``assert``: catchable as ValueError or AssertionError."""


class UnsupportedInputError(ValueError, NotImplementedError):
    """A combination PML refuses with ``NotImplementedError`` (a reducer given a reduction type it
    does not handle, NMI/AMI with a custom label comparison): catchable as either type."""


class InvalidArgumentTypeError(TypeError, AssertionError):
    """An argument of the wrong type (a list where a dict is needed, ...) that PML rejects with
    ``assert``: catchable as TypeError or AssertionError."""


class UnacceptedArgumentError(ValueError, TypeError):
    """An argument value that PML's constructor does not take at all, so that PML raises
    ``TypeError`` (CosineSimilarity(normalize_embeddings=False)): catchable as either type."""
