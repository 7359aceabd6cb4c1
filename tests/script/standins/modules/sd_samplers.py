"""Mirrors modules/sd_samplers_kdiffusion.py + sd_samplers_cfg_denoiser.py, reduced to one sampler.

The UNet is reached the way A1111 reaches it: CFGDenoiser batches cond and uncond in one
call -> an eps (CompVis) denoiser -> ``sd_model.apply_model`` -> DiffusionWrapper ->
``diffusion_model(x, t, context=...)``. An interrupt makes the callback raise
``InterruptedException``, which ``launch_sampling`` turns into returning the last latent.
The refiner switch is ``sd_samplers_common.apply_refiner``, called by CFGDenoiser at
every step: once the completed ratio reaches ``p.refiner_switch_at`` (at once when it is
None), the refiner's weights are loaded into the model and sampling goes on with it.
The sampling maths is the real k-diffusion ``sample_dpmpp_2m`` with Karras sigmas.
"""
import torch

from modules import devices, sd_models, shared
from tests.helpers.tiny_unet import k_sampling


class InterruptedException(BaseException):
    pass


def _alphas_cumprod(steps=1000):
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, steps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0).float()


def apply_refiner(denoiser):
    p = denoiser.p
    if p is None or not denoiser.total_steps:
        return False
    completed_ratio = denoiser.step / denoiser.total_steps
    if p.refiner_switch_at is not None and completed_ratio < p.refiner_switch_at:
        return False
    if p.refiner_checkpoint_info is None or shared.sd_model.sd_checkpoint_info == p.refiner_checkpoint_info:
        return False
    sd_models.reload_model_weights(info=p.refiner_checkpoint_info)
    denoiser.sd_model = shared.sd_model  # update_inner_model
    return True


class CFGDenoiser(torch.nn.Module):
    def __init__(self, sd_model):
        super().__init__()
        self.sd_model = sd_model
        self.p = None
        self.step = 0
        self.total_steps = None
        alphas = _alphas_cumprod()
        self.sigmas = ((1 - alphas) / alphas) ** 0.5
        self.log_sigmas = self.sigmas.log()

    def sigma_to_t(self, sigma):
        log_sigmas = self.log_sigmas.to(sigma.device)
        return (sigma.log()[:, None] - log_sigmas[None]).abs().argmin(dim=1).float()

    def forward(self, x, sigma, cond, uncond, cond_scale):
        apply_refiner(self)
        batch = x.shape[0]
        x_in = torch.cat([x, x])
        sigma_in = torch.cat([sigma, sigma])
        c_in = 1 / (sigma_in ** 2 + 1) ** 0.5
        eps = self.sd_model.apply_model(x_in * c_in[:, None, None, None], self.sigma_to_t(sigma_in), torch.cat([cond, uncond]))
        eps_c, eps_u = eps[:batch], eps[batch:]
        eps = eps_u + cond_scale * (eps_c - eps_u)
        self.step += 1
        return x - eps * sigma[:, None, None, None]


class KDiffusionSampler:
    def __init__(self, name, sd_model):
        self.name = name
        self.model_wrap_cfg = CFGDenoiser(sd_model)
        self.last_latent = None
        self.steps_done = 0

    def callback_state(self, d):
        self.last_latent = d["denoised"]
        self.steps_done += 1
        if shared.state.interrupted:
            raise InterruptedException

    def launch_sampling(self, func):
        try:
            return func()
        except InterruptedException:
            return self.last_latent

    def _sigmas(self, steps):
        wrap = self.model_wrap_cfg
        return k_sampling().get_sigmas_karras(steps, float(wrap.sigmas[0]), float(wrap.sigmas[-1]), device=devices.device)

    def _start(self, p, steps):
        self.model_wrap_cfg.p = p
        self.model_wrap_cfg.step = 0
        self.model_wrap_cfg.total_steps = steps

    def sample(self, p, x, conditioning, unconditional_conditioning, steps=None, image_conditioning=None):
        self._start(p, steps or p.steps)
        sigmas = self._sigmas(steps or p.steps)
        extra = {"cond": conditioning, "uncond": unconditional_conditioning, "cond_scale": p.cfg_scale}
        x = x * sigmas[0]
        return self.launch_sampling(lambda: k_sampling().sample_dpmpp_2m(
            self.model_wrap_cfg, x, sigmas, extra_args=extra, callback=self.callback_state, disable=True))

    def sample_img2img(self, p, x, noise, conditioning, unconditional_conditioning, steps=None, image_conditioning=None):
        steps = steps or p.steps
        t_enc = max(1, int(min(p.denoising_strength, 0.999) * steps))
        self._start(p, t_enc + 1)
        sigmas = self._sigmas(steps)[steps - t_enc - 1:]
        xi = x + noise * sigmas[0]
        extra = {"cond": conditioning, "uncond": unconditional_conditioning, "cond_scale": p.cfg_scale}
        return self.launch_sampling(lambda: k_sampling().sample_dpmpp_2m(
            self.model_wrap_cfg, xi, sigmas, extra_args=extra, callback=self.callback_state, disable=True))


def create_sampler(name, model):
    return KDiffusionSampler(name, model)
