package redact

import (
	"strings"
	"testing"
)

func TestSecrets(t *testing.T) {
	const secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
	for _, tt := range []struct{ name, in string }{
		{"canonical request", "The Canonical String for this request should have been\n'POST\n/\n\nx-amz-security-token:" + secret + "\n'"},
		{"authorization header", "Authorization: AWS4-HMAC-SHA256 Credential=" + secret + ", SignedHeaders=host, Signature=" + secret},
		{"presigned URL", "https://sts/?X-Amz-Credential=" + secret + "&X-Amz-Signature=" + secret + "&X-Amz-Security-Token=" + secret},
		{"credential_process output", `parse failed of process output: notice: cached\n{"Version":1,"AccessKeyId":"AKIAEXAMPLE","SecretAccessKey":"` + secret + `","SessionToken":"` + secret + `"}`},
		{"quoted JSON", `output: "{\"SecretAccessKey\":\"` + secret + `\",\"SessionToken\": \"` + secret + `\"}"`},
		{"metadata service JSON", `{"Code":"Success","AccessKeyId":"ASIAEXAMPLE","SecretAccessKey":"` + secret + `","Token":"` + secret + `"}`},
		{"shared file", "[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = " + secret + "\naws_session_token=" + secret},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out := Secrets(tt.in)
			if strings.Contains(out, secret) {
				t.Errorf("Secrets kept the secret:\n%s", out)
			}
			if !strings.Contains(out, "[redacted]") || Secrets(out) != out {
				t.Errorf("Secrets(%q) = %q; want the secret redacted, and the same again", tt.in, out)
			}
		})
	}
	for _, keep := range []string{
		"operation error DynamoDB: CreateBackup, api error TableNotFoundException: Table not found: Orders",
		`{"AccessKeyId":"AKIAEXAMPLE","Version":1}`,
		"the request's token was refused",
	} {
		if out := Secrets(keep); out != keep {
			t.Errorf("Secrets(%q) = %q; want it unchanged", keep, out)
		}
	}
}
