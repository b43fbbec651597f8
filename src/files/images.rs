//! What an uploaded image becomes: checked, measured, and made into
//! previews (for files) or square crops (for avatars), off the loop (the
//! image workers in `workers.rs` call these).
//!
//! Decoding is bounded against decompression bombs: the format is read
//! from the bytes (never trusted from the declared type), the header's
//! size is checked against [`MAX_IMAGE_SIDE`] and [`MAX_IMAGE_PIXELS`]
//! before any pixel is decoded, and the decoder's allocations are capped
//! ([`IMAGE_DECODE_ALLOC`], `image::Limits`). Only the first frame of an
//! animation is read.
//!
//! EXIF orientation is applied, so a phone photo is upright and its
//! `width`/`height` are the upright ones. What is generated is re-encoded
//! from pixels alone, so it carries no metadata: a photo's location stays
//! in the original, which only a download returns.

use std::io::{BufReader, Cursor};

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

use super::{BlobKey, BlobStream, Blobs, FileError, write_blob};
use crate::config::{
    AVATAR_LARGE, AVATAR_SMALL, IMAGE_DECODE_ALLOC, MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE,
    PREVIEW_JPEG_QUALITY, THUMB_LARGE, THUMB_SMALL,
};

/// Previews of an image file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Previews {
    /// The image's type, from its bytes (may differ from the declared one
    /// when a JPEG was sent as `image/png`).
    pub mime: &'static str,
    pub width: u32,
    pub height: u32,
    /// Fits [`THUMB_SMALL`] (the timeline's preview).
    pub small: BlobKey,
    /// Fits [`THUMB_LARGE`] (the viewer's).
    pub large: BlobKey,
}

/// What an uploaded file turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inspected {
    /// A raster image we decoded: its previews.
    Image(Previews),
    /// A real image header, but more pixels than the limits allow: kept as
    /// a file of its type, with no size and no previews.
    Oversized { mime: &'static str },
    /// Not an image we can read, whatever its declared type: kept as an
    /// octet stream (a download), never shown inline.
    NotImage,
}

/// Why an image could not be used as an avatar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AvatarError {
    NotImage,
    Oversized,
    Io(FileError),
}

/// The type of a decoded format.
fn mime_of(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Png => "image/png",
        ImageFormat::Jpeg => "image/jpeg",
        ImageFormat::Gif => "image/gif",
        _ => "image/webp",
    }
}

/// How a decode went.
enum Decoded {
    /// The pixels, upright, perhaps at a reduced scale (see [`Need`]), and
    /// the image's full upright size.
    Image {
        img: DynamicImage,
        format: ImageFormat,
        width: u32,
        height: u32,
    },
    Oversized(ImageFormat),
    NotImage,
}

/// How many pixels the caller will use, so a JPEG can be decoded at a
/// reduced DCT scale (1/2, 1/4 or 1/8: the inverse transform of fewer
/// coefficients, so a 12-megapixel photo costs a fraction of its full
/// decode) that still keeps at least that many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// The longest side at least this long (a preview fitting a square box).
    Longest(u32),
    /// The shortest side at least this long (a square crop of this side).
    Shortest(u32),
}

impl Need {
    /// Whether a 1/2-scale decode of a `w`×`h` image still keeps enough.
    fn allows_halving(self, w: u32, h: u32) -> bool {
        let (side, wanted) = match self {
            Need::Longest(n) => (w.max(h), n),
            Need::Shortest(n) => (w.min(h), n),
        };
        side.div_ceil(2) >= wanted
    }

    /// What to ask `jpeg_decoder::Decoder::scale` for: it picks the
    /// smallest scale at which *either* side reaches its request, so the
    /// side that must reach `n` asks for it and the other for more than
    /// any side can have.
    fn request(self, w: u32, h: u32) -> (u16, u16) {
        let clamp = |n: u32| u16::try_from(n).unwrap_or(u16::MAX);
        match self {
            Need::Longest(n) => (clamp(n), clamp(n)),
            Need::Shortest(n) if w <= h => (clamp(n), u16::MAX),
            Need::Shortest(n) => (u16::MAX, clamp(n)),
        }
    }
}

fn limits() -> Limits {
    let mut l = Limits::default();
    l.max_image_width = Some(MAX_IMAGE_SIDE);
    l.max_image_height = Some(MAX_IMAGE_SIDE);
    l.max_alloc = Some(IMAGE_DECODE_ALLOC);
    l
}

fn open<'a>(
    blobs: &'a mut dyn Blobs,
    key: &BlobKey,
) -> Result<BufReader<BlobStream<'a>>, FileError> {
    match BlobStream::open(blobs, key)? {
        Some(stream) => Ok(BufReader::new(stream)),
        None => Err(FileError::Io(format!("blob {} is missing", key.hex()))),
    }
}

/// Decodes the blob `key` (its first frame), upright, within the limits,
/// keeping at least `need`.
fn decode(blobs: &mut dyn Blobs, key: &BlobKey, need: Need) -> Result<Decoded, FileError> {
    let reader = ImageReader::new(open(blobs, key)?)
        .with_guessed_format()
        .map_err(FileError::io)?;
    let (mut decoder, format) = match read_header(reader) {
        Header::Read(decoder, format) => (decoder, format),
        Header::Oversized(format) => return Ok(Decoded::Oversized(format)),
        Header::NotImage => return Ok(Decoded::NotImage),
    };
    let (w, h) = decoder.dimensions();
    let orientation = decoder.orientation().ok();
    let pixels = if format == ImageFormat::Jpeg && need.allows_halving(w, h) {
        drop(decoder);
        let scaled = decode_jpeg_scaled(open(blobs, key)?, need.request(w, h));
        match scaled {
            Some(img) => Ok(img),
            // Not RGB or grey (CMYK, 16-bit), or damage only the full
            // decoder tolerates: decoded as before.
            None => decode_full(open(blobs, key)?, format),
        }
    } else {
        pixels(decoder, format)
    };
    let mut img = match pixels {
        Ok(img) => img,
        Err(d) => return Ok(d),
    };
    let (width, height) = match orientation {
        Some(
            Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH,
        ) => (h, w),
        _ => (w, h),
    };
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    Ok(Decoded::Image {
        img,
        format,
        width,
        height,
    })
}

/// What a header said.
enum Header<D> {
    /// A format we read, within the limits: its decoder, ready for pixels.
    Read(D, ImageFormat),
    Oversized(ImageFormat),
    NotImage,
}

/// Reads the header and checks it against the limits before any pixel is
/// decoded (the bomb guard).
fn read_header<'a, R: std::io::BufRead + std::io::Seek + 'a>(
    mut reader: ImageReader<R>,
) -> Header<impl ImageDecoder + 'a> {
    let Some(format) = reader.format().filter(|f| {
        matches!(
            f,
            ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Gif | ImageFormat::WebP
        )
    }) else {
        return Header::NotImage;
    };
    reader.limits(limits());
    let decoder = match reader.into_decoder() {
        Ok(d) => d,
        Err(image::ImageError::Limits(_)) => return Header::Oversized(format),
        Err(_) => return Header::NotImage,
    };
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Header::NotImage;
    }
    if u64::from(w) * u64::from(h) > MAX_IMAGE_PIXELS {
        return Header::Oversized(format);
    }
    Header::Read(decoder, format)
}

/// The pixels of a decoder [`read_header`] accepted.
fn pixels(decoder: impl ImageDecoder, format: ImageFormat) -> Result<DynamicImage, Decoded> {
    match DynamicImage::from_decoder(decoder) {
        Ok(img) => Ok(img),
        Err(image::ImageError::Limits(_)) => Err(Decoded::Oversized(format)),
        Err(_) => Err(Decoded::NotImage),
    }
}

/// A decode at full scale, header checks included.
fn decode_full<'a, R: std::io::BufRead + std::io::Seek + 'a>(
    reader: R,
    format: ImageFormat,
) -> Result<DynamicImage, Decoded> {
    let mut reader = ImageReader::new(reader);
    reader.set_format(format);
    match read_header(reader) {
        Header::Read(decoder, format) => pixels(decoder, format),
        Header::Oversized(format) => Err(Decoded::Oversized(format)),
        Header::NotImage => Err(Decoded::NotImage),
    }
}

/// Decodes a JPEG whose header [`read_header`] accepted at the smallest
/// DCT scale that still gives `request` (see [`Need::request`]); `None`
/// when it cannot, or gives a pixel format other than RGB or grey. Only
/// the pixels are kept: the orientation came from the header's decoder.
fn decode_jpeg_scaled(reader: impl std::io::Read, request: (u16, u16)) -> Option<DynamicImage> {
    let mut decoder = jpeg_decoder::Decoder::new(reader);
    decoder.set_max_decoding_buffer_size(usize::try_from(IMAGE_DECODE_ALLOC).ok()?);
    let (w, h) = decoder.scale(request.0, request.1).ok()?;
    let pixels = decoder.decode().ok()?;
    let (w, h) = (u32::from(w), u32::from(h));
    match decoder.info()?.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => {
            image::RgbImage::from_raw(w, h, pixels).map(DynamicImage::ImageRgb8)
        }
        jpeg_decoder::PixelFormat::L8 => {
            image::GrayImage::from_raw(w, h, pixels).map(DynamicImage::ImageLuma8)
        }
        _ => None,
    }
}

/// Encodes pixels alone: JPEG when opaque, PNG when the image has alpha.
pub fn encode(img: &DynamicImage) -> Vec<u8> {
    let mut out = Vec::new();
    if img.color().has_alpha() {
        img.to_rgba8()
            .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .expect("encoding to memory cannot fail");
        return out;
    }
    let (w, h) = (side(img.width()), side(img.height()));
    let encoder = jpeg_encoder::Encoder::new(&mut out, PREVIEW_JPEG_QUALITY);
    match img {
        DynamicImage::ImageLuma8(grey) => encoder.encode(grey, w, h, jpeg_encoder::ColorType::Luma),
        _ => encoder.encode(&img.to_rgb8(), w, h, jpeg_encoder::ColorType::Rgb),
    }
    .expect("what is encoded is a preview or an avatar: a JPEG's sides hold it");
    out
}

/// A side of what [`encode`] is given: at most [`THUMB_LARGE`], or an
/// image smaller than that kept as it is.
fn side(n: u32) -> u16 {
    u16::try_from(n).expect("a preview's side fits a JPEG's")
}

/// `img` scaled to `w`×`h` (Lanczos, gamma as stored, alpha premultiplied
/// meanwhile).
fn resized(img: &DynamicImage, w: u32, h: u32) -> DynamicImage {
    let mut out = DynamicImage::new(w, h, img.color());
    match fast_image_resize::Resizer::new().resize(img, &mut out, None) {
        Ok(()) => out,
        // A pixel type it has no kernel for (none our decoders give).
        Err(_) => img.resize_exact(w, h, image::imageops::FilterType::Lanczos3),
    }
}

/// `img` scaled down, keeping its aspect ratio, to fit `n`×`n` (the
/// rounding of `DynamicImage::thumbnail`); unchanged when it already fits.
fn fitted(img: DynamicImage, n: u32) -> DynamicImage {
    let (w, h) = (img.width(), img.height());
    if w <= n && h <= n {
        return img;
    }
    let scale = |a: u32, b: u32| {
        ((u64::from(a) * u64::from(n) + u64::from(b) / 2) / u64::from(b)).max(1) as u32
    };
    let (fw, fh) = if w >= h {
        (n, scale(h, w))
    } else {
        (scale(w, h), n)
    };
    resized(&img, fw, fh)
}

/// Decodes an uploaded file that claims a raster type and writes its
/// previews (see [`Inspected`]).
pub fn inspect(blobs: &mut dyn Blobs, key: &BlobKey) -> Result<Inspected, FileError> {
    let (img, format, width, height) = match decode(blobs, key, Need::Longest(THUMB_LARGE))? {
        Decoded::Image {
            img,
            format,
            width,
            height,
        } => (img, format, width, height),
        Decoded::Oversized(format) => {
            return Ok(Inspected::Oversized {
                mime: mime_of(format),
            });
        }
        Decoded::NotImage => return Ok(Inspected::NotImage),
    };
    let large_img = fitted(img, THUMB_LARGE);
    let large = write_blob(blobs, &encode(&large_img))?;
    let small = if large_img.width() > THUMB_SMALL || large_img.height() > THUMB_SMALL {
        write_blob(blobs, &encode(&fitted(large_img, THUMB_SMALL)))?
    } else {
        large
    };
    Ok(Inspected::Image(Previews {
        mime: mime_of(format),
        width,
        height,
        small,
        large,
    }))
}

/// An avatar from an uploaded image: the centred square, at
/// [`AVATAR_SMALL`] and [`AVATAR_LARGE`] pixels a side. Returns
/// `(small, large)`.
pub fn avatar(blobs: &mut dyn Blobs, key: &BlobKey) -> Result<(BlobKey, BlobKey), AvatarError> {
    let need = Need::Shortest(AVATAR_LARGE);
    let img = match decode(blobs, key, need).map_err(AvatarError::Io)? {
        Decoded::Image { img, .. } => img,
        Decoded::Oversized(_) => return Err(AvatarError::Oversized),
        Decoded::NotImage => return Err(AvatarError::NotImage),
    };
    let side = img.width().min(img.height());
    let square = img.crop_imm(
        (img.width() - side) / 2,
        (img.height() - side) / 2,
        side,
        side,
    );
    let large_img = resized(&square, side.min(AVATAR_LARGE), side.min(AVATAR_LARGE));
    let small_img = resized(&large_img, side.min(AVATAR_SMALL), side.min(AVATAR_SMALL));
    let large = write_blob(blobs, &encode(&large_img)).map_err(AvatarError::Io)?;
    let small = write_blob(blobs, &encode(&small_img)).map_err(AvatarError::Io)?;
    Ok((small, large))
}

#[cfg(test)]
pub(crate) mod samples {
    //! Images made at test time: no binary fixtures in the tree.

    use std::io::Cursor;

    use image::{DynamicImage, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};

    /// A `w`×`h` picture: left half red, right half blue.
    pub fn halves(w: u32, h: u32) -> DynamicImage {
        DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, _| {
            if x < w / 2 {
                Rgb([220, 20, 20])
            } else {
                Rgb([20, 20, 220])
            }
        }))
    }

    pub fn encoded(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), format).unwrap();
        out
    }

    /// A JPEG with an EXIF block that says "rotate 90° clockwise to view"
    /// (orientation 6) and carries a GPS position, as phones write them.
    pub fn rotated_jpeg_with_gps(w: u32, h: u32) -> Vec<u8> {
        let jpeg = encoded(&halves(w, h), ImageFormat::Jpeg);
        // TIFF, little-endian: IFD0 with Orientation = 6 and a GPS IFD
        // pointer; the GPS IFD with a latitude reference "N".
        let mut tiff: Vec<u8> = b"II\x2a\x00\x08\x00\x00\x00".to_vec();
        tiff.extend_from_slice(&2u16.to_le_bytes());
        tiff.extend_from_slice(&[0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0]);
        tiff.extend_from_slice(&[0x25, 0x88, 4, 0, 1, 0, 0, 0, 38, 0, 0, 0]);
        tiff.extend_from_slice(&0u32.to_le_bytes());
        tiff.extend_from_slice(&1u16.to_le_bytes());
        tiff.extend_from_slice(&[0x01, 0x00, 2, 0, 2, 0, 0, 0, b'N', 0, 0, 0]);
        tiff.extend_from_slice(&0u32.to_le_bytes());
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(&tiff);
        let mut out = jpeg[..2].to_vec(); // SOI
        out.extend_from_slice(&[0xff, 0xe1]);
        out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&app1);
        out.extend_from_slice(&jpeg[2..]);
        out
    }

    /// A small PNG whose header claims `side`×`side` pixels: its IDAT is
    /// a few bytes of compressed zeros that would inflate to gigabytes.
    pub fn png_bomb(side: u32) -> Vec<u8> {
        let mut out = encoded(
            &DynamicImage::ImageRgba8(RgbaImage::from_pixel(1, 1, Rgba([0, 0, 0, 0]))),
            ImageFormat::Png,
        );
        // IHDR's width and height sit at bytes 16..24; its CRC at 29..33.
        out[16..20].copy_from_slice(&side.to_be_bytes());
        out[20..24].copy_from_slice(&side.to_be_bytes());
        let crc = crc32(&out[12..29]);
        out[29..33].copy_from_slice(&crc.to_be_bytes());
        out
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut c = 0xffff_ffffu32;
        for &b in bytes {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0xedb8_8320
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
}

#[cfg(test)]
mod tests {
    use super::samples::*;
    use super::*;
    use crate::files::dir::DirStore;
    use crate::files::{FileStore, read_blob};

    fn store() -> (DirStore, std::path::PathBuf) {
        let p = std::env::temp_dir().join(format!(
            "hubbub-img-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&p);
        (DirStore::open(&p).unwrap(), p)
    }

    fn decoded(blobs: &mut dyn Blobs, key: &BlobKey) -> DynamicImage {
        let bytes = read_blob(blobs, key).unwrap().unwrap();
        image::load_from_memory(&bytes).unwrap()
    }

    /// A phone photo turned by EXIF is measured and previewed upright,
    /// and its previews carry no EXIF (so no location).
    #[test]
    fn orientation_is_applied_and_metadata_dropped() {
        let (s, p) = store();
        let mut b = s.handle().unwrap();
        let original = rotated_jpeg_with_gps(2400, 1200);
        assert!(original.windows(6).any(|w| w == b"Exif\0\0"));
        let key = write_blob(&mut *b, &original).unwrap();
        let Inspected::Image(v) = inspect(&mut *b, &key).unwrap() else {
            panic!("not an image")
        };
        assert_eq!(
            (v.mime, v.width, v.height),
            ("image/jpeg", 1200, 2400),
            "upright"
        );
        let large = decoded(&mut *b, &v.large);
        assert_eq!((large.width(), large.height()), (800, 1600));
        let small = decoded(&mut *b, &v.small);
        assert_eq!(
            (small.width(), small.height()),
            (THUMB_SMALL / 2, THUMB_SMALL)
        );
        // Upright: the original's left (red) half is now on top.
        let top = small.to_rgb8().get_pixel(small.width() / 2, 5).0;
        assert!(top[0] > 150 && top[2] < 100, "top is red: {top:?}");
        for preview in [v.large, v.small] {
            let bytes = read_blob(&mut *b, &preview).unwrap().unwrap();
            assert!(!bytes.windows(4).any(|w| w == b"Exif"), "no EXIF left");
        }
        let _ = std::fs::remove_dir_all(p);
    }

    /// A large JPEG may be decoded at a reduced DCT scale only while the
    /// pixels kept still cover what is made of them: the longest side for a
    /// preview, the shortest for an avatar's square; `scale` is asked so
    /// that the side that matters decides.
    #[test]
    fn reduced_scale_keeps_what_is_needed() {
        let preview = Need::Longest(THUMB_LARGE);
        assert!(preview.allows_halving(4000, 3000));
        assert!(
            preview.allows_halving(3000, 3199),
            "1600 of 3199 (rounded up)"
        );
        assert!(!preview.allows_halving(3000, 3198));
        assert!(!preview.allows_halving(2400, 1200));
        assert_eq!(preview.request(4000, 3000), (1600, 1600));
        let avatar = Need::Shortest(AVATAR_LARGE);
        assert!(avatar.allows_halving(4000, 512));
        assert!(!avatar.allows_halving(4000, 510));
        assert_eq!(avatar.request(4000, 600), (u16::MAX, 256));
        assert_eq!(avatar.request(600, 4000), (256, u16::MAX));
        assert_eq!(Need::Longest(100_000).request(4000, 600).0, u16::MAX);
    }

    /// A photo decoded at a reduced scale is measured at its full upright
    /// size, previewed upright at the same sizes as a full decode, with no
    /// EXIF left; a grey one too; an avatar from a wide photo keeps both
    /// halves of its centre.
    #[test]
    fn large_photos_decoded_at_reduced_scale() {
        let (s, p) = store();
        let mut b = s.handle().unwrap();
        let key = write_blob(&mut *b, &rotated_jpeg_with_gps(4000, 2000)).unwrap();
        let Inspected::Image(v) = inspect(&mut *b, &key).unwrap() else {
            panic!("not an image")
        };
        assert_eq!((v.width, v.height), (2000, 4000), "full size, upright");
        let large = decoded(&mut *b, &v.large);
        assert_eq!((large.width(), large.height()), (800, 1600));
        let small = decoded(&mut *b, &v.small);
        assert_eq!((small.width(), small.height()), (240, 480));
        let top = small.to_rgb8().get_pixel(small.width() / 2, 5).0;
        assert!(top[0] > 150 && top[2] < 100, "top is red: {top:?}");
        for preview in [v.large, v.small] {
            let bytes = read_blob(&mut *b, &preview).unwrap().unwrap();
            assert!(!bytes.windows(4).any(|w| w == b"Exif"), "no EXIF left");
        }

        let grey = DynamicImage::ImageLuma8(halves(3600, 2400).to_luma8());
        let key = write_blob(&mut *b, &encoded(&grey, ImageFormat::Jpeg)).unwrap();
        let Inspected::Image(v) = inspect(&mut *b, &key).unwrap() else {
            panic!("not an image")
        };
        assert_eq!((v.width, v.height), (3600, 2400));
        let large = decoded(&mut *b, &v.large);
        assert_eq!((large.width(), large.height()), (1600, 1067));

        let wide = write_blob(&mut *b, &encoded(&halves(4000, 600), ImageFormat::Jpeg)).unwrap();
        let (_, large) = avatar(&mut *b, &wide).unwrap();
        let l_img = decoded(&mut *b, &large);
        assert_eq!(
            (l_img.width(), l_img.height()),
            (AVATAR_LARGE, AVATAR_LARGE)
        );
        let px = |x| l_img.to_rgb8().get_pixel(x, AVATAR_LARGE / 2).0;
        assert!(px(2)[0] > 150 && px(AVATAR_LARGE - 3)[2] > 150);
        let _ = std::fs::remove_dir_all(p);
    }

    /// A header that claims more pixels than the limit is refused before
    /// a pixel is decoded; a "PNG" that is HTML, and a truncated one, are
    /// no images.
    #[test]
    fn bombs_and_fakes_are_not_decoded() {
        let (s, p) = store();
        let mut b = s.handle().unwrap();
        let bomb = write_blob(&mut *b, &png_bomb(100_000)).unwrap();
        assert_eq!(
            inspect(&mut *b, &bomb).unwrap(),
            Inspected::Oversized { mime: "image/png" }
        );
        // Under the side limit, over the pixel limit.
        let wide = write_blob(&mut *b, &png_bomb(9_000)).unwrap();
        assert_eq!(
            inspect(&mut *b, &wide).unwrap(),
            Inspected::Oversized { mime: "image/png" }
        );
        let html = write_blob(&mut *b, b"<html><script>window.__pwned=1</script>").unwrap();
        assert_eq!(inspect(&mut *b, &html).unwrap(), Inspected::NotImage);
        let png = encoded(&halves(64, 64), ImageFormat::Png);
        let cut = write_blob(&mut *b, &png[..png.len() / 2]).unwrap();
        assert_eq!(inspect(&mut *b, &cut).unwrap(), Inspected::NotImage);
        assert_eq!(avatar(&mut *b, &html), Err(AvatarError::NotImage));
        let _ = std::fs::remove_dir_all(p);
    }

    /// A small image is its own preview (one blob for both sizes); an
    /// avatar is the centred square at both sizes.
    #[test]
    fn small_images_and_avatars() {
        let (s, p) = store();
        let mut b = s.handle().unwrap();
        let png = write_blob(&mut *b, &encoded(&halves(100, 40), ImageFormat::Png)).unwrap();
        let Inspected::Image(v) = inspect(&mut *b, &png).unwrap() else {
            panic!("not an image")
        };
        assert_eq!((v.mime, v.width, v.height), ("image/png", 100, 40));
        assert_eq!(v.small, v.large);
        let photo = write_blob(&mut *b, &encoded(&halves(900, 300), ImageFormat::Jpeg)).unwrap();
        let (small, large) = avatar(&mut *b, &photo).unwrap();
        let (s_img, l_img) = (decoded(&mut *b, &small), decoded(&mut *b, &large));
        assert_eq!(
            (s_img.width(), s_img.height()),
            (AVATAR_SMALL, AVATAR_SMALL)
        );
        assert_eq!(
            (l_img.width(), l_img.height()),
            (AVATAR_LARGE, AVATAR_LARGE)
        );
        // The centre of a red|blue picture: both colours in the square.
        let px = |x| l_img.to_rgb8().get_pixel(x, AVATAR_LARGE / 2).0;
        assert!(px(2)[0] > 150 && px(AVATAR_LARGE - 3)[2] > 150);
        let _ = std::fs::remove_dir_all(p);
    }
}
