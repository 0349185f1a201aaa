"""The container side's expected failures: each carries the one line a user sees and the fix to try."""


class TfdockError(Exception):
    """An expected failure: printed by the CLI as one line with its hint, never as a traceback."""

    exit_code = 2

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class ConfigError(TfdockError):
    """A command-line option or saved run configuration that cannot be used."""


class DataError(TfdockError):
    """A dataset file that is missing, unreadable or malformed, or a download that failed."""


class ModelError(TfdockError):
    """A model or input file for evaluation/prediction that cannot be loaded or used."""


class OutputError(TfdockError):
    """A run's output (checkpoint, metrics, TensorBoard events, export) that cannot be written: a full disk,
    a read-only mount, lost permissions."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; raised at a safe point so no kept file is left half-written."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.exit_code = 128 + signum
