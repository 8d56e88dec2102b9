package rpcerror

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/backupd/backupd/accounts"
	"github.com/backupd/backupd/auth"
	"github.com/backupd/backupd/redact"
)

// FuzzStatus maps any AWS API error, as the SDK returns it and as
// backupd wraps it, and checks that: nothing panics; the code is one of
// DESIGN.md's table; the status has a backupd ErrorInfo and can be sent
// (proto and JSON encodings succeed, so neither gRPC nor the gateway
// drops it or answers 500); an ACCESS_DENIED or any other refusal of
// backupd's credentials repeats nothing of AWS's message; no message
// carries a SigV4 credential, signature or session token; and a
// message is longer than AWS's own by a bounded amount.
func FuzzStatus(f *testing.F) {
	for _, c := range []string{"AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException", "ValidationException",
		"ResourceNotFoundException", "BackupNotFoundException", "ThrottlingException", "InternalFailure", "AccessDenied", ""} {
		f.Add(c, "User: arn:aws:sts::111111111111:assumed-role/backupd/s is not authorized; x-amz-security-token:IQoJb3JpZ2luX2VjEXAMPLESECRET", false, uint16(400), "REQ-1", uint8(0))
	}
	f.Add("ValidationException", "Credential=AKIAEXAMPLE/20260101/us-east-1/dynamodb/aws4_request, Signature=deadbeefcafe", false, uint16(400), "", uint8(4))
	f.Add("ServiceUnavailable", "\xff\xfe", true, uint16(503), "r", uint8(1))
	f.Add("ExpiredToken", "token expired", false, uint16(403), "r", uint8(2))
	f.Add("TableNotFoundException", strings.Repeat("x", 300), false, uint16(400), "r", uint8(3))
	f.Fuzz(func(t *testing.T, code, message string, serverFault bool, httpStatus uint16, requestID string, wrap uint8) {
		fault := smithy.FaultClient
		if serverFault {
			fault = smithy.FaultServer
		}
		var err error = &smithy.GenericAPIError{Code: code, Message: message, Fault: fault}
		err = &smithy.OperationError{ServiceID: "DynamoDB", OperationName: "CreateBackup", Err: &awshttp.ResponseError{
			ResponseError: &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: int(httpStatus)}}, Err: err},
			RequestID:     requestID,
		}}
		switch wrap % 5 {
		case 1:
			err = &accounts.DeletedEarlierError{Err: err}
		case 2:
			err = &auth.AssumeRoleError{AccountID: "111111111111", Err: err}
		case 3:
			err = &accounts.OutcomeUnknownError{Operation: "CreateBackup", AccountID: "111111111111", Err: err}
		case 4:
			err = fmt.Errorf("create backup: %w", err)
		}
		st, _ := Status(err, Request{AccountID: "111111111111"})
		switch st.Code() {
		case codes.InvalidArgument, codes.PermissionDenied, codes.NotFound, codes.AlreadyExists, codes.FailedPrecondition,
			codes.ResourceExhausted, codes.Unavailable, codes.DeadlineExceeded, codes.Internal:
		default:
			t.Fatalf("code %v for %v", st.Code(), err)
		}
		info := &errdetails.ErrorInfo{}
		for _, d := range st.Details() {
			if i, ok := d.(*errdetails.ErrorInfo); ok {
				info = i
			}
		}
		valid := utf8.ValidString(message) && utf8.ValidString(code) && utf8.ValidString(requestID)
		if valid && (info.GetDomain() != domain || info.GetReason() == "") {
			t.Errorf("no backupd ErrorInfo in %v", st.Proto())
		}
		if valid {
			if _, err := proto.Marshal(st.Proto()); err != nil {
				t.Errorf("status cannot be sent over gRPC: %v", err)
			}
			if _, err := protojson.Marshal(st.Proto()); err != nil {
				t.Errorf("status cannot be sent over REST: %v", err)
			}
		}
		msg := st.Message()
		// The reasons whose message is backupd's own text: AWS's may
		// name backupd's role or quote the signed request.
		switch reason := info.GetReason(); reason {
		case "ACCESS_DENIED", "ROLE_ASSUMPTION_DENIED", "INTERNAL", "DYNAMODB_UNAVAILABLE", "STS_UNAVAILABLE", "OUTCOME_UNKNOWN":
			if len(message) >= 8 && strings.Contains(msg, message) {
				t.Errorf("%s repeats AWS's message %q: %q", reason, message, msg)
			}
			if redact.Secrets(msg) != msg {
				t.Errorf("%s message carries a signed secret: %q", reason, msg)
			}
		}
		if len(msg) > len(message)+len(code)+1024 {
			t.Errorf("message of %d bytes for an AWS message of %d", len(msg), len(message))
		}
	})
}
