"""Mirrors modules/scripts.py of A1111 1.10: the Script base and the AlwaysOn ScriptRunner.

Like the real runner, every hook call is wrapped in ``try/except Exception`` that only
reports the error: an exception raised by a hook does not stop the generation.
"""
from collections import namedtuple
from dataclasses import dataclass

from modules import errors

AlwaysVisible = object()

# Filled by load_scripts in the real module: one entry per Script class of every script
# file, with the module loaded from it (named after the file, e.g. "xyz_grid.py").
ScriptClassData = namedtuple("ScriptClassData", ["script_class", "path", "basedir", "module"])
scripts_data = []


@dataclass
class PostSampleArgs:
    samples: object


@dataclass
class PostprocessImageArgs:
    image: object


@dataclass
class PostprocessBatchListArgs:
    images: list


class Script:
    filename = None
    args_from = None
    args_to = None
    alwayson = False
    is_txt2img = False
    is_img2img = False
    infotext_fields = None
    paste_field_names = None

    def title(self):
        raise NotImplementedError

    def ui(self, is_img2img):
        pass

    def show(self, is_img2img):
        return True

    def before_process(self, p, *args):
        pass

    def process(self, p, *args):
        pass

    def before_process_batch(self, p, *args, **kwargs):
        pass

    def after_extra_networks_activate(self, p, *args, **kwargs):
        pass

    def process_batch(self, p, *args, **kwargs):
        pass

    def process_before_every_sampling(self, p, *args, **kwargs):
        pass

    def post_sample(self, p, ps, *args):
        pass

    def postprocess_batch(self, p, *args, **kwargs):
        pass

    def postprocess_batch_list(self, p, pp, *args, **kwargs):
        pass

    def postprocess_image(self, p, pp, *args):
        pass

    def postprocess(self, p, processed, *args):
        pass

    def before_hr(self, p, *args):
        pass


_ARGS_COUNTS: dict = {}


def _args_count(script) -> int:
    """How many args a script takes: A1111 counts the components its ``ui()`` returns
    (``setup_ui_for_section``); built once per script class, in a throwaway Blocks."""
    if hasattr(script, "args_count"):
        return script.args_count
    if type(script) not in _ARGS_COUNTS:
        import gradio as gr

        with gr.Blocks():
            _ARGS_COUNTS[type(script)] = len(script.ui(False) or ())
    return _ARGS_COUNTS[type(script)]


class ScriptRunner:
    """Runs the AlwaysOn hooks in order, each over its slice of ``p.script_args``."""

    def __init__(self, scripts):
        self.alwayson_scripts = []
        start = 0
        for script in scripts:
            script.alwayson = True
            script.args_from = start
            script.args_to = start + _args_count(script)
            start = script.args_to
            self.alwayson_scripts.append(script)

    def _run(self, hook, p, *args, **kwargs):
        for script in self.alwayson_scripts:
            try:
                script_args = p.script_args[script.args_from:script.args_to]
                getattr(script, hook)(p, *args, *script_args, **kwargs)
            except Exception:
                errors.report(f"Error running {hook}: {script.filename}", exc_info=True)

    def before_process(self, p):
        self._run("before_process", p)

    def process(self, p):
        self._run("process", p)

    def before_process_batch(self, p, **kwargs):
        self._run("before_process_batch", p, **kwargs)

    def after_extra_networks_activate(self, p, **kwargs):
        self._run("after_extra_networks_activate", p, **kwargs)

    def process_batch(self, p, **kwargs):
        self._run("process_batch", p, **kwargs)

    def process_before_every_sampling(self, p, **kwargs):
        self._run("process_before_every_sampling", p, **kwargs)

    def post_sample(self, p, ps):
        self._run("post_sample", p, ps)

    def postprocess_batch(self, p, images, **kwargs):
        for script in self.alwayson_scripts:
            try:
                script.postprocess_batch(p, *p.script_args[script.args_from:script.args_to], images=images, **kwargs)
            except Exception:
                errors.report(f"Error running postprocess_batch: {script.filename}", exc_info=True)

    def postprocess_batch_list(self, p, pp, **kwargs):
        self._run("postprocess_batch_list", p, pp, **kwargs)

    def postprocess_image(self, p, pp):
        self._run("postprocess_image", p, pp)

    def postprocess(self, p, processed):
        self._run("postprocess", p, processed)

    def before_hr(self, p):
        self._run("before_hr", p)
