"""Reference fixtures for QuantGraph's image preprocessing (PIL + torchvision semantics).

    py=$(scripts/bench/setup.sh) && "$py" models/preprocess_reference.py

Needs numpy and Pillow only; no dataset: the source images are made here from a fixed numpy
seed (smooth gradients, hard edges, checkerboards, a disk and noise, so that the resampling
filters give visibly different results). Writes tests/fixtures/preprocess/:

* images/a.png, a.jpg (97x61 WxH), b.png, b.jpg (50x83), c.png, c.jpg (64x64): RGB; the PNGs
  are lossless, the JPEGs are the same pixels saved by PIL with quality 90 and PIL's default
  subsampling (4:2:0); gray.png (40x30, mode L); rgba.png (30x40, mode RGBA, alpha varying).
* out/<image>.<config>.f32: the output tensor, raw little-endian float32, no header.
* out/<image>.<config>.u8: the uint8 RGB image right after resize (+ letterbox padding) and
  crop, before normalization: raw HWC RGB bytes, no header. It separates resampling
  differences from arithmetic ones.
* reference.json: versions, the configs, and per case the image, config, output shape and
  the two files with the u8 image's shape.

Pipeline (what the Rust side implements):

1. Decode with PIL, .convert('RGB'): L is replicated into R, G, B; RGBA drops alpha (no
   compositing, no premultiplication).
2. Resize, one of:
   * none;
   * shorter:N (torchvision Resize(N)): if w <= h: new_w = N, new_h = int(N * h / w), else
     new_h = N, new_w = int(N * w / h) (float64 division, Python int() truncation), then
     img.resize((new_w, new_h), filter);
   * exact:WxH: img.resize((W, H), filter);
   * letterbox:WxH: r = min(W / w, H / h) (float64); nw = int(round(w * r)),
     nh = int(round(h * r)) (Python round: ties to even); img.resize((nw, nh), filter), pasted
     onto a new (W, H) RGB image filled with (114, 114, 114) at left = (W - nw) // 2,
     top = (H - nh) // 2.
   Filters: bilinear = Image.BILINEAR, bicubic = Image.BICUBIC, nearest = Image.NEAREST, with
   Image.resize's default reducing_gap=None (PIL's convolution resampler: the filter support
   widens with the downscale factor, i.e. antialiased; horizontal pass then vertical pass with
   uint8 rounding in between).
3. Center crop WxH (optional, torchvision CenterCrop): top = int(round((h - th) / 2.0)),
   left = int(round((w - tw) / 2.0)) (ties to even); every config here fits.
4. x = np.asarray(img, dtype=np.float32) (HWC, 0..255), then in float32, operation by operation:
   * imagenet: (x / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225] (mean and std as
     float32; a true division by 255 and by std, not multiplication by a reciprocal);
   * raw: x;  unit: x / 255;  minus-one-one: x / 127.5 - 1.
5. Channels RGB, or BGR: the channel axis reversed after normalization (mean/std applied in
   RGB order first).
6. Layout NCHW (output [3, H, W]) or NHWC (output [H, W, 3]).

Configs (each on a.png, a.jpg, b.png, b.jpg, c.png, c.jpg, gray.png, rgba.png unless noted):
c1 shorter:32 bilinear crop 24x24 imagenet RGB NCHW; c2 exact:40x30 bicubic raw BGR NHWC;
c3 letterbox:32x32 bilinear minus-one-one RGB NCHW; c4 shorter:20 nearest crop 16x16 unit RGB
NCHW; c5 none raw RGB NCHW (plain decoding; for the JPEGs it shows decoder differences);
c6 shorter:128 bicubic crop 112x112 (upscaling) imagenet RGB NCHW, on a.png and c.png only.
Deterministic for a given numpy / Pillow (and its zlib / libjpeg) build.
"""
import json
import shutil
from pathlib import Path

import numpy as np
import PIL
from PIL import Image, JpegImagePlugin, features

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "preprocess"
SEED = 20240607
LETTERBOX_FILL = (114, 114, 114)
FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

ALL_IMAGES = ["a.png", "a.jpg", "b.png", "b.jpg", "c.png", "c.jpg", "gray.png", "rgba.png"]
CONFIGS = {
    "c1": {"resize": "shorter:32", "filter": "bilinear", "crop": "24x24", "normalize": "imagenet",
           "channels": "RGB", "layout": "NCHW"},
    "c2": {"resize": "exact:40x30", "filter": "bicubic", "crop": None, "normalize": "raw",
           "channels": "BGR", "layout": "NHWC"},
    "c3": {"resize": "letterbox:32x32", "filter": "bilinear", "crop": None,
           "normalize": "minus-one-one", "channels": "RGB", "layout": "NCHW"},
    "c4": {"resize": "shorter:20", "filter": "nearest", "crop": "16x16", "normalize": "unit",
           "channels": "RGB", "layout": "NCHW"},
    "c5": {"resize": "none", "filter": None, "crop": None, "normalize": "raw", "channels": "RGB",
           "layout": "NCHW"},
    "c6": {"resize": "shorter:128", "filter": "bicubic", "crop": "112x112", "normalize": "imagenet",
           "channels": "RGB", "layout": "NCHW"},
}
CONFIG_IMAGES = {"c6": ["a.png"], "c5": ["a.png", "a.jpg", "b.jpg", "gray.png", "rgba.png"]}

SEMANTICS = (
    "PIL decode + convert('RGB') (L replicated, RGBA alpha dropped); resize: none | "
    "shorter:N (torchvision Resize(N): shorter side N, other int(N*long/short)) | exact:WxH | "
    "letterbox:WxH (r=min(W/w,H/h), nw=round(w*r), nh=round(h*r) ties-to-even, pasted on "
    "(114,114,114) at ((W-nw)//2,(H-nh)//2)); PIL Image.resize with BILINEAR/BICUBIC/NEAREST, "
    "reducing_gap=None; torchvision CenterCrop (top=round((h-th)/2), left=round((w-tw)/2), "
    "ties-to-even); float32 HWC 0..255 then imagenet (x/255-mean)/std | raw x | unit x/255 | "
    "minus-one-one x/127.5-1 in float32; BGR reverses channels after normalization; NCHW or "
    "NHWC; f32 files little-endian, u8 files HWC RGB after resize+crop. "
    "See models/preprocess_reference.py.")


def smooth_rgb(w, h, rng):
    """Gradients + a checkerboard patch + stripes + a hard-edged disk + noise, uint8 HxWx3."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    u, v = x / max(w - 1, 1), y / max(h - 1, 1)
    img = np.stack([
        40 + 180 * u,
        30 + 190 * v,
        128 + 90 * np.sin(2 * np.pi * (1.3 * u + 0.7 * v)),
    ], axis=-1)
    # checkerboard (3-pixel cells) in the upper-left quarter
    cw, ch = w // 3, h // 3
    cx0, cy0 = w // 8, h // 8
    checker = ((x // 3 + y // 3) % 2 == 0) & (x >= cx0) & (x < cx0 + cw) & (y >= cy0) & (y < cy0 + ch)
    img[checker] = [250, 245, 240]
    # one-pixel vertical stripes in the lower band
    stripes = (x % 2 == 0) & (y >= h * 3 // 4)
    img[stripes] = img[stripes] * 0.25
    # a hard-edged disk
    r = min(w, h) / 5
    disk = (x - 0.7 * w) ** 2 + (y - 0.4 * h) ** 2 < r * r
    img[disk] = [20, 200, 60]
    # a sharp diagonal edge
    img[(x - y) > 0.85 * w] = [10, 10, 90]
    img += rng.normal(0, 6, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def make_images(dst):
    rng = np.random.default_rng(SEED)
    images = {}
    for name, (w, h) in (("a", (97, 61)), ("b", (50, 83)), ("c", (64, 64))):
        im = Image.fromarray(smooth_rgb(w, h, rng), "RGB")
        im.save(dst / f"{name}.png")
        im.save(dst / f"{name}.jpg", quality=90)
    g = smooth_rgb(40, 30, rng).astype(np.float64) @ [0.3, 0.5, 0.2]
    Image.fromarray(np.clip(np.round(g), 0, 255).astype(np.uint8), "L").save(dst / "gray.png")
    rgb = smooth_rgb(30, 40, rng)
    yy, xx = np.mgrid[0:40, 0:30]
    alpha = np.clip(255 * (xx + yy) / (29 + 39) + rng.normal(0, 10, (40, 30)), 0, 255).astype(np.uint8)
    alpha[:4] = 0  # fully transparent rows: their colour must survive .convert('RGB')
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(dst / "rgba.png")
    for f in ALL_IMAGES:
        with Image.open(dst / f) as im:
            entry = {"mode": im.mode, "width": im.width, "height": im.height}
            if f.endswith(".jpg"):
                entry["subsampling"] = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}.get(
                    JpegImagePlugin.get_sampling(im), "other")
            images[f] = entry
    return images


def parse_wh(s):
    w, h = s.split("x")
    return int(w), int(h)


def resize(img, spec, filt):
    kind, _, arg = spec.partition(":")
    if kind == "none":
        return img
    resample = FILTERS[filt]
    w, h = img.size
    if kind == "shorter":
        n = int(arg)
        if w <= h:
            nw, nh = n, int(n * h / w)
        else:
            nw, nh = int(n * w / h), n
        return img.resize((nw, nh), resample)
    if kind == "exact":
        return img.resize(parse_wh(arg), resample)
    if kind == "letterbox":
        tw, th = parse_wh(arg)
        r = min(tw / w, th / h)
        nw, nh = int(round(w * r)), int(round(h * r))
        canvas = Image.new("RGB", (tw, th), LETTERBOX_FILL)
        canvas.paste(img.resize((nw, nh), resample), ((tw - nw) // 2, (th - nh) // 2))
        return canvas
    raise ValueError(spec)


def center_crop(img, spec):
    if spec is None:
        return img
    tw, th = parse_wh(spec)
    w, h = img.size
    if tw > w or th > h:
        return None
    top, left = int(round((h - th) / 2.0)), int(round((w - tw) / 2.0))
    return img.crop((left, top, left + tw, top + th))


def normalize(x, preset):
    if preset == "raw":
        return x
    if preset == "unit":
        return x / np.float32(255)
    if preset == "minus-one-one":
        return x / np.float32(127.5) - np.float32(1)
    if preset == "imagenet":
        return (x / np.float32(255) - MEAN) / STD
    raise ValueError(preset)


def check_convert(src):
    """PIL's convert('RGB') must be plain replication / alpha dropping, as the Rust side does."""
    with Image.open(src / "gray.png") as im:
        g = np.asarray(im)
        assert np.array_equal(np.asarray(im.convert("RGB")), np.repeat(g[..., None], 3, axis=2))
    with Image.open(src / "rgba.png") as im:
        a = np.asarray(im)
        assert np.array_equal(np.asarray(im.convert("RGB")), a[..., :3])


def main():
    if OUT.exists():
        shutil.rmtree(OUT)
    src, out = OUT / "images", OUT / "out"
    src.mkdir(parents=True)
    out.mkdir()
    images = make_images(src)
    check_convert(src)
    cases = []
    for cname, cfg in CONFIGS.items():
        for f in CONFIG_IMAGES.get(cname, ALL_IMAGES):
            with Image.open(src / f) as im:
                img = im.convert("RGB")
            img = center_crop(resize(img, cfg["resize"], cfg["filter"]), cfg["crop"])
            if img is None:
                continue
            u8 = np.asarray(img, dtype=np.uint8)
            assert u8.ndim == 3 and u8.shape[2] == 3
            x = normalize(np.asarray(img, dtype=np.float32), cfg["normalize"])
            assert x.dtype == np.float32
            if cfg["channels"] == "BGR":
                x = x[..., ::-1]
            if cfg["layout"] == "NCHW":
                x = x.transpose(2, 0, 1)
            stem = f"out/{f}.{cname}"
            (OUT / f"{stem}.f32").write_bytes(np.ascontiguousarray(x, dtype="<f4").tobytes())
            (OUT / f"{stem}.u8").write_bytes(np.ascontiguousarray(u8).tobytes())
            cases.append({"image": f, "config": cname, "shape": list(x.shape), "f32": f"{stem}.f32",
                          "u8": f"{stem}.u8", "u8_shape": list(u8.shape)})
    (OUT / "reference.json").write_text(json.dumps({
        "pillow": PIL.__version__,
        "numpy": np.__version__,
        "libjpeg_turbo": features.version("libjpeg_turbo"),
        "seed": SEED,
        "semantics": SEMANTICS,
        "letterbox_fill": list(LETTERBOX_FILL),
        "images": images,
        "configs": CONFIGS,
        "cases": cases,
    }, indent=1) + "\n")
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"{len(cases)} cases, {total} bytes in {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
