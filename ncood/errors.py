"""The one exception type the CLI turns into a one-line message instead of a traceback."""


class NcoodError(Exception):
    """A problem the user can fix: bad input, a missing file, an unknown name."""


def warn(message: str) -> None:
    """One line on stderr for something the user should know but that is not an error
    (a slow path taken, a setting worth changing)."""
    import sys

    print(f"ncood: warning: {message}", file=sys.stderr, flush=True)


_NOTED: set[str] = set()


def note(message: str, once: str | None = None) -> None:
    """One informational line on stderr; with ``once``, only the first time that key is seen
    in this process (a note about every file of a run would bury the output)."""
    import sys

    if once is not None:
        if once in _NOTED:
            return
        _NOTED.add(once)
    print(f"ncood: note: {message}", file=sys.stderr, flush=True)


def one_line(error: BaseException | str, limit: int = 300) -> str:
    """An error's message (or a text) on one line, white space folded, cut at ``limit``
    characters; an error without a message reads as its type."""
    text = " ".join(str(error).split())
    if not text and isinstance(error, BaseException):
        text = type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
