"""Stand-in for Forge 2's ``backend/patcher`` package."""
