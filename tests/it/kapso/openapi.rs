//! Checks JSON bodies against Kapso's OpenAPI excerpts in `tests/fixtures/kapso-openapi/`
//! (verbatim extracts of Kapso's public documents, loaded at test time; their README names the
//! source): `$ref`, `type` (incl. "null"), `required`, `properties`,
//! `items`, `enum`, `const`, length/size/range limits, `format: uri`, `oneOf`/`anyOf`/`allOf`.

use std::path::PathBuf;

use serde_json::Value;

pub struct Spec {
    name: String,
    root: Value,
}

/// `tests/fixtures/kapso-openapi/` in this repository.
fn openapi_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kapso-openapi")
}

impl Spec {
    pub fn load(file: &str) -> Spec {
        let path = openapi_dir().join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "cannot read the Kapso OpenAPI excerpt {} ({e}); it is a fixture of this \
                 repository (tests/fixtures/kapso-openapi/{file})",
                path.display()
            )
        });
        let root = serde_yaml::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
        Spec {
            name: file.to_owned(),
            root,
        }
    }

    /// The value at a JSON pointer into the document (e.g. the examples of an operation).
    pub fn at(&self, pointer: &str) -> &Value {
        self.root
            .pointer(pointer)
            .unwrap_or_else(|| panic!("{} has nothing at {pointer}", self.name))
    }

    /// `components.schemas.NAME`.
    pub fn schema(&self, name: &str) -> &Value {
        self.root
            .pointer(&format!("/components/schemas/{name}"))
            .unwrap_or_else(|| panic!("{} has no components.schemas.{name}", self.name))
    }

    /// The JSON request body schema of `METHOD PATH`.
    pub fn request_schema(&self, path: &str, method: &str) -> &Value {
        let path = path.replace('~', "~0").replace('/', "~1");
        let pointer =
            format!("/paths/{path}/{method}/requestBody/content/application~1json/schema");
        self.root
            .pointer(&pointer)
            .unwrap_or_else(|| panic!("{} has no request schema at {pointer}", self.name))
    }

    /// The JSON schema of response `status` of `METHOD PATH`.
    pub fn response_schema(&self, path: &str, method: &str, status: &str) -> &Value {
        let path = path.replace('~', "~0").replace('/', "~1");
        let pointer =
            format!("/paths/{path}/{method}/responses/{status}/content/application~1json/schema");
        self.root
            .pointer(&pointer)
            .unwrap_or_else(|| panic!("{} has no response schema at {pointer}", self.name))
    }

    /// Every violation of `schema` by `value` (empty when it conforms).
    pub fn violations(&self, value: &Value, schema: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        self.check(value, schema, "$", &mut errors);
        errors
    }

    /// Panics listing the violations, naming `what`.
    pub fn assert_conforms(&self, what: &str, value: &Value, schema: &Value) {
        let errors = self.violations(value, schema);
        assert!(
            errors.is_empty(),
            "{what} does not conform to {}:\n  {}\nbody: {value:#}",
            self.name,
            errors.join("\n  ")
        );
    }

    fn resolve<'a>(&'a self, reference: &str) -> &'a Value {
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("only local $ref are supported, got {reference}"));
        self.root
            .pointer(pointer)
            .unwrap_or_else(|| panic!("{}: dangling $ref {reference}", self.name))
    }

    fn check(&self, value: &Value, schema: &Value, at: &str, errors: &mut Vec<String>) {
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            return self.check(value, self.resolve(reference), at, errors);
        }
        if !self.type_matches(value, schema) {
            errors.push(format!("{at}: {value} is not of type {}", schema["type"]));
            return;
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
            if !allowed.contains(value) {
                errors.push(format!("{at}: {value} is not one of {allowed:?}"));
            }
        }
        if let Some(constant) = schema.get("const") {
            if constant != value {
                errors.push(format!("{at}: {value} is not {constant}"));
            }
        }
        self.check_limits(value, schema, at, errors);
        self.check_combinators(value, schema, at, errors);
        match value {
            Value::Object(object) => {
                for key in schema
                    .get("required")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let key = key.as_str().unwrap_or_default();
                    if !object.contains_key(key) {
                        errors.push(format!("{at}: required property `{key}` is missing"));
                    }
                }
                if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                    for (key, item) in object {
                        if let Some(property) = properties.get(key) {
                            self.check(item, property, &format!("{at}.{key}"), errors);
                        }
                    }
                }
            }
            Value::Array(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.check(item, item_schema, &format!("{at}[{i}]"), errors);
                    }
                }
            }
            _ => {}
        }
    }

    fn type_matches(&self, value: &Value, schema: &Value) -> bool {
        let nullable = schema.get("nullable").and_then(Value::as_bool) == Some(true);
        let types: Vec<&str> = match schema.get("type") {
            None => return true,
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            Some(other) => panic!("{}: unexpected `type` {other}", self.name),
        };
        (nullable && value.is_null())
            || types.iter().any(|t| match *t {
                "string" => value.is_string(),
                "integer" => value.is_i64() || value.is_u64(),
                "number" => value.is_number(),
                "boolean" => value.is_boolean(),
                "object" => value.is_object(),
                "array" => value.is_array(),
                "null" => value.is_null(),
                other => panic!("{}: unknown type {other}", self.name),
            })
    }

    fn check_limits(&self, value: &Value, schema: &Value, at: &str, errors: &mut Vec<String>) {
        let limit = |key: &str| schema.get(key).and_then(Value::as_f64);
        let mut bound = |actual: f64, min: &str, max: &str, what: &str| {
            if let Some(min) = limit(min).filter(|m| actual < *m) {
                errors.push(format!("{at}: {what} {actual} is below {min}"));
            }
            if let Some(max) = limit(max).filter(|m| actual > *m) {
                errors.push(format!("{at}: {what} {actual} is above {max}"));
            }
        };
        match value {
            Value::String(s) => {
                bound(s.chars().count() as f64, "minLength", "maxLength", "length");
            }
            Value::Array(items) => bound(items.len() as f64, "minItems", "maxItems", "size"),
            Value::Number(n) => bound(
                n.as_f64().unwrap_or_default(),
                "minimum",
                "maximum",
                "value",
            ),
            _ => {}
        }
        if let (Some("uri"), Some(text)) =
            (schema.get("format").and_then(Value::as_str), value.as_str())
        {
            if reqwest::Url::parse(text).is_err() {
                errors.push(format!("{at}: `{text}` is not a URI"));
            }
        }
    }

    fn check_combinators(&self, value: &Value, schema: &Value, at: &str, errors: &mut Vec<String>) {
        let branches = |key: &str| schema.get(key).and_then(Value::as_array);
        let passing = |list: &Vec<Value>| {
            list.iter()
                .filter(|branch| self.violations(value, branch).is_empty())
                .count()
        };
        if let Some(list) = branches("oneOf") {
            let n = passing(list);
            if n != 1 {
                errors.push(format!(
                    "{at}: matches {n} of the oneOf branches, not exactly one"
                ));
            }
        }
        if let Some(list) = branches("anyOf") {
            if passing(list) == 0 {
                errors.push(format!("{at}: matches none of the anyOf branches"));
            }
        }
        for branch in branches("allOf").into_iter().flatten() {
            self.check(value, branch, at, errors);
        }
    }
}
