"""Console output: rich on a terminal, plain text in logs and CI; and the one printer of errors."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from tfdock_host.errors import TfdockError

# soft_wrap: a long error stays one line in logs instead of being folded at the terminal width.
out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)


def info(message: str) -> None:
    err.print(f"[bold cyan]tfdock[/] {message}")


def print_error(error: TfdockError) -> None:
    hint = f" [dim]— {escape(error.hint)}[/]" if error.hint else ""
    err.print(f"[bold red]error:[/] {escape(error.message)}{hint}")
