//! Typed field accessors over a parsed JSON object, naming the field's dotted path in every error.
//!
//! A field set to `null` reads as absent. Fields no accessor asks for are ignored, which is how
//! unknown fields are tolerated for compatibility with MCM's configurations.

use std::fmt::Display;
use std::ops::RangeInclusive;

use serde_json::{Map, Value};

use super::{ConfigError, MeshErr};

/// Longest string value quoted in full in an error message, in characters.
const QUOTE_MAX_CHARS: usize = 64;

/// Parses `text` as JSON; a syntax error becomes a `class` error with serde_json's line and column.
pub(super) fn parse(text: &str, class: MeshErr) -> Result<Value, ConfigError> {
    serde_json::from_str(text).map_err(|e| ConfigError::new(class, format!("malformed JSON: {e}")))
}

/// `s` quoted and escaped as Rust's `Debug` does, cut after [`QUOTE_MAX_CHARS`] characters.
pub(super) fn quote(s: &str) -> String {
    match s.char_indices().nth(QUOTE_MAX_CHARS) {
        Some((cut, _)) => format!("{:?}...", &s[..cut]),
        None => format!("{s:?}"),
    }
}

/// What a value is, for "got ..." in an error: `string "640"`, `integer -1`, `an object`.
pub(super) fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) if n.is_f64() => format!("number {n}"),
        Value::Number(n) => format!("integer {n}"),
        Value::String(s) => format!("string {}", quote(s)),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// One JSON object of a configuration, with its dotted path and the error class it reports.
#[derive(Debug, Clone)]
pub(super) struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
    class: MeshErr,
}

impl<'a> Obj<'a> {
    /// The top-level object of a configuration; anything else is an error of `class`.
    pub(super) fn root(value: &'a Value, class: MeshErr) -> Result<Self, ConfigError> {
        match value {
            Value::Object(map) => Ok(Self {
                map,
                path: String::new(),
                class,
            }),
            other => Err(ConfigError::new(
                class,
                format!("config: expected a JSON object, got {}", describe(other)),
            )),
        }
    }

    /// The dotted path of field `key` of this object.
    pub(super) fn path_of(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// An error of this object's class about field `key`: `"<path>: <what>"`.
    pub(super) fn err(&self, key: &str, what: impl Display) -> ConfigError {
        self.err_of(self.class, key, what)
    }

    /// Like [`Obj::err`] with another class (e.g. an incompatibility).
    pub(super) fn err_of(&self, class: MeshErr, key: &str, what: impl Display) -> ConfigError {
        ConfigError::new(class, format!("{}: {what}", self.path_of(key)))
    }

    /// An error about this object as a whole: `"<path>: <what>"`.
    pub(super) fn err_here(&self, class: MeshErr, what: impl Display) -> ConfigError {
        let path = if self.path.is_empty() {
            "config"
        } else {
            &self.path
        };
        ConfigError::new(class, format!("{path}: {what}"))
    }

    fn type_err(&self, key: &str, expected: &str, got: &Value) -> ConfigError {
        self.err(key, format!("expected {expected}, got {}", describe(got)))
    }

    /// Field `key`, `None` when it is missing or `null`.
    pub(super) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// Whether field `key` is set (present and not `null`).
    pub(super) fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Field `key` as an object, `None` when absent.
    pub(super) fn obj(&self, key: &str) -> Result<Option<Obj<'a>>, ConfigError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        match v {
            Value::Object(map) => Ok(Some(Obj {
                map,
                path: self.path_of(key),
                class: self.class,
            })),
            other => Err(self.type_err(key, "an object", other)),
        }
    }

    /// Field `key` as an array of objects (element `i` has the path `key[i]`), `None` when
    /// absent.
    pub(super) fn objs(&self, key: &str) -> Result<Option<Vec<Obj<'a>>>, ConfigError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let Value::Array(items) = v else {
            return Err(self.type_err(key, "an array of objects", v));
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::Object(map) => out.push(Obj {
                    map,
                    path: format!("{}[{i}]", self.path_of(key)),
                    class: self.class,
                }),
                other => return Err(self.type_err(&format!("{key}[{i}]"), "an object", other)),
            }
        }
        Ok(Some(out))
    }

    /// Field `key` as a string, `None` when absent.
    pub(super) fn str(&self, key: &str) -> Result<Option<&'a str>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.type_err(key, "a string", other)),
        }
    }

    /// Field `key` as a boolean, `false` when absent.
    pub(super) fn flag(&self, key: &str) -> Result<bool, ConfigError> {
        match self.get(key) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(self.type_err(key, "true or false", other)),
        }
    }

    /// Field `key` as a number (integer or not), `default` when absent.
    pub(super) fn f64(&self, key: &str, default: f64) -> Result<f64, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| self.type_err(key, "a number", v)),
        }
    }

    /// Field `key` as an unsigned integer within `allowed`, `default` when absent.
    pub(super) fn uint<T>(
        &self,
        key: &str,
        allowed: RangeInclusive<T>,
        default: T,
    ) -> Result<T, ConfigError>
    where
        T: Copy + PartialOrd + Display + TryFrom<u64>,
    {
        let Some(v) = self.get(key) else {
            return Ok(default);
        };
        let n = v
            .as_u64()
            .ok_or_else(|| self.type_err(key, "an unsigned integer", v))?;
        match T::try_from(n) {
            Ok(t) if allowed.contains(&t) => Ok(t),
            _ => Err(self.err(
                key,
                format_args!(
                    "{n} is out of range, allowed {}..={}",
                    allowed.start(),
                    allowed.end()
                ),
            )),
        }
    }

    /// Field `key` as one of the strings of `choices`, `default` when absent.
    pub(super) fn choice<T: Copy>(
        &self,
        key: &str,
        choices: &[(&str, T)],
        default: T,
    ) -> Result<T, ConfigError> {
        let Some(s) = self.str(key)? else {
            return Ok(default);
        };
        match choices.iter().find(|(name, _)| *name == s) {
            Some(&(_, t)) => Ok(t),
            None => Err(self.err(
                key,
                format_args!(
                    "{} is not supported, allowed: {}",
                    quote(s),
                    list(choices.iter().map(|(name, _)| *name))
                ),
            )),
        }
    }
}

/// `"a", "b", "c"`: the allowed strings of a message.
pub(super) fn list<'s>(names: impl Iterator<Item = &'s str>) -> String {
    names
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn describes_every_kind_of_value() {
        let cases = [
            (json!(null), "null"),
            (json!(true), "boolean true"),
            (json!(-1), "integer -1"),
            (json!(1.5), "number 1.5"),
            (json!("640"), "string \"640\""),
            (json!([1]), "an array"),
            (json!({}), "an object"),
        ];
        for (v, want) in cases {
            assert_eq!(describe(&v), want);
        }
    }

    #[test]
    fn long_strings_are_cut() {
        let long = "x".repeat(100);
        assert_eq!(quote(&long), format!("{:?}...", "x".repeat(64)));
        assert_eq!(quote("a\"b"), "\"a\\\"b\"");
    }

    #[test]
    fn null_reads_as_absent() {
        let v = json!({"a": null});
        let obj = Obj::root(&v, MeshErr::ConnConfigInval).unwrap();
        assert!(!obj.has("a"));
        assert_eq!(obj.uint("a", 0..=5u32, 3).unwrap(), 3);
    }

    #[test]
    fn nested_paths_are_dotted() {
        let v = json!({"a": {"b": {"c": "x"}}});
        let root = Obj::root(&v, MeshErr::ConnConfigInval).unwrap();
        let b = root.obj("a").unwrap().unwrap().obj("b").unwrap().unwrap();
        let err = b.uint("c", 0..=1u8, 0).unwrap_err();
        assert_eq!(
            err.message,
            "a.b.c: expected an unsigned integer, got string \"x\""
        );
    }

    #[test]
    fn root_must_be_an_object() {
        let err = Obj::root(&json!([1]), MeshErr::ClientConfigInval).unwrap_err();
        assert_eq!(err.message, "config: expected a JSON object, got an array");
        assert_eq!(err.class, MeshErr::ClientConfigInval);
    }
}
