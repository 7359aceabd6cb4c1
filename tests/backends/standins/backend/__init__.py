"""Stand-in for Forge 2's ``backend`` package (lllyasviel/stable-diffusion-webui-forge).

Only what the IC-Light adapter touches; see each module's docstring for the real file it
mirrors. Tests only: put on sys.path by the ``standins`` fixture.
"""
