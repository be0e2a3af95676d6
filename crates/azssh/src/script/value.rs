//! Conversion between script values and JSON (for `to_json`, `parse_json`, `--arg` values and
//! the output formats). Custom types (VMs, sessions) convert through their map form.

use rhai::{Array, Dynamic, Map};
use serde_json::{Number, Value};

/// Script value → JSON. Fails only for values with no JSON form (function pointers).
pub fn to_json(v: &Dynamic) -> Result<Value, String> {
    if v.is_unit() {
        return Ok(Value::Null);
    }
    if let Ok(b) = v.as_bool() {
        return Ok(Value::Bool(b));
    }
    if let Ok(i) = v.as_int() {
        return Ok(Value::Number(i.into()));
    }
    if let Ok(f) = v.as_float() {
        return Ok(Number::from_f64(f).map_or(Value::Null, Value::Number));
    }
    if v.is_string() || v.is_char() {
        return Ok(Value::String(v.to_string()));
    }
    if let Some(arr) = v.read_lock::<Array>() {
        return arr
            .iter()
            .map(to_json)
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array);
    }
    if let Some(map) = v.read_lock::<Map>() {
        return map_to_json(&map);
    }
    if let Some(blob) = v.read_lock::<rhai::Blob>() {
        return Ok(Value::Array(blob.iter().map(|b| Value::from(*b)).collect()));
    }
    if let Some(ts) = v.read_lock::<rhai::Instant>() {
        return Ok(Value::from(ts.elapsed().as_secs_f64()));
    }
    if let Some(map) = crate::script::api::as_map(v) {
        return map_to_json(&map);
    }
    Err(format!("a `{}` has no JSON form", v.type_name()))
}

fn map_to_json(map: &Map) -> Result<Value, String> {
    let mut out = serde_json::Map::new();
    for (k, val) in map {
        out.insert(k.to_string(), to_json(val)?);
    }
    Ok(Value::Object(out))
}

/// JSON → script value (objects become maps, `null` becomes `()`).
pub fn from_json(v: &Value) -> Dynamic {
    match v {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => (*b).into(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None => n.as_f64().unwrap_or(f64::NAN).into(),
        },
        Value::String(s) => s.clone().into(),
        Value::Array(a) => a.iter().map(from_json).collect::<Array>().into(),
        Value::Object(o) => o
            .iter()
            .map(|(k, v)| (k.as_str().into(), from_json(v)))
            .collect::<Map>()
            .into(),
    }
}

/// Any serialisable Rust value (a result struct) → script value, through its JSON form.
pub fn to_dynamic<T: serde::Serialize>(v: &T) -> Dynamic {
    serde_json::to_value(v).map_or(Dynamic::UNIT, |j| from_json(&j))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_keeps_shapes() {
        let text = r#"{"a":[1,2.5,"x",null,true],"b":{"c":-3}}"#;
        let v: Value = serde_json::from_str(text).unwrap();
        assert_eq!(to_json(&from_json(&v)).unwrap(), v);
    }

    #[test]
    fn fn_ptr_has_no_json_form() {
        let f = Dynamic::from(rhai::FnPtr::new("f").unwrap());
        assert!(to_json(&f).unwrap_err().contains("no JSON form"));
    }
}
