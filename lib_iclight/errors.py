"""The one error class the extension raises for anything a user or API caller got wrong."""

from __future__ import annotations


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
