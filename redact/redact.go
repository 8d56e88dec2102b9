// Package redact makes text fit for backupd's log and errors. It takes
// secrets out: AWS's error messages are kept in the log for whoever runs
// backupd, but they may quote a signed request (a signature mismatch
// quotes the canonical request, session token included), and the SDK's
// credential providers may quote what a credential process printed or a
// metadata service answered. And it bounds text from outside backupd (a
// caller's, AWS's) that a log line or an error repeats (Cut).
package redact

import (
	"net/url"
	"regexp"
	"strings"
	"unicode/utf8"
)

// secretKey matches what names a secret: the session token, credential
// and signature of SigV4 as a signed request carries them (a presigned
// URL's also when it is itself escaped into another URL), and the secret
// key and tokens of credentials as JSON (credential_process, the container
// and instance metadata services, the SSO cache), XML (STS), INI and
// environment assignments (shared files, export-credentials) or Go's %+v
// write them, and AssumeRole's ExternalId as its request carries it (an
// emulator or proxy may quote the request it refused). A value that
// follows, quoted or not, is the secret.
var secretKey = regexp.MustCompile(`(?i)x-amz-security-token(?:\s*[:=]\s*|%3d)|x-amz-credential(?:=|%3d)|x-amz-signature(?:=|%3d)|credential=|signature=|` +
	`<(?:secretaccesskey|sessiontoken|externalid|x-amz-security-token)>|` +
	`\\?["']?\b(?:aws_)?(?:secret_?access_?key|session_?token|security_?token|token|access_?token|refresh_?token|client_?secret|externalid)\\?["']?\s*[:=]\s*`)

// valueEnd ends a value that is not quoted. An ExternalId may hold a
// comma (IAM takes [\w+=,.@:/-]), so its value runs past one
// (externalIDEnd).
const (
	valueEnd      = " \t\r\n\v\f,&'\"\\<"
	externalIDEnd = " \t\r\n\v\f&'\"\\<"
)

// quotedValue matches what AWS's validation messages quote of a
// request's ExternalId: "Value 'the id' at 'externalId' failed to
// satisfy constraint". The value comes before the key's name.
var quotedValue = regexp.MustCompile(`(?i)\bvalue\s+'([^']*)'\s+at\s+'[^']*externalid'`)

// Secrets is s with the value of every secret it names replaced. A quoted
// value runs to its closing quote; another to the next delimiter; either
// at most to the next key, so that one key's value cannot take in the key
// of another and leave that one's value whole.
func Secrets(s string) string {
	s = quotedValue.ReplaceAllStringFunc(s, func(m string) string {
		open := strings.IndexByte(m, '\'')
		end := open + 1 + strings.IndexByte(m[open+1:], '\'')
		return m[:open+1] + "[redacted]" + m[end:]
	})
	keys := secretKey.FindAllStringIndex(s, -1)
	if keys == nil {
		return s
	}
	var b strings.Builder
	last := 0
	for i, k := range keys {
		limit := len(s)
		if i+1 < len(keys) {
			limit = keys[i+1][0]
		}
		delimiters := valueEnd
		if strings.Contains(strings.ToLower(s[k[0]:k[1]]), "externalid") {
			delimiters = externalIDEnd
		}
		start, end := valueSpan(s[:limit], k[1], delimiters)
		b.WriteString(s[last:start])
		if end > start {
			b.WriteString("[redacted]")
		}
		last = end
	}
	b.WriteString(s[last:])
	return b.String()
}

// Value is s with every copy of secret, a value known to be secret,
// replaced: as written, and URL-escaped once or twice (a query, or a
// query quoted inside another). Secrets finds a value by the key before
// it; an emulator or a proxy may quote one where no key names it ("the
// external id X is wrong"). A secret shorter than 4 bytes is no secret
// worth a garbled text, and is left.
func Value(s, secret string) string { return ValueAs(s, secret, "[redacted]") }

// ValueAs is Value, each copy of secret replaced by as: words that say
// what was taken out, where a reader needs to know.
func ValueAs(s, secret, as string) string {
	if len(secret) < 4 {
		return s
	}
	once := url.QueryEscape(secret)
	for _, form := range []string{secret, once, url.PathEscape(secret), url.QueryEscape(once)} {
		s = strings.ReplaceAll(s, form, as)
	}
	return s
}

// MaxError bounds Error's text: an AWS message, or a proxy's that
// pretends to be one, may run to megabytes, each a log line.
const MaxError = 4096

// Error is err's text for the log, with its secrets taken out (Secrets),
// then cut to MaxError bytes (Cut): cut after, so that a cut never parts
// a key from its value.
func Error(err error) string { return Cut(Secrets(err.Error()), MaxError) }

// Cut bounds text that a log line or an error repeats from outside
// backupd (a caller's, AWS's): at most max bytes, cut on a character
// boundary and marked "...", with invalid UTF-8 replaced. A status whose
// text or metadata is not UTF-8 cannot be encoded: grpc-go then drops its
// details, and the REST gateway answers 500.
func Cut(s string, max int) string {
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// valueSpan is where the value that begins at i in s lies: inside its
// quotes (", ', or \" within a quoted text), past the escapes they hold,
// or up to a delimiter. A value in a list of quoted elements, as a
// header's values are written in JSON (Go's http.Header:
// "X-Amz-Security-Token":["..."], indented too, or escaped within a
// quoted text), spans from its first element to its last.
func valueSpan(s string, i int, delimiters string) (start, end int) {
	rest := s[i:]
	if strings.HasPrefix(rest, "[") {
		if j := skipSpace(s, i+1); quotedAt(s, j) {
			start, end = valueSpan(s, j, delimiters)
			for end < len(s) {
				next := skipSpace(s, end+closingLen(s, end))
				if next >= len(s) || s[next] != ',' {
					break
				}
				j = skipSpace(s, next+1)
				if !quotedAt(s, j) {
					break
				}
				_, end = valueSpan(s, j, delimiters)
			}
			return start, end
		}
	}
	switch {
	case strings.HasPrefix(rest, `\"`):
		start = i + 2
		if j := strings.Index(s[start:], `\"`); j >= 0 {
			return start, start + j
		}
		return start, len(s)
	case strings.HasPrefix(rest, `"`), strings.HasPrefix(rest, "'"):
		quote := rest[0]
		for j := i + 1; j < len(s); j++ {
			switch s[j] {
			case '\\':
				j++
			case quote:
				return i + 1, j
			}
		}
		return i + 1, len(s)
	}
	if j := strings.IndexAny(rest, delimiters); j >= 0 {
		return i, i + j
	}
	return i, len(s)
}

// quotedAt reports whether a quoted value begins at i in s.
func quotedAt(s string, i int) bool {
	return i < len(s) && (s[i] == '"' || s[i] == '\'' || strings.HasPrefix(s[i:], `\"`))
}

// closingLen is the length of the closing quote at i in s.
func closingLen(s string, i int) int {
	if strings.HasPrefix(s[i:], `\"`) {
		return 2
	}
	return 1
}

// skipSpace is the first index from i in s past JSON's whitespace, as
// written or escaped within a quoted text (\n, \r, \t).
func skipSpace(s string, i int) int {
	for i < len(s) {
		switch {
		case strings.IndexByte(" \t\r\n", s[i]) >= 0:
			i++
		case s[i] == '\\' && i+1 < len(s) && strings.IndexByte("nrt", s[i+1]) >= 0:
			i += 2
		default:
			return i
		}
	}
	return i
}
