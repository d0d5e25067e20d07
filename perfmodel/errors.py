"""The one exception type that carries a user's mistake to a one-line message."""


class UserError(ValueError):
    """A bad choice on the user's side (unknown preset, bad shape, missing results).

    The CLI prints ``str(err)`` on one line and exits with status 2; it never shows a traceback
    for these.
    """


def choose(kind: str, value, valid) -> None:
    """Raise a UserError naming the valid choices when ``value`` is not one of ``valid``."""
    valid = list(valid)
    if value not in valid:
        raise UserError(f"unknown {kind} {value!r}; valid choices: {', '.join(map(str, valid))}")
