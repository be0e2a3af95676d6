//! Reading a function's options map (`#{user: "x", port: 22}`) with one clear error for a
//! misspelt key or a value of the wrong type.

use rhai::{Dynamic, EvalAltResult, Map};

use crate::script::error::{ScriptError, to_rhai};

pub struct Options<'a> {
    function: &'a str,
    map: Map,
}

impl<'a> Options<'a> {
    /// Refuses keys not in `known`, naming the ones that exist.
    pub fn new(function: &'a str, map: Map, known: &[&str]) -> Result<Self, Box<EvalAltResult>> {
        if let Some(bad) = map.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(to_rhai(&ScriptError::bad_argument(
                format!("`{function}` has no option `{bad}`"),
                Some(&format!(
                    "its options are {}",
                    known
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            )));
        }
        Ok(Options { function, map })
    }

    pub fn empty(function: &'a str) -> Self {
        Options {
            function,
            map: Map::new(),
        }
    }

    fn get(&self, key: &str) -> Option<&Dynamic> {
        self.map.get(key).filter(|v| !v.is_unit())
    }

    fn wrong(&self, key: &str, want: &str, got: &Dynamic) -> Box<EvalAltResult> {
        to_rhai(&ScriptError::bad_argument(
            format!(
                "`{}` option `{key}` must be {want}, got a `{}`",
                self.function,
                got.type_name()
            ),
            None,
        ))
    }

    pub fn string(&self, key: &str) -> Result<Option<String>, Box<EvalAltResult>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) if v.is_string() => Ok(Some(v.to_string())),
            Some(v) => Err(self.wrong(key, "a string", v)),
        }
    }

    pub fn int(&self, key: &str) -> Result<Option<i64>, Box<EvalAltResult>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_int()
                .map(Some)
                .map_err(|_| self.wrong(key, "an integer", v)),
        }
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>, Box<EvalAltResult>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .map_err(|_| self.wrong(key, "true or false", v)),
        }
    }

    /// An integer in `range`, e.g. a port.
    pub fn int_in(
        &self,
        key: &str,
        range: std::ops::RangeInclusive<i64>,
    ) -> Result<Option<i64>, Box<EvalAltResult>> {
        match self.int(key)? {
            Some(n) if !range.contains(&n) => Err(to_rhai(&ScriptError::bad_argument(
                format!(
                    "`{}` option `{key}` must be between {} and {}, got {n}",
                    self.function,
                    range.start(),
                    range.end()
                ),
                None,
            ))),
            other => Ok(other),
        }
    }

    pub fn map(&self, key: &str) -> Result<Option<Map>, Box<EvalAltResult>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .read_lock::<Map>()
                .map(|m| Some(m.clone()))
                .ok_or_else(|| self.wrong(key, "a map", v)),
        }
    }

    pub fn raw(&self, key: &str) -> Option<&Dynamic> {
        self.get(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_option_names_the_known_ones() {
        let mut m = Map::new();
        m.insert("usr".into(), "x".into());
        let err = Options::new("ssh", m, &["user", "port"]).err().unwrap();
        let text = format!("{err:?}");
        assert!(
            text.contains("`ssh` has no option `usr`") && text.contains("`user`, `port`"),
            "{text}"
        );
    }

    #[test]
    fn port_range_is_checked() {
        let mut m = Map::new();
        m.insert("port".into(), Dynamic::from(70000_i64));
        let o = Options::new("ssh", m, &["port"]).unwrap();
        assert!(o.int_in("port", 1..=65535).is_err());
    }
}
