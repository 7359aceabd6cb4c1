"""Relight an image through a running WebUI's API with the IC Light extension.

The wiki's example, generalised to every mode. Needs only ``requests`` and ``Pillow``; the
WebUI must run with ``--api``.

    # txt2img, fc: relight a subject from the prompt alone
    python iclight_api_client.py --subject person.jpg --prompt "sunset, warm light"

    # txt2img, fbc: relight a subject against a background picture
    python iclight_api_client.py --mode txt2img-fbc --subject person.jpg --background street.jpg

    # img2img: the subject is the img2img input, the light map says where light comes from
    python iclight_api_client.py --mode img2img --subject person.jpg --light-map left_light.png
    python iclight_api_client.py --mode img2img --subject person.jpg --light-map angle:135

    # the lighting options: a drawn fbc background, a normal map, relighting in place
    python iclight_api_client.py --mode txt2img-fbc --subject person.jpg --bg-source left
    python iclight_api_client.py --mode txt2img-fbc --subject person.jpg --normal-map
    python iclight_api_client.py --subject person.jpg --relight-in-place

Every returned image is written: out.png, out-1.png, out-2.png ... (the relit image first,
then what the extension appends, e.g. the subject with its background removed).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import sys
from pathlib import Path
from typing import Any

import requests
from PIL import Image

LIGHT_MAP_NAMES = ("left", "right", "top", "bottom", "ambient")
"""Light maps the server draws by name (and ``angle:<degrees>``); see GET /ic-light/v1/schema."""

# The script's 13 arguments, in the positional order the API expects.
ARG_ORDER = (
    "enable",
    "model_type",
    "input_fg",
    "uploaded_bg",
    "remove_bg",
    "rembg_model",
    "foreground_threshold",
    "background_threshold",
    "erode_size",
    "detail_transfer",
    "detail_transfer_raw",
    "detail_transfer_blur_radius",
    "reinforce_fg",
)


def img2base64(path: str) -> str:
    """A file as a base64 PNG: PNG keeps an alpha channel, which JPEG would drop."""
    with Image.open(path) as image:
        image.load()
        if image.mode not in ("RGB", "RGBA"):
            image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        with io.BytesIO() as buffer:
            image.save(buffer, format="PNG")
            return base64.b64encode(buffer.getvalue()).decode("ascii")


def parse_cli(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:7860", help="the WebUI address")
    parser.add_argument("--mode", choices=("txt2img-fc", "txt2img-fbc", "img2img"), default="txt2img-fc")
    parser.add_argument("--subject", required=True, help="the subject image file")
    parser.add_argument("--background", help="the background image file (txt2img-fbc)")
    parser.add_argument("--light-map", help="img2img: a light map image file, or a name the server draws: "
                        "left, right, top, bottom, ambient, angle:<degrees>")
    parser.add_argument("--bg-source", default="upload", help="txt2img-fbc: upload, upload_flip, left, right, top, "
                        "bottom, ambient or angle:<degrees> (the named ones need no --background)")
    parser.add_argument("--normal-map", action="store_true", help="txt2img-fbc: four relights and their normal map")
    parser.add_argument("--relight-in-place", action="store_true",
                        help="also put the relit subject back onto the photo's own background")
    parser.add_argument("--model", help='IC-Light model name (file stem), or "fc" / "fbc"; default from --mode')
    parser.add_argument("--rembg-model", default="u2net_human_seg")
    parser.add_argument("--keep-background", action="store_true", help="do not remove the subject's background")
    parser.add_argument("--detail-transfer", action="store_true")
    parser.add_argument("--reinforce-fg", action="store_true", help="img2img: paste the subject onto the light map")
    parser.add_argument("--prompt", default="high quality, best quality, a photo of a person, standing under sunset")
    parser.add_argument("--negative-prompt", default="worst quality, bad quality, low quality")
    parser.add_argument("--sampler", default="DPM++ 2M Karras")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--cfg-scale", type=float, default=7.5)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--seed", type=int, default=-1)
    parser.add_argument("--denoising-strength", type=float, default=0.9, help="img2img only")
    parser.add_argument("--output", default="out.png", help="first output file; more get -1, -2 ... suffixes")
    parser.add_argument("--dict-args", action="store_true", help='send "args": [{name: value}] instead of 13 values')
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args(argv)
    if args.mode == "txt2img-fbc" and not args.background and args.bg_source in ("upload", "upload_flip") \
            and not args.normal_map:
        parser.error("--mode txt2img-fbc needs --background (or a named --bg-source, or --normal-map)")
    return args


def light_map(value: str | None) -> str | None:
    """--light-map: a file's base64, or a name the server draws (sent as it is)."""
    if not value:
        return None
    if value.strip().lower() in LIGHT_MAP_NAMES or value.strip().lower().startswith("angle:"):
        if not Path(value).is_file():
            return value.strip().lower()
    return img2base64(value)


def build_payload(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The endpoint and the request body."""
    img2img = args.mode == "img2img"
    subject = img2base64(args.subject)
    ic = {
        "enable": True,
        "model_type": args.model or ("fbc" if args.mode == "txt2img-fbc" else "fc"),
        # img2img: input_fg is the light map, the subject goes in init_images.
        "input_fg": light_map(args.light_map) if img2img else subject,
        "uploaded_bg": img2base64(args.background) if args.mode == "txt2img-fbc" and args.background else None,
        "remove_bg": not args.keep_background,
        "rembg_model": args.rembg_model,
        "foreground_threshold": 225,
        "background_threshold": 16,
        "erode_size": 16,
        "detail_transfer": args.detail_transfer,
        "detail_transfer_raw": False,
        "detail_transfer_blur_radius": 5,
        "reinforce_fg": args.reinforce_fg,
    }
    # The lighting options follow the 13; they are sent by name, in the dict form.
    options = {"bg_source": args.bg_source, "normal_map": args.normal_map, "relight_in_place": args.relight_in_place}
    changed = {name: value for name, value in options.items() if value not in ("upload", False)}
    ic.update(changed)
    by_name = args.dict_args or bool(changed)
    script_args: list[Any] = [ic] if by_name else [ic[name] for name in ARG_ORDER]
    payload: dict[str, Any] = {
        "prompt": args.prompt,
        "negative_prompt": args.negative_prompt,
        "sampler_name": args.sampler,
        "steps": args.steps,
        "width": args.width,
        "height": args.height,
        "cfg_scale": args.cfg_scale,
        "seed": args.seed,
        "alwayson_scripts": {"IC Light": {"args": script_args}},
    }
    if img2img:
        payload["init_images"] = [subject]
        payload["denoising_strength"] = args.denoising_strength
    return ("img2img" if img2img else "txt2img"), payload


def output_paths(first: str, count: int) -> list[Path]:
    """out.png -> [out.png, out-1.png, out-2.png, ...]."""
    path = Path(first)
    suffix = path.suffix or ".png"
    return [path.with_name(f"{path.stem}{'' if i == 0 else f'-{i}'}{suffix}") for i in range(count)]


def explain_error(response: requests.Response) -> str:
    """The server's answer to a refused request, readable: the message names the argument."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or response.reason
    if isinstance(body, dict):
        parts = [f"{key}: {body[key]}" for key in ("error", "detail", "errors") if body.get(key)]
        if parts:
            return "\n".join(parts)
    return json.dumps(body, indent=2)


def main(argv: list[str] | None = None) -> int:
    args = parse_cli(argv)
    endpoint, payload = build_payload(args)
    url = f"{args.url.rstrip('/')}/sdapi/v1/{endpoint}"
    try:
        response = requests.post(url, json=payload, timeout=args.timeout)
    except requests.RequestException as exc:
        print(f"cannot reach {url}: {exc}", file=sys.stderr)
        return 2
    if response.status_code != 200:
        print(f"{url} answered {response.status_code}:\n{explain_error(response)}", file=sys.stderr)
        return 1
    images = response.json().get("images") or []
    if not images:
        print(f"{url} answered 200 but returned no image", file=sys.stderr)
        return 1
    for path, data in zip(output_paths(args.output, len(images)), images):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
