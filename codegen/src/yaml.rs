//! YAML text to `serde_json::Value`, keeping mapping order and turning scalar keys (`200:`) into strings.

use serde_json::{Map, Number, Value};
use serde_norway::Value as Yaml;

use crate::error::SpecError;

/// Parses YAML text into JSON, naming `file` in errors.
pub(crate) fn parse(file: &str, text: &str) -> Result<Value, SpecError> {
    let yaml: Yaml = serde_norway::from_str(text).map_err(|e| SpecError::Yaml {
        file: file.to_owned(),
        message: e.to_string(),
    })?;
    convert(file, "", yaml)
}

fn convert(file: &str, pointer: &str, yaml: Yaml) -> Result<Value, SpecError> {
    Ok(match yaml {
        Yaml::Null => Value::Null,
        Yaml::Bool(b) => Value::Bool(b),
        Yaml::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Number(i.into())
            } else if let Some(u) = n.as_u64() {
                Value::Number(u.into())
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                Value::Number(Number::from_f64(f).ok_or_else(|| {
                    SpecError::invalid(file, pointer, format!("number {n} has no JSON equivalent"))
                })?)
            }
        }
        Yaml::String(s) => Value::String(s),
        Yaml::Sequence(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| convert(file, &crate::error::child(pointer, &i.to_string()), item))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Mapping(mapping) => {
            let mut map = Map::new();
            for (key, value) in mapping {
                let key = match key {
                    Yaml::String(s) => s,
                    Yaml::Number(n) => n.to_string(),
                    Yaml::Bool(b) => b.to_string(),
                    other => {
                        return Err(SpecError::invalid(
                            file,
                            pointer,
                            format!("mapping key {other:?} is not a string"),
                        ));
                    }
                };
                let value = convert(file, &crate::error::child(pointer, &key), value)?;
                map.insert(key, value);
            }
            Value::Object(map)
        }
        Yaml::Tagged(tagged) => {
            return Err(SpecError::invalid(
                file,
                pointer,
                format!("YAML tag {} is not supported", tagged.tag),
            ));
        }
    })
}
