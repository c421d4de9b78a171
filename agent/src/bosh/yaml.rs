//! A tiny builder over yaml-rust2's document model: keys keep insertion order, so output is
//! stable, and the emitter quotes whatever needs quoting.

use yaml_rust2::yaml::Hash;
use yaml_rust2::{Yaml, YamlEmitter};

/// An ordered mapping under construction.
#[derive(Default)]
pub struct Map(Hash);

impl Map {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.0.insert(Yaml::String(key.to_string()), value.into().0);
        self
    }
}

/// A YAML value.
pub struct Value(pub Yaml);

impl From<Map> for Value {
    fn from(map: Map) -> Self {
        Value(Yaml::Hash(map.0))
    }
}
impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value(Yaml::String(s.to_string()))
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value(Yaml::String(s))
    }
}
impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value(Yaml::Integer(n))
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value(Yaml::Boolean(b))
    }
}
impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(items: Vec<T>) -> Self {
        Value(Yaml::Array(items.into_iter().map(|v| v.into().0).collect()))
    }
}

/// Emits a document; multi-line strings (PEM) as literal blocks. Ends with a newline.
pub fn emit(doc: Map) -> String {
    let mut out = String::new();
    let mut emitter = YamlEmitter::new(&mut out);
    emitter.multiline_strings(true);
    emitter
        .dump(&Yaml::Hash(doc.0))
        .expect("writing YAML to a String cannot fail");
    out.push('\n');
    out
}
