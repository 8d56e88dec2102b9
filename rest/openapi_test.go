package rest

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/internal/openapiuse"
	"github.com/backupd/backupd/rpcerror"
)

// The OpenAPI description REST clients are generated from: it must say
// what the gateway really asks and answers.
const openapiFile = "../gen/openapiv2/backup/v1/backup_service.swagger.json"

type openapiSpec struct {
	Info struct {
		Title, Version, Description string
	}
	SecurityDefinitions map[string]struct {
		Type, In, Name string
	}
	Security    []map[string][]string
	Paths       map[string]map[string]openapiOperation
	Definitions map[string]openapiSchema
}

type openapiOperation struct {
	OperationID string                 `json:"operationId"`
	Security    *[]map[string][]string `json:"security"`
	Parameters  []openapiParameter
	Responses   map[string]struct {
		Description string
		Schema      *openapiSchema
		Headers     map[string]struct{ Type, Description string }
	}
}

type openapiParameter struct {
	Name, In, Description, Pattern, Type string
	Required                             bool
	Schema                               *openapiSchema
}

type openapiSchema struct {
	Ref        string `json:"$ref"`
	Required   []string
	Pattern    string
	MaxLength  int `json:"maxLength"`
	Properties map[string]openapiSchema
}

func loadOpenAPI(t *testing.T) openapiSpec {
	t.Helper()
	raw, err := os.ReadFile(openapiFile)
	if err != nil {
		t.Fatal(err)
	}
	var spec openapiSpec
	if err := json.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	return spec
}

// operations finds each BackupService method's operation, by the
// operationId protoc-gen-openapiv2 gives it, and fails when one is missing.
func (s openapiSpec) operations(t *testing.T) map[string]openapiOperation {
	t.Helper()
	ops := map[string]openapiOperation{}
	for _, verbs := range s.Paths {
		for _, op := range verbs {
			ops[op.OperationID] = op
		}
	}
	out := map[string]openapiOperation{}
	for _, m := range backupv1.BackupService_ServiceDesc.Methods {
		op, ok := ops["BackupService_"+m.MethodName]
		if !ok {
			t.Fatalf("%s: no operation BackupService_%s in %s", m.MethodName, m.MethodName, openapiFile)
		}
		out[m.MethodName] = op
	}
	return out
}

func (s openapiSpec) resolve(t *testing.T, sc openapiSchema) openapiSchema {
	t.Helper()
	if name, ok := strings.CutPrefix(sc.Ref, "#/definitions/"); ok {
		def, found := s.Definitions[name]
		if !found {
			t.Fatalf("$ref %s names no definition", sc.Ref)
		}
		return def
	}
	return sc
}

func (op openapiOperation) param(in, name string) (openapiParameter, bool) {
	i := slices.IndexFunc(op.Parameters, func(p openapiParameter) bool { return p.In == in && p.Name == name })
	if i < 0 {
		return openapiParameter{}, false
	}
	return op.Parameters[i], true
}

// TestOpenAPIDeclaresAuth: every BackupService call needs
// "Authorization: Bearer <token>" when callers are configured, so the
// description names the header and applies it to every operation.
func TestOpenAPIDeclaresAuth(t *testing.T) {
	spec := loadOpenAPI(t)
	var bearer []string
	for name, d := range spec.SecurityDefinitions {
		if d.Type == "apiKey" && d.In == "header" && d.Name == "Authorization" {
			bearer = append(bearer, name)
		}
	}
	if len(bearer) != 1 {
		t.Fatalf("securityDefinitions %+v: want one apiKey scheme for the Authorization header", spec.SecurityDefinitions)
	}
	for method, op := range spec.operations(t) {
		security := spec.Security
		if op.Security != nil {
			security = *op.Security
		}
		if !slices.ContainsFunc(security, func(req map[string][]string) bool { _, ok := req[bearer[0]]; return ok }) {
			t.Errorf("%s: security %v does not require %s", method, security, bearer[0])
		}
	}
}

// TestOpenAPIDeclaresErrors: each operation declares the statuses the
// gateway answers it with (README "Errors"), each with the google.rpc.Status
// body, Retry-After where RetryInfo can set it, and a 401's challenge.
func TestOpenAPIDeclaresErrors(t *testing.T) {
	spec := loadOpenAPI(t)
	svc := backupv1.File_backup_v1_backup_service_proto.Services().ByName("BackupService")
	for method, op := range spec.operations(t) {
		want := []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound,
			http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusServiceUnavailable, http.StatusGatewayTimeout}
		if takesBody["/backup.v1.BackupService/"+method] {
			want = append(want, http.StatusRequestEntityTooLarge)
		}
		// A reused request_id is 409, as is a restore's existing table.
		if svc.Methods().ByName(protoreflect.Name(method)).Input().Fields().ByName("request_id") != nil {
			want = append(want, http.StatusConflict)
		}
		for _, code := range want {
			resp, ok := op.Responses[strconv.Itoa(code)]
			switch {
			case !ok:
				t.Errorf("%s: no %d response", method, code)
				continue
			case resp.Schema == nil || resp.Schema.Ref != "#/definitions/rpcStatus":
				t.Errorf("%s: %d response schema %+v, want rpcStatus", method, code, resp.Schema)
			}
			if _, ok := resp.Headers["Www-Authenticate"]; code == http.StatusUnauthorized && !ok {
				t.Errorf("%s: 401 declares no WWW-Authenticate header (headers %+v)", method, resp.Headers)
			}
			if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
				if h, ok := resp.Headers["Retry-After"]; !ok || h.Type != "integer" {
					t.Errorf("%s: %d declares no integer Retry-After header (headers %+v)", method, code, resp.Headers)
				}
			}
		}
		if p, ok := op.param("header", grpcTimeoutHeader); !ok || p.Required || p.Type != "string" {
			t.Errorf("%s: no optional string %s header parameter (%+v)", method, grpcTimeoutHeader, p)
		}
	}
}

// TestOpenAPIDescribes429WithoutRetryAfter: a 429 is not always to be
// retried after Retry-After. DynamoDB's refusal over a standing quota of the
// account (rpcerror.ReasonQuotaExceeded, a restore over the account's tables)
// is RESOURCE_EXHAUSTED without RetryInfo, so without Retry-After: the
// description a client is generated from must say so, as the README's
// "Errors" table does, rather than promise a Retry-After on every 429.
func TestOpenAPIDescribes429WithoutRetryAfter(t *testing.T) {
	spec := loadOpenAPI(t)
	for method, op := range spec.operations(t) {
		resp, ok := op.Responses[strconv.Itoa(http.StatusTooManyRequests)]
		if !ok {
			t.Errorf("%s: no 429 response", method)
			continue
		}
		for _, reason := range []string{"RATE_LIMITED", "DYNAMODB_THROTTLED", rpcerror.ReasonQuotaExceeded} {
			if !strings.Contains(resp.Description, reason) {
				t.Errorf("%s: 429 description does not name %s: %q", method, reason, resp.Description)
			}
		}
		if h := resp.Headers["Retry-After"]; !strings.Contains(h.Description, rpcerror.ReasonQuotaExceeded) {
			t.Errorf("%s: 429 Retry-After description does not say it is absent for %s: %q", method, rpcerror.ReasonQuotaExceeded, h.Description)
		}
	}
}

// TestOpenAPIDeclaresRequestRules: the required body fields, and the
// patterns and limits a generated client can check before sending.
func TestOpenAPIDeclaresRequestRules(t *testing.T) {
	spec := loadOpenAPI(t)
	ops := spec.operations(t)
	body := func(method string) openapiSchema {
		p, ok := ops[method].param("body", "body")
		if !ok || p.Schema == nil {
			t.Fatalf("%s: no body parameter", method)
		}
		return spec.resolve(t, *p.Schema)
	}
	create, restore := body("CreateBackup"), body("RestoreTableFromBackup")
	if !slices.Contains(create.Required, "backupName") {
		t.Errorf("CreateBackup body required %v, want backupName", create.Required)
	}
	if !slices.Contains(restore.Required, "targetTableName") {
		t.Errorf("RestoreTableFromBackup body required %v, want targetTableName", restore.Required)
	}

	matches := func(what, pattern string, good, bad []string) {
		t.Helper()
		re, err := regexp.Compile(pattern)
		if pattern == "" || err != nil {
			t.Errorf("%s: pattern %q (%v)", what, pattern, err)
			return
		}
		for _, v := range good {
			if !re.MatchString(v) {
				t.Errorf("%s: pattern %q refuses %q", what, pattern, v)
			}
		}
		for _, v := range bad {
			if re.MatchString(v) {
				t.Errorf("%s: pattern %q accepts %q", what, pattern, v)
			}
		}
	}
	for _, method := range []string{"CreateBackup", "ListBackups"} {
		p, _ := ops[method].param("path", "accountId")
		matches(method+" accountId", p.Pattern, []string{"111111111111"},
			[]string{"", "11111111111", "1111111111111", "11111111111a", " 111111111111"})
	}
	if got := create.Properties["region"].MaxLength; got != 32 { // awsname.ValidRegion's bound
		t.Errorf("CreateBackup body region maxLength %d, want 32", got)
	}
	names := []string{"abc", "Orders.v2_backup-1", strings.Repeat("a", 255)}
	badNames := []string{"", "ab", strings.Repeat("a", 256), "has space", "sla/sh"}
	matches("backupName", create.Properties["backupName"].Pattern, names, badNames)
	matches("targetTableName", restore.Properties["targetTableName"].Pattern, names, badNames)
	for method, b := range map[string]openapiSchema{"CreateBackup": create, "RestoreTableFromBackup": restore} {
		rid := b.Properties["requestId"]
		if rid.MaxLength != 128 {
			t.Errorf("%s requestId maxLength %d, want 128", method, rid.MaxLength)
		}
		matches(method+" requestId", rid.Pattern, []string{"", "3f2b9c1e-8d4a-4e0b-9a77-1c2d3e4f5a6b", " ~"},
			[]string{"tab\there", "caf\u00e9", "nl\n"})
	}
	// table_name takes a name or a table ARN: no name pattern.
	if p, _ := ops["CreateBackup"].param("path", "tableName"); p.Pattern != "" {
		t.Errorf("CreateBackup tableName has pattern %q, but it may be a table ARN", p.Pattern)
	}
	for _, method := range []string{"GetBackup", "DeleteBackup", "RestoreTableFromBackup"} {
		if p, _ := ops[method].param("path", "backupArn"); !strings.Contains(p.Description, "%2F") {
			t.Errorf("%s backupArn: description %q does not say to escape / as %%2F", method, p.Description)
		}
	}
	if spec.Info.Version != "v1" || strings.HasSuffix(spec.Info.Title, ".proto") {
		t.Errorf("info %+v: want a title and version v1", spec.Info)
	}
}

// TestOpenAPIForGeneratedClients: what clients generated from the
// description need to talk to any backupd. It names no scheme, so a
// client uses the one of the URL it is given (go-swagger picks https when
// both are listed, and then fails on a plaintext backupd such as the
// sandbox). Every field that may be absent is x-nullable, so that
// generators that would make it a plain value (go-swagger's time and
// int64) keep absence apart from zero.
func TestOpenAPIForGeneratedClients(t *testing.T) {
	raw, err := os.ReadFile(openapiFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Schemes     []string
		Definitions map[string]struct {
			Required   []string
			Properties map[string]struct {
				Format   string
				Nullable bool `json:"x-nullable"`
			}
		}
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Schemes != nil {
		t.Errorf("schemes = %q, want none", doc.Schemes)
	}
	nullable := func(def, prop string) {
		t.Helper()
		p, ok := doc.Definitions[def].Properties[prop]
		if !ok {
			t.Errorf("%s.%s: not in the description", def, prop)
		} else if !p.Nullable {
			t.Errorf("%s.%s: not x-nullable", def, prop)
		}
	}
	checked := 0
	var walk func(prefix string, msgs protoreflect.MessageDescriptors)
	walk = func(prefix string, msgs protoreflect.MessageDescriptors) {
		for i := range msgs.Len() {
			m := msgs.Get(i)
			name := prefix + string(m.Name()) // protoc-gen-openapiv2's legacy names
			if _, ok := doc.Definitions[name]; ok {
				for j := range m.Fields().Len() {
					if f := m.Fields().Get(j); f.HasOptionalKeyword() {
						nullable(name, f.JSONName())
						checked++
					}
				}
			}
			walk(name, m.Messages())
		}
	}
	walk("v1", backupv1.File_backup_v1_backup_service_proto.Messages())
	if checked < 4 {
		t.Errorf("%d proto3 optional fields found in the description's definitions, want the sizes and counts (4 or more)", checked)
	}
	// Timestamps: service.ts leaves out any time DynamoDB leaves out (or
	// one a Timestamp cannot hold), so every one that a definition does
	// not list as required may be absent, and go-swagger would make it a
	// strfmt.DateTime that reads as year 1.
	times := 0
	for name, def := range doc.Definitions {
		required := map[string]bool{}
		for _, r := range def.Required {
			required[r] = true
		}
		for prop, p := range def.Properties {
			if p.Format == "date-time" && !required[prop] && !strings.HasPrefix(name, "BackupService") {
				nullable(name, prop)
				times++
			}
		}
	}
	if times < 8 {
		t.Errorf("%d timestamps that may be absent found in the description's definitions, want 8 or more", times)
	}
}

// TestOpenAPIRequiredIsWhatResponsesHold: a response definition lists as
// required exactly the fields an answer always holds: every field without
// presence (strictJSON writes them also when empty), and the ones backupd
// always sets itself; never a field DynamoDB may leave out, or a client
// generated with required fields (pydantic, say) would refuse the answer.
func TestOpenAPIRequiredIsWhatResponsesHold(t *testing.T) {
	spec := loadOpenAPI(t)
	// The service refuses an answer of DynamoDB without the backup, its
	// description or the restored table (service.answerLacks, and
	// GetBackup's own check).
	setByBackupd := map[string]bool{
		"v1CreateBackupResponse.consistency":                true,
		"v1CreateBackupResponse.backupDetails":              true,
		"v1ConsistencyWindow.includesWritesBefore":          true,
		"v1ConsistencyWindow.excludesWritesAfter":           true,
		"v1GetBackupResponse.backupDescription":             true,
		"v1DeleteBackupResponse.backupDescription":          true,
		"v1BackupDescription.backupDetails":                 true,
		"v1RestoreTableFromBackupResponse.tableDescription": true,
	}
	responseOnly := []protoreflect.Message{
		(&backupv1.CreateBackupResponse{}).ProtoReflect(), (&backupv1.ConsistencyWindow{}).ProtoReflect(),
		(&backupv1.GetBackupResponse{}).ProtoReflect(), (&backupv1.RestoreTableFromBackupResponse{}).ProtoReflect(),
		(&backupv1.BackupDetails{}).ProtoReflect(), (&backupv1.ListBackupsResponse{}).ProtoReflect(),
		(&backupv1.BackupSummary{}).ProtoReflect(), (&backupv1.SourceTableDetails{}).ProtoReflect(),
		(&backupv1.SourceTableFeatureDetails{}).ProtoReflect(), (&backupv1.TableDescription{}).ProtoReflect(),
		(&backupv1.RestoreSummary{}).ProtoReflect(), (&backupv1.DeleteBackupResponse{}).ProtoReflect(),
		(&backupv1.BackupDescription{}).ProtoReflect(), (&backupv1.StreamSpecification{}).ProtoReflect(),
		(&backupv1.TimeToLiveDescription{}).ProtoReflect(), (&backupv1.SseDescription{}).ProtoReflect(),
	}
	for _, m := range responseOnly {
		md := m.Descriptor()
		def := "v1" + string(md.Name())
		required := map[string]bool{}
		for _, r := range spec.Definitions[def].Required {
			required[r] = true
		}
		// An empty message as the gateway writes it: what is always there.
		raw, err := newStrictJSON().Marshal(m.Interface())
		if err != nil {
			t.Fatal(err)
		}
		var written map[string]json.RawMessage
		if err := json.Unmarshal(raw, &written); err != nil {
			t.Fatal(err)
		}
		for i := range md.Fields().Len() {
			f := md.Fields().Get(i)
			name := f.JSONName()
			_, always := written[name]
			always = always || setByBackupd[def+"."+name]
			if required[name] != always {
				t.Errorf("%s.%s: required %v in the description, but always in an answer: %v", def, name, required[name], always)
			}
			delete(required, name)
		}
		for r := range required {
			t.Errorf("%s: required %s is not a field", def, r)
		}
	}
}

// TestOpenAPISaysViolationsUseProtoNames: over REST a field violation
// names its field by the proto name (page_size), not by the JSON or query
// name the caller sent (pageSize). A client generated from the description
// knows only the JSON names, so each operation's 400 must say which names
// the violations use, with the names the gateway really writes.
func TestOpenAPISaysViolationsUseProtoNames(t *testing.T) {
	spec := loadOpenAPI(t)
	f := newFixture(t)
	restore := "/v1/backups/" + strings.ReplaceAll(arn, "/", "%2F") + ":restore"
	for _, tt := range []struct {
		method, path, body string
		sent, want         string // the name the request used, and the violation's
	}{
		{"GET", "/v1/accounts/111111111111/backups?pageSize=ten", "", "pageSize", "page_size"},
		{"POST", restore, `{"targetTableName":"Restored","provisionedThroughputOverride":{"readCapacityUnits":"x"}}`,
			"provisionedThroughputOverride.readCapacityUnits", "provisioned_throughput_override.read_capacity_units"},
	} {
		var body io.Reader
		if tt.body != "" {
			body = strings.NewReader(tt.body)
		}
		resp, raw := f.do(t, tt.method, tt.path, body)
		var st restStatus
		if err := json.Unmarshal(raw, &st); err != nil || resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("%s %s: %d %s (%v), want a 400 status", tt.method, tt.path, resp.StatusCode, raw, err)
		}
		var fields []string
		for _, d := range st.Details {
			for _, v := range d.FieldViolations {
				fields = append(fields, v.Field)
			}
		}
		if !slices.Contains(fields, tt.want) {
			t.Fatalf("%s %s: violations of %q, want one of %q (for %q)", tt.method, tt.path, fields, tt.want, tt.sent)
		}
		for method, op := range spec.operations(t) {
			d := op.Responses[strconv.Itoa(http.StatusBadRequest)].Description
			if !strings.Contains(d, "proto name") || !strings.Contains(d, "`"+tt.want+"`") || !strings.Contains(d, "`"+tt.sent+"`") {
				t.Errorf("%s: 400 description does not say that violations name fields by their proto names (`%s` for `%s`): %q",
					method, tt.want, tt.sent, d)
			}
		}
	}
}

// TestOpenAPISaysUnknownFieldsAreNamedAsSent: a field the request does
// not take has no proto name: its violation names it as it was sent, and
// the message lists the fields taken by their JSON names, which each
// operation's 400 must say beside the proto names of the others.
func TestOpenAPISaysUnknownFieldsAreNamedAsSent(t *testing.T) {
	spec := loadOpenAPI(t)
	f := newFixture(t)
	resp, raw := f.do(t, "GET", "/v1/accounts/111111111111/backups?pageSise=10", nil)
	var st restStatus
	if err := json.Unmarshal(raw, &st); err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("an unknown query parameter: %d %s (%v), want a 400 status", resp.StatusCode, raw, err)
	}
	var fields []string
	for _, d := range st.Details {
		for _, v := range d.FieldViolations {
			fields = append(fields, v.Field)
		}
	}
	if !slices.Contains(fields, "pageSise") || !strings.Contains(st.Message, "pageSize") {
		t.Fatalf("an unknown query parameter: violations of %q, message %q; want pageSise named as sent, pageSize among those taken", fields, st.Message)
	}
	// A name that could be read as a field path is quoted, not named as
	// it was sent: the description says so.
	resp, raw = f.do(t, "GET", "/v1/accounts/111111111111/backups?page.size=10", nil)
	st = restStatus{}
	if err := json.Unmarshal(raw, &st); err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a dotted unknown query parameter: %d %s (%v), want a 400 status", resp.StatusCode, raw, err)
	}
	fields = nil
	for _, d := range st.Details {
		for _, v := range d.FieldViolations {
			fields = append(fields, v.Field)
		}
	}
	if !slices.Contains(fields, `"page.size"`) {
		t.Fatalf("a dotted unknown query parameter: violations of %q; want it quoted", fields)
	}
	for method, op := range spec.operations(t) {
		d := op.Responses[strconv.Itoa(http.StatusBadRequest)].Description
		if !strings.Contains(d, "named as it was sent") || !strings.Contains(d, "by their JSON names") {
			t.Errorf("%s: 400 description does not say that a field the operation does not take is named as sent: %q", method, d)
		}
		if !strings.Contains(d, "double-quoted form when it is empty, holds `.`") || !strings.Contains(d, "cut after 64 characters") {
			t.Errorf("%s: 400 description does not say when such a name is quoted or cut: %q", method, d)
		}
	}
}

// TestOpenAPISaysWhatItAlsoTakes: the gateway takes more than the
// description's schemas allow (protojson's enum numbers, null for a body
// field, proto names, and a path field repeated in the body), so a test generated from the description that expects
// them refused (schemathesis' negative_data_rejection) fails unless the
// description says so.
func TestOpenAPISaysWhatItAlsoTakes(t *testing.T) {
	spec := loadOpenAPI(t)
	f := newFixture(t)
	restore := "/v1/backups/" + strings.ReplaceAll(arn, "/", "%2F") + ":restore"
	for _, tt := range []struct{ method, path, body, example string }{
		{"GET", "/v1/accounts/111111111111/backups?backupType=4", "", "`backupType=4`"},
		{"POST", restore, `{"targetTableName":"Restored","billingModeOverride":2}`, "`\"billingModeOverride\": 2`"},
		{"POST", restore, `{"targetTableName":"Restored","requestId":null}`, "`null`"},
		// With additionalProperties false, the schemas refuse these too.
		{"POST", restore, `{"target_table_name":"Restored"}`, "proto name (body `\"backup_name\"`"},
		{"GET", "/v1/accounts/111111111111/backups?page_size=10", "", "query `page_size`"},
		{"GET", "/v1/accounts/111111111111/backups?timeRangeLowerBound=2026-01-02T15:04:05%2B0000", "", "without its colon, `+0000`"},
		{"POST", "/v1/accounts/111111111111/tables/Orders/backups", `{"backupName":"abc","accountId":"111111111111"}`, "path field with the path's value (`\"accountId\"`)"},
	} {
		var body io.Reader
		if tt.body != "" {
			body = strings.NewReader(tt.body)
		}
		if resp, raw := f.do(t, tt.method, tt.path, body); resp.StatusCode != http.StatusOK {
			t.Errorf("%s %s %s: %d %s, want it taken", tt.method, tt.path, tt.body, resp.StatusCode, raw)
		}
		if !strings.Contains(strings.Join(strings.Fields(spec.Info.Description), " "), tt.example) {
			t.Errorf("info.description does not say that backupd takes %s too", tt.example)
		}
	}
}

// TestOpenAPIClosesRequestSchemas: the gateway refuses a body field it
// does not know with 400, at any depth, so the schemas of request bodies
// say "additionalProperties": false, and a client generated from the
// description neither offers nor sends such fields. A schema that a
// response uses too stays open (a client must take an answer holding a
// field a later backupd adds), and info.description says that the
// gateway refuses unknown fields in it all the same.
func TestOpenAPIClosesRequestSchemas(t *testing.T) {
	raw, err := os.ReadFile(openapiFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Info        struct{ Description string }
		Definitions map[string]map[string]any
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	uses, err := openapiuse.Of(raw)
	if err != nil {
		t.Fatal(err)
	}
	inRequests, inResponses := uses.Requests, uses.Responses

	// For each object a request body holds, a request with an unknown
	// field in it, and that field's violation.
	restore := "/v1/backups/" + strings.ReplaceAll(arn, "/", "%2F") + ":restore"
	create := "/v1/accounts/111111111111/tables/Orders/backups"
	unknownIn := map[string]struct{ path, body, field string }{
		"BackupServiceCreateBackupBody":           {create, `{"backupName":"abc","zz":1}`, "zz"},
		"BackupServiceRestoreTableFromBackupBody": {restore, `{"targetTableName":"Restored","zz":1}`, "zz"},
		"v1SseSpecification":                      {restore, `{"targetTableName":"Restored","sseSpecificationOverride":{"zz":1}}`, "sse_specification_override.zz"},
		"v1GlobalSecondaryIndexSelection":         {restore, `{"targetTableName":"Restored","globalSecondaryIndexOverride":{"zz":1}}`, "global_secondary_index_override.zz"},
		"v1LocalSecondaryIndexSelection":          {restore, `{"targetTableName":"Restored","localSecondaryIndexOverride":{"zz":1}}`, "local_secondary_index_override.zz"},
		"v1ProvisionedThroughput":                 {restore, `{"targetTableName":"Restored","provisionedThroughputOverride":{"zz":1}}`, "provisioned_throughput_override.zz"},
		"v1GlobalSecondaryIndex":                  {restore, `{"targetTableName":"Restored","globalSecondaryIndexOverride":{"indexes":[{"zz":1}]}}`, "global_secondary_index_override.indexes[0].zz"},
		"v1LocalSecondaryIndex":                   {restore, `{"targetTableName":"Restored","localSecondaryIndexOverride":{"indexes":[{"zz":1}]}}`, "local_secondary_index_override.indexes[0].zz"},
		"v1KeySchemaElement":                      {restore, `{"targetTableName":"Restored","globalSecondaryIndexOverride":{"indexes":[{"keySchema":[{"zz":1}]}]}}`, "global_secondary_index_override.indexes[0].key_schema[0].zz"},
		"v1Projection":                            {restore, `{"targetTableName":"Restored","globalSecondaryIndexOverride":{"indexes":[{"projection":{"zz":1}}]}}`, "global_secondary_index_override.indexes[0].projection.zz"},
	}
	f := newFixture(t)
	for name := range inRequests {
		def := doc.Definitions[name]
		if def["type"] != "object" {
			continue
		}
		tt, ok := unknownIn[name]
		if !ok {
			t.Errorf("%s: a request body holds it, but this test sends no unknown field in it", name)
			continue
		}
		delete(unknownIn, name)
		resp, raw := f.do(t, "POST", tt.path, strings.NewReader(tt.body))
		var st restStatus
		if err := json.Unmarshal(raw, &st); err != nil || resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %s: %d %s (%v), want 400", name, tt.body, resp.StatusCode, raw, err)
			continue
		}
		var fields []string
		for _, d := range st.Details {
			for _, v := range d.FieldViolations {
				fields = append(fields, v.Field)
			}
		}
		if !slices.Contains(fields, tt.field) {
			t.Errorf("%s: %s: violations of %q, want %q", name, tt.body, fields, tt.field)
		}
		closed := def["additionalProperties"] == false
		switch {
		case inResponses[name] && closed:
			t.Errorf("%s: additionalProperties false, but a response uses it: a client would refuse an answer with a field added later", name)
		case inResponses[name] && !strings.Contains(doc.Info.Description, strings.TrimPrefix(name, "v1")):
			t.Errorf("%s: open for responses, but info.description does not say that a request is refused unknown fields in it", name)
		case !inResponses[name] && !closed:
			t.Errorf("%s: only requests use it and the gateway refuses unknown fields in it, but its additionalProperties is %v, want false",
				name, def["additionalProperties"])
		}
	}
	for name := range unknownIn {
		t.Errorf("%s: no request body holds it", name)
	}
	// openapi-generator's go and java read a schema without
	// additionalProperties as closed, and would refuse an answer with a
	// field a later backupd adds, unless told otherwise.
	if !strings.Contains(doc.Info.Description, "disallowAdditionalPropertiesIfNotPresent=false") {
		t.Error("info.description does not say how to generate openapi-generator's go and java clients that take answers with fields added later")
	}
}
