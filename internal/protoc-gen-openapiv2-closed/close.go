package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/backupd/backupd/internal/openapiuse"
)

// closeRequestSchemas adds "additionalProperties": false to each object
// definition of the OpenAPI v2 document doc that the operations' parameters
// reach (through $ref, transitively) and their responses do not. It keeps
// the order of every key and the generator's layout (two-space indent,
// its escapes), so that nothing else in the file changes.
func closeRequestSchemas(doc []byte) ([]byte, error) {
	var parsed struct{ Definitions map[string]any }
	if err := json.Unmarshal(doc, &parsed); err != nil {
		return nil, err
	}
	uses, err := openapiuse.Of(doc)
	if err != nil {
		return nil, err
	}
	inRequests, inResponses := uses.Requests, uses.Responses
	toClose := map[string]bool{}
	for name := range inRequests {
		def, _ := parsed.Definitions[name].(map[string]any)
		if !inResponses[name] && def["type"] == "object" {
			if _, set := def["additionalProperties"]; set {
				return nil, fmt.Errorf("definition %s already has additionalProperties", name)
			}
			toClose[name] = true
		}
	}

	top, err := readObject(doc)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(top, func(m member) bool { return m.key == "definitions" })
	if i < 0 {
		return doc, nil
	}
	defs, err := readObject(top[i].value)
	if err != nil {
		return nil, err
	}
	for j, d := range defs {
		if !toClose[d.key] {
			continue
		}
		members, err := readObject(d.value)
		if err != nil {
			return nil, err
		}
		// After "properties" (or "type" when there are none), where JSON
		// Schema readers look for it.
		at := slices.IndexFunc(members, func(m member) bool { return m.key == "properties" })
		if at < 0 {
			at = slices.IndexFunc(members, func(m member) bool { return m.key == "type" })
		}
		members = slices.Insert(members, at+1, member{key: "additionalProperties", value: json.RawMessage("false")})
		defs[j].value = writeObject(members)
	}
	top[i].value = writeObject(defs)

	var out bytes.Buffer
	if err := json.Indent(&out, writeObject(top), "", "  "); err != nil {
		return nil, err
	}
	// The generator's encoder ends the file with a newline.
	out.Write(doc[len(bytes.TrimRight(doc, " \t\r\n")):])
	return out.Bytes(), nil
}

type member struct {
	key   string
	value json.RawMessage
}

// readObject reads a JSON object's members in their order, each value as
// it is written.
func readObject(b []byte) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	var members []member
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		var m member
		m.key = tok.(string)
		if err := dec.Decode(&m.value); err != nil {
			return nil, err
		}
		members = append(members, m)
	}
	return members, nil
}

// writeObject writes members back as one JSON object; json.Indent lays
// it out afterwards.
func writeObject(members []member) []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range members {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(m.key)
		b.Write(k)
		b.WriteByte(':')
		b.Write(m.value)
	}
	b.WriteByte('}')
	return b.Bytes()
}
