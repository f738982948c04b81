//! The OpenAPI document of iam's API, served at `/v1/openapi.json`.

use axum::Json;
use serde_json::{Value, json};

/// Every operation: method, path, summary, whether it needs a bearer token, request schema.
const OPERATIONS: &[(&str, &str, &str, bool, Option<&str>)] = &[
    (
        "post",
        "/v1/auth/token",
        "Issue an access and a refresh token (password, API key or refresh-token grant); 429 with Retry-After when throttled",
        false,
        Some("TokenRequest"),
    ),
    (
        "post",
        "/v1/auth/logout",
        "Revoke the presented access token and, if given, its refresh token",
        true,
        Some("LogoutRequest"),
    ),
    ("get", "/v1/auth/whoami", "The caller's claims and bindings", true, None),
    ("get", "/.well-known/jwks.json", "The public signing keys (OKP/Ed25519)", false, None),
    ("get", "/v1/openapi.json", "This document", false, None),
    (
        "post",
        "/v1/authorize",
        "Decide whether a subject may do an action in a scope (own subject, or platform services)",
        true,
        Some("AuthorizeRequest"),
    ),
    ("get", "/v1/permissions", "The action catalogue and the built-in roles", true, None),
    (
        "get",
        "/v1/policy/{subject}",
        "A subject's bindings and the custom roles they name (own subject, or platform services)",
        true,
        None,
    ),
    ("get", "/v1/revocations", "Revocations in force (platform services)", true, None),
    (
        "get",
        "/v1/watch",
        "Long poll: answers when the authorization version differs from ?after= (or after 15 s)",
        true,
        None,
    ),
    ("post", "/v1/roles", "Create a custom role (tenant-owned when tenant is set)", true, Some("Role")),
    ("get", "/v1/roles", "List custom roles the caller may see (paginated)", true, None),
    ("get", "/v1/roles/{name}", "A built-in or custom role", true, None),
    ("put", "/v1/roles/{name}", "Replace a custom role's permissions", true, Some("Role")),
    ("delete", "/v1/roles/{name}", "Delete a custom role (409 while bound)", true, None),
    ("post", "/v1/bindings", "Grant a role to a subject at a scope", true, Some("Binding")),
    ("get", "/v1/bindings", "List bindings the caller may see (?subject=)", true, None),
    ("delete", "/v1/bindings/{subject}/{id}", "Remove a binding", true, None),
    ("post", "/v1/tenants", "Create a tenant (system admins)", true, Some("Tenant")),
    ("get", "/v1/tenants", "List tenants the caller may read (paginated)", true, None),
    ("get", "/v1/tenants/{tenant}", "A tenant", true, None),
    (
        "delete",
        "/v1/tenants/{tenant}",
        "Delete an empty tenant (409 while it has projects, users or service accounts)",
        true,
        None,
    ),
    ("post", "/v1/tenants/{tenant}/projects", "Create a project", true, Some("NewProject")),
    ("get", "/v1/tenants/{tenant}/projects", "List the tenant's projects the caller may read (paginated)", true, None),
    ("get", "/v1/tenants/{tenant}/projects/{project}", "A project", true, None),
    ("delete", "/v1/tenants/{tenant}/projects/{project}", "Delete a project", true, None),
    ("post", "/v1/users", "Create a user", true, Some("NewUser")),
    ("get", "/v1/users", "List users the caller may see (paginated)", true, None),
    ("get", "/v1/users/{id}", "A user (users may read themselves)", true, None),
    (
        "patch",
        "/v1/users/{id}",
        "Disable/enable a user or set a password (both revoke the user's tokens)",
        true,
        Some("UserPatch"),
    ),
    ("delete", "/v1/users/{id}", "Delete a user with its keys and bindings; its tokens are revoked", true, None),
    ("post", "/v1/service-accounts", "Create a service account", true, Some("ServiceAccount")),
    ("get", "/v1/service-accounts", "List service accounts the caller may see (paginated)", true, None),
    ("get", "/v1/service-accounts/{id}", "A service account", true, None),
    ("delete", "/v1/service-accounts/{id}", "Delete a service account with its keys and bindings", true, None),
    (
        "post",
        "/v1/api-keys",
        "Create an API key for the caller or (with iam.api_key.create) another subject; the key is shown once",
        true,
        Some("NewKey"),
    ),
    ("get", "/v1/api-keys", "List API keys of ?owner= (default: the caller), never the keys themselves", true, None),
    ("delete", "/v1/api-keys/{id}", "Delete an API key; tokens issued for it are revoked", true, None),
    (
        "post",
        "/v1/tenants/{tenant}/projects/{project}/s3-credentials",
        "Create an S3 access key pair bound to the project (the secret is in this answer only)",
        true,
        Some("NewS3Credential"),
    ),
    (
        "get",
        "/v1/tenants/{tenant}/projects/{project}/s3-credentials",
        "List a project's S3 credentials, never secrets",
        true,
        None,
    ),
    (
        "delete",
        "/v1/tenants/{tenant}/projects/{project}/s3-credentials/{id}",
        "Delete an S3 credential (gateways stop accepting it within seconds)",
        true,
        None,
    ),
    (
        "get",
        "/v1/s3-credentials/{id}",
        "An access key's secret and project, and whether its creator may still write (read_only) or act at all (403 when not) there (S3 gateways only: platform.s3_credential.resolve)",
        true,
        None,
    ),
];

fn schemas() -> Value {
    let scope = json!({"type": "object", "required": ["kind"], "properties": {
        "kind": {"type": "string", "enum": ["system", "tenant", "project"]},
        "tenant": {"type": "string"}, "project": {"type": "string"}}});
    json!({
        "Scope": scope,
        "TokenRequest": {"type": "object", "required": ["grant_type"], "properties": {
            "grant_type": {"type": "string", "enum": ["password", "api_key", "refresh_token"]},
            "username": {"type": "string"}, "password": {"type": "string", "format": "password"},
            "api_key": {"type": "string", "format": "password"}, "refresh_token": {"type": "string", "format": "password"}}},
        "Issued": {"type": "object", "properties": {
            "access_token": {"type": "string"}, "token_type": {"type": "string"}, "expires_in": {"type": "integer"},
            "refresh_token": {"type": "string"}, "refresh_expires_in": {"type": "integer"}}},
        "LogoutRequest": {"type": "object", "properties": {"refresh_token": {"type": "string"}}},
        "AuthorizeRequest": {"type": "object", "required": ["subject", "action", "scope"], "properties": {
            "subject": {"type": "string", "example": "user:alice"}, "action": {"type": "string", "example": "compute.vm.create"},
            "scope": {"$ref": "#/components/schemas/Scope"}}},
        "Decision": {"type": "object", "properties": {"allowed": {"type": "boolean"}, "reason": {"type": "string"}}},
        "Role": {"type": "object", "required": ["name", "permissions"], "properties": {
            "name": {"type": "string"}, "permissions": {"type": "array", "items": {"type": "string"}},
            "tenant": {"type": "string"}}},
        "Binding": {"type": "object", "required": ["subject", "role", "scope"], "properties": {
            "subject": {"type": "string"}, "role": {"type": "string"}, "scope": {"$ref": "#/components/schemas/Scope"}}},
        "Tenant": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}, "display_name": {"type": "string"}}},
        "NewProject": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}},
        "NewUser": {"type": "object", "required": ["name", "password"], "properties": {
            "name": {"type": "string"}, "tenant": {"type": "string"}, "password": {"type": "string", "format": "password", "minLength": 12}}},
        "UserPatch": {"type": "object", "properties": {"disabled": {"type": "boolean"}, "password": {"type": "string", "format": "password"}}},
        "ServiceAccount": {"type": "object", "required": ["id"], "properties": {
            "id": {"type": "string"}, "tenant": {"type": "string"}, "description": {"type": "string"}}},
        "NewKey": {"type": "object", "properties": {
            "owner": {"type": "string"}, "description": {"type": "string"}, "expires_in": {"type": "integer"}}},
        "NewS3Credential": {"type": "object", "properties": {"description": {"type": "string", "maxLength": 256}}},
        "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
            "code": {"type": "string"}, "message": {"type": "string"}}}}}
    })
}

/// The document.
pub fn build() -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path, summary, auth, body) in OPERATIONS {
        let mut op = json!({
            "summary": summary,
            "responses": {"200": {"description": "ok"}, "default": {"description": "error",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}
        });
        if *auth {
            op["security"] = json!([{"bearer": []}]);
        }
        if let Some(schema) = body {
            op["requestBody"] = json!({"required": true, "content": {"application/json":
                {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
        }
        if path.contains('{') {
            let params: Vec<Value> = path
                .split('/')
                .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
                .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
                .collect();
            op["parameters"] = Value::Array(params);
        }
        let entry = paths.entry((*path).to_owned()).or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "iam", "version": "1", "description": "UltraCloud identity, tenancy and authorization. Lists take ?limit= (1-1000, default 100) and ?page_token= (the previous page's next_page_token); a page may hold fewer items than the limit because it only shows what the caller may see. Errors are {\"error\": {\"code\", \"message\"}}."},
        "paths": Value::Object(paths),
        "components": {
            "schemas": schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
        }
    })
}

pub(super) async fn document() -> Json<Value> {
    Json(build())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_operation_is_documented_once_with_known_schemas() {
        let doc = super::build();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let mut count = 0;
        for (_, item) in doc["paths"].as_object().unwrap() {
            for (_, op) in item.as_object().unwrap() {
                count += 1;
                if let Some(r) = op["requestBody"]["content"]["application/json"]["schema"]["$ref"].as_str() {
                    assert!(schemas.contains_key(r.rsplit('/').next().unwrap()), "{r}");
                }
            }
        }
        assert_eq!(count, super::OPERATIONS.len());
    }
}
