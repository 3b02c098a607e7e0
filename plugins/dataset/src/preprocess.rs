//! Turning 8-bit RGB images into the float tensor a model takes, the way training pipelines
//! (PIL + torchvision) do it: resize (shorter side, exact, or letterbox) with PIL's
//! antialiased filters, center crop, scale, per-channel mean/std, RGB or BGR, NCHW or NHWC.
//!
//! Resampling is a port of Pillow's `Resample.c` ([`pillow`]), so the 8-bit images equal
//! PIL's `Image.resize` exactly (tested against `models/preprocess_reference.py`). The
//! `fast_image_resize` crate was tried first: it implements Pillow-SIMD's variant (15-bit
//! coefficients, vertical pass first), which differs from PIL by 1–2 levels on 0.6 % of
//! pixels and picks different pixels for nearest-neighbour.

use image::RgbImage;
use quantgraph_nodes::NodeError;

/// How an image is resized before cropping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resize {
    None,
    /// Shorter side to N, the other in proportion (torchvision `Resize(N)`).
    Shorter(u32),
    /// Exactly W×H.
    Exact(u32, u32),
    /// Fit inside W×H keeping the aspect ratio, centred on grey (114, 114, 114) padding
    /// (the YOLO convention).
    Letterbox(u32, u32),
}

/// Resampling filter, as PIL names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Nearest,
    Bilinear,
    Bicubic,
}

/// Pillow's resampling (`libImaging/Resample.c` and the affine nearest-neighbour of
/// `Geometry.c`), for 8-bit RGB.
mod pillow {
    use image::RgbImage;

    #[derive(Clone, Copy)]
    pub enum Kernel {
        Bilinear,
        Bicubic,
    }

    impl Kernel {
        fn support(self) -> f64 {
            match self {
                Kernel::Bilinear => 1.0,
                Kernel::Bicubic => 2.0,
            }
        }
        fn weight(self, x: f64) -> f64 {
            let x = x.abs();
            match self {
                Kernel::Bilinear => (1.0 - x).max(0.0),
                // a = −0.5
                Kernel::Bicubic => {
                    const A: f64 = -0.5;
                    if x < 1.0 {
                        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                    } else if x < 2.0 {
                        (((x - 5.0) * x + 8.0) * x - 4.0) * A
                    } else {
                        0.0
                    }
                }
            }
        }
    }

    const PRECISION_BITS: u32 = 32 - 8 - 2;

    /// Per output pixel: first input pixel and fixed-point weights (`precompute_coeffs` +
    /// `normalize_coeffs_8bpc`).
    fn coefficients(in_size: u32, out_size: u32, kernel: Kernel) -> Vec<(usize, Vec<i32>)> {
        let scale = f64::from(in_size) / f64::from(out_size);
        let filterscale = scale.max(1.0);
        let support = kernel.support() * filterscale;
        let ss = 1.0 / filterscale;
        (0..out_size)
            .map(|xx| {
                let center = (f64::from(xx) + 0.5) * scale;
                let xmin = ((center - support + 0.5) as i64).max(0) as usize;
                let xmax = ((center + support + 0.5) as i64).min(i64::from(in_size)) as usize;
                let weights: Vec<f64> =
                    (xmin..xmax.max(xmin)).map(|x| kernel.weight((x as f64 - center + 0.5) * ss)).collect();
                let total: f64 = weights.iter().sum();
                let fixed = weights
                    .iter()
                    .map(|w| {
                        let k = if total != 0.0 { w / total } else { 0.0 };
                        let v = k * f64::from(1u32 << PRECISION_BITS);
                        (if v < 0.0 { v - 0.5 } else { v + 0.5 }) as i32
                    })
                    .collect();
                (xmin, fixed)
            })
            .collect()
    }

    fn clip8(v: i32) -> u8 {
        (v >> PRECISION_BITS).clamp(0, 255) as u8
    }

    /// Horizontal pass, then vertical (each skipped when that side keeps its size).
    pub fn resample(img: &RgbImage, w: u32, h: u32, kernel: Kernel) -> RgbImage {
        let (sw, sh) = img.dimensions();
        let half = 1i32 << (PRECISION_BITS - 1);
        let horizontal = if sw != w {
            let coeffs = coefficients(sw, w, kernel);
            let src = img.as_raw();
            let mut out = vec![0u8; w as usize * sh as usize * 3];
            for y in 0..sh as usize {
                let row = &src[y * sw as usize * 3..(y + 1) * sw as usize * 3];
                for (x, (xmin, k)) in coeffs.iter().enumerate() {
                    for c in 0..3 {
                        let mut acc = half;
                        for (i, kv) in k.iter().enumerate() {
                            acc += i32::from(row[(xmin + i) * 3 + c]) * kv;
                        }
                        out[(y * w as usize + x) * 3 + c] = clip8(acc);
                    }
                }
            }
            RgbImage::from_raw(w, sh, out).unwrap_or_default()
        } else {
            img.clone()
        };
        if sh == h {
            return horizontal;
        }
        let coeffs = coefficients(sh, h, kernel);
        let src = horizontal.as_raw();
        let stride = w as usize * 3;
        let mut out = vec![0u8; w as usize * h as usize * 3];
        for (y, (ymin, k)) in coeffs.iter().enumerate() {
            for i in 0..stride {
                let mut acc = half;
                for (j, kv) in k.iter().enumerate() {
                    acc += i32::from(src[(ymin + j) * stride + i]) * kv;
                }
                out[y * stride + i] = clip8(acc);
            }
        }
        RgbImage::from_raw(w, h, out).unwrap_or_default()
    }

    /// Nearest neighbour as Pillow picks it: the source position starts at half a step and
    /// adds the step once per output pixel and per row (in f64), then truncates (checked
    /// against PIL for every size pair up to 200 → 120).
    pub fn nearest(img: &RgbImage, w: u32, h: u32) -> RgbImage {
        let (sw, sh) = img.dimensions();
        let (ax, ay) = (f64::from(sw) / f64::from(w), f64::from(sh) / f64::from(h));
        let mut out = RgbImage::new(w, h);
        let mut yy = ay * 0.5;
        for y in 0..h {
            let yin = (yy as u32).min(sh - 1);
            yy += ay;
            let mut xx = ax * 0.5;
            for x in 0..w {
                let xin = (xx as u32).min(sw - 1);
                out.put_pixel(x, y, *img.get_pixel(xin, yin));
                xx += ax;
            }
        }
        out
    }
}

/// Grey used by letterbox padding.
pub const LETTERBOX_FILL: u8 = 114;
/// The largest image resizing may make (a very thin image resized by its shorter side
/// would otherwise ask for gigabytes).
pub const MAX_RESIZED_PIXELS: u64 = 64 << 20;

/// Pixel preprocessing.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocess {
    pub resize: Resize,
    pub filter: Filter,
    /// Center crop to W×H, after resizing.
    pub crop: Option<(u32, u32)>,
    /// Pixels are divided by this (1: raw 0–255, 255: unit, 127.5 with mean 1: −1…1).
    pub divisor: f32,
    pub mean: Option<[f32; 3]>,
    pub std: Option<[f32; 3]>,
    /// Channels in BGR order (mean/std are still given in RGB order).
    pub bgr: bool,
    pub layout_nhwc: bool,
}

/// Preprocessing params as the node's params hold them (sizes as text, mean and std as numbers).
#[derive(Debug, Clone, Default)]
pub struct PreprocessParams<'a> {
    pub normalize: &'a str,
    pub scale: &'a str,
    /// None, one number for every channel, or one per channel (R, G, B).
    pub mean: &'a [f64],
    pub std: &'a [f64],
    pub layout: &'a str,
    pub resize: &'a str,
    pub resize_to: &'a str,
    pub filter: &'a str,
    pub crop: &'a str,
    pub channels: &'a str,
}

const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

fn triple(param: &str, values: &[f64]) -> Result<Option<[f32; 3]>, NodeError> {
    if values.iter().any(|x| !x.is_finite()) {
        return Err(NodeError::param(param, format!("expected finite numbers, found {values:?}")));
    }
    match values {
        [] => Ok(None),
        [v] => Ok(Some([*v as f32; 3])),
        [r, g, b] => Ok(Some([*r as f32, *g as f32, *b as f32])),
        _ => Err(NodeError::param(
            param,
            format!("expected none, one number or three (one per channel), found {} numbers", values.len()),
        )),
    }
}

/// `N` or `W×H` / `WxH` (a single N means N×N).
fn size(param: &str, text: &str, single_is_square: bool) -> Result<(u32, u32), NodeError> {
    let t = text.trim().replace(['×', 'X', '*'], "x");
    let bad = || {
        NodeError::param(
            param,
            format!(
                "expected {} (a size in pixels, 1–16384), found '{text}'",
                if single_is_square { "N or WxH, e.g. 224 or 224x224" } else { "WxH, e.g. 224x224" }
            ),
        )
    };
    let parse = |s: &str| s.trim().parse::<u32>().ok().filter(|v| (1..=16384).contains(v));
    match t.split_once('x') {
        Some((w, h)) => Ok((parse(w).ok_or_else(bad)?, parse(h).ok_or_else(bad)?)),
        None if single_is_square => parse(&t).map(|n| (n, n)).ok_or_else(bad),
        None => Err(bad()),
    }
}

impl Preprocess {
    pub fn from_params(p: &PreprocessParams) -> Result<Self, NodeError> {
        let (divisor, mean, std) = match p.normalize {
            "" | "custom" => {
                let std = triple("std", p.std)?;
                if let Some(s) = std {
                    if s.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
                        return Err(NodeError::param("std", "every channel's std must be positive"));
                    }
                }
                (if p.scale == "unit" { 255.0 } else { 1.0 }, triple("mean", p.mean)?, std)
            }
            "imagenet" => (255.0, Some(IMAGENET_MEAN), Some(IMAGENET_STD)),
            "raw" => (1.0, None, None),
            "unit" => (255.0, None, None),
            "minus-one-one" => (127.5, Some([1.0; 3]), None),
            other => {
                return Err(NodeError::param(
                    "normalize",
                    format!("expected custom, imagenet, raw, unit or minus-one-one, found '{other}'"),
                ))
            }
        };
        let resize = match p.resize {
            "" | "none" => Resize::None,
            "shorter-side" => {
                let (w, h) = size("resize_to", p.resize_to, true)?;
                if w != h {
                    return Err(NodeError::param(
                        "resize_to",
                        format!("shorter-side resizing takes one size N, found '{}'", p.resize_to),
                    ));
                }
                Resize::Shorter(w)
            }
            "exact" => {
                let (w, h) = size("resize_to", p.resize_to, true)?;
                Resize::Exact(w, h)
            }
            "letterbox" => {
                let (w, h) = size("resize_to", p.resize_to, true)?;
                Resize::Letterbox(w, h)
            }
            other => {
                return Err(NodeError::param(
                    "resize",
                    format!("expected none, shorter-side, exact or letterbox, found '{other}'"),
                ))
            }
        };
        let filter = match p.filter {
            "" | "bilinear" => Filter::Bilinear,
            "bicubic" => Filter::Bicubic,
            "nearest" => Filter::Nearest,
            other => {
                return Err(NodeError::param(
                    "filter",
                    format!("expected bilinear, bicubic or nearest, found '{other}'"),
                ))
            }
        };
        let crop = if p.crop.trim().is_empty() { None } else { Some(size("crop", p.crop, true)?) };
        if let Resize::Exact(w, h) | Resize::Letterbox(w, h) = resize {
            if u64::from(w) * u64::from(h) > MAX_RESIZED_PIXELS {
                return Err(NodeError::param(
                    "resize_to",
                    format!("{w}×{h} is more than the {} Mpx QuantGraph allows", MAX_RESIZED_PIXELS >> 20),
                ));
            }
        }
        // A crop larger than a fixed resize can never fit.
        if let Some((cw, ch)) = crop {
            let fixed = match resize {
                Resize::Shorter(n) => Some((n, n)),
                Resize::Exact(w, h) | Resize::Letterbox(w, h) => Some((w, h)),
                Resize::None => None,
            };
            if let Some((w, h)) = fixed {
                if cw > w || ch > h {
                    return Err(NodeError::param(
                        "crop",
                        format!("a {cw}×{ch} crop does not fit in images resized to {}", p.resize_to.trim()),
                    ));
                }
            }
        }
        Ok(Self { resize, filter, crop, divisor, mean, std, bgr: p.channels == "BGR", layout_nhwc: p.layout == "NHWC" })
    }

    /// Whether images change size or shape (else only per-pixel arithmetic).
    pub fn is_geometric(&self) -> bool {
        self.resize != Resize::None || self.crop.is_some()
    }

    /// The output size of an input of `w`×`h`, or `None` when the input is too small to crop.
    pub fn output_size(&self, w: u32, h: u32) -> Option<(u32, u32)> {
        let (rw, rh) = self.resized_size(w, h);
        match self.crop {
            Some((cw, ch)) if cw <= rw && ch <= rh => Some((cw, ch)),
            Some(_) => None,
            None => Some((rw, rh)),
        }
    }

    /// The output size whatever the input size, when resizing fixes it.
    pub fn fixed_output_size(&self) -> Option<(u32, u32)> {
        if let Some(c) = self.crop {
            return Some(c);
        }
        match self.resize {
            Resize::Exact(w, h) | Resize::Letterbox(w, h) => Some((w, h)),
            Resize::None | Resize::Shorter(_) => None,
        }
    }

    fn resized_size(&self, w: u32, h: u32) -> (u32, u32) {
        let clamp = |v: u64| v.min(u64::from(u32::MAX)) as u32;
        match self.resize {
            Resize::None => (w, h),
            // torchvision: the longer side is int(N · long / short).
            Resize::Shorter(n) if w <= h => (n, clamp((u64::from(n) * u64::from(h)) / u64::from(w.max(1)))),
            Resize::Shorter(n) => (clamp((u64::from(n) * u64::from(w)) / u64::from(h.max(1))), n),
            Resize::Exact(tw, th) | Resize::Letterbox(tw, th) => (tw, th),
        }
    }

    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        let filter = format!("{:?}", self.filter).to_lowercase();
        match self.resize {
            Resize::None => {}
            Resize::Shorter(n) => parts.push(format!("shorter side to {n} ({filter})")),
            Resize::Exact(w, h) => parts.push(format!("resize to {w}×{h} ({filter})")),
            Resize::Letterbox(w, h) => parts.push(format!("letterbox to {w}×{h} ({filter})")),
        }
        if let Some((w, h)) = self.crop {
            parts.push(format!("center crop {w}×{h}"));
        }
        parts.push(match self.divisor {
            1.0 => "raw pixels 0–255".to_owned(),
            255.0 => "pixels / 255".to_owned(),
            d => format!("pixels / {d}"),
        });
        if let Some(m) = self.mean {
            parts.push(format!("− mean {m:?}"));
        }
        if let Some(d) = self.std {
            parts.push(format!("/ std {d:?}"));
        }
        if self.bgr {
            parts.push("BGR".into());
        }
        parts.push(if self.layout_nhwc { "NHWC" } else { "NCHW" }.into());
        parts.join(", ")
    }

    /// Resize and crop one RGB image (HWC). The caller checked that the crop fits
    /// ([`Preprocess::output_size`]).
    pub fn geometry(&self, img: RgbImage) -> Result<RgbImage, String> {
        let (w, h) = img.dimensions();
        if w == 0 || h == 0 {
            return Err(format!("expected an image with pixels, found {w}×{h}"));
        }
        let (rw, rh) = self.resized_size(w, h);
        if u64::from(rw) * u64::from(rh) > MAX_RESIZED_PIXELS {
            return Err(format!(
                "resizing this {w}×{h} image would make it {rw}×{rh}, more than the {} Mpx QuantGraph allows (is it a \
                 very thin strip?)",
                MAX_RESIZED_PIXELS >> 20
            ));
        }
        let img = match self.resize {
            Resize::None => img,
            Resize::Shorter(_) | Resize::Exact(..) => {
                let (rw, rh) = self.resized_size(w, h);
                self.resample(&img, rw, rh)?
            }
            Resize::Letterbox(tw, th) => {
                let r = (f64::from(tw) / f64::from(w)).min(f64::from(th) / f64::from(h));
                let nw = ((f64::from(w) * r).round_ties_even() as u32).clamp(1, tw);
                let nh = ((f64::from(h) * r).round_ties_even() as u32).clamp(1, th);
                let inner = self.resample(&img, nw, nh)?;
                let mut canvas = RgbImage::from_pixel(tw, th, image::Rgb([LETTERBOX_FILL; 3]));
                image::imageops::replace(&mut canvas, &inner, i64::from((tw - nw) / 2), i64::from((th - nh) / 2));
                canvas
            }
        };
        let Some((cw, ch)) = self.crop else { return Ok(img) };
        let (w, h) = img.dimensions();
        if cw > w || ch > h {
            return Err(format!("a {cw}×{ch} crop does not fit in a {w}×{h} image"));
        }
        // torchvision: int(round((h − th) / 2)), rounding half to even.
        let top = (f64::from(h - ch) / 2.0).round_ties_even() as u32;
        let left = (f64::from(w - cw) / 2.0).round_ties_even() as u32;
        Ok(image::imageops::crop_imm(&img, left, top, cw, ch).to_image())
    }

    fn resample(&self, img: &RgbImage, w: u32, h: u32) -> Result<RgbImage, String> {
        if img.dimensions() == (w, h) {
            return Ok(img.clone());
        }
        if w == 0 || h == 0 || img.width() == 0 || img.height() == 0 {
            return Err(format!("cannot resize a {}×{} image to {w}×{h}", img.width(), img.height()));
        }
        Ok(match self.filter {
            Filter::Nearest => pillow::nearest(img, w, h),
            Filter::Bilinear => pillow::resample(img, w, h, pillow::Kernel::Bilinear),
            Filter::Bicubic => pillow::resample(img, w, h, pillow::Kernel::Bicubic),
        })
    }

    /// Normalize one HWC RGB image of `w`×`h` into `out` (one sample of the output tensor).
    pub fn write_floats(&self, hwc: &[u8], w: usize, h: usize, out: &mut [f32]) {
        let plane = w * h;
        for c in 0..3 {
            let m = self.mean.map_or(0.0, |m| m[c]);
            let s = self.std.map_or(1.0, |s| s[c]);
            let dc = if self.bgr { 2 - c } else { c };
            for p in 0..plane {
                let v = (f32::from(hwc[p * 3 + c]) / self.divisor - m) / s;
                let at = if self.layout_nhwc { p * 3 + dc } else { dc * plane + p };
                out[at] = v;
            }
        }
    }

    /// Shape of one output sample of `w`×`h`.
    pub fn item_shape(&self, w: usize, h: usize) -> Vec<usize> {
        if self.layout_nhwc {
            vec![h, w, 3]
        } else {
            vec![3, h, w]
        }
    }
}
