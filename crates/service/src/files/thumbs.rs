//! Thumbnails: `WxH` (center crop), `WxHt` (top crop), `WxHb` (bottom crop), `WxHf` (fit inside),
//! `0xH` and `Wx0` (one side, aspect kept), encoded in the original's format.

use image::imageops::FilterType;
use image::{DynamicImage, ImageFormat};

/// The largest image (in pixels) decoded for a thumbnail: a decompression bomb gets the original back.
const MAX_PIXELS: u64 = 50_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Center,
    Top,
    Bottom,
    Fit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    pub w: u32,
    pub h: u32,
    pub mode: Mode,
}

/// Parses a thumb size; `None` for anything else (both sides 0, garbage, absurd sizes).
pub fn parse(s: &str) -> Option<Spec> {
    let (body, mode) = match s.as_bytes().last()? {
        b't' => (&s[..s.len() - 1], Mode::Top),
        b'b' => (&s[..s.len() - 1], Mode::Bottom),
        b'f' => (&s[..s.len() - 1], Mode::Fit),
        _ => (s, Mode::Center),
    };
    let (w, h) = body.split_once('x')?;
    let (w, h): (u32, u32) = (w.parse().ok()?, h.parse().ok()?);
    if (w == 0 && h == 0) || w > 10_000 || h > 10_000 {
        return None;
    }
    if (w == 0 || h == 0) && mode != Mode::Center {
        return None;
    }
    Some(Spec { w, h, mode })
}

/// The formats thumbnails are made for, by the stored name's extension.
pub fn format_of(name: &str) -> Option<ImageFormat> {
    match name.rsplit('.').next()?.to_ascii_lowercase().as_str() {
        "png" => Some(ImageFormat::Png),
        "jpg" | "jpeg" => Some(ImageFormat::Jpeg),
        "gif" => Some(ImageFormat::Gif),
        "webp" => Some(ImageFormat::WebP),
        _ => None,
    }
}

/// Makes the thumbnail of an encoded image (CPU bound: run it on a blocking thread).
pub fn make(bytes: &[u8], spec: Spec, format: ImageFormat) -> Result<Vec<u8>, String> {
    let mut r = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_PIXELS * 4);
    r.limits(limits);
    let (iw, ih) = r.into_dimensions().map_err(|e| e.to_string())?;
    if (iw as u64) * (ih as u64) > MAX_PIXELS || iw == 0 || ih == 0 {
        return Err("image too large".into());
    }
    let mut r = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_PIXELS * 4);
    r.limits(limits);
    let img = r.decode().map_err(|e| e.to_string())?;
    let out = resize(&img, spec);
    let out = if format == ImageFormat::Jpeg {
        DynamicImage::ImageRgb8(out.to_rgb8())
    } else {
        out
    };
    let mut buf = std::io::Cursor::new(Vec::new());
    out.write_to(&mut buf, format).map_err(|e| e.to_string())?;
    Ok(buf.into_inner())
}

fn resize(img: &DynamicImage, s: Spec) -> DynamicImage {
    let (iw, ih) = (img.width() as f64, img.height() as f64);
    let f = FilterType::Triangle;
    if s.w == 0 {
        let w = ((iw * s.h as f64 / ih).round() as u32).max(1);
        return img.resize_exact(w, s.h, f);
    }
    if s.h == 0 {
        let h = ((ih * s.w as f64 / iw).round() as u32).max(1);
        return img.resize_exact(s.w, h, f);
    }
    if s.mode == Mode::Fit {
        return img.resize(s.w, s.h, f);
    }
    // Fill: scale so both sides cover the box, then crop the overflow.
    let scale = (s.w as f64 / iw).max(s.h as f64 / ih);
    let (nw, nh) = (
        ((iw * scale).round() as u32).max(s.w),
        ((ih * scale).round() as u32).max(s.h),
    );
    let scaled = img.resize_exact(nw, nh, f);
    let x = (nw - s.w) / 2;
    let y = match s.mode {
        Mode::Top => 0,
        Mode::Bottom => nh - s.h,
        _ => (nh - s.h) / 2,
    };
    scaled.crop_imm(x, y, s.w, s.h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(
            parse("100x50"),
            Some(Spec {
                w: 100,
                h: 50,
                mode: Mode::Center
            })
        );
        assert_eq!(parse("100x50t").map(|s| s.mode), Some(Mode::Top));
        assert_eq!(parse("100x50b").map(|s| s.mode), Some(Mode::Bottom));
        assert_eq!(parse("100x50f").map(|s| s.mode), Some(Mode::Fit));
        assert_eq!(parse("0x50").map(|s| (s.w, s.h)), Some((0, 50)));
        assert_eq!(parse("0x0"), None);
        assert_eq!(parse("0x50f"), None);
        assert_eq!(parse("axb"), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn sizes_per_mode() {
        let img = DynamicImage::new_rgb8(64, 48);
        let mut png = std::io::Cursor::new(Vec::new());
        img.write_to(&mut png, ImageFormat::Png).unwrap();
        let png = png.into_inner();
        let dims = |spec: &str| {
            let out = make(&png, parse(spec).unwrap(), ImageFormat::Png).unwrap();
            let i = image::load_from_memory(&out).unwrap();
            (i.width(), i.height())
        };
        assert_eq!(dims("20x20"), (20, 20));
        assert_eq!(dims("20x20t"), (20, 20));
        assert_eq!(dims("20x20b"), (20, 20));
        assert_eq!(dims("32x32f"), (32, 24));
        assert_eq!(dims("0x24"), (32, 24));
        assert_eq!(dims("16x0"), (16, 12));
    }
}
