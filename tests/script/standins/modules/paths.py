"""Mirrors modules/paths.py / paths_internal.py: where models live."""
import tempfile

models_path = tempfile.mkdtemp(prefix="iclight-models-")
script_path = models_path
