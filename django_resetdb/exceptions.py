"""The errors a reset raises: a refusal (exit status 3) and a failure, both CommandErrors."""

from __future__ import annotations

from django.core.management.base import CommandError

# The exit status of a refusal by a guard, fixed by the design: scripts rely on it.
REFUSED_EXIT_STATUS = 3


class ResetError(CommandError):
    """A reset could not be done; nothing was changed."""


class Refused(ResetError):
    """A guard refused the reset. The message names what refused and what would allow it."""

    def __init__(self, message: str) -> None:
        super().__init__(message, returncode=REFUSED_EXIT_STATUS)
