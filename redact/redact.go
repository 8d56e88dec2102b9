// Package redact takes secrets out of text bound for backupd's log: AWS's
// error messages are kept there for whoever runs backupd, but they may
// quote a signed request (a signature mismatch quotes the canonical
// request, session token included), and the SDK's credential providers may
// quote what a credential process printed or a metadata service answered.
package redact

import (
	"regexp"
	"strings"
)

// secretKey matches what names a secret: the session token, credential
// and signature of SigV4 as a signed request carries them, and the secret
// key and session token of credentials as JSON (credential_process, the
// container and instance metadata services) or INI (shared files) write
// them.
var secretKey = regexp.MustCompile(`(?i)x-amz-security-token\s*[:=]\s*|x-amz-credential=|x-amz-signature=|credential=|signature=|` +
	`\\?"(?:secretaccesskey|sessiontoken|token|secret_access_key|session_token)\\?"\s*:\s*\\?"?|` +
	`aws_secret_access_key\s*=\s*|aws_session_token\s*=\s*|aws_security_token\s*=\s*`)

// valueEnd ends a secret's value.
const valueEnd = " \t\r\n\v\f,&'\"\\"

// Secrets is s with the value of every secret it names replaced. Each
// value runs to the next delimiter or the next key, so that one key's
// value cannot take in the key of another and leave that one's value
// whole.
func Secrets(s string) string {
	keys := secretKey.FindAllStringIndex(s, -1)
	if keys == nil {
		return s
	}
	var b strings.Builder
	last := 0
	for i, k := range keys {
		end := len(s)
		if i+1 < len(keys) {
			end = keys[i+1][0]
		}
		if j := strings.IndexAny(s[k[1]:end], valueEnd); j >= 0 {
			end = k[1] + j
		}
		b.WriteString(s[last:k[1]])
		if end > k[1] {
			b.WriteString("[redacted]")
		}
		last = end
	}
	b.WriteString(s[last:])
	return b.String()
}
