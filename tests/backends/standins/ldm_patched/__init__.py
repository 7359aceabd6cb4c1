"""Stand-in for the ``ldm_patched`` package of Forge Classic / reForge (tests only)."""
