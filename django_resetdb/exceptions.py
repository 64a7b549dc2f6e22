"""The errors a reset raises: a refusal (exit status 3) and a failure, both CommandErrors."""

from __future__ import annotations

from django.core.management.base import CommandError

# The exit status of a refusal by a guard, fixed by the design: scripts rely on it.
REFUSED_EXIT_STATUS = 3


class ResetError(CommandError):
    """A reset could not be done; nothing was changed."""


class TransactionEnded(ResetError):
    """Code run inside a reset's transaction ended it (a ``COMMIT`` or ``ROLLBACK`` sent
    as SQL); ``committed`` says which: what was written before it is then committed."""

    def __init__(self, message: str, *, committed: bool) -> None:
        super().__init__(message)
        self.committed = committed


class Refused(ResetError):
    """A guard refused the reset. The message names what refused and what would allow it."""

    def __init__(self, message: str) -> None:
        super().__init__(message, returncode=REFUSED_EXIT_STATUS)


def refuse_string(value: object, what: str) -> None:
    """Refuse ``value`` when it is a string where a list of them is needed: iterated,
    ``"default"`` would be the aliases ``d``, ``e``, ``f``..."""
    if isinstance(value, (str, bytes)):
        raise Refused(
            f"{what[:1].upper()}{what[1:]} must be a list, not the string {value!r}; nothing "
            f"was done. Pass [{value!r}]."
        )
