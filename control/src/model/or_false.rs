//! `object | false`, a shape OWT's API uses for optional media (`video: false`).

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::marker::PhantomData;

/// Either an object of type `T` or the JSON literal `false`.
#[derive(Clone, Debug, PartialEq)]
pub enum OrFalse<T> {
    /// The JSON `false`: the thing is switched off.
    False,
    /// The object.
    Some(T),
}

impl<T> OrFalse<T> {
    /// The object, if there is one.
    pub fn as_ref(&self) -> Option<&T> {
        match self {
            OrFalse::False => None,
            OrFalse::Some(t) => Some(t),
        }
    }

    /// The object, mutably, if there is one.
    pub fn as_mut(&mut self) -> Option<&mut T> {
        match self {
            OrFalse::False => None,
            OrFalse::Some(t) => Some(t),
        }
    }
}

impl<T: Default> Default for OrFalse<T> {
    fn default() -> Self {
        OrFalse::Some(T::default())
    }
}

impl<T: Serialize> Serialize for OrFalse<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            OrFalse::False => s.serialize_bool(false),
            OrFalse::Some(t) => t.serialize(s),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OrFalse<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = OrFalse<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object or false")
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
                if b {
                    Err(E::invalid_value(de::Unexpected::Bool(true), &self))
                } else {
                    Ok(OrFalse::False)
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(OrFalse::Some)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Deserialize, Serialize, Default)]
    #[serde(deny_unknown_fields)]
    struct A {
        x: u8,
    }

    #[test]
    fn round_trips() {
        let f: OrFalse<A> = serde_json::from_str("false").unwrap();
        assert_eq!(f, OrFalse::False);
        assert_eq!(serde_json::to_string(&f).unwrap(), "false");
        let s: OrFalse<A> = serde_json::from_str("{\"x\":3}").unwrap();
        assert_eq!(s, OrFalse::Some(A { x: 3 }));
        assert_eq!(serde_json::to_string(&s).unwrap(), "{\"x\":3}");
    }

    #[test]
    fn refuses_other_shapes() {
        for bad in ["true", "3", "\"no\"", "[]", "{\"x\":\"y\"}", "{\"z\":1}"] {
            assert!(serde_json::from_str::<OrFalse<A>>(bad).is_err(), "{bad}");
        }
    }
}
