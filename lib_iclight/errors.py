"""The one error class the extension raises for anything a user or API caller got wrong, and
the checks that raise it for more than one module."""

from __future__ import annotations

import operator
import os
from pathlib import Path


class ICLightError(ValueError):
    """A request IC-Light cannot serve.

    The message always starts with the name of the argument at fault, so that an
    API caller or a UI user knows which field to fix, e.g.
    ``foreground_threshold: expected an int in 0..255, got "abc"``.
    """

    status_code = 422
    """The WebUIs' API exception handler answers with ``vars(e).get("status_code", 500)``:
    a request IC-Light refuses is the caller's to fix, so it is a 422, not a server error."""

    def __init__(self, arg: str, problem: str) -> None:
        self.arg = arg
        self.problem = problem
        # an instance attribute, because the handler reads vars(e), not the class
        self.status_code = ICLightError.status_code
        super().__init__(f"{arg}: {problem}")

    @classmethod
    def expected(cls, arg: str, expected: str, got: object) -> "ICLightError":
        """Build the common "expected X, got Y" message, with Y shown short and quoted."""
        return cls(arg, f"expected {expected}, got {describe_value(got)}")


class ICLightConflict(ICLightError):
    """IC-Light cannot run beside another extension or WebUI feature enabled for the same
    generation. Raised while sampling, so the generation stops with it (a 422 for the API:
    the caller fixes it by turning one of the two off)."""

    def __init__(self, problem: str) -> None:
        super().__init__("IC Light", problem)


def describe_value(value: object, limit: int = 60) -> str:
    """A short, quoted rendering of a value for an error message (never a whole base64 blob)."""
    if isinstance(value, str):
        text = value if len(value) <= limit else value[:limit] + f"... ({len(value)} chars)"
        return '"' + text + '"'
    if value is None:
        return "None"
    text = repr(value)
    if len(text) > limit:
        text = f"<{type(value).__name__}>"
    return text


def without_path(text: str, path: os.PathLike[str] | str) -> str:
    """``text`` with ``path`` (as given and resolved) replaced by the file's bare name, and
    its folder by the folder's name: messages reach API clients, which must not learn the
    server's folders."""
    path = Path(path)
    forms = {str(path): path.name, str(path.parent): path.parent.name}
    try:
        resolved = path.resolve()
        forms.setdefault(str(resolved), resolved.name)
        forms.setdefault(str(resolved.parent), resolved.parent.name)
    except OSError:
        pass
    # Longest first, so that a file's path is not cut by its folder's.
    for form in sorted(forms, key=len, reverse=True):
        if len(form) > 1:
            text = text.replace(form, forms[form])
    return text


def file_reason(exc: BaseException, path: os.PathLike[str] | str) -> str:
    """Why reading ``path`` failed, without the path: an OSError's own words ("Permission
    denied"), else the exception's text with the path replaced by the file name."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return without_path(str(exc), path)


def non_negative_int(arg: str, value: object) -> int:
    """``value`` as an int >= 0 (any integer type, never a bool), or ICLightError naming ``arg``."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ICLightError.expected(arg, "an int >= 0", value) from None
    if number < 0:
        raise ICLightError.expected(arg, "an int >= 0", value)
    return number
