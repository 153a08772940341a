"""Project-wide error types. A `StoplensError` carries a one-line message that names the fix;
the CLI prints it and exits non-zero without a traceback."""


class StoplensError(Exception):
    """A user-facing error: its message is one line that says what is wrong and how to fix it."""


class UnsupportedArchitectureError(StoplensError):
    """The model's architecture is not known to `stoplens.models.arch`."""


class TriggerError(StoplensError):
    """The trigger is missing from a tokenizer, or is not exactly one token."""


class DataError(StoplensError):
    """A dataset file or record is malformed, or a dataset constraint is violated."""
