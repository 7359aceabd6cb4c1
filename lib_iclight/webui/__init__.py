"""The WebUI layer: script hooks and request flow, panel, API routes, settings, X/Y/Z axes."""
