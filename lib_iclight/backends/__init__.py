"""Adapters from the core to each WebUI family (AUTOMATIC1111, Forge 2, Forge Classic / reForge)."""
