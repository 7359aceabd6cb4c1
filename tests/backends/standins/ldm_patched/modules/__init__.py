"""Stand-in for ``ldm_patched/modules`` (Forge Classic / reForge)."""
