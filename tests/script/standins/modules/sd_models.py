"""Mirrors modules/sd_models.py reload_model_weights: a different checkpoint is loaded
*into the same model object* with ``load_state_dict`` (A1111's default with one model slot)."""
from modules import shared

checkpoints = {}
"""name -> UNet state dict; tests register the hires checkpoint here."""


def reload_model_weights(info=None):
    model = shared.sd_model
    if info is None or getattr(model, "sd_checkpoint_info", None) == info:
        return model
    model.model.diffusion_model.load_state_dict(checkpoints[info], strict=False)
    model.sd_checkpoint_info = info
    model.sd_model_hash = info
    return model


class SdModelData:
    """``model_data``: the loaded model, read without triggering a load (A1111's
    ``shared.sd_model`` property would load one)."""

    @property
    def sd_model(self):
        return getattr(shared, "sd_model", None)


model_data = SdModelData()
