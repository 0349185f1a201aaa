"""The host side's expected failures: each carries the one line a user sees and the fix to try."""


class TfdockError(Exception):
    """An expected failure: printed as one line with its hint, never as a traceback."""

    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(TfdockError):
    """A bad option value or spec given by the user."""

    exit_code = 2


class EngineError(TfdockError):
    """The Docker engine cannot be reached or refused a request."""


class BuildError(TfdockError):
    """An image build failed."""
