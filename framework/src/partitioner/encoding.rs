//! The pinned key encoding behind [`stable_hash`](super::stable_hash): a serde
//! [`Serializer`] that writes the bytes `rmp_serde::to_vec` (compact) would write for a key,
//! straight into a byte [`Sink`] (the FNV-1a state when hashing), without building them in a
//! buffer. The definition is in `stable_hash`'s documentation; this file follows it and
//! rmp-serde 1.3 / rmp 0.8 (`encode.rs`, `encode/{uint,sint,str,bin}.rs`), function for
//! function.
//!
//! Only a sequence or map whose `Serialize` impl does not give its length up front is
//! buffered (its header, which holds the count, comes before its elements), as rmp-serde
//! buffers it too.

use std::fmt;

use serde::ser::{
    self, Serialize, SerializeMap, SerializeSeq, SerializeStruct, SerializeStructVariant,
    SerializeTuple, SerializeTupleStruct, SerializeTupleVariant,
};

/// Where encoded bytes go.
pub(super) trait Sink {
    fn put(&mut self, bytes: &[u8]);
    fn put_byte(&mut self, byte: u8);
}

impl Sink for Vec<u8> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    #[inline]
    fn put_byte(&mut self, byte: u8) {
        self.push(byte);
    }
}

/// A key whose `Serialize` impl returned an error (the message is dropped: nothing is
/// allocated, and the hash does not depend on it).
#[derive(Debug)]
pub(super) struct Unencodable;

impl fmt::Display for Unencodable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the key's Serialize implementation failed")
    }
}

impl std::error::Error for Unencodable {}

impl ser::Error for Unencodable {
    fn custom<T: fmt::Display>(_msg: T) -> Self {
        Unencodable
    }
}

/// Writes MessagePack (rmp-serde's compact form) into its sink.
pub(super) struct Encoder<S> {
    pub(super) sink: S,
}

impl<S: Sink> Encoder<S> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.sink.put(bytes);
    }

    /// rmp `write_uint`: the smallest of positive fixint, uint8, uint16, uint32, uint64.
    #[inline]
    fn uint(&mut self, v: u64) {
        if v < 128 {
            self.sink.put_byte(v as u8);
        } else if v < 256 {
            self.put(&[0xcc, v as u8]);
        } else if v < 65_536 {
            let b = (v as u16).to_be_bytes();
            self.put(&[0xcd, b[0], b[1]]);
        } else if v < 4_294_967_296 {
            let b = (v as u32).to_be_bytes();
            self.put(&[0xce, b[0], b[1], b[2], b[3]]);
        } else {
            let mut out = [0xcf; 9];
            out[1..].copy_from_slice(&v.to_be_bytes());
            self.put(&out);
        }
    }

    /// rmp `write_sint`: negative fixint, int8..int64 for negatives; non-negatives as
    /// [`uint`](Self::uint).
    #[inline]
    fn sint(&mut self, v: i64) {
        if v >= 0 {
            self.uint(v as u64);
        } else if v >= -32 {
            self.put(&[v as u8]); // negative fixint: 0xe0..=0xff
        } else if v >= -128 {
            self.put(&[0xd0, v as u8]);
        } else if v >= -32_768 {
            let b = (v as i16).to_be_bytes();
            self.put(&[0xd1, b[0], b[1]]);
        } else if v >= -2_147_483_648 {
            let b = (v as i32).to_be_bytes();
            self.put(&[0xd2, b[0], b[1], b[2], b[3]]);
        } else {
            let mut out = [0xd3; 9];
            out[1..].copy_from_slice(&v.to_be_bytes());
            self.put(&out);
        }
    }

    /// A header whose short form holds the length in the marker's low bits (`fix` for
    /// lengths below `fix_limit`), else an 8-bit (`m8`, when given), 16-bit or 32-bit length.
    #[cold]
    fn header(&mut self, len: u32, fix: u8, fix_limit: u32, m8: Option<u8>, m16: u8, m32: u8) {
        if len < fix_limit {
            self.put(&[fix | len as u8]);
        } else if let Some(m8) = m8.filter(|_| len < 256) {
            self.put(&[m8, len as u8]);
        } else if let Ok(len) = u16::try_from(len) {
            let b = len.to_be_bytes();
            self.put(&[m16, b[0], b[1]]);
        } else {
            let b = len.to_be_bytes();
            self.put(&[m32, b[0], b[1], b[2], b[3]]);
        }
    }

    #[inline]
    fn str(&mut self, s: &str) {
        // fixstr (< 32 bytes), str8, str16, str32. The short form inline: most keys are words.
        if s.len() < 32 {
            self.sink.put_byte(0xa0 | s.len() as u8);
        } else {
            self.header(s.len() as u32, 0xa0, 32, Some(0xd9), 0xda, 0xdb);
        }
        self.put(s.as_bytes());
    }

    #[inline]
    fn bin(&mut self, bytes: &[u8]) {
        // bin8 (no fix form), bin16, bin32.
        self.header(bytes.len() as u32, 0, 0, Some(0xc4), 0xc5, 0xc6);
        self.put(bytes);
    }

    #[inline]
    fn array_header(&mut self, len: u32) {
        if len < 16 {
            self.sink.put_byte(0x90 | len as u8);
        } else {
            self.header(len, 0x90, 16, None, 0xdc, 0xdd);
        }
    }

    #[inline]
    fn map_header(&mut self, len: u32) {
        self.header(len, 0x80, 16, None, 0xde, 0xdf);
    }
}

/// The elements of a tuple, tuple struct or struct (or variant), whose header is written:
/// each element in place.
pub(super) struct InPlace<'a, S> {
    enc: &'a mut Encoder<S>,
}

/// The elements of a sequence or map: written in place when the length was given up front,
/// else buffered until the count is known (then header, then elements).
pub(super) struct Compound<'a, S> {
    enc: &'a mut Encoder<S>,
    unknown: Option<Buffered>,
}

struct Buffered {
    enc: Encoder<Vec<u8>>,
    items: u32,
    map: bool,
}

impl<'a, S: Sink> Compound<'a, S> {
    /// rmp-serde `maybe_unknown_len_compound`.
    fn maybe_unknown(enc: &'a mut Encoder<S>, len: Option<usize>, map: bool) -> Self {
        match len {
            Some(len) => {
                if map {
                    enc.map_header(len as u32);
                } else {
                    enc.array_header(len as u32);
                }
                Compound { enc, unknown: None }
            }
            None => Compound {
                enc,
                unknown: Some(Buffered {
                    enc: Encoder { sink: Vec::new() },
                    items: 0,
                    map,
                }),
            },
        }
    }

    #[inline]
    fn element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Unencodable> {
        match &mut self.unknown {
            None => value.serialize(&mut *self.enc),
            Some(buffered) => {
                value.serialize(&mut buffered.enc)?;
                buffered.items += 1;
                Ok(())
            }
        }
    }

    #[inline]
    fn finish(self) -> Result<(), Unencodable> {
        if let Some(buffered) = self.unknown {
            // A map's count is of entries: key and value are two items.
            if buffered.map {
                self.enc.map_header(buffered.items / 2);
            } else {
                self.enc.array_header(buffered.items);
            }
            self.enc.put(&buffered.enc.sink);
        }
        Ok(())
    }
}

impl<S: Sink> SerializeSeq for Compound<'_, S> {
    type Ok = ();
    type Error = Unencodable;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Unencodable> {
        self.element(value)
    }
    fn end(self) -> Result<(), Unencodable> {
        self.finish()
    }
}

impl<S: Sink> SerializeTuple for InPlace<'_, S> {
    type Ok = ();
    type Error = Unencodable;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Unencodable> {
        value.serialize(&mut *self.enc)
    }
    fn end(self) -> Result<(), Unencodable> {
        Ok(())
    }
}

impl<S: Sink> SerializeTupleStruct for InPlace<'_, S> {
    type Ok = ();
    type Error = Unencodable;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Unencodable> {
        value.serialize(&mut *self.enc)
    }
    fn end(self) -> Result<(), Unencodable> {
        Ok(())
    }
}

impl<S: Sink> SerializeTupleVariant for InPlace<'_, S> {
    type Ok = ();
    type Error = Unencodable;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Unencodable> {
        value.serialize(&mut *self.enc)
    }
    fn end(self) -> Result<(), Unencodable> {
        Ok(())
    }
}

impl<S: Sink> SerializeStruct for InPlace<'_, S> {
    type Ok = ();
    type Error = Unencodable;
    // Compact: field values only, no names.
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        _key: &'static str,
        value: &T,
    ) -> Result<(), Unencodable> {
        value.serialize(&mut *self.enc)
    }
    fn end(self) -> Result<(), Unencodable> {
        Ok(())
    }
}

impl<S: Sink> SerializeStructVariant for InPlace<'_, S> {
    type Ok = ();
    type Error = Unencodable;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        _key: &'static str,
        value: &T,
    ) -> Result<(), Unencodable> {
        value.serialize(&mut *self.enc)
    }
    fn end(self) -> Result<(), Unencodable> {
        Ok(())
    }
}

impl<S: Sink> SerializeMap for Compound<'_, S> {
    type Ok = ();
    type Error = Unencodable;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), Unencodable> {
        self.element(key)
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Unencodable> {
        self.element(value)
    }
    fn end(self) -> Result<(), Unencodable> {
        self.finish()
    }
}

impl<'a, S: Sink> ser::Serializer for &'a mut Encoder<S> {
    type Ok = ();
    type Error = Unencodable;
    type SerializeSeq = Compound<'a, S>;
    type SerializeTuple = InPlace<'a, S>;
    type SerializeTupleStruct = InPlace<'a, S>;
    type SerializeTupleVariant = InPlace<'a, S>;
    type SerializeMap = Compound<'a, S>;
    type SerializeStruct = InPlace<'a, S>;
    type SerializeStructVariant = InPlace<'a, S>;

    fn is_human_readable(&self) -> bool {
        false // as rmp-serde's default: e.g. an `IpAddr` is its octets, not its text
    }

    #[inline]
    fn serialize_bool(self, v: bool) -> Result<(), Unencodable> {
        self.put(&[if v { 0xc3 } else { 0xc2 }]);
        Ok(())
    }
    #[inline]
    fn serialize_i8(self, v: i8) -> Result<(), Unencodable> {
        self.sint(i64::from(v));
        Ok(())
    }
    #[inline]
    fn serialize_i16(self, v: i16) -> Result<(), Unencodable> {
        self.sint(i64::from(v));
        Ok(())
    }
    #[inline]
    fn serialize_i32(self, v: i32) -> Result<(), Unencodable> {
        self.sint(i64::from(v));
        Ok(())
    }
    #[inline]
    fn serialize_i64(self, v: i64) -> Result<(), Unencodable> {
        self.sint(v);
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> Result<(), Unencodable> {
        self.bin(&v.to_be_bytes());
        Ok(())
    }
    #[inline]
    fn serialize_u8(self, v: u8) -> Result<(), Unencodable> {
        self.uint(u64::from(v));
        Ok(())
    }
    #[inline]
    fn serialize_u16(self, v: u16) -> Result<(), Unencodable> {
        self.uint(u64::from(v));
        Ok(())
    }
    #[inline]
    fn serialize_u32(self, v: u32) -> Result<(), Unencodable> {
        self.uint(u64::from(v));
        Ok(())
    }
    #[inline]
    fn serialize_u64(self, v: u64) -> Result<(), Unencodable> {
        self.uint(v);
        Ok(())
    }
    fn serialize_u128(self, v: u128) -> Result<(), Unencodable> {
        self.bin(&v.to_be_bytes());
        Ok(())
    }
    fn serialize_f32(self, v: f32) -> Result<(), Unencodable> {
        let b = v.to_bits().to_be_bytes();
        self.put(&[0xca, b[0], b[1], b[2], b[3]]);
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<(), Unencodable> {
        let mut out = [0xcb; 9];
        out[1..].copy_from_slice(&v.to_bits().to_be_bytes());
        self.put(&out);
        Ok(())
    }
    #[inline]
    fn serialize_char(self, v: char) -> Result<(), Unencodable> {
        self.str(v.encode_utf8(&mut [0; 4]));
        Ok(())
    }
    #[inline]
    fn serialize_str(self, v: &str) -> Result<(), Unencodable> {
        self.str(v);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Unencodable> {
        self.bin(v);
        Ok(())
    }
    #[inline]
    fn serialize_none(self) -> Result<(), Unencodable> {
        self.serialize_unit()
    }
    #[inline]
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<(), Unencodable> {
        value.serialize(self)
    }
    #[inline]
    fn serialize_unit(self) -> Result<(), Unencodable> {
        self.put(&[0xc0]);
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Unencodable> {
        self.array_header(0);
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Unencodable> {
        self.str(variant);
        Ok(())
    }
    #[inline]
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Unencodable> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Unencodable> {
        self.map_header(1);
        self.str(variant);
        value.serialize(self)
    }
    #[inline]
    fn serialize_seq(self, len: Option<usize>) -> Result<Compound<'a, S>, Unencodable> {
        Ok(Compound::maybe_unknown(self, len, false))
    }
    #[inline]
    fn serialize_tuple(self, len: usize) -> Result<InPlace<'a, S>, Unencodable> {
        self.array_header(len as u32);
        Ok(InPlace { enc: self })
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<InPlace<'a, S>, Unencodable> {
        self.array_header(len as u32);
        Ok(InPlace { enc: self })
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<InPlace<'a, S>, Unencodable> {
        self.map_header(1);
        self.str(variant);
        self.array_header(len as u32);
        Ok(InPlace { enc: self })
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Compound<'a, S>, Unencodable> {
        Ok(Compound::maybe_unknown(self, len, true))
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<InPlace<'a, S>, Unencodable> {
        self.array_header(len as u32);
        Ok(InPlace { enc: self })
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<InPlace<'a, S>, Unencodable> {
        self.map_header(1);
        self.str(variant);
        self.array_header(len as u32);
        Ok(InPlace { enc: self })
    }
}
