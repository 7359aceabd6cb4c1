"""IC-Light for the Stable Diffusion WebUIs: the WebUI-independent core.

Nothing in this package outside ``backends/`` imports a WebUI module.
"""

from .errors import ICLightError

__all__ = ["ICLightError"]
