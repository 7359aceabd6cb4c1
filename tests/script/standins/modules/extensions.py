"""Mirrors modules/extensions.py: the extensions found at start-up and the enabled ones."""

extensions = []


class Extension:
    """Mirrors modules.extensions.Extension (the attributes the extension reads)."""

    def __init__(self, name, path, enabled=True, is_builtin=False):
        self.name = name
        self.path = path
        self.enabled = enabled
        self.is_builtin = is_builtin


def active():
    return [x for x in extensions if x.enabled]
