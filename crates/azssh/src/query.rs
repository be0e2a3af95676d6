//! `--query`: a JMESPath expression applied to a command's JSON output before it is formatted,
//! as `az --query` does (https://jmespath.org; the JMESPath project's own Rust crate). Compiled
//! once when the command starts, so a typo is a usage error before anything runs.

use serde_json::Value;

use azssh_core::error::kind;

/// A compiled `--query` expression.
pub struct Query {
    text: String,
    expression: jmespath::Expression<'static>,
}

impl std::fmt::Debug for Query {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Query({:?})", self.text)
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum QueryError {
    #[error("`--query {expression}` is not a JMESPath expression: {reason}")]
    Syntax { expression: String, reason: String },
    #[error("`--query {expression}` failed on the output: {reason}")]
    Search { expression: String, reason: String },
}

impl crate::error::UserError for QueryError {
    fn kind(&self) -> &'static str {
        kind::output::QUERY
    }
    fn hint(&self) -> Option<String> {
        Some(match self {
            QueryError::Syntax { .. } => {
                "JMESPath as in `az --query`, e.g. `--query '[].name'` or `--query \"[?power_state=='running'].{name: name, ip: public_ip}\"`".into()
            }
            QueryError::Search { .. } => {
                "run without `--query` (`-o json`) to see the fields the output has".into()
            }
        })
    }
}

/// The reason part of a JMESPath error, without the crate's multi-line caret picture.
fn reason(e: &jmespath::JmespathError) -> String {
    let text = e.reason.to_string();
    let first = text.lines().next().unwrap_or("invalid").trim().to_string();
    format!("{first} (at character {})", e.offset)
}

impl Query {
    pub fn compile(text: &str) -> Result<Query, QueryError> {
        let expression = jmespath::compile(text).map_err(|e| QueryError::Syntax {
            expression: text.to_string(),
            reason: reason(&e),
        })?;
        Ok(Query {
            text: text.to_string(),
            expression,
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The expression's value on `data`, as JSON.
    pub fn apply(&self, data: &Value) -> Result<Value, QueryError> {
        let search = |e: jmespath::JmespathError| QueryError::Search {
            expression: self.text.clone(),
            reason: reason(&e),
        };
        let found = self.expression.search(data).map_err(search)?;
        serde_json::to_value(&*found).map_err(|e| QueryError::Search {
            expression: self.text.clone(),
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vms() -> Value {
        json!([
            {"name": "web01", "resource_group": "rg-web", "power_state": "running"},
            {"name": "db01", "resource_group": "rg-db", "power_state": "deallocated"},
        ])
    }

    #[test]
    fn projections_and_filters_work_as_in_az() {
        let q = Query::compile("[].name").unwrap();
        assert_eq!(q.apply(&vms()).unwrap(), json!(["web01", "db01"]));
        let q = Query::compile("[?power_state=='running'].{vm: name, rg: resource_group}").unwrap();
        assert_eq!(
            q.apply(&vms()).unwrap(),
            json!([{"vm": "web01", "rg": "rg-web"}])
        );
        let q = Query::compile("length(@)").unwrap();
        assert_eq!(q.apply(&vms()).unwrap(), json!(2));
    }

    #[test]
    fn a_syntax_error_names_the_expression_and_where() {
        let e = Query::compile("[?name==").unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("`--query [?name==` is not a JMESPath expression"),
            "{text}"
        );
        assert!(!text.contains('\n'), "{text}");
    }

    #[test]
    fn a_type_error_at_run_time_is_a_search_error() {
        let q = Query::compile("length(`1`)").unwrap();
        assert!(matches!(
            q.apply(&json!({})),
            Err(QueryError::Search { .. })
        ));
    }
}
