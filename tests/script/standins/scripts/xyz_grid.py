"""Mirrors scripts/xyz_grid.py of A1111 1.10.1 (the X/Y/Z plot), reduced to its axis API
and the way ``run`` makes each cell.

Kept from the real source: ``AxisOption(label, type, apply, format_value, confirm, cost,
choices, prepare)`` and its per-tab subclasses; the module-level ``axis_options`` list
that ``ui()`` filters per tab with ``type(x) == AxisOption or x.is_img2img == is_img2img``
(``x_type`` is an index into that filtered list); values taken from the dropdown when an
axis has choices and csv mode is off, else split from the text as CSV, ``int`` ranges
``a-b`` / ``a-b (+s)``, then converted with the axis's ``type``; every ``confirm`` before
the first cell; each cell a shallow ``copy(p)`` with ``apply(pc, x, xs)`` of the three
axes, then ``process_images(pc)``, an exception only logged and the cell left blank; the
grid's infotext made from the first cell's ``p`` plus ``X Type``/``X Values``/... and the
images ordered grid first, then the cells when "Include Sub Images" is on.

Loaded by tests the way ``modules.script_loading.load_module`` loads it: as a module
named ``xyz_grid.py``, entered into ``modules.scripts.scripts_data``.
"""
import csv
import re
from copy import copy
from io import StringIO
from itertools import chain

from PIL import Image

from modules import errors, processing, scripts
from modules.processing import process_images


def apply_field(field):
    def fun(p, x, xs):
        setattr(p, field, x)

    return fun


def do_nothing(p, x, xs):
    pass


def format_value_add_label(p, opt, x):
    if type(x) == float:
        x = round(x, 8)
    return f"{opt.label}: {x}"


def format_nothing(p, opt, x):
    return ""


def list_to_csv_string(data_list):
    with StringIO() as o:
        csv.writer(o).writerow(data_list)
        return o.getvalue().strip()


def csv_string_to_list_strip(data_str):
    return list(map(str.strip, chain.from_iterable(csv.reader(StringIO(data_str), skipinitialspace=True))))


class AxisOption:
    def __init__(self, label, type, apply, format_value=format_value_add_label, confirm=None, cost=0.0, choices=None, prepare=None):
        self.label = label
        self.type = type
        self.apply = apply
        self.format_value = format_value
        self.confirm = confirm
        self.cost = cost
        self.prepare = prepare
        self.choices = choices


class AxisOptionImg2Img(AxisOption):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.is_img2img = True


class AxisOptionTxt2Img(AxisOption):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.is_img2img = False


axis_options = [
    AxisOption("Nothing", str, do_nothing, format_value=format_nothing),
    AxisOption("Seed", int, apply_field("seed")),
    AxisOption("Steps", int, apply_field("steps")),
    AxisOptionImg2Img("Image CFG Scale", float, apply_field("image_cfg_scale")),
]

re_range = re.compile(r"\s*([+-]?\s*\d+)\s*-\s*([+-]?\s*\d+)(?:\s*\(([+-]\d+)\s*\))?\s*")


def image_grid(imgs, rows):
    cols = (len(imgs) + rows - 1) // rows
    w, h = imgs[0].size
    grid = Image.new("RGB", size=(cols * w, rows * h), color="black")
    for i, img in enumerate(imgs):
        grid.paste(img, box=(i % cols * w, i // cols * h))
    return grid


class Script(scripts.Script):
    def title(self):
        return "X/Y/Z plot"

    def ui(self, is_img2img):
        self.current_axis_options = [x for x in axis_options if type(x) == AxisOption or x.is_img2img == is_img2img]
        return [x.label for x in self.current_axis_options]

    def run(self, p, x_type, x_values, x_values_dropdown, y_type, y_values, y_values_dropdown, z_type, z_values, z_values_dropdown,
            draw_legend, include_lone_images, include_sub_grids, no_fixed_seeds, vary_seeds_x, vary_seeds_y, vary_seeds_z, margin_size, csv_mode):
        x_type, y_type, z_type = x_type or 0, y_type or 0, z_type or 0

        def process_axis(opt, vals, vals_dropdown):
            if opt.label == "Nothing":
                return [0]
            if opt.choices is not None and not csv_mode:
                valslist = vals_dropdown
            else:
                valslist = csv_string_to_list_strip(vals)
            if opt.type == int:
                extended = []
                for val in valslist:
                    m = re_range.fullmatch(val)
                    if m is not None:
                        step = int(m.group(3)) if m.group(3) is not None else 1
                        extended += list(range(int(m.group(1)), int(m.group(2)) + 1, step))
                    else:
                        extended.append(val)
                valslist = extended
            valslist = [opt.type(x) for x in valslist]
            if opt.confirm:
                opt.confirm(p, valslist)
            return valslist

        x_opt, y_opt, z_opt = (self.current_axis_options[t] for t in (x_type, y_type, z_type))
        if x_opt.choices is not None and not csv_mode:
            x_values = list_to_csv_string(x_values_dropdown)
        xs = process_axis(x_opt, x_values, x_values_dropdown)
        if y_opt.choices is not None and not csv_mode:
            y_values = list_to_csv_string(y_values_dropdown)
        ys = process_axis(y_opt, y_values, y_values_dropdown)
        zs = process_axis(z_opt, z_values, z_values_dropdown)

        grid_infotext = [None]
        cells, texts = [], []
        for iz, z in enumerate(zs):
            for iy, y in enumerate(ys):
                for ix, x in enumerate(xs):
                    pc = copy(p)
                    x_opt.apply(pc, x, xs)
                    y_opt.apply(pc, y, ys)
                    z_opt.apply(pc, z, zs)
                    try:
                        res = process_images(pc)
                    except Exception:
                        errors.report("generating image for xyz plot", exc_info=True)
                        res = processing.Processed(pc, [], [])
                    if grid_infotext[0] is None and ix == 0 and iy == 0 and iz == 0:
                        pc.extra_generation_params = copy(pc.extra_generation_params)
                        pc.extra_generation_params["Script"] = self.title()
                        if x_opt.label != "Nothing":
                            pc.extra_generation_params["X Type"] = x_opt.label
                            pc.extra_generation_params["X Values"] = x_values
                        if y_opt.label != "Nothing":
                            pc.extra_generation_params["Y Type"] = y_opt.label
                            pc.extra_generation_params["Y Values"] = y_values
                        grid_infotext[0] = processing.create_infotext(pc)
                    if res.images:
                        cells.append(res.images[0])
                        texts.append(res.infotexts[0])
                    else:
                        cells.append(Image.new("RGB", (p.width, p.height)))
                        texts.append("")
        grid = image_grid(cells, rows=len(ys) * len(zs))
        images = [grid] + (cells if include_lone_images else [])
        infotexts = [grid_infotext[0] or ""] + (texts if include_lone_images else [])
        result = processing.Processed(p, images, infotexts)
        result.labels = [[opt.format_value(p, opt, v) for v in vals] for opt, vals in ((x_opt, xs), (y_opt, ys), (z_opt, zs))]
        return result
