"""Write a folder of procedurally generated JPEG images, one subfolder per class, for benchmarks.

    py=$(scripts/bench/setup.sh)
    "$py" scripts/bench/make_images.py --out /tmp/imgs --count 10000 [--classes 10] [--seed 0]

No dataset is involved: each image is a random colour gradient with Gaussian colour blobs, an
oriented sinusoidal texture and pixel noise (numpy), RGB, random width and height in
[200, 400], encoded with Pillow as JPEG quality 90. Image i (0-based) goes to class i mod K,
in DIR/n0000000k/n0000000k_iiiiii.JPEG (fake WordNet ids n00000000, n00000001, ...); the class
sets the gradient's hue and the texture's orientation, so classes differ a little on average.
DIR/labels.txt lists the K folder names, one per line, in output-index order. Image i depends
only on (seed, i), so the output is the same for any number of worker processes (one per CPU).
"""
import argparse
import os
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image

MIN_SIDE, MAX_SIDE, QUALITY = 200, 400, 90


def class_name(k: int) -> str:
    return f"n{k:08d}"


def hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    k = (np.array([5.0, 3.0, 1.0]) + h * 6) % 6
    return v - v * s * np.clip(np.minimum(k, 4 - k), 0, 1)


# Pixel noise comes from windows of one fixed table: drawing fresh normals costs more than the
# rest of an image together.
NOISE = np.random.default_rng(20240601).standard_normal(2 * MAX_SIDE * MAX_SIDE * 3, dtype=np.float32)


def make_image(seed: int, i: int, k: int, classes: int) -> np.ndarray:
    """Image i of class k as uint8 [H, W, 3]. The smooth part (gradient and blobs) is drawn at a
    quarter of the size and scaled up with Pillow's bilinear filter; texture and noise at full size."""
    rng = np.random.default_rng([seed, i])
    f32 = np.float32
    w, h = (int(v) for v in rng.integers(MIN_SIDE, MAX_SIDE + 1, 2))
    side = max(h, w)
    hs, ws = -(-h // 4), -(-w // 4)
    yy = (np.arange(hs, dtype=f32) * f32(4 / side))[:, None]
    xx = (np.arange(ws, dtype=f32) * f32(4 / side))[None, :]
    hue = k / classes + rng.normal(0, 0.04)
    c0 = hsv_to_rgb(hue, rng.uniform(0.3, 1), rng.uniform(0.3, 1)).astype(f32)
    c1 = hsv_to_rgb(hue + rng.uniform(-0.15, 0.15), rng.uniform(0, 1), rng.uniform(0.2, 1)).astype(f32)
    ang = rng.uniform(0, 2 * np.pi)
    t = f32(np.cos(ang)) * xx + f32(np.sin(ang)) * yy  # [hs, ws] by broadcasting
    t = (t - t.min()) / (t.max() - t.min() + f32(1e-6))
    img = c0 + (c1 - c0) * t[..., None]
    for _ in range(int(rng.integers(1, 6))):
        cy, cx = rng.uniform(0, 1, 2) * (h / side, w / side)
        r2 = f32(2 * rng.uniform(0.04, 0.25) ** 2)
        g = np.exp(-((yy - f32(cy)) ** 2) / r2) * np.exp(-((xx - f32(cx)) ** 2) / r2)  # separable Gaussian
        img += (rng.uniform(0, 1, 3).astype(f32) - img) * g[..., None]
    small = Image.fromarray(np.clip(img * f32(255), 0, 255).astype(np.uint8))
    base = np.asarray(small.resize((w, h), Image.BILINEAR), dtype=f32)
    # Oriented sinusoid sin(u x + v y + p) = sin(u x) cos(v y + p) + cos(u x) sin(v y + p), per axis.
    freq, a = rng.uniform(3, 40), np.pi * k / classes + rng.normal(0, 0.1)
    u, v, p = 2 * np.pi * freq * np.cos(a) / side, 2 * np.pi * freq * np.sin(a) / side, rng.uniform(0, 2 * np.pi)
    x, y = np.arange(w), np.arange(h)
    amp = f32(255 * rng.uniform(0, 0.25))
    tex = (np.outer(np.cos(v * y + p) * amp, np.sin(u * x)) + np.outer(np.sin(v * y + p) * amp, np.cos(u * x))).astype(f32)
    base += (tex.reshape(-1, 1) @ rng.uniform(0.3, 1, (1, 3)).astype(f32)).reshape(h, w, 3)  # outer product
    start = int(rng.integers(0, NOISE.size - h * w * 3))
    base += NOISE[start:start + h * w * 3].reshape(h, w, 3) * f32(rng.uniform(1, 12))
    return np.clip(base, 0, 255).astype(np.uint8)


def write_range(job):
    out, seed, classes, start, stop = job
    for i in range(start, stop):
        k = i % classes
        name = class_name(k)
        Image.fromarray(make_image(seed, i, k, classes)).save(out / name / f"{name}_{i:06d}.JPEG", quality=QUALITY)
    return stop - start


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="folder to write (created; existing files are overwritten)")
    ap.add_argument("--count", type=int, required=True, help="number of images")
    ap.add_argument("--classes", type=int, default=10, help="number of class subfolders (default 10)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: one per CPU)")
    args = ap.parse_args()
    if args.count < 1 or args.classes < 1:
        sys.exit("--count and --classes must be positive")
    t0 = time.perf_counter()
    names = [class_name(k) for k in range(args.classes)]
    for name in names:
        (args.out / name).mkdir(parents=True, exist_ok=True)
    (args.out / "labels.txt").write_text("".join(n + "\n" for n in names))
    chunk = 50
    jobs = [(args.out, args.seed, args.classes, s, min(s + chunk, args.count)) for s in range(0, args.count, chunk)]
    if args.jobs > 1 and len(jobs) > 1:
        with Pool(min(args.jobs, len(jobs))) as pool:
            done = sum(pool.imap_unordered(write_range, jobs))
    else:
        done = sum(map(write_range, jobs))
    secs = time.perf_counter() - t0
    print(f"wrote {done} JPEGs in {args.classes} classes to {args.out} in {secs:.1f} s "
          f"({done / secs:.0f} images/s, {min(args.jobs, len(jobs))} processes)")


if __name__ == "__main__":
    main()
