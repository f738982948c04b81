//! How every resource command prints: `-o table` (columns, kubectl style), `-o json` or
//! `-o yaml` (the API's answer as it is, for programs). Tables are drawn by `comfy-table`;
//! a column is a field of the resource's JSON form, so one list of field names serves every
//! kind.

use comfy_table::{ContentArrangement, Table, TableStyle};
use serde::Serialize;
use serde_json::Value;

/// The output format of a resource command.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Aligned columns (a resource: FIELD and VALUE).
    #[default]
    Table,
    /// JSON, as the API answers.
    Json,
    /// YAML.
    Yaml,
}

impl Output {
    /// `-o`, unless the older `--json` flag was given.
    pub fn or_json(self, json: bool) -> Self {
        if json { Self::Json } else { self }
    }

    /// Prints `items` as rows of `fields` (or whole, as JSON or YAML).
    pub fn list<T: Serialize>(self, items: &[T], fields: &[&str]) {
        match self {
            Self::Table => {
                let rows: Vec<Vec<String>> = items
                    .iter()
                    .map(|i| {
                        let v = serde_json::to_value(i).unwrap_or(Value::Null);
                        fields.iter().map(|f| if *f == "scope" { scope(&v[*f]) } else { field(&v, f) }).collect()
                    })
                    .collect();
                let headers: Vec<String> = fields.iter().map(|f| header(f)).collect();
                print(&headers, &rows);
            }
            other => other.whole(&items),
        }
    }

    /// Prints one resource: a FIELD/VALUE table of its top-level fields, or whole.
    pub fn one<T: Serialize>(self, item: &T) {
        match self {
            Self::Table => {
                let v = serde_json::to_value(item).unwrap_or(Value::Null);
                let rows: Vec<Vec<String>> = v
                    .as_object()
                    .map(|o| o.iter().map(|(k, v)| vec![k.clone(), cell(v)]).collect())
                    .unwrap_or_default();
                print(&["FIELD", "VALUE"], &rows);
            }
            other => other.whole(item),
        }
    }

    fn whole<T: Serialize + ?Sized>(self, v: &T) {
        let text = match self {
            Self::Yaml => serde_norway::to_string(v).unwrap_or_default(),
            _ => serde_json::to_string_pretty(v).map(|t| t + "\n").unwrap_or_default(),
        };
        print!("{text}");
    }
}

/// A column's header: the field's last part, upper case (`meta.labels` → `LABELS`).
fn header(field: &str) -> String {
    field.rsplit('.').next().unwrap_or(field).to_uppercase()
}

/// A field of `v` by a dotted path (`status.state`, `meta.labels`).
fn field(v: &Value, path: &str) -> String {
    cell(path.split('.').fold(v, |v, k| &v[k]))
}

/// Prints `rows` under `headers`, each column as wide as its widest cell, no borders.
pub fn print<H: AsRef<str>>(headers: &[H], rows: &[Vec<String>]) {
    let mut table = Table::new();
    table.load_style(TableStyle::new()).set_content_arrangement(ContentArrangement::Disabled);
    table.set_header(headers.iter().map(AsRef::as_ref));
    for row in rows {
        table.add_row(row);
    }
    // comfy-table pads every cell by one space each side; trim the line ends it leaves.
    for line in table.to_string().lines() {
        println!("{}", line.trim_end().strip_prefix(' ').unwrap_or(line.trim_end()));
    }
}

/// A JSON field as a cell: strings bare, null (and empty maps) as `-`, arrays of strings
/// comma-separated, label maps as `k=v,…`, everything else as JSON.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "-".into(),
        Value::Array(a) if a.iter().all(Value::is_string) => {
            a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(",")
        }
        Value::Object(o) if o.is_empty() => "-".into(),
        Value::Object(o) if o.values().all(Value::is_string) => {
            o.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(",")
        }
        other => other.to_string(),
    }
}

/// A scope (`{"kind": "project", …}`) as `tenant/project`, `tenant` or `system`.
pub fn scope(v: &Value) -> String {
    match v["kind"].as_str() {
        Some("project") => format!("{}/{}", cell(&v["tenant"]), cell(&v["project"])),
        Some("tenant") => cell(&v["tenant"]),
        _ => "system".into(),
    }
}
