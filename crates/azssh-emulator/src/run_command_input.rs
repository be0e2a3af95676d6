//! The Compute RP's check of a `RunCommandInput` (`VirtualMachines_RunCommand`, ARM.md §4):
//! `commandId` a string, `script` an array of strings, `parameters` an array of
//! `{name, value}` (`RunCommandInputParameter`, both required). A body of another shape fails
//! to deserialize on the service side, which ARM reports as `InvalidRequestContent` with the
//! deserializer's words (the .NET type the field maps to, and the JSON path).

use serde_json::Value;

use super::reply::ArmError;

fn undeserializable(what: &str) -> ArmError {
    ArmError::bad_request(
        "InvalidRequestContent",
        format!("The request content was invalid and could not be deserialized: '{what}'."),
    )
}

fn missing(name: &str) -> ArmError {
    ArmError::bad_request(
        "InvalidParameter",
        format!("Required parameter '{name}' is missing (null)."),
    )
}

fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    }
    .chars()
    .take(60)
    .collect()
}

/// Checks the body's shape; the handler then reads it knowing each field has its type.
pub fn check(body: &Value) -> Result<(), ArmError> {
    if !body.is_object() {
        return Err(undeserializable(
            "Cannot deserialize the request body into type 'RunCommandInput'",
        ));
    }
    match body.get("commandId") {
        None | Some(Value::Null) => return Err(missing("commandId")),
        Some(Value::String(_)) => {}
        Some(other) => {
            return Err(undeserializable(&format!(
                "Error converting value {} to type 'System.String'. Path 'commandId'",
                shown(other)
            )));
        }
    }
    match body.get("script") {
        None | Some(Value::Null) => {}
        Some(Value::Array(lines)) => {
            if let Some((i, l)) = lines.iter().enumerate().find(|(_, l)| !l.is_string()) {
                return Err(undeserializable(&format!(
                    "Error converting value {} to type 'System.String'. Path 'script[{i}]'",
                    shown(l)
                )));
            }
        }
        Some(other) => {
            return Err(undeserializable(&format!(
                "Error converting value {} to type 'System.Collections.Generic.List`1[System.String]'. Path 'script'",
                shown(other)
            )));
        }
    }
    match body.get("parameters") {
        None | Some(Value::Null) => {}
        Some(Value::Array(params)) => {
            for (i, p) in params.iter().enumerate() {
                let Some(o) = p.as_object() else {
                    return Err(undeserializable(&format!(
                        "Error converting value {} to type 'RunCommandInputParameter'. Path 'parameters[{i}]'",
                        shown(p)
                    )));
                };
                for key in ["name", "value"] {
                    match o.get(key) {
                        None | Some(Value::Null) => {
                            return Err(missing(&format!("parameters[{i}].{key}")));
                        }
                        Some(Value::String(_)) => {}
                        Some(other) => {
                            return Err(undeserializable(&format!(
                                "Error converting value {} to type 'System.String'. Path 'parameters[{i}].{key}'",
                                shown(other)
                            )));
                        }
                    }
                }
            }
        }
        Some(other) => {
            return Err(undeserializable(&format!(
                "Error converting value {} to type 'System.Collections.Generic.List`1[RunCommandInputParameter]'. Path 'parameters'",
                shown(other)
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn well_formed_input_passes() {
        let ok = json!({"commandId": "RunPowerShellScript", "script": ["param($a)", "$a"], "parameters": [{"name": "a", "value": "1"}]});
        assert!(check(&ok).is_ok());
    }

    #[test]
    fn script_as_a_string_and_bad_parameters_are_refused() {
        let e =
            check(&json!({"commandId": "RunPowerShellScript", "script": "hostname"})).unwrap_err();
        assert_eq!(e.code, "InvalidRequestContent");
        assert!(e.message.contains("Path 'script'"), "{}", e.message);
        let e =
            check(&json!({"commandId": "RunPowerShellScript", "script": ["a", 1]})).unwrap_err();
        assert!(e.message.contains("script[1]"));
        let e = check(&json!({"commandId": "RunPowerShellScript", "parameters": {"a": "1"}}))
            .unwrap_err();
        assert_eq!(e.code, "InvalidRequestContent");
        let e = check(&json!({"commandId": "RunPowerShellScript", "parameters": [{"name": "a"}]}))
            .unwrap_err();
        assert_eq!(e.code, "InvalidParameter");
        assert_eq!(
            check(&json!({"script": []})).unwrap_err().code,
            "InvalidParameter"
        );
    }
}
