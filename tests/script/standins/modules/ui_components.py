"""Mirrors modules/ui_components.py InputAccordion: a hidden checkbox that is the component,
plus an accordion that follows it; used as a context manager around the panel."""
import gradio as gr

try:  # Gradio 4 writes a .pyi beside every Component subclass's source; the WebUIs opt out too
    from gradio import component_meta

    _create_pyi = component_meta.create_or_modify_pyi

    def _skip_ours(component_class, class_name, events):
        if getattr(component_class, "webui_do_not_create_gradio_pyi_thank_you", False):
            return None
        return _create_pyi(component_class, class_name, events)

    component_meta.create_or_modify_pyi = _skip_ours
except ImportError:  # Gradio 3
    pass


class InputAccordion(gr.Checkbox):
    webui_do_not_create_gradio_pyi_thank_you = True

    def __init__(self, value=None, **kwargs):
        self.accordion_id = kwargs.get("elem_id") or "input-accordion"
        super().__init__(value=value, **{**kwargs, "elem_id": f"{self.accordion_id}-checkbox", "visible": False})
        self.accordion = gr.Accordion(label=kwargs.get("label", "Accordion"), open=bool(value), elem_id=self.accordion_id)

    def __enter__(self):
        self.accordion.__enter__()
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        self.accordion.__exit__(exc_type, exc_val, exc_tb)

    def get_block_name(self):
        return "checkbox"
