"""Mirrors modules/ui_components.py InputAccordion: a hidden checkbox that is the component,
plus an accordion that follows it; used as a context manager around the panel."""
import gradio as gr


class InputAccordion(gr.Checkbox):
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
