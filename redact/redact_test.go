package redact

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSecrets(t *testing.T) {
	const secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
	for _, tt := range []struct{ name, in string }{
		{"canonical request", "The Canonical String for this request should have been\n'POST\n/\n\nx-amz-security-token:" + secret + "\n'"},
		{"authorization header", "Authorization: AWS4-HMAC-SHA256 Credential=" + secret + ", SignedHeaders=host, Signature=" + secret},
		{"presigned URL", "https://sts/?X-Amz-Credential=" + secret + "&X-Amz-Signature=" + secret + "&X-Amz-Security-Token=" + secret},
		{"presigned URL escaped into another", "https://proxy/?next=" + url.QueryEscape("https://sts/?X-Amz-Security-Token="+secret+"&X-Amz-Signature="+secret+"&X-Amz-Credential="+secret)},
		{"credential_process output", `parse failed of process output: notice: cached\n{"Version":1,"AccessKeyId":"AKIAEXAMPLE","SecretAccessKey":"` + secret + `","SessionToken":"` + secret + `"}`},
		{"quoted JSON", `output: "{\"SecretAccessKey\":\"` + secret + `\",\"SessionToken\": \"` + secret + `\"}"`},
		{"metadata service JSON", `{"Code":"Success","AccessKeyId":"ASIAEXAMPLE","SecretAccessKey":"` + secret + `","Token":"` + secret + `"}`},
		{"shared file", "[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = " + secret + "\naws_session_token=" + secret},
		{"JSON with escaped slashes", `{"SecretAccessKey":"` + strings.ReplaceAll(secret, "/", `\/`) + `","SessionToken":"` + strings.ReplaceAll(secret, "/", `\/`) + `"}`},
		{"quoted assignments", "aws_secret_access_key = \"" + secret + "\"\nexport AWS_SESSION_TOKEN='" + secret + "'\n$Env:AWS_SECRET_ACCESS_KEY=\"" + secret + "\""},
		{"quoted header", `x-amz-security-token: "` + secret + `"`},
		{"snake-case JSON", `{"aws_secret_access_key": "` + secret + `", "aws_session_token": "` + secret + `"}`},
		{"XML", "<Credentials><AccessKeyId>ASIAEXAMPLE</AccessKeyId><SecretAccessKey>" + secret + "</SecretAccessKey><SessionToken>" + secret + "</SessionToken></Credentials>"},
		{"Go %+v", "{AccessKeyID:ASIAEXAMPLE SecretAccessKey:" + secret + " SessionToken:" + secret + " Source:x}"},
		{"SSO cache", `{"accessToken":"` + secret + `","refreshToken":"` + secret + `","clientSecret":"` + secret + `"}`},
		// An emulator or proxy that quotes the AssumeRole it refused.
		{"ExternalId in a query", "not authorized; request was Action=AssumeRole&ExternalId=" + secret + "&RoleArn=arn:aws:iam::111111111111:role/x"},
		{"ExternalId as JSON and XML", `{"ExternalId":"` + secret + `"} <ExternalId>` + secret + `</ExternalId>`},
		{"headers as Go's JSON", `refused request with headers {"Authorization":["AWS4-HMAC-SHA256 Credential=` + secret + `, SignedHeaders=host, Signature=` + secret + `"],"X-Amz-Security-Token":["` + secret + `"]}`},
		{"headers as escaped JSON", `output: "{\"X-Amz-Security-Token\": [\"` + secret + `\"]}"`},
		{"headers as XML", `<X-Amz-Security-Token>` + secret + `</X-Amz-Security-Token>`},
		{"headers as indented JSON", "refused request with headers {\n  \"X-Amz-Security-Token\": [\n    \"" + secret + "\"\n  ]\n}"},
		{"headers as indented JSON, escaped", `output: "{\n  \"X-Amz-Security-Token\": [\n    \"` + secret + `\"\n  ]\n}"`},
		{"a header's several values", `{"X-Amz-Security-Token":["` + secret + `", "` + secret + `"]}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out := Secrets(tt.in)
			for _, part := range strings.Split(secret, "/") { // as JSON may escape it: \/
				if strings.Contains(out, part) {
					t.Errorf("Secrets kept the secret, or part of it:\n%s", out)
				}
			}
			if !strings.Contains(out, "[redacted]") || Secrets(out) != out {
				t.Errorf("Secrets(%q) = %q; want the secret redacted, and the same again", tt.in, out)
			}
		})
	}
	// An ExternalId may hold what ends other values (a comma), and AWS's
	// validation messages quote it before its name.
	const externalID = "ExtSecret-7b3c,Q@z=9"
	for _, in := range []string{
		"api error ValidationError: 1 validation error detected: Value '" + externalID + "' at 'externalId' failed to satisfy constraint",
		"<ExternalId>" + externalID + "</ExternalId> and ExternalId=" + externalID + "&RoleArn=x",
	} {
		if out := Secrets(in); strings.Contains(out, "Q@z") || strings.Contains(out, "7b3c") {
			t.Errorf("Secrets(%q) = %q; want the ExternalId redacted whole", in, out)
		}
	}
	for _, keep := range []string{
		"api error ValidationError: Value 'arn:aws:iam::1:role/x' at 'roleArn' failed to satisfy constraint",
		"operation error DynamoDB: CreateBackup, api error TableNotFoundException: Table not found: Orders",
		`{"AccessKeyId":"AKIAEXAMPLE","Version":1}`,
		"the request's token was refused",
		`{"NextToken":"abc","TokenCount":3}`,
		// backupd's own words for its configuration, which a start
		// failure's log line may carry.
		"accounts[1].external_id: must be 2-1224 characters",
	} {
		if out := Secrets(keep); out != keep {
			t.Errorf("Secrets(%q) = %q; want it unchanged", keep, out)
		}
	}
}

// TestSecretsOfSignedRequests: what an AWS error quotes of a signed request
// keeps everything but its secrets.
func TestSecretsOfSignedRequests(t *testing.T) {
	tests := []struct {
		name, in string
		keep     []string // parts that must stay
		drop     []string // secrets that must go
	}{
		{"signature mismatch quoting the canonical request",
			"operation error DynamoDB: ListBackups, https response error StatusCode: 400, RequestID: R1, api error InvalidSignatureException: " +
				"The request signature we calculated does not match the signature you provided. The Canonical String for this request should have been\n" +
				"'POST\n/\n\ncontent-type:application/x-amz-json-1.0\nhost:dynamodb.us-east-1.amazonaws.com\nx-amz-date:20261126T064500Z\n" +
				"x-amz-security-token:IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKEN/+=\nx-amz-target:DynamoDB_20120810.ListBackups\n'",
			[]string{"InvalidSignatureException", "RequestID: R1", "x-amz-security-token:[redacted]", "x-amz-target:DynamoDB_20120810.ListBackups"},
			[]string{"IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKEN"}},
		{"an Authorization header",
			"Authorization: AWS4-HMAC-SHA256 Credential=ASIAEXAMPLEKEY/20261126/us-east-1/sts/aws4_request, SignedHeaders=host;x-amz-date, Signature=0123abcdef",
			[]string{"SignedHeaders=host;x-amz-date", "Credential=[redacted]", "Signature=[redacted]"},
			[]string{"ASIAEXAMPLEKEY", "0123abcdef"}},
		{"a presigned query",
			"GET /?X-Amz-Credential=ASIAEXAMPLEKEY%2F20261126&X-Amz-Security-Token=TOKENEXAMPLE&X-Amz-Signature=beef",
			[]string{"X-Amz-Credential=[redacted]&X-Amz-Security-Token=[redacted]&X-Amz-Signature=[redacted]"},
			[]string{"ASIAEXAMPLEKEY", "TOKENEXAMPLE", "beef"}},
		// One key's value must not take in the next key and leave its
		// value whole (found by fuzzing).
		{"a key right after a key",
			"X-AmZ-seCuritY-token:X-Amz-Security-Token: SECRETVALUE0",
			[]string{"X-Amz-Security-Token: [redacted]"},
			[]string{"SECRETVALUE0"}},
		{"nothing signed", "operation error DynamoDB: CreateBackup, TableNotFoundException: Table not found: Orders",
			[]string{"operation error DynamoDB: CreateBackup, TableNotFoundException: Table not found: Orders"}, nil},
	}
	for _, tt := range tests {
		got := Error(errors.New(tt.in))
		for _, k := range tt.keep {
			if !strings.Contains(got, k) {
				t.Errorf("%s: %q lacks %q", tt.name, got, k)
			}
		}
		for _, d := range tt.drop {
			if strings.Contains(got, d) {
				t.Errorf("%s: %q keeps the secret %q", tt.name, got, d)
			}
		}
	}
}

// FuzzSecrets: Secrets is idempotent, and a credential, signature or
// session token in any of the forms SigV4 writes them is gone from it.
func FuzzSecrets(f *testing.F) {
	f.Add("The Canonical String for this request should have been\n'POST\n/\n\nx-amz-security-token:", "IQoJb3JpZ2luX2VjEXAMPLE/+=", "\n'", uint8(0))
	f.Add("Authorization: AWS4-HMAC-SHA256 ", "AKIAEXAMPLE/20260101/us-east-1/dynamodb/aws4_request", ", SignedHeaders=host", uint8(2))
	f.Add("https://x/?", "abcdef0123456789", "&X-Amz-Date=1", uint8(4))
	f.Fuzz(func(t *testing.T, before, secret, after string, form uint8) {
		forms := []string{"x-amz-security-token:", "X-Amz-Security-Token: ", "Credential=", "Signature=", "X-Amz-Signature=", "X-Amz-Credential=", "X-Amz-Security-Token="}
		out := Secrets(before + secret + after)
		if again := Secrets(out); again != out {
			t.Errorf("Secrets not idempotent: %q -> %q", out, again)
		}
		if len(secret) < 8 || strings.ContainsAny(secret, " \t\r\n\v\f,&'\"\\<") {
			return
		}
		s := before + forms[int(form)%len(forms)] + secret + after
		if out := Secrets(s); strings.Contains(out, secret) && !strings.Contains(before+after, secret) {
			t.Errorf("Secrets(%q) = %q keeps the secret", s, out)
		}
	})
}

// TestErrorIsBounded: an error's text for the log is cut, after its
// secrets are out: an AWS message (or a proxy's) may run to megabytes.
func TestErrorIsBounded(t *testing.T) {
	long := errors.New(strings.Repeat("é", MaxError) + " SessionToken=" + strings.Repeat("s", 100))
	out := Error(long)
	if len(out) > MaxError+len("...") || !utf8.ValidString(out) || !strings.HasSuffix(out, "...") {
		t.Errorf("Error of %d bytes = %d bytes (valid UTF-8 %v); want at most %d, cut on a character", len(long.Error()), len(out), utf8.ValidString(out), MaxError)
	}
	if short := errors.New("api error TableNotFoundException: Table not found: Orders"); Error(short) != short.Error() {
		t.Errorf("Error(%q) = %q; want it whole", short, Error(short))
	}
}

func TestValue(t *testing.T) {
	const secret = "a+b=c/d@e"
	tests := []struct{ name, in, secret, want string }{
		{"as written", "the id a+b=c/d@e is wrong", secret, "the id [redacted] is wrong"},
		{"query-escaped", "ExternalId=a%2Bb%3Dc%2Fd%40e&x=1", secret, "ExternalId=[redacted]&x=1"},
		{"path-escaped", "/a+b=c%2Fd@e/", secret, "/[redacted]/"},
		{"escaped twice", "q=ExternalId%3Da%252Bb%253Dc%252Fd%2540e", secret, "q=ExternalId%3D[redacted]"},
		{"every copy", "x a+b=c/d@e y a+b=c/d@e", secret, "x [redacted] y [redacted]"},
		{"at the shortest worth it", "the id abcd is wrong", "abcd", "the id [redacted] is wrong"},
		{"too short to be worth it", "abc def", "abc", "abc def"},
		{"none", "nothing here", secret, "nothing here"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Value(tt.in, tt.secret); got != tt.want {
				t.Errorf("Value(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// FuzzSecretsInHeaderJSON: a session token among a request's headers
// written as JSON (Go's http.Header, compact or indented, as it is or
// quoted within another text), one value or several, is taken out, and
// Secrets is idempotent whatever surrounds it.
func FuzzSecretsInHeaderJSON(f *testing.F) {
	f.Add("IQoJb3JpZ2luX2VjEXAMPLE/+=", "", "refused: ", "", uint8(0))
	f.Add("IQoJb3JpZ2luX2VjEXAMPLE", "SecondEXAMPLEtoken", "headers ", " end", uint8(1))
	f.Add("IQoJb3JpZ2luX2VjEXAMPLE", "", "", "", uint8(3))
	f.Fuzz(func(t *testing.T, secret, second, before, after string, form uint8) {
		const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
		token := func(s string) string {
			b := []byte(s)
			for i := range b {
				b[i] = alphabet[int(b[i])%len(alphabet)]
			}
			return string(b)
		}
		secret, second = token(secret), token(second)
		h := http.Header{"Content-Type": {"application/x-amz-json-1.0"}, "X-Amz-Security-Token": {secret}}
		if second != "" {
			h["X-Amz-Security-Token"] = append(h["X-Amz-Security-Token"], second)
		}
		var b []byte
		if form&1 == 0 {
			b, _ = json.Marshal(h)
		} else {
			b, _ = json.MarshalIndent(h, "", "  ")
		}
		text := string(b)
		if form&2 != 0 {
			text = fmt.Sprintf("%q", text)
		}
		in := before + text + after
		out := Secrets(in)
		if again := Secrets(out); again != out {
			t.Errorf("Secrets not idempotent: %q -> %q", out, again)
		}
		for _, s := range []string{secret, second} {
			if len(s) >= 8 && strings.Contains(out, s) && !strings.Contains(before+after, s) {
				t.Errorf("Secrets(%q) = %q keeps the token %q", in, out, s)
			}
		}
	})
}

// TestSecretsExactly: what Secrets leaves of a text is the text with each
// secret's value, and only it, replaced: not a character of the secret
// kept at either end, not a character of what follows taken in (a check
// that the secret is gone would pass either way). The second value of a
// header's list, compact or escaped, goes too; text cut short inside a
// value (an AWS message may be) is redacted to its end.
func TestSecretsExactly(t *testing.T) {
	for _, tt := range []struct{ name, in, want string }{
		{"ExternalId quoted before its name",
			"api error ValidationError: Value 'ExtSecret-7b3c,Q@z=9' at 'externalId' failed to satisfy constraint",
			"api error ValidationError: Value '[redacted]' at 'externalId' failed to satisfy constraint"},
		{"JSON", `{"SessionToken":"IQoJtoken","Region":"us-east-1"}`, `{"SessionToken":"[redacted]","Region":"us-east-1"}`},
		{"JSON with an escaped quote", `{"SessionToken":"a\"b","Region":"us-east-1"}`, `{"SessionToken":"[redacted]","Region":"us-east-1"}`},
		{"escaped JSON", `output: "{\"SessionToken\":\"IQoJtoken\",\"Region\":\"us-east-1\"}"`,
			`output: "{\"SessionToken\":\"[redacted]\",\"Region\":\"us-east-1\"}"`},
		{"an empty value, in JSON", `{"SessionToken":"","Region":"us-east-1"}`, `{"SessionToken":"","Region":"us-east-1"}`},
		{"an empty value, in escaped JSON", `output: "{\"SessionToken\":\"\",\"Region\":\"us-east-1\"}"`,
			`output: "{\"SessionToken\":\"\",\"Region\":\"us-east-1\"}"`},
		{"an empty value, unquoted", "Credential=, SignedHeaders=host", "Credential=, SignedHeaders=host"},
		{"a header's two values, compact", `{"X-Amz-Security-Token":["first-token","second-token"]}`, `{"X-Amz-Security-Token":["[redacted]"]}`},
		{"a header's two values, escaped", `output: "{\"X-Amz-Security-Token\":[\"first-token\",\"second-token\"]}"`,
			`output: "{\"X-Amz-Security-Token\":[\"[redacted]\"]}"`},
		{"a header's two values, escaped and indented", `output: "{\n  \"X-Amz-Security-Token\": [\n    \"first-token\",\n    \"second-token\"\n  ]\n}"`,
			`output: "{\n  \"X-Amz-Security-Token\": [\n    \"[redacted]\"\n  ]\n}"`},
		{"a quote left open", `SessionToken:"unterminated-token`, `SessionToken:"[redacted]`},
		{"an escaped quote left open", `output: "{\"SessionToken\":\"IQoJtoken`, `output: "{\"SessionToken\":\"[redacted]`},
		{"a quoted text after a list", `{"X-Amz-Security-Token":["first-token"] "kept"}`, `{"X-Amz-Security-Token":["[redacted]"] "kept"}`},
		{"a list escaped, a value to a line", `output: "{\"X-Amz-Security-Token\":[\n\"first-token\",\n\"second-token\"\n]}"`,
			`output: "{\"X-Amz-Security-Token\":[\n\"[redacted]\"\n]}"`},
		{"a list cut short after a value", `{"X-Amz-Security-Token":["truncated-token"`, `{"X-Amz-Security-Token":["[redacted]"`},
		{"a list cut short after a comma", `{"X-Amz-Security-Token":["truncated-token",`, `{"X-Amz-Security-Token":["[redacted]",`},
		{"a list cut short at its start", `{"X-Amz-Security-Token":[`, `{"X-Amz-Security-Token":[redacted]`},
		{"a list cut short in spaces", `{"X-Amz-Security-Token":[  `, `{"X-Amz-Security-Token":[redacted]  `},
		{"a list cut short at an escape", `{"X-Amz-Security-Token":[\`, `{"X-Amz-Security-Token":[redacted]\`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := Secrets(tt.in); got != tt.want {
				t.Errorf("Secrets(%q)\n = %q\nwant %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestCut: a text at the bound is whole; one over it is cut before the
// character the bound falls in, never inside it; bytes that are not UTF-8
// become U+FFFD.
func TestCut(t *testing.T) {
	for _, tt := range []struct {
		in   string
		max  int
		want string
	}{
		{"abcdefghij", 10, "abcdefghij"},
		{"abcd", 3, "abc..."},
		{"aé", 2, "a..."},
		{"\x80\x80\x80", 2, "..."},
		{"a\xffb", 10, "a\uFFFDb"},
	} {
		if got := Cut(tt.in, tt.max); got != tt.want {
			t.Errorf("Cut(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
		}
	}
}
