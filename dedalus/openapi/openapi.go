// Package openapi carries the Dedalus Machines API contract inside the
// repository: the provider's published OpenAPI document, unchanged, and
// Drydock's marked local patch (see README.md here for where they come from).
// Only test support (internal/testing/apispec) imports it.
package openapi

import _ "embed"

// Published is the provider's OpenAPI 3.1 document, byte for byte as published.
//
//go:embed machines-openapi.json
var Published []byte

// LocalPatch is an RFC 7396 JSON Merge Patch that adds the fields the
// official SDKs use but the published document lacks (autosleep,
// autosleep_seconds). Each added property is marked "x-drydock-local-patch".
//
//go:embed local-patch.json
var LocalPatch []byte

// PublishedSHA256 is the checksum README.md records for Published.
const PublishedSHA256 = "ca44d567f405d795589983d1c52e5238fb23bbf607331c69cbef02a8f24dc412"
