// Package docs holds the documents the dispatcher serves or checks itself
// against: the OpenAPI description of its HTTP API and the JSON Schema of a
// reminder intent.
package docs

import "embed"

// FS holds openapi.yaml (served at GET /openapi.yaml) and
// intent.schema.json.
//
//go:embed openapi.yaml intent.schema.json
var FS embed.FS
