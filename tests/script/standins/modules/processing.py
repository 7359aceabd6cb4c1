"""Mirrors modules/processing.py of A1111 1.10, reduced to the flow IC-Light depends on.

Kept from the real source: the hook order of process_images_inner; ``sample`` creating
the sampler and calling ``process_before_every_sampling`` right before it; the hires
pass (checkpoint swap in try/finally, latent upscale, a new sampler, ``before_hr`` and a
second ``process_before_every_sampling``); img2img encoding ``init_images`` in ``init``
after the ``process`` hook; ``p.sd_model`` being ``shared.sd_model``; the refiner's
checkpoint resolved before the ``process`` hook and switched to inside the sampler loop;
img2img colour correction (``opts.img2img_color_correction``): targets built in ``init``
from the resized ``init_images`` unless ``color_corrections`` is already set, applied to
each decoded image (A1111 1.10 l. 1666-1716 and 1067-1071; the histogram match is reduced
to a per-channel mean and spread match in LAB).
"""
import hashlib
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image

from modules import devices, scripts, sd_models, sd_samplers, shared


def setup_color_correction(image):
    return cv2.cvtColor(np.asarray(image.copy()), cv2.COLOR_RGB2LAB)


def apply_color_correction(correction, original_image):
    lab = cv2.cvtColor(np.asarray(original_image), cv2.COLOR_RGB2LAB).astype(np.float32)
    target = correction.astype(np.float32)
    for c in range(3):
        spread = lab[..., c].std() or 1.0
        lab[..., c] = (lab[..., c] - lab[..., c].mean()) / spread * target[..., c].std() + target[..., c].mean()
    rgb = cv2.cvtColor(np.clip(lab, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
    return Image.fromarray(rgb).convert("RGB")


def text_conditioning(prompts, dim=None):
    """A deterministic stand-in for CLIP: [B, 2, dim] from each prompt's hash."""
    dim = dim or getattr(shared.sd_model, "context_dim", 32)
    out = []
    for prompt in prompts:
        seed = int(hashlib.sha1(prompt.encode()).hexdigest()[:8], 16)
        out.append(torch.randn(2, dim, generator=torch.Generator().manual_seed(seed)))
    return torch.stack(out).to(devices.device)


@dataclass(repr=False)
class StableDiffusionProcessing:
    prompt: str = ""
    negative_prompt: str = ""
    seed: int = 1
    subseed: int = 1
    steps: int = 4
    cfg_scale: float = 5.0
    width: int = 64
    height: int = 64
    batch_size: int = 1
    n_iter: int = 1
    sampler_name: str = "DPM++ 2M Karras"
    script_args: Any = None
    scripts: Any = None
    loras: list = field(default_factory=list)
    sampler: Any = None
    extra_generation_params: dict = field(default_factory=dict)
    is_hr_pass: bool = False
    iteration: int = 0
    refiner_checkpoint: str = None
    refiner_switch_at: float = None
    refiner_checkpoint_info: Any = None

    @property
    def sd_model(self):
        return shared.sd_model

    @property
    def sd_model_hash(self):
        return getattr(shared.sd_model, "sd_model_hash", None)

    sd_vae_name = None

    def init(self, all_prompts, all_seeds):
        pass

    def close(self):
        pass


@dataclass(repr=False)
class StableDiffusionProcessingTxt2Img(StableDiffusionProcessing):
    enable_hr: bool = False
    denoising_strength: float = 0.6
    hr_scale: float = 2.0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    hr_checkpoint_name: str = None
    hr_upscale_to_x: int = 0
    hr_upscale_to_y: int = 0

    def init(self, all_prompts, all_seeds):
        if self.enable_hr:
            self.hr_upscale_to_x = int(self.width * self.hr_scale)
            self.hr_upscale_to_y = int(self.height * self.hr_scale)

    def sample(self, conditioning, unconditional_conditioning, seeds):
        self.sampler = sd_samplers.create_sampler(self.sampler_name, self.sd_model)
        x = noise_for(seeds, (4, self.height // 8, self.width // 8))
        if self.scripts is not None:
            self.scripts.process_before_every_sampling(self, x=x, noise=x, c=conditioning, uc=unconditional_conditioning)
        samples = self.sampler.sample(self, x, conditioning, unconditional_conditioning)
        if not self.enable_hr:
            return samples
        current = getattr(shared.sd_model, "sd_checkpoint_info", None)
        try:
            if self.hr_checkpoint_name:
                self.sampler = None
                sd_models.reload_model_weights(info=self.hr_checkpoint_name)
            return self.sample_hr_pass(samples, conditioning, unconditional_conditioning, seeds)
        finally:
            self.sampler = None
            sd_models.reload_model_weights(info=current)

    def sample_hr_pass(self, samples, conditioning, unconditional_conditioning, seeds):
        if shared.state.interrupted:
            return samples
        self.is_hr_pass = True
        self.sampler = sd_samplers.create_sampler(self.sampler_name, self.sd_model)
        samples = torch.nn.functional.interpolate(samples, size=(self.hr_upscale_to_y // 8, self.hr_upscale_to_x // 8), mode="nearest")
        noise = noise_for(seeds, samples.shape[1:])
        if self.scripts is not None:
            self.scripts.before_hr(self)
            self.scripts.process_before_every_sampling(self, x=samples, noise=noise, c=conditioning, uc=unconditional_conditioning)
        samples = self.sampler.sample_img2img(self, samples, noise, conditioning, unconditional_conditioning)
        self.sampler = None
        self.is_hr_pass = False
        return samples


@dataclass(repr=False)
class StableDiffusionProcessingImg2Img(StableDiffusionProcessing):
    init_images: list = None
    denoising_strength: float = 0.75
    init_latent: Any = None
    color_corrections: list = None

    def init(self, all_prompts, all_seeds):
        self.sampler = sd_samplers.create_sampler(self.sampler_name, self.sd_model)
        add_color_corrections = shared.opts.img2img_color_correction and self.color_corrections is None
        if add_color_corrections:
            self.color_corrections = []
        arrays = []
        for img in self.init_images:
            image = img.convert("RGB").resize((self.width, self.height))
            if add_color_corrections:
                self.color_corrections.append(setup_color_correction(image))
            arrays.append(np.moveaxis(np.asarray(image, dtype=np.float32) / 255.0, 2, 0))
        if self.color_corrections is not None and len(self.color_corrections) == 1:
            self.color_corrections = self.color_corrections * self.batch_size
        batch = np.expand_dims(arrays[0], 0).repeat(self.batch_size, 0) if len(arrays) == 1 else np.stack(arrays)
        image = torch.from_numpy(batch).to(devices.device, dtype=devices.dtype_vae)
        self.init_latent = self.sd_model.get_first_stage_encoding(self.sd_model.encode_first_stage(image * 2 - 1))

    def sample(self, conditioning, unconditional_conditioning, seeds):
        x = noise_for(seeds, self.init_latent.shape[1:])
        if self.scripts is not None:
            self.scripts.process_before_every_sampling(self, x=x, noise=x, c=conditioning, uc=unconditional_conditioning)
        return self.sampler.sample_img2img(self, self.init_latent, x, conditioning, unconditional_conditioning)


def noise_for(seeds, shape):
    # As A1111: drawn on the CPU from each seed, then moved, so a seed gives the same image everywhere.
    return torch.stack([torch.randn(tuple(shape), generator=torch.Generator().manual_seed(int(s))) for s in seeds]).to(devices.device)


class Processed:
    def __init__(self, p, images_list, infotexts):
        self.images = images_list
        self.infotexts = infotexts
        self.info = infotexts[0] if infotexts else ""
        self.index_of_first_image = 0
        self.extra_generation_params = dict(p.extra_generation_params)


def create_infotext(p):
    extras = ", ".join(f"{k}: {v}" for k, v in p.extra_generation_params.items())
    return f"{p.prompt}\nSteps: {p.steps}, Seed: {p.seed}, Size: {p.width}x{p.height}" + (f", {extras}" if extras else "")


def process_images(p):
    """Mirrors process_images + process_images_inner (no grid, no face restore, no saving)."""
    if p.scripts is not None:
        p.scripts.before_process(p)
    # A1111 resolves the refiner's checkpoint info before the process hook (the stand-in's
    # infos are the checkpoint names).
    if p.refiner_checkpoint not in (None, "", "None", "none"):
        if p.refiner_checkpoint not in sd_models.checkpoints:
            raise Exception(f"Could not find checkpoint with name {p.refiner_checkpoint}")
        p.refiner_checkpoint_info = p.refiner_checkpoint
    # A1111 lists the prompts and seeds on ``p`` before the process hook (l. 899-909),
    # which may change them.
    all_prompts = p.all_prompts = [p.prompt] * (p.batch_size * p.n_iter)
    p.all_seeds = [p.seed + i for i in range(len(all_prompts))]
    p.all_subseeds = [p.subseed + i for i in range(len(all_prompts))]
    if p.scripts is not None:
        p.scripts.process(p)
    all_seeds = p.all_seeds
    output_images, infotexts = [], []
    with torch.no_grad():
        p.init(all_prompts, all_seeds)
        for n in range(p.n_iter):
            p.iteration = n
            if shared.state.interrupted:
                break
            prompts = all_prompts[n * p.batch_size:(n + 1) * p.batch_size]
            seeds = all_seeds[n * p.batch_size:(n + 1) * p.batch_size]
            if p.scripts is not None:
                p.scripts.before_process_batch(p, batch_number=n, prompts=prompts, seeds=seeds)
            import networks  # the Lora stand-in; A1111 activates extra networks here
            networks.activate(p.loras)
            if p.scripts is not None:
                p.scripts.after_extra_networks_activate(p, batch_number=n, prompts=prompts, seeds=seeds)
                p.scripts.process_batch(p, batch_number=n, prompts=prompts, seeds=seeds)
            c = text_conditioning(prompts)
            uc = text_conditioning([p.negative_prompt] * len(prompts))
            with devices.without_autocast() if devices.unet_needs_upcast else devices.autocast():
                samples = p.sample(conditioning=c, unconditional_conditioning=uc, seeds=seeds)
            if p.scripts is not None:
                p.scripts.post_sample(p, scripts.PostSampleArgs(samples))
            decoded = torch.clamp((p.sd_model.decode_first_stage(samples.to(devices.dtype_vae)).float() + 1) / 2, 0, 1)
            if p.scripts is not None:
                p.scripts.postprocess_batch(p, decoded, batch_number=n)
                batch_params = scripts.PostprocessBatchListArgs(list(decoded))
                p.scripts.postprocess_batch_list(p, batch_params, batch_number=n)
                decoded = batch_params.images
            for i, x_sample in enumerate(decoded):
                p.batch_index = i  # A1111 1.10 l. 1032: extensions read it in postprocess_image
                array = (255.0 * np.moveaxis(x_sample.cpu().numpy(), 0, 2)).astype(np.uint8)
                image = Image.fromarray(array)
                corrections = getattr(p, "color_corrections", None)
                if corrections is not None and i < len(corrections):
                    image = apply_color_correction(corrections[i], image)
                if p.scripts is not None:
                    pp = scripts.PostprocessImageArgs(image)
                    p.scripts.postprocess_image(p, pp)
                    image = pp.image
                text = create_infotext(p)
                infotexts.append(text)
                image.info["parameters"] = text
                output_images.append(image)
    if hasattr(p, "color_corrections"):
        p.color_corrections = None
    res = Processed(p, output_images, infotexts)
    if p.scripts is not None:
        p.scripts.postprocess(p, res)
    return res
