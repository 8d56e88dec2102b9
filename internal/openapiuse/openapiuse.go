// Package openapiuse tells which definitions of an OpenAPI v2 document its
// requests use and which its responses do: the wrapper of
// protoc-gen-openapiv2 closes the schemas only requests use, and the
// REST tests check the description against the gateway by the same
// reading.
package openapiuse

import (
	"encoding/json"
	"strings"
)

// Uses are the names of the definitions an OpenAPI v2 document's
// operations reach through $ref, transitively: from their parameters
// (Requests) and from their responses (Responses).
type Uses struct {
	Requests, Responses map[string]bool
}

// Of reads doc, an OpenAPI v2 document in JSON.
func Of(doc []byte) (Uses, error) {
	var parsed struct {
		Paths       map[string]map[string]struct{ Parameters, Responses any }
		Definitions map[string]any
	}
	if err := json.Unmarshal(doc, &parsed); err != nil {
		return Uses{}, err
	}
	var params, responses []any
	for _, verbs := range parsed.Paths {
		for _, op := range verbs {
			params = append(params, op.Parameters)
			responses = append(responses, op.Responses)
		}
	}
	return Uses{Requests: reach(parsed.Definitions, params), Responses: reach(parsed.Definitions, responses)}, nil
}

// reach returns the definitions that roots refer to, and those they in
// turn refer to.
func reach(defs map[string]any, roots []any) map[string]bool {
	seen := map[string]bool{}
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if ref, ok := x.(string); ok && k == "$ref" {
					if name, ok := strings.CutPrefix(ref, "#/definitions/"); ok && !seen[name] {
						seen[name] = true
						walk(defs[name])
					}
					continue
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	for _, r := range roots {
		walk(r)
	}
	return seen
}
