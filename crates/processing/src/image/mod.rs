//! Images into a model's input tensor: decode (with a bound on declared size), colour order,
//! resize (shorter side + centre crop, or stretch), normalise, lay out as NCHW or NHWC.
//!
//! Raw pixels sent as numbers take the same path from the point where an image is decoded.
//!
//! Just over 600 lines, on purpose: every step works on the one decoded buffer and its layout,
//! and splitting them would spread that buffer's invariants over several files. Tests are in
//! `tests.rs`.

use std::io::Cursor;

use base64::Engine as _;

use fast_image_resize::images::Image as FirImage;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{ImageDecoder, ImageReader, Limits};
use quiver_engine_api::{DataType, Tensor, TensorData, TensorSpec, f16};
use quiver_repository::processing::{ColorOrder, ImageConfig, Layout, ResizeFilter, ResizeMode};
use rayon::prelude::*;

use crate::ProcessError;

/// Images larger than this (in pixels) are refused unless the config says otherwise: 40 MP
/// covers any camera image, and bounds what a small, highly compressed file can make us
/// allocate.
pub const DEFAULT_MAX_PIXELS: u64 = 40_000_000;

/// One model input fed with images: everything needed to turn an image into its rows.
#[derive(Debug, Clone)]
pub struct ImageStep {
    input: String,
    dtype: DataType,
    layout: Layout,
    channels: usize,
    height: u32,
    width: u32,
    color: ColorOrder,
    resize: ResizeMode,
    shorter_side: u32,
    filter: ResizeFilter,
    /// Per model channel: `q = p·scale + offset`.
    scale: Vec<f64>,
    offset: Vec<f64>,
    pixels: Option<Layout>,
    max_pixels: u64,
}

/// An image decoded and converted to the model's channel order: `channels` bytes a pixel.
struct Pixels {
    width: u32,
    height: u32,
    data: Vec<u8>,
}

impl ImageStep {
    /// Checks `config` against the model input `spec` and works out every setting.
    pub fn build(input: &str, config: &ImageConfig, spec: &TensorSpec) -> Result<Self, String> {
        let key = |k: &str| format!("inputs.{input}.image.{k}");
        if !matches!(
            spec.dtype,
            DataType::F32 | DataType::F64 | DataType::F16 | DataType::U8
        ) {
            return Err(format!(
                "inputs.{input}.image: the model input is {}; images feed FP32, FP64, FP16 or UINT8 inputs",
                spec.dtype
            ));
        }
        if spec.shape.len() != 4 {
            return Err(format!(
                "inputs.{input}.image: the model input has shape {}; images feed rank-4 inputs ([batch, C, H, W] or [batch, H, W, C])",
                quiver_engine_api::shape_text(&spec.shape)
            ));
        }
        let is_channels = |d: i64| d == 1 || d == 3;
        let layout = match config.layout {
            Some(layout) => layout,
            None if is_channels(spec.shape[1]) && !is_channels(spec.shape[3]) => Layout::Nchw,
            None if is_channels(spec.shape[3]) => Layout::Nhwc,
            None => {
                return Err(format!(
                    "{}: cannot tell from the model input's shape {}; set \"nchw\" or \"nhwc\"",
                    key("layout"),
                    quiver_engine_api::shape_text(&spec.shape)
                ));
            }
        };
        let (c_dim, h_dim, w_dim) = match layout {
            Layout::Nchw => (spec.shape[1], spec.shape[2], spec.shape[3]),
            Layout::Nhwc => (spec.shape[3], spec.shape[1], spec.shape[2]),
        };
        let color = config.color.unwrap_or(if c_dim == 1 {
            ColorOrder::Grey
        } else {
            ColorOrder::Rgb
        });
        let channels = if color == ColorOrder::Grey { 1 } else { 3 };
        if c_dim >= 0 && c_dim != channels as i64 {
            return Err(format!(
                "{}: \"{}\" makes {channels} channel(s); the model input has {c_dim} (shape {})",
                key("color"),
                color_name(color),
                quiver_engine_api::shape_text(&spec.shape)
            ));
        }
        let fixed = |d: i64| u32::try_from(d).ok().filter(|&d| d > 0);
        let (height, width) = match (config.size, fixed(h_dim), fixed(w_dim)) {
            (Some([h, w]), mh, mw) => {
                if mh.is_some_and(|m| m != h) || mw.is_some_and(|m| m != w) {
                    return Err(format!(
                        "{}: [{h}, {w}] differs from the model input's {}",
                        key("size"),
                        quiver_engine_api::shape_text(&spec.shape)
                    ));
                }
                (h, w)
            }
            (None, Some(h), Some(w)) => (h, w),
            (None, _, _) => {
                return Err(format!(
                    "{}: the model input's height and width are not fixed ({}); set [height, width]",
                    key("size"),
                    quiver_engine_api::shape_text(&spec.shape)
                ));
            }
        };
        if height == 0 || width == 0 || u64::from(height) * u64::from(width) > 100_000_000 {
            return Err(format!(
                "{}: [{height}, {width}] is not a usable size",
                key("size")
            ));
        }
        let resize = config.resize.unwrap_or(ResizeMode::ShorterSide);
        let shorter_side = config
            .shorter_side
            .unwrap_or_else(|| (height.min(width) as f64 * 256.0 / 224.0).round() as u32);
        if resize == ResizeMode::ShorterSide && shorter_side < height.min(width) {
            return Err(format!(
                "{}: {shorter_side} is smaller than the crop ({height}x{width})",
                key("shorter_side")
            ));
        }
        if shorter_side > 16_384 {
            return Err(format!(
                "{}: {shorter_side} is too large",
                key("shorter_side")
            ));
        }
        let [p_min, p_max] = config.pixel_range.unwrap_or([0.0, 255.0]);
        if p_max.partial_cmp(&p_min) != Some(std::cmp::Ordering::Greater) {
            return Err(format!("{}: p_max must exceed p_min", key("pixel_range")));
        }
        let per_channel =
            |name: &str, values: &Option<Vec<f64>>, default: f64| match values.as_deref() {
                None => Ok(vec![default; channels]),
                Some([one]) => Ok(vec![*one; channels]),
                Some(v) if v.len() == channels => Ok(v.to_vec()),
                Some(v) => Err(format!(
                    "{}: {} values, the model input has {channels} channel(s)",
                    key(name),
                    v.len()
                )),
            };
        let mean = per_channel("mean", &config.mean, 0.0)?;
        let std = per_channel("std", &config.std, 1.0)?;
        if let Some(bad) = std.iter().find(|s| !s.is_finite() || **s == 0.0) {
            return Err(format!("{}: {bad} cannot divide", key("std")));
        }
        // q = ((p − p_min)/(p_max − p_min)·(q_max − q_min) + q_min − mean)/std, folded into
        // q = p·scale + offset per channel.
        let (range_scale, range_offset) = match config.range {
            None => (1.0, 0.0),
            Some([q_min, q_max]) => {
                let s = (q_max - q_min) / (p_max - p_min);
                (s, q_min - p_min * s)
            }
        };
        let scale: Vec<f64> = std.iter().map(|s| range_scale / s).collect();
        let offset: Vec<f64> = mean
            .iter()
            .zip(&std)
            .map(|(m, s)| (range_offset - m) / s)
            .collect();
        if spec.dtype == DataType::U8
            && (config.range.is_some() || config.mean.is_some() || config.std.is_some())
        {
            return Err(format!(
                "inputs.{input}.image: the model input is UINT8, which cannot hold normalised values; leave out range, mean and std"
            ));
        }
        Ok(Self {
            input: input.to_owned(),
            dtype: spec.dtype,
            layout,
            channels,
            height,
            width,
            color,
            resize,
            shorter_side,
            filter: config.filter.unwrap_or(ResizeFilter::Bilinear),
            scale,
            offset,
            pixels: config.pixels,
            max_pixels: config.max_pixels.unwrap_or(DEFAULT_MAX_PIXELS),
        })
    }

    /// The model input this step feeds.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// Whether `tensor` is raw pixels in the client layout this step converts.
    pub fn takes_pixels(&self, tensor: &Tensor) -> bool {
        let Some(layout) = self.pixels else {
            return false;
        };
        let shape = tensor.shape();
        let numeric = !matches!(tensor.dtype(), DataType::String | DataType::Bool);
        let channels = match layout {
            Layout::Nchw => shape.get(1),
            Layout::Nhwc => shape.get(3),
        };
        numeric && shape.len() == 4 && channels == Some(&self.channels)
    }

    /// Encoded images (one a row of a BYTES tensor of any shape) → the model's tensor
    /// `[N, …]`. Images are decoded in parallel.
    pub fn from_encoded(&self, images: &[Vec<u8>]) -> Result<Tensor, ProcessError> {
        let rows: Vec<Pixels> = images
            .par_iter()
            .enumerate()
            .map(|(i, bytes)| {
                self.decode(bytes)
                    .and_then(|p| self.fit(p, false))
                    .map_err(|m| self.error(i, images.len(), m))
            })
            .collect::<Result<_, _>>()?;
        self.assemble(&rows)
    }

    /// Raw pixels in the client layout (values in `pixel_range`) → the model's tensor.
    pub fn from_pixels(&self, tensor: &Tensor) -> Result<Tensor, ProcessError> {
        let layout = self.pixels.unwrap_or(Layout::Nhwc);
        let shape = tensor.shape();
        let (n, h, w) = match layout {
            Layout::Nchw => (shape[0], shape[2], shape[3]),
            Layout::Nhwc => (shape[0], shape[1], shape[2]),
        };
        let c = self.channels;
        let values = as_f64(tensor.data());
        let at = |img: usize, y: usize, x: usize, ch: usize| -> f64 {
            let ix = match layout {
                Layout::Nchw => ((img * c + ch) * h + y) * w + x,
                Layout::Nhwc => ((img * h + y) * w + x) * c + ch,
            };
            values(ix)
        };
        if (h, w) == (self.height as usize, self.width as usize) {
            // The model's size already: straight to the model's values, keeping the client's
            // precision. f32 pixels (what NumPy clients send) take a loop without conversions.
            let hw = h * w;
            let source = |img: usize, i: usize, mc: usize| {
                let sc = self.source_channel(mc);
                match layout {
                    Layout::Nchw => (img * c + sc) * hw + i,
                    Layout::Nhwc => (img * hw + i) * c + sc,
                }
            };
            if let (TensorData::F32(v), DataType::F32) = (tensor.data(), self.dtype) {
                let (scale, offset) = self.affine_f32();
                let mut out = vec![0f32; n * c * hw];
                for img in 0..n {
                    self.fill(&mut out, img, |i, mc| {
                        v[source(img, i, mc)] * scale[mc] + offset[mc]
                    });
                }
                return self.shaped(TensorData::F32(out), n);
            }
            let mut out = vec![0f64; n * c * hw];
            for img in 0..n {
                self.fill(&mut out, img, |i, mc| {
                    values(source(img, i, mc)) * self.scale[mc] + self.offset[mc]
                });
            }
            return self.typed(out, n);
        }
        // Another size: through 8-bit pixels and the image path's resize.
        let max = self.max_pixels;
        if h == 0 || w == 0 || (h as u64) * (w as u64) > max {
            return Err(ProcessError::Invalid(format!(
                "input '{}': raw pixels of {h}x{w} are not a usable image size",
                self.input
            )));
        }
        let rows: Vec<Pixels> = (0..n)
            .into_par_iter()
            .map(|img| {
                let mut data = Vec::with_capacity(h * w * c);
                for y in 0..h {
                    for x in 0..w {
                        for ch in 0..c {
                            data.push(to_u8(at(img, y, x, ch)));
                        }
                    }
                }
                let pixels = Pixels {
                    width: w as u32,
                    height: h as u32,
                    data,
                };
                self.fit(self.reorder(pixels), true)
                    .map_err(|m| self.error(img, n, m))
            })
            .collect::<Result<_, _>>()?;
        self.assemble(&rows)
    }

    fn error(&self, row: usize, rows: usize, message: String) -> ProcessError {
        if rows == 1 {
            ProcessError::Invalid(format!("input '{}': {message}", self.input))
        } else {
            ProcessError::Invalid(format!("input '{}', image {row}: {message}", self.input))
        }
    }

    /// Decodes one image into the model's channel order, refusing oversized ones before any
    /// pixel is decoded.
    fn decode(&self, bytes: &[u8]) -> Result<Pixels, String> {
        if bytes.is_empty() {
            return Err("the image is empty".into());
        }
        let format = image::guess_format(bytes).ok();
        // Clients that can only send text (V2 JSON's BYTES `data` holds strings) send the image
        // base64-encoded; no image format starts like base64 text, so there is no ambiguity.
        let decoded;
        let bytes = match format {
            Some(_) => bytes,
            None => {
                let text: Vec<u8> = bytes
                    .iter()
                    .copied()
                    .filter(|b| !b.is_ascii_whitespace())
                    .collect();
                decoded = base64::engine::general_purpose::STANDARD
                    .decode(&text)
                    .map_err(|_| {
                        "not an image in a known format (JPEG, PNG, WebP, BMP, GIF), nor base64 of one"
                            .to_owned()
                    })?;
                decoded.as_slice()
            }
        };
        let reader = ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| format!("cannot read the image: {e}"))?;
        if reader.format().is_none() {
            return Err("not an image in a known format (JPEG, PNG, WebP, BMP, GIF)".into());
        }
        let mut reader = reader;
        let mut limits = Limits::default();
        let side = u32::try_from(self.max_pixels).unwrap_or(u32::MAX);
        limits.max_image_width = Some(side);
        limits.max_image_height = Some(side);
        limits.max_alloc = Some(self.max_pixels.saturating_mul(8).max(1 << 20));
        reader.limits(limits);
        let decoder = reader
            .into_decoder()
            .map_err(|e| format!("cannot decode the image: {e}"))?;
        let (w, h) = decoder.dimensions();
        if u64::from(w) * u64::from(h) > self.max_pixels {
            return Err(format!(
                "the image declares {w}x{h} pixels, more than the {} allowed",
                self.max_pixels
            ));
        }
        let image = image::DynamicImage::from_decoder(decoder)
            .map_err(|e| format!("cannot decode the image: {e}"))?;
        let rgb = image.into_rgb8();
        let (width, height) = rgb.dimensions();
        let pixels = Pixels {
            width,
            height,
            data: rgb.into_raw(),
        };
        Ok(self.reorder_rgb(pixels))
    }

    /// RGB pixels (3 a pixel) into the model's channel order.
    fn reorder_rgb(&self, mut pixels: Pixels) -> Pixels {
        match self.color {
            ColorOrder::Rgb => pixels,
            ColorOrder::Bgr => {
                for px in pixels.data.chunks_exact_mut(3) {
                    px.swap(0, 2);
                }
                pixels
            }
            ColorOrder::Grey => {
                // Pillow's convert("L"): ITU-R 601-2 luma in 16-bit fixed point.
                let data = pixels
                    .data
                    .chunks_exact(3)
                    .map(|p| {
                        let l = u32::from(p[0]) * 19595
                            + u32::from(p[1]) * 38470
                            + u32::from(p[2]) * 7471
                            + 0x8000;
                        (l >> 16) as u8
                    })
                    .collect();
                Pixels { data, ..pixels }
            }
        }
    }

    /// Client pixels (RGB or grey, `channels` a pixel) into the model's channel order.
    fn reorder(&self, pixels: Pixels) -> Pixels {
        if self.channels == 3 {
            self.reorder_rgb(pixels)
        } else {
            pixels
        }
    }

    /// The client channel that model channel `mc` reads.
    fn source_channel(&self, mc: usize) -> usize {
        if self.color == ColorOrder::Bgr {
            2 - mc
        } else {
            mc
        }
    }

    /// Resizes (and crops) to the model's size. An encoded image always takes the configured
    /// path (so a 224×224 JPEG is scaled to 256 and cropped, as torchvision-style clients do);
    /// raw pixels (`sized_ok`) of the model's size are used as they are.
    fn fit(&self, pixels: Pixels, sized_ok: bool) -> Result<Pixels, String> {
        let (tw, th) = (self.width, self.height);
        let same = (pixels.width, pixels.height) == (tw, th);
        if same && (sized_ok || self.resize != ResizeMode::ShorterSide) {
            return Ok(pixels);
        }
        match self.resize {
            ResizeMode::None => Err(format!(
                "the image is {}x{} (width x height); the model takes {tw}x{th} and resizing is off",
                pixels.width, pixels.height
            )),
            ResizeMode::Stretch => self.resize_to(pixels, tw, th),
            ResizeMode::ShorterSide => {
                let short = pixels.width.min(pixels.height) as f64;
                let scale = f64::from(self.shorter_side) / short;
                // Rounded as Pillow-based clients round (round half to even makes no difference
                // at these sizes).
                let rw = ((f64::from(pixels.width) * scale).round() as u32).max(tw);
                let rh = ((f64::from(pixels.height) * scale).round() as u32).max(th);
                let resized = if (rw, rh) == (pixels.width, pixels.height) {
                    pixels
                } else {
                    self.resize_to(pixels, rw, rh)?
                };
                Ok(crop_centre(&resized, tw, th, self.channels))
            }
        }
    }

    fn resize_to(&self, pixels: Pixels, width: u32, height: u32) -> Result<Pixels, String> {
        let pixel_type = if self.channels == 3 {
            PixelType::U8x3
        } else {
            PixelType::U8
        };
        let src = FirImage::from_vec_u8(pixels.width, pixels.height, pixels.data, pixel_type)
            .map_err(|e| format!("cannot resize: {e}"))?;
        let mut dst = FirImage::new(width, height, pixel_type);
        let alg = match self.filter {
            ResizeFilter::Nearest => ResizeAlg::Nearest,
            ResizeFilter::Bilinear => ResizeAlg::Convolution(FilterType::Bilinear),
            ResizeFilter::Bicubic => ResizeAlg::Convolution(FilterType::CatmullRom),
            ResizeFilter::Lanczos3 => ResizeAlg::Convolution(FilterType::Lanczos3),
        };
        Resizer::new()
            .resize(&src, &mut dst, &ResizeOptions::new().resize_alg(alg))
            .map_err(|e| format!("cannot resize: {e}"))?;
        Ok(Pixels {
            width,
            height,
            data: dst.into_vec(),
        })
    }

    /// Model-size pixel rows → the model's tensor, normalised and laid out.
    fn assemble(&self, rows: &[Pixels]) -> Result<Tensor, ProcessError> {
        let (hw, c) = ((self.height * self.width) as usize, self.channels);
        let n = rows.len();
        if self.dtype == DataType::F32 {
            // One lookup table per channel: 256 multiplications instead of one per pixel.
            let (scale, offset) = self.affine_f32();
            let tables: Vec<[f32; 256]> = (0..c)
                .map(|mc| std::array::from_fn(|p| p as f32 * scale[mc] + offset[mc]))
                .collect();
            let mut out = vec![0f32; n * c * hw];
            for (img, pixels) in rows.iter().enumerate() {
                self.fill(&mut out, img, |i, mc| {
                    tables[mc][usize::from(pixels.data[i * c + mc])]
                });
            }
            return self.shaped(TensorData::F32(out), n);
        }
        let tables: Vec<[f64; 256]> = (0..c)
            .map(|mc| std::array::from_fn(|p| p as f64 * self.scale[mc] + self.offset[mc]))
            .collect();
        let mut out = vec![0f64; n * c * hw];
        for (img, pixels) in rows.iter().enumerate() {
            self.fill(&mut out, img, |i, mc| {
                tables[mc][usize::from(pixels.data[i * c + mc])]
            });
        }
        self.typed(out, n)
    }

    /// Writes image `img` of the output: `value(i, mc)` is model channel `mc` of pixel `i`
    /// (row-major). One plane at a time for NCHW, so the writes are sequential.
    fn fill<T: Copy>(&self, out: &mut [T], img: usize, value: impl Fn(usize, usize) -> T) {
        let (hw, c) = ((self.height * self.width) as usize, self.channels);
        match self.layout {
            Layout::Nchw => {
                for mc in 0..c {
                    let plane = &mut out[(img * c + mc) * hw..(img * c + mc + 1) * hw];
                    for (i, o) in plane.iter_mut().enumerate() {
                        *o = value(i, mc);
                    }
                }
            }
            Layout::Nhwc => {
                let image = &mut out[img * hw * c..(img + 1) * hw * c];
                for (i, pixel) in image.chunks_exact_mut(c).enumerate() {
                    for (mc, o) in pixel.iter_mut().enumerate() {
                        *o = value(i, mc);
                    }
                }
            }
        }
    }

    fn affine_f32(&self) -> (Vec<f32>, Vec<f32>) {
        (
            self.scale.iter().map(|&v| v as f32).collect(),
            self.offset.iter().map(|&v| v as f32).collect(),
        )
    }

    fn shaped(&self, data: TensorData, n: usize) -> Result<Tensor, ProcessError> {
        let (h, w, c) = (self.height as usize, self.width as usize, self.channels);
        let shape = match self.layout {
            Layout::Nchw => vec![n, c, h, w],
            Layout::Nhwc => vec![n, h, w, c],
        };
        Tensor::new(shape, data).map_err(ProcessError::Internal)
    }

    fn typed(&self, values: Vec<f64>, n: usize) -> Result<Tensor, ProcessError> {
        let data = match self.dtype {
            DataType::F64 => TensorData::F64(values),
            DataType::F16 => TensorData::F16(values.into_iter().map(f16::from_f64).collect()),
            DataType::U8 => TensorData::U8(values.into_iter().map(to_u8).collect()),
            DataType::F32
            | DataType::Bool
            | DataType::U16
            | DataType::U32
            | DataType::U64
            | DataType::I8
            | DataType::I16
            | DataType::I32
            | DataType::I64
            | DataType::String => TensorData::F32(values.into_iter().map(|v| v as f32).collect()),
        };
        self.shaped(data, n)
    }
}

fn crop_centre(pixels: &Pixels, width: u32, height: u32, channels: usize) -> Pixels {
    let left = ((pixels.width - width) / 2) as usize;
    let top = ((pixels.height - height) / 2) as usize;
    let (w, src_w) = (width as usize, pixels.width as usize);
    let mut data = Vec::with_capacity(w * height as usize * channels);
    for y in top..top + height as usize {
        let start = (y * src_w + left) * channels;
        data.extend_from_slice(&pixels.data[start..start + w * channels]);
    }
    Pixels {
        width,
        height,
        data,
    }
}

fn to_u8(v: f64) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

/// Element `i` of any numeric tensor, as `f64`.
fn as_f64(data: &TensorData) -> impl Fn(usize) -> f64 + '_ {
    move |i| match data {
        TensorData::F32(v) => f64::from(v[i]),
        TensorData::F64(v) => v[i],
        TensorData::F16(v) => v[i].to_f64(),
        TensorData::U8(v) => f64::from(v[i]),
        TensorData::U16(v) => f64::from(v[i]),
        TensorData::U32(v) => f64::from(v[i]),
        TensorData::U64(v) => v[i] as f64,
        TensorData::I8(v) => f64::from(v[i]),
        TensorData::I16(v) => f64::from(v[i]),
        TensorData::I32(v) => f64::from(v[i]),
        TensorData::I64(v) => v[i] as f64,
        TensorData::Bool(v) => f64::from(u8::from(v[i])),
        TensorData::String(_) => 0.0,
    }
}

fn color_name(color: ColorOrder) -> &'static str {
    match color {
        ColorOrder::Rgb => "rgb",
        ColorOrder::Bgr => "bgr",
        ColorOrder::Grey => "grey",
    }
}

#[cfg(test)]
mod tests;
