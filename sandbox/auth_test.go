package sandbox_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/backupd/backupd/sandbox"
)

// wireCall is a request signed by hand, so that a test can break it in ways
// the SDK never would.
type wireCall struct {
	target     string // X-Amz-Target; empty for STS
	body       string
	hashHeader bool // send and sign X-Amz-Content-Sha256
}

var (
	dynamoListTables = wireCall{target: "DynamoDB_20120810.ListTables", body: `{"Limit":5}`}
	stsCallerID      = wireCall{body: "Action=GetCallerIdentity&Version=2011-06-15"}
)

func (w wireCall) service() string {
	if w.target != "" {
		return "dynamodb"
	}
	return "sts"
}

// signed builds the request and signs it as the SDK would.
func (w wireCall) signed(t *testing.T, url string, creds aws.Credentials, service string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(w.body))
	if err != nil {
		t.Fatal(err)
	}
	if w.target != "" {
		req.Header.Set("X-Amz-Target", w.target)
		req.Header.Set("Content-Type", "application/x-amz-json-1.0")
	} else {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	sum := sha256.Sum256([]byte(w.body))
	if w.hashHeader {
		req.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
	}
	if err := v4.NewSigner().SignHTTP(t.Context(), creds, req, hex.EncodeToString(sum[:]), service, "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	return req
}

// errorOf reads the error code from a DynamoDB JSON or STS XML error body.
func errorOf(t *testing.T, resp *http.Response) string {
	t.Helper()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode == http.StatusOK {
		return ""
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/x-amz-json") {
		var e struct {
			Type string `json:"__type"`
		}
		if err := json.Unmarshal(body, &e); err != nil {
			t.Fatalf("error body %q: %v", body, err)
		}
		_, code, _ := strings.Cut(e.Type, "#")
		return code
	}
	var e struct {
		Code string `xml:"Error>Code"`
	}
	if err := xml.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	return e.Code
}

func TestSignatureVerification(t *testing.T) {
	e := start(t, sandbox.Options{Accounts: sandbox.DemoAccounts()})
	base := e.fake.BaseCredentials()
	assumed, err := e.sts().AssumeRole(t.Context(), &sts.AssumeRoleInput{RoleArn: aws.String(roleARN("111111111111")), RoleSessionName: aws.String("auth-test")})
	if err != nil {
		t.Fatal(err)
	}
	temp := aws.Credentials{
		AccessKeyID:     *assumed.Credentials.AccessKeyId,
		SecretAccessKey: *assumed.Credentials.SecretAccessKey,
		SessionToken:    *assumed.Credentials.SessionToken,
	}
	withSecret := func(c aws.Credentials, s string) aws.Credentials { c.SecretAccessKey = s; return c }
	withToken := func(c aws.Credentials, s string) aws.Credentials { c.SessionToken = s; return c }
	withKey := func(c aws.Credentials, k string) aws.Credentials { c.AccessKeyID = k; return c }

	tests := []struct {
		name       string
		call       wireCall
		creds      aws.Credentials
		service    string                  // signing service; empty: the call's own
		tamper     func(req *http.Request) // after signing
		wantStatus int
		wantCode   string
	}{
		{name: "dynamodb valid", call: dynamoListTables, creds: base, wantStatus: 200},
		{name: "dynamodb valid temporary", call: dynamoListTables, creds: temp, wantStatus: 200},
		{name: "sts valid", call: stsCallerID, creds: base, wantStatus: 200},
		{name: "dynamodb signature flipped", call: dynamoListTables, creds: base, tamper: flipSignature, wantStatus: 400, wantCode: "InvalidSignatureException"},
		{name: "sts signature flipped", call: stsCallerID, creds: base, tamper: flipSignature, wantStatus: 403, wantCode: "SignatureDoesNotMatch"},
		{name: "dynamodb body changed", call: dynamoListTables, creds: base, tamper: replaceBody(`{"Limit":6}`), wantStatus: 400, wantCode: "InvalidSignatureException"},
		{name: "sts body changed", call: stsCallerID, creds: base, tamper: replaceBody("Action=GetCallerIdentity&Version=2011-06-16"), wantStatus: 403, wantCode: "SignatureDoesNotMatch"},
		{name: "dynamodb valid with content hash", call: withHashHeader(dynamoListTables), creds: base, wantStatus: 200},
		{name: "dynamodb body changed under a signed content hash", call: withHashHeader(dynamoListTables), creds: base, tamper: replaceBody(`{"Limit":6}`), wantStatus: 400, wantCode: "InvalidSignatureException"},
		{name: "dynamodb signed header changed", call: dynamoListTables, creds: base, tamper: setHeader("X-Amz-Target", "DynamoDB_20120810.ListBackups"), wantStatus: 400, wantCode: "InvalidSignatureException"},
		{name: "dynamodb signed header removed", call: dynamoListTables, creds: base, tamper: delHeader("Content-Type"), wantStatus: 400, wantCode: "InvalidSignatureException"},
		{name: "dynamodb date changed", call: dynamoListTables, creds: base, tamper: setHeader("X-Amz-Date", time.Now().Add(time.Minute).UTC().Format("20060102T150405Z")), wantStatus: 400, wantCode: "InvalidSignatureException"},
		{name: "dynamodb wrong secret", call: dynamoListTables, creds: withSecret(base, "not-the-secret"), wantStatus: 400, wantCode: "InvalidSignatureException"},
		{name: "sts wrong secret", call: stsCallerID, creds: withSecret(base, "not-the-secret"), wantStatus: 403, wantCode: "SignatureDoesNotMatch"},
		{name: "dynamodb unknown key", call: dynamoListTables, creds: withKey(base, "AKIAUNKNOWN000000000"), wantStatus: 400, wantCode: "UnrecognizedClientException"},
		{name: "sts unknown key", call: stsCallerID, creds: withKey(base, "AKIAUNKNOWN000000000"), wantStatus: 403, wantCode: "InvalidClientTokenId"},
		{name: "dynamodb temporary without token", call: dynamoListTables, creds: withToken(temp, ""), wantStatus: 400, wantCode: "UnrecognizedClientException"},
		{name: "dynamodb temporary with wrong token", call: dynamoListTables, creds: withToken(temp, "forged"), wantStatus: 400, wantCode: "UnrecognizedClientException"},
		{name: "sts base key with a token", call: stsCallerID, creds: withToken(base, "forged"), wantStatus: 403, wantCode: "InvalidClientTokenId"},
		{name: "dynamodb scoped to sts", call: dynamoListTables, creds: base, service: "sts", wantStatus: 400, wantCode: "InvalidSignatureException"},
		{name: "sts scoped to dynamodb", call: stsCallerID, creds: base, service: "dynamodb", wantStatus: 403, wantCode: "SignatureDoesNotMatch"},
		{name: "dynamodb unsigned", call: dynamoListTables, creds: base, tamper: delHeader("Authorization"), wantStatus: 400, wantCode: "MissingAuthenticationTokenException"},
		{name: "sts unsigned", call: stsCallerID, creds: base, tamper: delHeader("Authorization"), wantStatus: 403, wantCode: "MissingAuthenticationToken"},
		{name: "dynamodb malformed authorization", call: dynamoListTables, creds: base, tamper: setHeader("Authorization", "AWS4-HMAC-SHA256 Credential=x"), wantStatus: 400, wantCode: "IncompleteSignatureException"},
		{name: "dynamodb no date", call: dynamoListTables, creds: base, tamper: delHeader("X-Amz-Date"), wantStatus: 400, wantCode: "IncompleteSignatureException"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			service := tc.service
			if service == "" {
				service = tc.call.service()
			}
			req := tc.call.signed(t, e.srv.URL, tc.creds, service)
			if tc.tamper != nil {
				tc.tamper(req)
			}
			resp, err := e.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			code := errorOf(t, resp)
			if resp.StatusCode != tc.wantStatus || code != tc.wantCode {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, code, tc.wantStatus, tc.wantCode)
			}
		})
	}
}

func withHashHeader(c wireCall) wireCall {
	c.hashHeader = true
	return c
}

func flipSignature(req *http.Request) {
	h := req.Header.Get("Authorization")
	last := h[len(h)-1]
	flipped := byte('0')
	if last == '0' {
		flipped = '1'
	}
	req.Header.Set("Authorization", h[:len(h)-1]+string(flipped))
}

func replaceBody(body string) func(*http.Request) {
	return func(req *http.Request) {
		req.Body = io.NopCloser(strings.NewReader(body))
		req.ContentLength = int64(len(body))
	}
}

func setHeader(k, v string) func(*http.Request) {
	return func(req *http.Request) { req.Header.Set(k, v) }
}

func delHeader(k string) func(*http.Request) {
	return func(req *http.Request) { req.Header.Del(k) }
}

// The SDK itself sees a tampered signature as the typed DynamoDB error code,
// and does not retry it.
func TestSDKSeesTamperedSignature(t *testing.T) {
	e := start(t, sandbox.Options{Accounts: sandbox.DemoAccounts()})
	db := dynamodb.NewFromConfig(e.config(e.assumed("111111111111", ""), "us-east-1"), func(o *dynamodb.Options) {
		o.APIOptions = append(o.APIOptions, func(s *middleware.Stack) error {
			return s.Finalize.Add(middleware.FinalizeMiddlewareFunc("tamper", func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
				if req, ok := in.Request.(*smithyhttp.Request); ok {
					flipSignature(req.Request)
				}
				return next.HandleFinalize(ctx, in)
			}), middleware.After)
		})
	})
	_, err := db.ListTables(t.Context(), &dynamodb.ListTablesInput{})
	if got := errorCode(err); got != "InvalidSignatureException" {
		t.Fatalf("ListTables with a tampered signature: code %q (%v), want InvalidSignatureException", got, err)
	}
	wrong := credentials.NewStaticCredentialsProvider(e.fake.BaseCredentials().AccessKeyID, "wrong", "")
	_, err = sts.NewFromConfig(e.config(wrong, "us-east-1")).GetCallerIdentity(t.Context(), &sts.GetCallerIdentityInput{})
	if got := errorCode(err); got != "SignatureDoesNotMatch" {
		t.Fatalf("GetCallerIdentity with a wrong secret: code %q (%v), want SignatureDoesNotMatch", got, err)
	}
}
