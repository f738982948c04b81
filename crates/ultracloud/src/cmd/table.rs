//! Plain-text tables for the CLI: columns padded to their widest cell.

use serde_json::Value;

/// Prints `rows` under `headers`, each column as wide as its widest cell.
pub fn print(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// A JSON field as a cell: strings bare, null as `-`, everything else as JSON.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
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

/// Prints items as a table of `fields` (or as JSON).
pub fn items(json: bool, items: &[Value], fields: &[&str]) {
    if json {
        println!("{}", serde_json::to_string_pretty(items).unwrap_or_default());
        return;
    }
    let headers: Vec<String> = fields.iter().map(|f| f.to_uppercase()).collect();
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| fields.iter().map(|f| if *f == "scope" { scope(&i[*f]) } else { cell(&i[*f]) }).collect())
        .collect();
    print(&headers.iter().map(String::as_str).collect::<Vec<_>>(), &rows);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn cells_and_scopes() {
        assert_eq!(super::cell(&json!(null)), "-");
        assert_eq!(super::cell(&json!("a")), "a");
        assert_eq!(super::cell(&json!(true)), "true");
        assert_eq!(super::scope(&json!({"kind": "project", "tenant": "t", "project": "p"})), "t/p");
        assert_eq!(super::scope(&json!({"kind": "system"})), "system");
    }
}
