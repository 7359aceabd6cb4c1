"""Stand-in for Forge 2's ``backend/modules`` package."""
