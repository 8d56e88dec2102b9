package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// A document laid out as protoc-gen-openapiv2 writes one: Request only in
// a request, Shared in both, Reply only in a response.
const sample = `{
  "swagger": "2.0",
  "paths": {
    "/v1/x": {
      "post": {
        "parameters": [
          {
            "name": "body",
            "in": "body",
            "schema": {
              "$ref": "#/definitions/Request"
            }
          }
        ],
        "responses": {
          "200": {
            "schema": {
              "$ref": "#/definitions/Reply"
            }
          }
        }
      }
    }
  },
  "definitions": {
    "Color": {
      "type": "string",
      "enum": [
        "RED"
      ]
    },
    "Empty": {
      "type": "object"
    },
    "Reply": {
      "type": "object",
      "properties": {
        "shared": {
          "$ref": "#/definitions/Shared"
        }
      }
    },
    "Request": {
      "type": "object",
      "properties": {
        "a\u003cb": {
          "type": "string",
          "description": "caf\u00e9 \u0026 co"
        },
        "color": {
          "$ref": "#/definitions/Color"
        },
        "empty": {
          "$ref": "#/definitions/Empty"
        },
        "shared": {
          "$ref": "#/definitions/Shared"
        }
      },
      "required": [
        "a\u003cb"
      ]
    },
    "Shared": {
      "type": "object",
      "properties": {}
    }
  }
}
`

func TestCloseRequestSchemas(t *testing.T) {
	got, err := closeRequestSchemas([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	// Only the two lines added, after "properties" (or "type"), nothing
	// else of the layout changed.
	want := strings.Replace(sample, `    "Empty": {
      "type": "object"
    },`, `    "Empty": {
      "type": "object",
      "additionalProperties": false
    },`, 1)
	want = strings.Replace(want, `          "$ref": "#/definitions/Shared"
        }
      },
      "required"`, `          "$ref": "#/definitions/Shared"
        }
      },
      "additionalProperties": false,
      "required"`, 1)
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestCloseRequestSchemasRefusesAnAdditionalPropertiesAlreadySet(t *testing.T) {
	doc := strings.Replace(sample, `    "Empty": {
      "type": "object"`, `    "Empty": {
      "type": "object",
      "additionalProperties": {}`, 1)
	if _, err := closeRequestSchemas([]byte(doc)); err == nil {
		t.Error("an additionalProperties already set was overwritten, want an error")
	}
}

// TestGeneratedFileIsClosed: the committed description went through the
// wrapper: taking the additions out gives protoc-gen-openapiv2's layout
// back byte for byte, and the wrapper adds nothing more to it.
func TestGeneratedFileIsClosed(t *testing.T) {
	raw, err := os.ReadFile("../../gen/openapiv2/backup/v1/backup_service.swagger.json")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := closeRequestSchemas(raw); err == nil || !strings.Contains(err.Error(), "already has additionalProperties") {
		t.Fatalf("closing the committed description again: %v, want it refused as already closed", err)
	}
	open := bytes.ReplaceAll(raw, []byte("      \"additionalProperties\": false,\n"), nil)
	again, err := closeRequestSchemas(open)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, raw) {
		t.Error("closing the description without its additionalProperties does not give the committed file back")
	}
	var doc struct{ Definitions map[string]map[string]any }
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Definitions["BackupServiceCreateBackupBody"]["additionalProperties"] != false {
		t.Error("BackupServiceCreateBackupBody is not closed")
	}
}
