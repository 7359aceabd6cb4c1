"""IC-Light for the Stable Diffusion WebUIs.

Three layers, each a folder:

* ``lib_iclight/`` itself, the core: IC-Light alone (the args contract, images, light maps,
  rembg, weights, detail transfer). It imports no WebUI module, no Gradio, and neither of
  the two folders below (``tests/core/test_boundaries.py``).
* ``webui/``: what meets the WebUI's script machinery: the hooks and the request flow
  (``controller``, ``context``, ``tripwire``), the panel, the API routes, the settings, the
  X/Y/Z axes and the glue that registers them.
* ``backends/``: per-WebUI model patching (AUTOMATIC1111, Forge 2, Forge Classic / reForge),
  with the UNet patch, the delivery probe and the merge ledger they share.
"""

from .errors import ICLightError

__all__ = ["ICLightError"]
