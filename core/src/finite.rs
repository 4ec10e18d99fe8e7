//! Refusing NaN and infinities in typed values: `serde_json` writes them as `null`, so a
//! typed patch holding `f64::NAN` once stored `null` (or, in a `Dialogue` patch that
//! leaves out nulls, nothing at all) without a word.

use serde::ser::{self, Serialize};

/// Whether `value` serializes without a non-finite float anywhere in it.
///
/// # Errors
/// The path of the first NaN or infinity (`field.list[2]`), as text.
pub(crate) fn check_finite<T: Serialize + ?Sized>(value: &T) -> Result<(), String> {
    match value.serialize(Finite {
        path: String::new(),
    }) {
        Ok(()) | Err(NotFinite(None)) => Ok(()),
        Err(NotFinite(Some(path))) => Err(path),
    }
}

/// A non-finite float at this path; `None`: the value's own serializer failed, which
/// `serde_json` reports on its own pass.
#[derive(Debug)]
struct NotFinite(Option<String>);

impl std::fmt::Display for NotFinite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(path) => write!(f, "a non-finite number at {path}"),
            None => f.write_str("the value failed to serialize"),
        }
    }
}

impl std::error::Error for NotFinite {}

impl ser::Error for NotFinite {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        NotFinite(None)
    }
}

/// Walks a value; fails at the first non-finite float. `path` is where it stands.
struct Finite {
    path: String,
}

/// The same walk inside a container, counting elements for the path.
struct Inner {
    path: String,
    index: usize,
}

impl Finite {
    fn float(self, value: f64) -> Result<(), NotFinite> {
        if value.is_finite() {
            Ok(())
        } else {
            Err(NotFinite(Some(if self.path.is_empty() {
                "the top level".to_owned()
            } else {
                self.path
            })))
        }
    }

    fn inner(self) -> Inner {
        Inner {
            path: self.path,
            index: 0,
        }
    }
}

impl Inner {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), NotFinite> {
        let path = format!("{}[{}]", self.path, self.index);
        self.index += 1;
        value.serialize(Finite { path })
    }

    fn field<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> Result<(), NotFinite> {
        let path = if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.path)
        };
        value.serialize(Finite { path })
    }
}

macro_rules! accept {
    ($($method:ident($($ty:ty),*);)*) => {
        $(fn $method(self, $(_: $ty),*) -> Result<(), NotFinite> { Ok(()) })*
    };
}

impl ser::Serializer for Finite {
    type Ok = ();
    type Error = NotFinite;
    type SerializeSeq = Inner;
    type SerializeTuple = Inner;
    type SerializeTupleStruct = Inner;
    type SerializeTupleVariant = Inner;
    type SerializeMap = Inner;
    type SerializeStruct = Inner;
    type SerializeStructVariant = Inner;

    accept! {
        serialize_bool(bool); serialize_i8(i8); serialize_i16(i16); serialize_i32(i32);
        serialize_i64(i64); serialize_i128(i128); serialize_u8(u8); serialize_u16(u16);
        serialize_u32(u32); serialize_u64(u64); serialize_u128(u128); serialize_char(char);
        serialize_str(&str); serialize_bytes(&[u8]); serialize_none(); serialize_unit();
        serialize_unit_struct(&'static str);
        serialize_unit_variant(&'static str, u32, &'static str);
    }

    fn serialize_f32(self, value: f32) -> Result<(), NotFinite> {
        self.float(f64::from(value))
    }

    fn serialize_f64(self, value: f64) -> Result<(), NotFinite> {
        self.float(value)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), NotFinite> {
        value.serialize(self)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), NotFinite> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), NotFinite> {
        self.inner().field(variant, value)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Inner, NotFinite> {
        Ok(self.inner())
    }

    fn serialize_tuple(self, _: usize) -> Result<Inner, NotFinite> {
        Ok(self.inner())
    }

    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Inner, NotFinite> {
        Ok(self.inner())
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Inner, NotFinite> {
        let mut inner = self.inner();
        inner.path = joined(&inner.path, variant);
        Ok(inner)
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Inner, NotFinite> {
        Ok(self.inner())
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Inner, NotFinite> {
        Ok(self.inner())
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Inner, NotFinite> {
        let mut inner = self.inner();
        inner.path = joined(&inner.path, variant);
        Ok(inner)
    }
}

fn joined(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

impl ser::SerializeSeq for Inner {
    type Ok = ();
    type Error = NotFinite;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), NotFinite> {
        self.element(value)
    }
    fn end(self) -> Result<(), NotFinite> {
        Ok(())
    }
}

impl ser::SerializeTuple for Inner {
    type Ok = ();
    type Error = NotFinite;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), NotFinite> {
        self.element(value)
    }
    fn end(self) -> Result<(), NotFinite> {
        Ok(())
    }
}

impl ser::SerializeTupleStruct for Inner {
    type Ok = ();
    type Error = NotFinite;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), NotFinite> {
        self.element(value)
    }
    fn end(self) -> Result<(), NotFinite> {
        Ok(())
    }
}

impl ser::SerializeTupleVariant for Inner {
    type Ok = ();
    type Error = NotFinite;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), NotFinite> {
        self.element(value)
    }
    fn end(self) -> Result<(), NotFinite> {
        Ok(())
    }
}

impl ser::SerializeMap for Inner {
    type Ok = ();
    type Error = NotFinite;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, _: &T) -> Result<(), NotFinite> {
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), NotFinite> {
        self.element(value)
    }
    fn end(self) -> Result<(), NotFinite> {
        Ok(())
    }
}

impl ser::SerializeStruct for Inner {
    type Ok = ();
    type Error = NotFinite;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        value: &T,
    ) -> Result<(), NotFinite> {
        self.field(name, value)
    }
    fn end(self) -> Result<(), NotFinite> {
        Ok(())
    }
}

impl ser::SerializeStructVariant for Inner {
    type Ok = ();
    type Error = NotFinite;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        value: &T,
    ) -> Result<(), NotFinite> {
        self.field(name, value)
    }
    fn end(self) -> Result<(), NotFinite> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(serde::Serialize)]
    struct Form {
        name: String,
        score: Option<f64>,
        list: Vec<f32>,
        map: BTreeMap<String, f64>,
    }

    #[test]
    fn finite_values_pass_and_the_first_bad_one_is_named() {
        let good = Form {
            name: "a".into(),
            score: Some(1.5),
            list: vec![0.0, -1.0],
            map: BTreeMap::from([("x".into(), 2.0)]),
        };
        check_finite(&good).unwrap();
        let bad = Form {
            score: Some(f64::NAN),
            ..good
        };
        assert_eq!(check_finite(&bad).unwrap_err(), "score");
        let bad = Form {
            name: "b".into(),
            score: None,
            list: vec![1.0, f32::INFINITY],
            map: BTreeMap::new(),
        };
        assert_eq!(check_finite(&bad).unwrap_err(), "list[1]");
        assert!(check_finite(&f64::NEG_INFINITY).is_err());
        assert!(check_finite(&serde_json::json!({"a": [1, 2.5]})).is_ok());
    }
}
