package sandbox

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestEpochMillis(t *testing.T) {
	tests := []struct {
		in     string
		want   int64
		wantOK bool
	}{
		{in: "1700000000", want: 1_700_000_000_000, wantOK: true},
		{in: "1700000000.1", want: 1_700_000_000_100, wantOK: true},
		{in: "1700000000.123", want: 1_700_000_000_123, wantOK: true},
		{in: "1700000000.1234", want: 1_700_000_000_123, wantOK: true},
		{in: "1700000000.1236", want: 1_700_000_000_124, wantOK: true},
		{in: "1.7e9", want: 1_700_000_000_000, wantOK: true},
		{in: "0", want: 0, wantOK: true},
		{in: "-1", wantOK: false},
		{in: "abc", wantOK: false},
		{in: "1e300", wantOK: false},
	}
	for _, tc := range tests {
		got, ok := epochMillis(tc.in)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("epochMillis(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.wantOK)
		}
	}
}

func TestJSONWriterMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", `quo"te`, `back\slash`, "new\nline\ttab\r", "\x00\x1f", "héllo ☃", "bad\xffutf8", "</script>"} {
		var w jsonWriter
		w.reset()
		w.open()
		w.str("k", s)
		w.time("t", time.UnixMilli(1_700_000_000_007))
		w.array("a")
		w.strElem(s)
		w.open()
		w.int("n", -3)
		w.close()
		w.closeArray()
		w.close()
		var got struct {
			K string
			T json.Number
			A []json.RawMessage
		}
		if err := json.Unmarshal(w.bytes(), &got); err != nil {
			t.Fatalf("%q: invalid JSON %s: %v", s, w.bytes(), err)
		}
		want := strings.ToValidUTF8(s, "\uFFFD")
		if got.K != want || got.T != "1700000000.007" || len(got.A) != 2 {
			t.Errorf("%q: decoded %+v from %s", s, got, w.bytes())
		}
	}
}

func TestParseAuthorization(t *testing.T) {
	tests := []struct {
		in     string
		want   sigV4
		wantOK bool
	}{
		{
			in:     "AWS4-HMAC-SHA256 Credential=AKID/20240102/us-east-1/dynamodb/aws4_request, SignedHeaders=host;x-amz-date, Signature=abcd",
			want:   sigV4{accessKey: "AKID", date: "20240102", region: "us-east-1", service: "dynamodb", signedHeaders: "host;x-amz-date", signature: "abcd"},
			wantOK: true,
		},
		{in: "AWS4-HMAC-SHA256 Credential=AKID/20240102/us-east-1/dynamodb/aws4_request, Signature=abcd"},
		{in: "AWS4-HMAC-SHA256 Credential=AKID/20240102/us-east-1/dynamodb/other, SignedHeaders=host, Signature=abcd"},
		{in: "AWS4-HMAC-SHA256 Credential=AKID/2024/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=abcd"},
		{in: "AWS AKID:sig"},
		{in: ""},
	}
	for _, tc := range tests {
		got, ok := parseAuthorization(tc.in)
		if ok != tc.wantOK || ok && got != tc.want {
			t.Errorf("parseAuthorization(%q) = %+v, %v; want %+v, %v", tc.in, got, ok, tc.want, tc.wantOK)
		}
	}
}

func TestBackupARNShape(t *testing.T) {
	re := regexp.MustCompile(`^arn:aws:dynamodb:us-east-1:111111111111:table/Orders/backup/01700000000123-[0-9a-f]{8}$`)
	for range 20 {
		if got := backupARN("arn:aws:dynamodb:us-east-1:111111111111:table/Orders", 1_700_000_000_123); !re.MatchString(got) {
			t.Fatalf("backupARN = %q", got)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	valid := func() Account {
		return Account{ID: "123456789012", RoleName: "r", Region: "us-east-1", Tables: []TableSpec{{Name: "Tab", HashKey: "pk"}}}
	}
	tests := []struct {
		name   string
		change func(*Account)
		want   string // substring of the error; empty: valid
	}{
		{name: "valid", change: func(*Account) {}},
		{name: "short id", change: func(a *Account) { a.ID = "123" }, want: "ID must be 12 digits"},
		{name: "operator id", change: func(a *Account) { a.ID = "000000000000" }, want: "reserved"},
		{name: "no role", change: func(a *Account) { a.RoleName = "" }, want: "RoleName"},
		{name: "no region", change: func(a *Account) { a.Region = "" }, want: "Region"},
		{name: "bad table name", change: func(a *Account) { a.Tables[0].Name = "ab" }, want: "Name must be"},
		{name: "duplicate table", change: func(a *Account) { a.Tables = append(a.Tables, a.Tables[0]) }, want: "listed twice"},
		{name: "no hash key", change: func(a *Account) { a.Tables[0].HashKey = "" }, want: "HashKey"},
		{name: "bad status", change: func(a *Account) { a.Tables[0].Status = "SLEEPING" }, want: "Status"},
		{name: "LSI without a range key", change: func(a *Account) { a.Tables[0].LSIs = []string{"ByType"} }, want: "does not have a range key"},
		{name: "bad LSI name", change: func(a *Account) { a.Tables[0].RangeKey, a.Tables[0].LSIs = "sk", []string{"x"} }, want: "indexName"},
		{name: "bad stream view", change: func(a *Account) { a.Tables[0].StreamView = "ALL" }, want: "StreamView"},
		{name: "bad GSI name", change: func(a *Account) { a.Tables[0].GSIs = []string{"x"} }, want: "indexName"},
		{name: "six LSIs", change: func(a *Account) {
			a.Tables[0].RangeKey, a.Tables[0].LSIs = "sk", []string{"Ix1", "Ix2", "Ix3", "Ix4", "Ix5", "Ix6"}
		}, want: "at most 20 global and 5 local"},
		{name: "an LSI named as a GSI", change: func(a *Account) {
			a.Tables[0].RangeKey, a.Tables[0].GSIs, a.Tables[0].LSIs = "sk", []string{"ByType"}, []string{"ByType"}
		}, want: "duplicate index name"},
		{name: "a key named as an index's", change: func(a *Account) { a.Tables[0].RangeKey = "lsi1sk" }, want: "the name of an index's key"},
		{name: "LSI and stream", change: func(a *Account) {
			a.Tables[0].RangeKey, a.Tables[0].LSIs, a.Tables[0].StreamView = "sk", []string{"ByType"}, "KEYS_ONLY"
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := valid()
			tc.change(&a)
			err := Options{Accounts: []Account{a}}.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Validate() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if err := (Options{Accounts: DemoAccounts()}).Validate(); err != nil {
		t.Errorf("DemoAccounts are invalid: %v", err)
	}
}

func TestCredentialSweep(t *testing.T) {
	now := time.Now()
	f := New(Options{Now: func() time.Time { return now }})
	for i := range 3 * minSweep {
		p := newPrincipal(f.operator.creds, "111111111111", "arn", "id", now.Add(-time.Hour))
		p.creds.AccessKeyID = "ASIA" + randomKeyID()
		f.addCredentials(p, now)
		if len(f.creds) > 2*minSweep+1 {
			t.Fatalf("after %d expired credentials the map holds %d", i+1, len(f.creds))
		}
	}
	if f.creds[operatorAccessKey] == nil {
		t.Fatal("the sweep removed the operator's credentials")
	}
}
