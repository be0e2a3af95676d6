//! How the REPL shows a result: strings raw, maps and custom types (a `Vm`, a `Session`) as a
//! key/value block, arrays of maps as aligned tables (through `output::render`), nothing for `()`.

use rhai::Dynamic;

use crate::output::{self, OutputFormat};
use crate::script::value;

/// The text for `value`, or `None` when there is nothing to show.
pub fn render(value: &Dynamic, format: OutputFormat) -> Option<String> {
    if value.is_unit() {
        return None;
    }
    if value.is_string() && format == OutputFormat::Table {
        let mut text = value.to_string();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        return Some(text);
    }
    match value::to_json(value) {
        Ok(json) if !json.is_null() => Some(output::render(&json, format)),
        Ok(_) => None,
        // Function pointers and types without a map form: their own display is all we have.
        Err(_) => Some(format!("{value}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rhai::{Array, Map};

    fn row(name: &str, state: &str) -> Dynamic {
        let mut m = Map::new();
        m.insert("name".into(), name.into());
        m.insert("power_state".into(), state.into());
        m.into()
    }

    #[test]
    fn arrays_of_maps_are_tables() {
        let rows: Array = vec![row("web01", "running"), row("db01", "deallocated")];
        assert_eq!(
            render(&rows.into(), OutputFormat::Table).unwrap(),
            "NAME   POWER_STATE\nweb01  running\ndb01   deallocated\n"
        );
    }

    #[test]
    fn maps_are_key_value_blocks_and_strings_raw() {
        assert_eq!(
            render(&row("web01", "running"), OutputFormat::Table).unwrap(),
            "name         web01\npower_state  running\n"
        );
        assert_eq!(
            render(&Dynamic::from("a \"b\""), OutputFormat::Table).unwrap(),
            "a \"b\"\n"
        );
        assert_eq!(render(&Dynamic::UNIT, OutputFormat::Table), None);
    }

    #[test]
    fn json_output_when_asked() {
        assert_eq!(
            render(&Dynamic::from(3_i64), OutputFormat::Json).unwrap(),
            "3\n"
        );
    }
}
