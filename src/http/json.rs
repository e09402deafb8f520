//! [`Json`]: the JSON request body extractor every handler uses. It is `web::Json` (same limits and
//! error answers, see [`super::json_config`]) that takes only a JSON object: serde's derived structs
//! also read a JSON array as their fields in order, so `web::Json` accepted `[]` as an empty PATCH and
//! `["x"]` as a rename — no client means that, and the API documents objects.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// A request body that is a JSON object deserialised into `T`.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Json<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for Json<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = web::Json::<Object<T>>::from_request(req, payload);
        Box::pin(async move { Ok(Json(body.await?.into_inner().0)) })
    }
}

/// `T` from JSON bytes that hold an object (for a handler that reads its body itself).
pub fn from_object_slice<T: DeserializeOwned>(bytes: &[u8]) -> serde_json::Result<T> {
    serde_json::from_slice::<Object<T>>(bytes).map(|o| o.0)
}

/// `T` read from a JSON object only (anything else: "invalid type: …, expected a JSON object", 422).
#[derive(Debug)]
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(ObjectVisitor(PhantomData)).map(Object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Patch {
        #[serde(default)]
        name: Option<String>,
    }

    #[test]
    fn objects_are_read_and_arrays_refused() {
        let ok: Object<Patch> = serde_json::from_str(r#"{"name": "x"}"#).unwrap();
        assert_eq!(ok.0, Patch { name: Some("x".into()) });
        // serde's derive alone takes both: the reason for this type.
        assert!(serde_json::from_str::<Patch>("[]").is_ok());
        for body in ["[]", r#"["x"]"#, "1", "\"x\"", "null"] {
            let err = serde_json::from_str::<Object<Patch>>(body).unwrap_err();
            assert!(err.is_data() && err.to_string().contains("expected a JSON object"), "{body}: {err}");
        }
        let unknown = serde_json::from_str::<Object<Patch>>(r#"{"nome": "x"}"#).unwrap_err();
        assert!(unknown.to_string().contains("unknown field"), "{unknown}");
    }
}
