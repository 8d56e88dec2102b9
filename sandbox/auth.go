package sandbox

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// principal is an identity whose requests the fake accepts.
type principal struct {
	creds   aws.Credentials
	account string    // the account its DynamoDB calls act in
	arn     string    // what GetCallerIdentity reports
	userID  string    // likewise
	expires time.Time // zero: never
	// signer recomputes this principal's signatures. One per principal
	// because the SDK signer caches one derived key per (service, region),
	// which would thrash if principals shared it.
	signer *v4.Signer
}

func newPrincipal(creds aws.Credentials, account, arn, userID string, expires time.Time) *principal {
	return &principal{
		creds:   creds,
		account: account,
		arn:     arn,
		userID:  userID,
		expires: expires,
		signer:  v4.NewSigner(),
	}
}

// authFailure says why a request was not authenticated; each service turns it
// into its own error code.
type authFailure int

const (
	authOK           authFailure = iota
	authMissing                  // no Authorization header
	authIncomplete               // malformed Authorization, or no X-Amz-Date
	authUnknownKey               // unknown access key, or the wrong session token
	authExpired                  // temporary credentials past their expiry
	authBadSignature             // the signature does not match
	authWrongService             // signed for another service
)

// sigV4 is a parsed SigV4 Authorization header. The strings alias the header.
type sigV4 struct {
	accessKey     string
	date          string // yyyymmdd from the credential scope
	region        string
	service       string
	signedHeaders string // lower-case names separated by ';'
	signature     string
}

func parseAuthorization(h string) (sigV4, bool) {
	const algorithm = "AWS4-HMAC-SHA256 "
	var a sigV4
	rest, ok := strings.CutPrefix(h, algorithm)
	if !ok {
		return a, false
	}
	var credential string
	for rest != "" {
		var part string
		part, rest, _ = strings.Cut(rest, ",")
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return a, false
		}
		switch k {
		case "Credential":
			credential = v
		case "SignedHeaders":
			a.signedHeaders = v
		case "Signature":
			a.signature = v
		}
	}
	// Credential=AKID/yyyymmdd/region/service/aws4_request
	var terminator string
	a.accessKey, credential, _ = strings.Cut(credential, "/")
	a.date, credential, _ = strings.Cut(credential, "/")
	a.region, credential, _ = strings.Cut(credential, "/")
	a.service, terminator, _ = strings.Cut(credential, "/")
	if a.accessKey == "" || len(a.date) != 8 || a.region == "" || a.service == "" ||
		terminator != "aws4_request" || a.signedHeaders == "" || a.signature == "" {
		return a, false
	}
	return a, true
}

// authenticate checks the request's SigV4 signature and returns the principal
// that signed it and the region of its credential scope.
func (f *Fake) authenticate(r *http.Request, body []byte, service string) (*principal, string, authFailure) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, "", authMissing
	}
	a, ok := parseAuthorization(h)
	if !ok {
		return nil, "", authIncomplete
	}
	amzDate := r.Header.Get("X-Amz-Date")
	signingTime, err := time.Parse("20060102T150405Z", amzDate)
	if err != nil {
		return nil, "", authIncomplete
	}

	f.credMu.RLock()
	p := f.creds[a.accessKey]
	f.credMu.RUnlock()
	if p == nil || r.Header.Get("X-Amz-Security-Token") != p.creds.SessionToken {
		return nil, "", authUnknownKey
	}
	if a.service != service {
		return nil, "", authWrongService
	}
	if amzDate[:8] != a.date || !f.signatureMatches(r, body, &a, p, signingTime) {
		return nil, "", authBadSignature
	}
	if !p.expires.IsZero() && !f.now().Before(p.expires) {
		return nil, "", authExpired
	}
	return p, a.region, authOK
}

// verifyRequest is the scratch request the signature is recomputed on.
// Pooled, because the fake is a benchmark target.
type verifyRequest struct {
	req http.Request
	url url.URL
	hdr http.Header
}

func newVerifyRequest() *verifyRequest {
	return &verifyRequest{hdr: make(http.Header, 16)}
}

// signatureMatches recomputes the request's signature with the SDK's own
// signer, over exactly the headers the client said it signed, and compares.
func (f *Fake) signatureMatches(r *http.Request, body []byte, a *sigV4, p *principal, signingTime time.Time) bool {
	// The hash is always computed: a client-supplied X-Amz-Content-Sha256
	// is signed, but only the body itself proves that it is the body.
	sum := sha256.Sum256(body)
	payloadHash := hex.EncodeToString(sum[:])
	if h := r.Header.Get("X-Amz-Content-Sha256"); h != "" && h != payloadHash {
		return false
	}

	v := f.verifiers.Get().(*verifyRequest)
	defer func() {
		clear(v.hdr) // hold on to no request's data while pooled
		v.req = http.Request{}
		f.verifiers.Put(v)
	}()
	v.url = url.URL{Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery, Scheme: "http"}
	if r.TLS != nil {
		v.url.Scheme = "https"
	}
	v.req = http.Request{Method: r.Method, URL: &v.url, Host: r.Host, Header: v.hdr}

	want, hostSigned := 0, false
	for rest := a.signedHeaders; rest != ""; {
		var name string
		name, rest, _ = strings.Cut(rest, ";")
		switch name {
		case "host":
			hostSigned = true
		case "content-length":
			v.req.ContentLength = r.ContentLength
		default:
			want++
		}
	}
	if !hostSigned {
		return false
	}
	got := 0
	for k, vals := range r.Header {
		if k == "Content-Length" || !listContainsFold(a.signedHeaders, k) {
			continue
		}
		v.hdr[k] = vals
		got++
	}
	if got != want {
		return false // a signed header is missing
	}

	if err := p.signer.SignHTTP(r.Context(), p.creds, &v.req, payloadHash, a.service, a.region, signingTime); err != nil {
		return false
	}
	computed := v.hdr.Get("Authorization")
	i := strings.LastIndex(computed, "Signature=")
	if i < 0 {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(computed[i+len("Signature="):]), []byte(a.signature)) == 1
}

// listContainsFold reports whether the ';'-separated list contains name,
// ignoring case.
func listContainsFold(list, name string) bool {
	for list != "" {
		var item string
		item, list, _ = strings.Cut(list, ";")
		if strings.EqualFold(item, name) {
			return true
		}
	}
	return false
}

// minSweep is the credential count below which expired credentials are
// never swept.
const minSweep = 64

// sweepGrace is how long expired credentials are still recognised, so that
// late requests get ExpiredToken rather than an unknown-key error.
const sweepGrace = 15 * time.Minute

// addCredentials registers temporary credentials. It removes long-expired
// ones when the map has doubled since the last sweep, so that a long-running
// sandbox does not grow without bound and each AssumeRole stays amortised
// O(1).
func (f *Fake) addCredentials(p *principal, now time.Time) {
	f.credMu.Lock()
	defer f.credMu.Unlock()
	f.creds[p.creds.AccessKeyID] = p
	if len(f.creds) < f.nextSweep {
		return
	}
	for k, c := range f.creds {
		if !c.expires.IsZero() && now.After(c.expires.Add(sweepGrace)) {
			delete(f.creds, k)
		}
	}
	f.nextSweep = max(minSweep, 2*len(f.creds))
}

var keyIDEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// randomKeyID returns 16 random characters of [A-Z2-7], the shape of the
// part of an AWS access key ID or role ID after its 4-letter prefix.
func randomKeyID() string {
	var b [10]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return keyIDEncoding.EncodeToString(b[:])
}

func randomBase64(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}
