"""Mirrors modules/shared.py: opts, cmd_opts, state and the loaded model."""
import types


class Options:
    """Mirrors modules/options.Options: registered options with defaults, read as attributes."""

    def __init__(self):
        self.data = {}
        self.data_labels = {}

    def add_option(self, key, info):
        self.data_labels[key] = info
        self.data.setdefault(key, info.default)

    def __getattr__(self, item):
        data = self.__dict__.get("data", {})
        if item in data:
            return data[item]
        labels = self.__dict__.get("data_labels", {})
        if item in labels:
            return labels[item].default
        raise AttributeError(item)


class OptionInfo:
    """Mirrors modules/options.OptionInfo (the arguments the extension uses)."""

    def __init__(self, default=None, label="", component=None, component_args=None, onchange=None, section=None, refresh=None, **kwargs):
        self.default = default
        self.label = label
        self.component = component
        self.component_args = component_args
        self.section = section
        self.kwargs = kwargs

    def info(self, text):
        return self

    def needs_reload_ui(self):
        return self

    def needs_restart(self):
        return self


class State:
    interrupted = False
    skipped = False
    job_count = -1

    def interrupt(self):
        self.interrupted = True

    def begin(self, job=""):
        self.interrupted = False


opts = Options()
opts.data["img2img_color_correction"] = False  # A1111 1.10 default
cmd_opts = types.SimpleNamespace(ic_light_dir=None)
state = State()
sd_model = None
