//! JSON parsing that refuses duplicated object keys, into a tree that
//! borrows its strings from the message.
//!
//! `{"patient":"A","patient":"B"}` means different things to different
//! parsers (first wins, last wins, error); an audit trail must not be
//! ambiguous, so such a message is refused instead of silently resolved.
//!
//! The tree is what the decoder validates; it is not kept. Strings without
//! escapes are slices of the message, and an object is its members in
//! order (a message's objects are small: looking a key up by scanning them
//! costs less than building a map), so parsing allocates one vector per
//! object and array and nothing per plain string.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Marker put in the error message so the decoder can tell duplicate keys
/// apart from other JSON errors.
pub(crate) const DUPLICATE_KEY: &str = "duplicate key";

/// Objects up to this many members are checked for duplicate keys as each
/// member arrives; larger ones once, sorted, when the object ends (so a
/// message of many keys costs n log n, not n²).
const SCAN_LIMIT: usize = 16;

/// A parsed JSON value whose strings borrow from the text where they can.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Object<'a>),
}

/// A JSON object's members in document order, keys unique.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Object<'a>(Vec<(Cow<'a, str>, Json<'a>)>);

impl<'a> Object<'a> {
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Json<'a>)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v))
    }

    /// Takes the member `key` out, if present.
    pub fn remove(&mut self, key: &str) -> Option<Json<'a>> {
        let at = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.swap_remove(at).1)
    }

    /// The members whose key `keep` accepts, as an owned `serde_json` map.
    pub fn into_map(self, keep: impl Fn(&str) -> bool) -> Map<String, Value> {
        self.0
            .into_iter()
            .filter(|(k, _)| keep(k))
            .map(|(k, v)| (k.into_owned(), v.into_value()))
            .collect()
    }
}

impl Json<'_> {
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Number(n) => n.as_f64(),
            _ => None,
        }
    }

    /// The owned `serde_json` value with the same content.
    pub fn into_value(self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(b),
            Json::Number(n) => Value::Number(n),
            Json::String(s) => Value::String(s.into_owned()),
            Json::Array(items) => Value::Array(items.into_iter().map(Json::into_value).collect()),
            Json::Object(o) => Value::Object(o.into_map(|_| true)),
        }
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Json<'de>, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json<'de>, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Json<'de>, E> {
        Ok(Number::from_f64(v).map_or(Json::Null, Json::Number))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(v)))
    }

    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_none<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element::<Json<'de>>()? {
            items.push(v);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        // Grown as members arrive: reserving room up front would make a
        // message of many small objects cost far more memory than its size.
        let mut members: Vec<(Cow<'de, str>, Json<'de>)> = Vec::new();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if members.len() < SCAN_LIMIT && members.iter().any(|(k, _)| *k == key) {
                return Err(duplicate(&key));
            }
            let value = map.next_value::<Json<'de>>()?;
            members.push((key, value));
        }
        if members.len() > SCAN_LIMIT {
            let mut keys: Vec<&str> = members.iter().map(|(k, _)| k.as_ref()).collect();
            keys.sort_unstable();
            if let Some(pair) = keys.windows(2).find(|pair| pair[0] == pair[1]) {
                return Err(duplicate(pair[0]));
            }
        }
        Ok(Json::Object(Object(members)))
    }
}

fn duplicate<E: de::Error>(key: &str) -> E {
    // The key itself is a field name, not a value: safe to name here; the
    // decoder withholds it unless the contract defines it.
    let shown: String = key.chars().take(64).collect();
    E::custom(format!("{DUPLICATE_KEY} `{shown}`"))
}

/// An object key, borrowed from the text unless it has escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Json<'_>, serde_json::Error> {
        serde_json::from_str(text)
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        let top = parse(r#"{"a":1,"a":2}"#);
        assert!(top.err().unwrap().to_string().contains("duplicate key `a`"));
        let nested = parse(r#"{"x":{"b":1,"b":1}}"#);
        assert!(
            nested
                .err()
                .unwrap()
                .to_string()
                .contains("duplicate key `b`")
        );
    }

    #[test]
    fn duplicate_keys_are_refused_in_objects_of_many_members() {
        let mut members: Vec<String> = (0..200).map(|i| format!("\"k{i}\":{i}")).collect();
        assert!(parse(&format!("{{{}}}", members.join(","))).is_ok());
        members.push("\"k117\":0".into());
        let err = parse(&format!("{{{}}}", members.join(","))).unwrap_err();
        assert!(err.to_string().contains("duplicate key `k117`"), "{err}");
    }

    #[test]
    fn an_escaped_key_equal_to_a_plain_one_is_a_duplicate() {
        let err = parse(r#"{"id":1,"\u0069d":2}"#).unwrap_err();
        assert!(err.to_string().contains("duplicate key `id`"), "{err}");
    }

    #[test]
    fn plain_values_parse_as_serde_json_does() {
        let text = r#"{"a":[1,2.5,"s\"q",null,true,-7],"b":{"c":-3,"d":{}},"e":[]}"#;
        let tree = parse(text).unwrap();
        assert_eq!(
            tree.into_value(),
            serde_json::from_str::<Value>(text).unwrap()
        );
    }

    #[test]
    fn plain_strings_borrow_from_the_text_and_escaped_ones_are_owned() {
        let Json::Object(o) = parse(r#"{"plain":"abc","esc":"a\nb"}"#).unwrap() else {
            panic!("not an object")
        };
        assert!(matches!(
            o.get("plain"),
            Some(Json::String(Cow::Borrowed("abc")))
        ));
        assert!(matches!(o.get("esc"), Some(Json::String(Cow::Owned(s))) if s == "a\nb"));
    }

    #[test]
    fn members_keep_document_order_and_can_be_taken_out() {
        let Json::Object(mut o) = parse(r#"{"z":1,"a":2,"m":3}"#).unwrap() else {
            panic!("not an object")
        };
        let keys: Vec<&str> = o.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["z", "a", "m"]);
        assert_eq!(o.remove("a"), Some(Json::Number(2.into())));
        assert_eq!(o.remove("a"), None);
        let kept = o.into_map(|k| k != "z");
        assert_eq!(kept.len(), 1);
        assert_eq!(kept["m"], Value::from(3));
    }
}
