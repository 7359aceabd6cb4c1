"""Mirrors modules/script_callbacks.py: the callback registries the extension uses."""
callbacks_ui_settings = []
callbacks_app_started = []
callbacks_before_ui = []


def on_ui_settings(callback, *, name=None):
    callbacks_ui_settings.append(callback)


def on_app_started(callback, *, name=None):
    callbacks_app_started.append(callback)


def on_before_ui(callback, *, name=None):
    callbacks_before_ui.append(callback)


def before_ui_callback():
    """webui.py calls this after load_scripts and before building the UI or the API."""
    for callback in callbacks_before_ui:
        callback()
