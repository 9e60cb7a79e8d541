"""Bad input on the command line, one convention for every command: raise ``UsageError``; `sportlens`'s entry point
prints its message as one line on stderr (``sportlens: error: ...``) and exits with ``EXIT_BAD_INPUT``.

It sits in the lowest layer and imports nothing, so that the command modules of every layer (sportlens, service,
benchmarks, training) raise the same error without importing the command above them.
"""
from __future__ import annotations

EXIT_BAD_INPUT = 2


class UsageError(Exception):
    """Input the user can fix; its message is the one line they see."""
