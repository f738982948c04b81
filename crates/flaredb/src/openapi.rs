//! The OpenAPI document of the public API, served at `/v1/openapi.json`.

/// OpenAPI 3.0 description of `/v1/...`.
pub const DOCUMENT: &str = r##"{
  "openapi": "3.0.3",
  "info": {"title": "flaredb", "version": "1",
    "description": "flaredb's region API. Keys and values are base64. Requests name the region (and the descriptor version the client routed with); a node answers 421 with code not_leader, region_not_found, stale_region or key_not_in_region when the client must refresh its region map (GET /v1/regions) and retry. 409 carries transaction errors (key_is_locked, write_conflict, txn_aborted, already_committed inside code=mvcc). The Rust client (ultracloud_flaredb::client) does routing, retries and transactions."},
  "paths": {
    "/v1/regions": {"get": {"summary": "The region map: descriptors, leaders, nodes", "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RegionsResponse"}}}}}}},
    "/v1/ts": {"get": {"summary": "Timestamps from the oracle", "parameters": [{"name": "count", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100000}}], "responses": {"200": {"description": "the first reserved timestamp", "content": {"application/json": {"schema": {"type": "object", "properties": {"ts": {"type": "integer", "format": "uint64"}}}}}}}}},
    "/v1/status": {"get": {"summary": "This node and its replicas", "responses": {"200": {"description": "ok"}}}},
    "/v1/split": {"post": {"summary": "Split a region (on its leader)", "requestBody": {"content": {"application/json": {"schema": {"type": "object", "required": ["region"], "properties": {"region": {"type": "integer"}, "key": {"$ref": "#/components/schemas/Bytes"}}}}}}, "responses": {"200": {"description": "the new region's id"}}}},
    "/v1/region/get": {"post": {"summary": "Read a key (latest when ts is omitted, else the snapshot at ts)", "requestBody": {"content": {"application/json": {"schema": {"allOf": [{"$ref": "#/components/schemas/Route"}, {"type": "object", "required": ["key"], "properties": {"key": {"$ref": "#/components/schemas/Bytes"}, "ts": {"type": "integer"}}}]}}}}, "responses": {"200": {"description": "value or null", "content": {"application/json": {"schema": {"type": "object", "properties": {"value": {"$ref": "#/components/schemas/Bytes"}}}}}}, "default": {"$ref": "#/components/responses/Error"}}}},
    "/v1/region/scan": {"post": {"summary": "Scan [start, end) inside one region, forward or reverse, with a limit", "requestBody": {"content": {"application/json": {"schema": {"allOf": [{"$ref": "#/components/schemas/Route"}, {"type": "object", "required": ["start"], "properties": {"start": {"$ref": "#/components/schemas/Bytes"}, "end": {"$ref": "#/components/schemas/Bytes"}, "ts": {"type": "integer"}, "limit": {"type": "integer"}, "reverse": {"type": "boolean"}}}]}}}}, "responses": {"200": {"description": "pairs", "content": {"application/json": {"schema": {"type": "object", "properties": {"pairs": {"type": "array", "items": {"$ref": "#/components/schemas/Pair"}}, "more": {"type": "boolean", "description": "the answer reached a bound; scan again past the last key"}}}}}}, "default": {"$ref": "#/components/responses/Error"}}}},
    "/v1/region/write": {"post": {"summary": "One-phase single-key write: put, delete, cas, increment", "requestBody": {"content": {"application/json": {"schema": {"allOf": [{"$ref": "#/components/schemas/Route"}, {"type": "object", "required": ["op"], "properties": {"op": {"$ref": "#/components/schemas/OnePc"}}}]}}}}, "responses": {"200": {"description": "succeeded (false: cas failed) and value (increment: new value; failed cas: current value)"}, "default": {"$ref": "#/components/responses/Error"}}}},
    "/v1/region/prewrite": {"post": {"summary": "Percolator phase one for the transaction's keys in this region", "requestBody": {"content": {"application/json": {"schema": {"allOf": [{"$ref": "#/components/schemas/Route"}, {"type": "object", "required": ["mutations", "primary", "start_ts", "ttl_ms"], "properties": {"mutations": {"type": "array", "items": {"type": "object", "properties": {"key": {"$ref": "#/components/schemas/Bytes"}, "value": {"$ref": "#/components/schemas/Bytes"}}}}, "primary": {"$ref": "#/components/schemas/Bytes"}, "start_ts": {"type": "integer"}, "ttl_ms": {"type": "integer"}}}]}}}}, "responses": {"200": {"description": "locked"}, "default": {"$ref": "#/components/responses/Error"}}}},
    "/v1/region/commit": {"post": {"summary": "Percolator phase two", "requestBody": {"content": {"application/json": {"schema": {"allOf": [{"$ref": "#/components/schemas/Route"}, {"type": "object", "required": ["keys", "start_ts", "commit_ts"], "properties": {"keys": {"type": "array", "items": {"$ref": "#/components/schemas/Bytes"}}, "start_ts": {"type": "integer"}, "commit_ts": {"type": "integer"}}}]}}}}, "responses": {"200": {"description": "committed"}, "default": {"$ref": "#/components/responses/Error"}}}},
    "/v1/region/rollback": {"post": {"summary": "Roll back a transaction's locks", "responses": {"200": {"description": "rolled back"}, "default": {"$ref": "#/components/responses/Error"}}}},
    "/v1/region/check_txn_status": {"post": {"summary": "A transaction's fate from its primary key (rolls back expired locks)", "responses": {"200": {"description": "status: Locked{ttl_ms} | Committed{commit_ts} | RolledBack"}, "default": {"$ref": "#/components/responses/Error"}}}},
    "/v1/region/resolve_lock": {"post": {"summary": "Commit (commit_ts) or roll back (null) every lock of a transaction in this region", "responses": {"200": {"description": "resolved count"}, "default": {"$ref": "#/components/responses/Error"}}}}
  },
  "components": {
    "schemas": {
      "Bytes": {"type": "string", "format": "byte"},
      "Route": {"type": "object", "required": ["region"], "properties": {"region": {"type": "integer"}, "version": {"type": "integer"}}},
      "Pair": {"type": "object", "properties": {"key": {"$ref": "#/components/schemas/Bytes"}, "value": {"$ref": "#/components/schemas/Bytes"}}},
      "OnePc": {"type": "object", "required": ["type", "key"], "properties": {"type": {"type": "string", "enum": ["put", "delete", "cas", "increment"]}, "key": {"$ref": "#/components/schemas/Bytes"}, "value": {"$ref": "#/components/schemas/Bytes"}, "expected": {"$ref": "#/components/schemas/Bytes"}, "new": {"$ref": "#/components/schemas/Bytes"}, "delta": {"type": "integer"}}},
      "RegionsResponse": {"type": "object", "properties": {"regions": {"type": "array", "items": {"type": "object"}}, "nodes": {"type": "array", "items": {"type": "object"}}}},
      "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {"code": {"type": "string"}}}, "message": {"type": "string"}}}
    },
    "responses": {"Error": {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}
  }
}"##;

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_is_valid_json() {
        let v: serde_json::Value = serde_json::from_str(super::DOCUMENT).unwrap();
        assert_eq!(v["openapi"], "3.0.3");
    }
}
