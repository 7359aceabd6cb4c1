"""webui/context.py: one request context per generation, on ``p`` under one name."""

from __future__ import annotations

from copy import copy
from types import SimpleNamespace

from lib_iclight import axes
from lib_iclight.webui import context
from lib_iclight.webui.settings import ICLightSettings

BY = axes.AXES_BY_LABEL


def set_axis(p, label, value):
    axis = BY[label]
    context.with_axis_value(p, axis.target, axes.parse_value(axis, value))


def test_axis_values_are_copy_on_write_across_shallow_copies():
    p = SimpleNamespace()
    set_axis(p, "IC Light model", "fc_a")
    cell = copy(p)
    set_axis(cell, "IC Light erode size", "8")
    set_axis(cell, "IC Light light angle", 90)
    assert context.context_of(p).axis_values == {"model_type": "fc_a"}
    assert context.context_of(cell).axis_values == {"model_type": "fc_a", "erode_size": 8, "light_map": 90}
    assert context.context_of(SimpleNamespace()) is None  # outside an X/Y/Z plot: no values


def test_start_keeps_the_axis_values_and_drops_the_rest():
    p = SimpleNamespace()
    set_axis(p, "IC Light erode size", 4)
    first = context.start(p, ICLightSettings())
    first.error = RuntimeError("stopped")
    second = context.start(p, None)
    assert second is not first and second.axis_values == {"erode_size": 4}
    assert second.error is None and second.request is None and second.settings is None
    assert context.context_of(p) is second


def test_all_of_ic_lights_state_is_one_attribute_of_p():
    p = SimpleNamespace()
    set_axis(p, "IC Light model", "fc_a")
    context.start(p, ICLightSettings())
    context.ensure(p).error = ValueError("x")
    assert [name for name in vars(p) if "iclight" in name.replace("_", "").lower()] == [context.ATTR]
