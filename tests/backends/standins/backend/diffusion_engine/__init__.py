"""Stand-in for Forge 2's ``backend/diffusion_engine`` package."""
