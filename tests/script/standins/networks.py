"""Mirrors extensions-builtin/Lora/networks.py of A1111 1.10: lazy, in-place LoRA weights.

``network_apply_weights`` runs on a module's forward. The first time a module meets a
wanted LoRA set it backs up the module's *current* weight as the original
(``network_weights_backup``), then restores from that backup and adds each LoRA's delta
whenever the wanted set changes. That lazy backup is what IC-Light must not poison.
A "network" here is a dict {layer_name: delta tensor} with a multiplier.
"""
import torch

loaded_networks = []
originals = {}


class Network:
    def __init__(self, name, deltas, multiplier=1.0):
        self.name = name
        self.deltas = deltas
        self.te_multiplier = multiplier
        self.unet_multiplier = multiplier
        self.dyn_dim = None


def activate(networks):
    loaded_networks[:] = list(networks)


def network_restore_weights_from_backup(self):
    backup = getattr(self, "network_weights_backup", None)
    bias_backup = getattr(self, "network_bias_backup", None)
    if backup is None and bias_backup is None:
        return
    with torch.no_grad():
        if backup is not None:
            self.weight.copy_(backup)
        if bias_backup is not None:
            self.bias.copy_(bias_backup)


def network_apply_weights(self):
    name = getattr(self, "network_layer_name", None)
    if name is None:
        return
    current_names = getattr(self, "network_current_names", ())
    wanted_names = tuple((x.name, x.te_multiplier, x.unet_multiplier, x.dyn_dim) for x in loaded_networks)
    weights_backup = getattr(self, "network_weights_backup", None)
    if weights_backup is None and wanted_names != ():
        if current_names != ():
            raise RuntimeError("no backup weights found and current weights are not unchanged")
        weights_backup = self.weight.to("cpu", copy=True)
        self.network_weights_backup = weights_backup
    bias_backup = getattr(self, "network_bias_backup", None)
    if bias_backup is None and wanted_names != ():
        bias_backup = self.bias.to("cpu", copy=True) if getattr(self, "bias", None) is not None else None
        self.network_bias_backup = bias_backup
    if current_names != wanted_names:
        network_restore_weights_from_backup(self)
        for net in loaded_networks:
            delta = net.deltas.get(name)
            if delta is not None:
                with torch.no_grad():
                    self.weight += delta.to(self.weight) * net.unet_multiplier
        self.network_current_names = wanted_names


def _forward(kind):
    def forward(self, input):
        network_apply_weights(self)
        return originals[kind](self, input)
    return forward


def install(unet):
    """Hook Linear/Conv2d forwards (as the extension does at start-up) and name the layers."""
    for kind, cls in (("Linear", torch.nn.Linear), ("Conv2d", torch.nn.Conv2d)):
        originals.setdefault(kind, cls.forward)
        cls.forward = _forward(kind)
    assign_names(unet)


def assign_names(unet):
    for name, module in unet.named_modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            module.network_layer_name = name


def uninstall():
    for kind, cls in (("Linear", torch.nn.Linear), ("Conv2d", torch.nn.Conv2d)):
        if kind in originals:
            cls.forward = originals.pop(kind)
    loaded_networks.clear()
