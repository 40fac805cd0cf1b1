//! The `.npy` format: header parsing and validation before anything large is allocated, decoding
//! of the element types neurofit reads, and encoding of the ones it writes.
//!
//! A header is checked completely first: magic, version, a well-formed dict, a known dtype, a
//! shape whose byte count does not overflow, and a data length that matches what the file (or
//! archive member) really holds, so a 128-byte file claiming 80 GB is refused without allocating
//! and trailing junk is refused without reading it.

use crate::error::{Error, Result};
use ndarray::{ArrayD, IxDyn, ShapeBuilder};
use std::io::{Read, Write};

const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// Headers longer than this are refused (numpy writes a few hundred bytes).
const MAX_HEADER: usize = 1 << 20;

/// Byte order of a multi-byte element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    Little,
    Big,
}

/// The element types neurofit reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// IEEE double.
    F64,
    /// IEEE single.
    F32,
    /// IEEE half precision.
    F16,
    /// Signed 64-bit integer.
    I64,
    /// Signed 32-bit integer.
    I32,
    /// Unsigned 32-bit integer.
    U32,
    /// Unsigned byte.
    U8,
    /// numpy bool (one byte).
    Bool,
    /// numpy unicode string of this many UCS-4 characters.
    Unicode(usize),
}

impl Kind {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Kind::F64 | Kind::I64 => 8,
            Kind::F32 | Kind::I32 | Kind::U32 => 4,
            Kind::F16 => 2,
            Kind::U8 | Kind::Bool => 1,
            Kind::Unicode(n) => 4 * n,
        }
    }
}

/// A validated header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Element type.
    pub kind: Kind,
    order: Order,
    /// Column-major data.
    pub fortran: bool,
    /// Array shape.
    pub shape: Vec<usize>,
    /// Bytes before the data (magic, version, length field and dict).
    pub header_bytes: u64,
    /// Bytes of array data the header describes.
    pub data_bytes: u64,
}

impl Header {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    /// True for an array without elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Whether multi-byte elements are big-endian.
    pub fn big_endian(&self) -> bool {
        self.order == Order::Big
    }
}

fn bad(msg: impl Into<String>) -> Error {
    Error::InvalidInput(msg.into())
}

fn parse_descr(d: &str) -> Result<(Kind, Order)> {
    let (order, rest) = match d.as_bytes().first() {
        Some(b'<') | Some(b'=') => (Order::Little, &d[1..]),
        Some(b'>') => (Order::Big, &d[1..]),
        Some(b'|') => (Order::Little, &d[1..]),
        _ => (Order::Little, d),
    };
    let kind = match rest {
        "f8" => Kind::F64,
        "f4" => Kind::F32,
        "f2" => Kind::F16,
        "i8" => Kind::I64,
        "i4" => Kind::I32,
        "u4" => Kind::U32,
        "u1" => Kind::U8,
        "b1" => Kind::Bool,
        r if r.starts_with('U') => {
            let n: usize = r[1..]
                .parse()
                .map_err(|_| bad(format!("unsupported dtype '{d}'")))?;
            Kind::Unicode(n)
        }
        _ => {
            return Err(bad(format!(
                "unsupported dtype '{d}' (neurofit reads float64, float32, float16, int64, int32, uint32, uint8, bool)"
            )))
        }
    };
    Ok((kind, order))
}

/// The value of `'key': <value>` in a numpy header dict, up to the next top-level comma or `}`.
fn dict_value<'a>(dict: &'a str, key: &str) -> Result<&'a str> {
    let needle_sq = format!("'{key}'");
    let needle_dq = format!("\"{key}\"");
    let at = dict
        .find(&needle_sq)
        .or_else(|| dict.find(&needle_dq))
        .ok_or_else(|| bad(format!("malformed .npy header: no '{key}' entry")))?;
    let rest = dict[at + key.len() + 2..].trim_start();
    let rest = rest
        .strip_prefix(':')
        .ok_or_else(|| bad(format!("malformed .npy header: no ':' after '{key}'")))?
        .trim_start();
    let mut depth = 0i32;
    for (i, c) in rest.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' | '}' if depth == 0 => return Ok(rest[..i].trim()),
            _ => {}
        }
        if depth < 0 {
            break;
        }
    }
    Err(bad(format!(
        "malformed .npy header: the '{key}' entry is not terminated"
    )))
}

fn parse_shape(s: &str) -> Result<Vec<usize>> {
    let inner = s
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| bad(format!("malformed .npy header: shape '{s}' is not a tuple")))?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.trim_end_matches('L')
                .parse::<usize>()
                .map_err(|_| bad(format!("malformed .npy header: shape entry '{t}'")))
        })
        .collect()
}

/// Parses and validates a header from `r`; `available` is the number of bytes the source holds
/// in all (file length or the archive member's uncompressed size).
pub fn read_header<R: Read + ?Sized>(r: &mut R, available: u64) -> Result<Header> {
    let mut pre = [0u8; 8];
    r.read_exact(&mut pre)
        .map_err(|_| bad("not a .npy array: shorter than the 8-byte preamble"))?;
    if &pre[..6] != MAGIC {
        return Err(bad(
            "not a .npy array: the magic string \\x93NUMPY is missing",
        ));
    }
    let (len_bytes, utf8) = match pre[6] {
        1 => (2usize, false),
        2 => (4, false),
        3 => (4, true),
        v => {
            return Err(bad(format!(
                "unsupported .npy format version {v}.{}",
                pre[7]
            )))
        }
    };
    let mut lb = [0u8; 4];
    r.read_exact(&mut lb[..len_bytes])
        .map_err(|_| bad("malformed .npy header: truncated length field"))?;
    let hlen = u32::from_le_bytes(lb) as usize;
    if hlen > MAX_HEADER {
        return Err(bad(format!(
            "malformed .npy header: header length {hlen} bytes exceeds {MAX_HEADER}"
        )));
    }
    let header_bytes = (8 + len_bytes + hlen) as u64;
    if header_bytes > available {
        return Err(bad(format!(
            "malformed .npy header: it claims {hlen} bytes but the file ends before"
        )));
    }
    let mut h = vec![0u8; hlen];
    r.read_exact(&mut h)
        .map_err(|_| bad("malformed .npy header: truncated"))?;
    let text = if utf8 {
        String::from_utf8(h).map_err(|_| bad("malformed .npy header: not UTF-8"))?
    } else {
        if !h.is_ascii() {
            return Err(bad("malformed .npy header: not ASCII"));
        }
        String::from_utf8(h).expect("ASCII")
    };
    let dict = text.trim();
    if !dict.starts_with('{') {
        return Err(bad("malformed .npy header: not a dict"));
    }
    let descr_raw = dict_value(dict, "descr")?;
    let descr = descr_raw.trim_matches(|c| c == '\'' || c == '"');
    if descr_raw.starts_with('[') {
        return Err(bad(
            "unsupported dtype: structured arrays are not numeric matrices",
        ));
    }
    let (kind, order) = parse_descr(descr)?;
    let fortran = match dict_value(dict, "fortran_order")? {
        "True" => true,
        "False" => false,
        v => {
            return Err(bad(format!(
                "malformed .npy header: fortran_order is '{v}'"
            )))
        }
    };
    let shape = parse_shape(dict_value(dict, "shape")?)?;
    let count = shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .and_then(|c| c.checked_mul(kind.size() as u64))
        .filter(|&b| b <= isize::MAX as u64)
        .ok_or_else(|| {
            bad(format!(
                "the header's shape {shape:?} of {descr} overflows: it describes more bytes than can exist"
            ))
        })?;
    let remaining = available - header_bytes;
    if remaining < count {
        return Err(bad(format!(
            "truncated: the header describes {count} bytes of {descr} data of shape {shape:?} but only {remaining} follow"
        )));
    }
    if remaining > count {
        return Err(bad(format!(
            "{} bytes of unexpected data after the array (shape {shape:?}, {descr})",
            remaining - count
        )));
    }
    Ok(Header {
        kind,
        order,
        fortran,
        shape,
        header_bytes,
        data_bytes: count,
    })
}

/// Reads exactly the data bytes into `out` in blocks, converting each block with `conv`.
fn read_blocks<R: Read + ?Sized, T>(
    r: &mut R,
    h: &Header,
    out: &mut Vec<T>,
    conv: impl Fn(&[u8]) -> T,
) -> Result<()> {
    let es = h.kind.size();
    let block = (1 << 20) / es.max(1) * es.max(1);
    let mut buf = vec![0u8; block.max(es)];
    let mut left = h.data_bytes as usize;
    while left > 0 {
        let take = left.min(buf.len());
        r.read_exact(&mut buf[..take])
            .map_err(|e| bad(format!("reading the array data failed: {e}")))?;
        out.extend(buf[..take].chunks_exact(es).map(&conv));
        left -= take;
    }
    Ok(())
}

/// Confirms the source ends after the data (for archive members this also makes the zip reader
/// verify the member's CRC).
fn expect_end<R: Read + ?Sized>(r: &mut R) -> Result<()> {
    let mut one = [0u8; 1];
    match r.read(&mut one) {
        Ok(0) => Ok(()),
        Ok(_) => Err(bad("unexpected data after the array")),
        Err(e) => Err(bad(format!("{e}"))),
    }
}

fn shaped<T>(h: &Header, data: Vec<T>) -> Result<ArrayD<T>> {
    let shape = IxDyn(&h.shape);
    let r = if h.fortran {
        ArrayD::from_shape_vec(shape.f(), data)
    } else {
        ArrayD::from_shape_vec(shape, data)
    };
    r.map_err(|e| bad(format!("array data does not fit shape {:?}: {e}", h.shape)))
}

fn arr<const N: usize>(b: &[u8], order: Order) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(b);
    if order == Order::Big {
        a.reverse();
    }
    a
}

/// Reads the numeric data of a validated header as f64.
pub fn read_f64<R: Read + ?Sized>(r: &mut R, h: &Header) -> Result<ArrayD<f64>> {
    let mut v = Vec::with_capacity(h.len());
    let o = h.order;
    match h.kind {
        Kind::F64 => read_blocks(r, h, &mut v, |b| f64::from_le_bytes(arr(b, o)))?,
        Kind::F32 => read_blocks(r, h, &mut v, |b| f32::from_le_bytes(arr(b, o)) as f64)?,
        Kind::F16 => read_blocks(r, h, &mut v, |b| {
            half::f16::from_bits(u16::from_le_bytes(arr(b, o))).to_f64()
        })?,
        Kind::I64 => read_blocks(r, h, &mut v, |b| i64::from_le_bytes(arr(b, o)) as f64)?,
        Kind::I32 => read_blocks(r, h, &mut v, |b| i32::from_le_bytes(arr(b, o)) as f64)?,
        Kind::U32 => read_blocks(r, h, &mut v, |b| u32::from_le_bytes(arr(b, o)) as f64)?,
        Kind::U8 => read_blocks(r, h, &mut v, |b| b[0] as f64)?,
        Kind::Bool => read_blocks(r, h, &mut v, |b| f64::from(b[0] != 0))?,
        Kind::Unicode(_) => return Err(bad("a text array where numbers were expected")),
    }
    expect_end(r)?;
    shaped(h, v)
}

/// Reads a bool (or 0/1 integer byte) array.
pub fn read_bool<R: Read + ?Sized>(r: &mut R, h: &Header) -> Result<ArrayD<bool>> {
    if !matches!(h.kind, Kind::Bool | Kind::U8) {
        return Err(bad(format!("expected a bool array, got {:?}", h.kind)));
    }
    let mut v = Vec::with_capacity(h.len());
    read_blocks(r, h, &mut v, |b| b[0] != 0)?;
    expect_end(r)?;
    shaped(h, v)
}

/// Reads a text value: a numpy unicode scalar/array (`np.array("f32")`) or UTF-8 bytes stored as
/// a uint8 array.
pub fn read_text<R: Read + ?Sized>(r: &mut R, h: &Header) -> Result<String> {
    let mut raw = vec![0u8; h.data_bytes as usize];
    r.read_exact(&mut raw)
        .map_err(|e| bad(format!("reading the text failed: {e}")))?;
    expect_end(r)?;
    match h.kind {
        Kind::U8 => String::from_utf8(raw).map_err(|_| bad("text member is not UTF-8")),
        Kind::Unicode(_) => {
            let mut s = String::new();
            for c in raw.chunks_exact(4) {
                let cp = u32::from_le_bytes(arr(c, h.order));
                if cp == 0 {
                    continue;
                }
                s.push(char::from_u32(cp).ok_or_else(|| bad("text member is not valid UCS-4"))?);
            }
            Ok(s)
        }
        k => Err(bad(format!("expected text, got {k:?}"))),
    }
}

/// An element type neurofit writes.
pub trait Element: Copy {
    /// The numpy `descr`.
    const DESCR: &'static str;
    /// Appends the little-endian bytes of `self`.
    fn put(self, out: &mut Vec<u8>);
}

macro_rules! element {
    ($t:ty, $d:expr) => {
        impl Element for $t {
            const DESCR: &'static str = $d;
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    };
}
element!(f64, "<f8");
element!(f32, "<f4");
element!(i64, "<i8");
element!(u8, "|u1");
element!(u32, "<u4");

impl Element for bool {
    const DESCR: &'static str = "|b1";
    fn put(self, out: &mut Vec<u8>) {
        out.push(u8::from(self));
    }
}

/// The header bytes (version 1.0, padded to 64 bytes as numpy does) for `descr` and `shape`.
pub fn header_bytes(descr: &str, shape: &[usize]) -> Vec<u8> {
    header_bytes_ordered(descr, shape, false)
}

/// The header bytes of a C-order (`fortran = false`) or Fortran-order array.
pub fn header_bytes_ordered(descr: &str, shape: &[usize], fortran: bool) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let order = if fortran { "True" } else { "False" };
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {tuple}, }}");
    let total = 10 + dict.len() + 1;
    dict.push_str(&" ".repeat(total.div_ceil(64) * 64 - total));
    dict.push('\n');
    let mut out = Vec::with_capacity(10 + dict.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

/// Bytes a C-order array of `elems` elements of `T` takes as `.npy`.
pub fn encoded_len<T: Element>(shape: &[usize]) -> u64 {
    let n: usize = shape.iter().product();
    header_bytes(T::DESCR, shape).len() as u64 + (n * std::mem::size_of::<T>()) as u64
}

/// Writes `a` (any layout) as a C-order `.npy` array.
pub fn write<T: Element, W: Write>(w: &mut W, a: &ArrayD<T>) -> std::io::Result<()> {
    w.write_all(&header_bytes(T::DESCR, a.shape()))?;
    let mut buf = Vec::with_capacity(1 << 16);
    for &v in a.iter() {
        v.put(&mut buf);
        if buf.len() >= 1 << 16 {
            w.write_all(&buf)?;
            buf.clear();
        }
    }
    w.write_all(&buf)
}

/// Writes a 0-d numpy unicode array holding `s` (`str(m[name])` gives it back in numpy).
pub fn write_text<W: Write>(w: &mut W, s: &str) -> std::io::Result<()> {
    let chars: Vec<char> = s.chars().collect();
    w.write_all(&header_bytes(&format!("<U{}", chars.len().max(1)), &[]))?;
    let mut buf = Vec::with_capacity(4 * chars.len().max(1));
    for c in &chars {
        buf.extend_from_slice(&(*c as u32).to_le_bytes());
    }
    if chars.is_empty() {
        buf.extend_from_slice(&[0; 4]);
    }
    w.write_all(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn roundtrip(a: &ArrayD<f64>) -> ArrayD<f64> {
        let mut v = Vec::new();
        write(&mut v, a).unwrap();
        let len = v.len() as u64;
        let mut c = Cursor::new(v);
        let h = read_header(&mut c, len).unwrap();
        read_f64(&mut c, &h).unwrap()
    }

    #[test]
    fn round_trips_any_rank() {
        for shape in [vec![], vec![3], vec![2, 3], vec![2, 1, 4]] {
            let n: usize = shape.iter().product();
            let a = ArrayD::from_shape_vec(IxDyn(&shape), (0..n).map(|i| i as f64 * 0.5).collect())
                .unwrap();
            assert_eq!(roundtrip(&a), a);
        }
    }

    #[test]
    fn header_is_64_byte_aligned() {
        assert_eq!(header_bytes("<f8", &[3, 4]).len() % 64, 0);
    }

    #[test]
    fn huge_shape_is_refused_before_allocation() {
        let h = header_bytes("<f8", &[100000, 100000]);
        let len = h.len() as u64;
        let e = read_header(&mut Cursor::new(h), len).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
    }

    #[test]
    fn overflowing_shape_is_named() {
        let h = header_bytes("<f8", &[usize::MAX / 2, 4]);
        let len = h.len() as u64;
        let e = read_header(&mut Cursor::new(h), len).unwrap_err();
        assert!(e.to_string().contains("overflows"), "{e}");
    }

    #[test]
    fn trailing_junk_is_refused_without_reading_it() {
        let h = header_bytes("<f8", &[1]);
        let len = h.len() as u64 + 8 + (512 << 20);
        let mut c = Cursor::new(h);
        let e = read_header(&mut c, len).unwrap_err();
        assert!(e.to_string().contains("unexpected data after"), "{e}");
    }

    #[test]
    fn big_endian_and_fortran_order() {
        let dict = "{'descr': '>f4', 'fortran_order': True, 'shape': (2, 2), }";
        let mut v = Vec::new();
        v.extend_from_slice(MAGIC);
        v.extend_from_slice(&[1, 0]);
        v.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        v.extend_from_slice(dict.as_bytes());
        for x in [1f32, 2.0, 3.0, 4.0] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        let len = v.len() as u64;
        let mut c = Cursor::new(v);
        let h = read_header(&mut c, len).unwrap();
        let a = read_f64(&mut c, &h).unwrap();
        assert_eq!(a[[0, 1]], 3.0);
        assert_eq!(a[[1, 0]], 2.0);
    }

    #[test]
    fn text_round_trips() {
        let mut v = Vec::new();
        write_text(&mut v, "norm2mean0").unwrap();
        let len = v.len() as u64;
        let mut c = Cursor::new(v);
        let h = read_header(&mut c, len).unwrap();
        assert_eq!(read_text(&mut c, &h).unwrap(), "norm2mean0");
    }
}
