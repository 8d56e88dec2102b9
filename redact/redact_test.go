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
		{"JSON with escaped slashes", `{"SecretAccessKey":"` + strings.ReplaceAll(secret, "/", `\/`) + `","SessionToken":"` + strings.ReplaceAll(secret, "/", `\/`) + `"}`},
		{"quoted assignments", "aws_secret_access_key = \"" + secret + "\"\nexport AWS_SESSION_TOKEN='" + secret + "'\n$Env:AWS_SECRET_ACCESS_KEY=\"" + secret + "\""},
		{"quoted header", `x-amz-security-token: "` + secret + `"`},
		{"snake-case JSON", `{"aws_secret_access_key": "` + secret + `", "aws_session_token": "` + secret + `"}`},
		{"XML", "<Credentials><AccessKeyId>ASIAEXAMPLE</AccessKeyId><SecretAccessKey>" + secret + "</SecretAccessKey><SessionToken>" + secret + "</SessionToken></Credentials>"},
		{"Go %+v", "{AccessKeyID:ASIAEXAMPLE SecretAccessKey:" + secret + " SessionToken:" + secret + " Source:x}"},
		{"SSO cache", `{"accessToken":"` + secret + `","refreshToken":"` + secret + `","clientSecret":"` + secret + `"}`},
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
	for _, keep := range []string{
		"operation error DynamoDB: CreateBackup, api error TableNotFoundException: Table not found: Orders",
		`{"AccessKeyId":"AKIAEXAMPLE","Version":1}`,
		"the request's token was refused",
		`{"NextToken":"abc","TokenCount":3}`,
	} {
		if out := Secrets(keep); out != keep {
			t.Errorf("Secrets(%q) = %q; want it unchanged", keep, out)
		}
	}
}
