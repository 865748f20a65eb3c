"""How the command line fails: one line on stderr and an exit status (1: runtime, 2: invalid input)."""

from __future__ import annotations

EXIT_RUNTIME = 1
EXIT_USAGE = 2


class CliError(Exception):
    """A failure to report as one line on stderr, with the process's exit status."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
