//! A service's OpenAPI document from its route table: tenant routes under
//! `/v1/tenants/{tenant}/projects/{project}` and platform routes, each with the iam action it
//! needs, bearer authentication and the one error shape.

use serde_json::{Value, json};

/// The prefix of every tenant route.
pub const PROJECT_PREFIX: &str = "/v1/tenants/{tenant}/projects/{project}";

/// An OpenAPI document for a service with tenant routes under
/// `/v1/tenants/{tenant}/projects/{project}` (`project`: method, path suffix, summary, iam
/// action) and platform routes (`platform`: method, full path, summary, iam action).
pub fn build(
    title: &str,
    description: &str,
    project: &[(&str, &str, &str, &str)],
    platform: &[(&str, &str, &str, &str)],
) -> Value {
    let mut paths = serde_json::Map::new();
    let mut add = |method: &str, path: String, summary: &str, needs: String| {
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .map(|n| json!({"name": n, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let op = json!({
            "summary": summary,
            "description": needs,
            "security": [{"bearer": []}],
            "parameters": params,
            "responses": {"200": {"description": "ok"}, "default": {"description": "error {\"error\": {code, message}}"}}
        });
        paths.entry(path).or_insert_with(|| json!({}))[method] = op;
    };
    for (m, suffix, summary, action) in project {
        add(m, format!("{PROJECT_PREFIX}{suffix}"), summary, format!("Needs `{action}` in the project."));
    }
    for (m, path, summary, action) in platform {
        add(m, (*path).to_owned(), summary, format!("Needs `{action}` platform-wide (service accounts)."));
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": title, "version": "1", "description": description},
        "paths": Value::Object(paths),
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}}
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn tenant_and_platform_routes_with_their_parameters_and_actions() {
        let d = super::build(
            "svc",
            "desc",
            &[("get", "/things/{id}", "A thing", "svc.thing.read")],
            &[("get", "/v1/watch", "Long poll", "svc.thing.read")],
        );
        let op = &d["paths"]["/v1/tenants/{tenant}/projects/{project}/things/{id}"]["get"];
        let params: Vec<&str> =
            op["parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(params, ["tenant", "project", "id"]);
        assert!(op["description"].as_str().unwrap().contains("svc.thing.read"));
        assert!(d["paths"]["/v1/watch"]["get"]["description"].as_str().unwrap().contains("platform-wide"));
    }
}
