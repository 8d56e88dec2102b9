package rpcerror

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/backupd/backupd/accounts"
	"github.com/backupd/backupd/auth"
	"github.com/backupd/backupd/badrequest"
	"github.com/backupd/backupd/callers"
	"github.com/backupd/backupd/idempotency"
	"github.com/backupd/backupd/ratelimit"
	"github.com/backupd/backupd/service"
	"github.com/backupd/backupd/sharedstate"
)

// TestStatusBoundsViolations: an error with very many field violations
// carries the first 20, and its message and its ErrorInfo say how many
// more there were.
func TestStatusBoundsViolations(t *testing.T) {
	var vs []badrequest.Violation
	for i := range 50 {
		f := fmt.Sprintf("f%d", i)
		vs = append(vs, badrequest.Violation{Field: f, Description: f + " is not a field"})
	}
	st, _ := Status(&badrequest.Error{Violations: vs}, Request{})
	var n int
	var omitted string
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.BadRequest:
			n = len(d.GetFieldViolations())
		case *errdetails.ErrorInfo:
			omitted = d.GetMetadata()["omitted_violations"]
		}
	}
	if n != MaxViolations || !strings.HasSuffix(st.Message(), "f19 is not a field; and 30 more") {
		t.Errorf("%d violations, message %q; want %d and the count of the rest", n, st.Message(), MaxViolations)
	}
	if omitted != "30" {
		t.Errorf("ErrorInfo metadata omitted_violations %q; want 30, the violations the details leave out", omitted)
	}
	st, _ = Status(&badrequest.Error{Violations: vs[:2]}, Request{})
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetMetadata()["omitted_violations"] != "" {
			t.Errorf("ErrorInfo metadata %v for 2 violations, all carried; want no omitted_violations", info.GetMetadata())
		}
	}
}

// TestStatusFitsInTrailers: however many long violations an error has,
// its message and details, as gRPC sends them in the trailers (the message
// in grpc-message, and again in grpc-status-details-bin, base64), stay
// well within the 8 KiB of metadata gRPC clients take by default; the
// details carry the first violations, the message repeats the first of
// those and counts every one it leaves out.
func TestStatusFitsInTrailers(t *testing.T) {
	for _, n := range []int{1, 5, 30, 5000} {
		t.Run(fmt.Sprint(n, " violations"), func(t *testing.T) {
			var vs []badrequest.Violation
			for i := range n {
				field := fmt.Sprintf("global_secondary_index_override.indexes[%d].index_name", i)
				vs = append(vs, badrequest.Violation{Field: field,
					Description: field + " must be 3-255 characters of a-z A-Z 0-9 _ . -; got " + badrequest.Quote(strings.Repeat("x", 256))})
			}
			st, _ := Status(&badrequest.Error{Violations: vs}, Request{})
			b, err := proto.Marshal(st.Proto())
			if err != nil {
				t.Fatal(err)
			}
			if size := len(st.Message()) + base64.RawStdEncoding.EncodedLen(len(b)); size > 6<<10 {
				t.Errorf("trailers of about %d bytes; want at most 6 KiB", size)
			}
			var carried int
			for _, d := range st.Details() {
				if br, ok := d.(*errdetails.BadRequest); ok {
					carried = len(br.GetFieldViolations())
				}
			}
			listed := strings.Count(st.Message(), " must be ")
			if carried == 0 || listed == 0 || listed > carried {
				t.Errorf("%d violations carried, %d in the message; want at least one, the message's among them", carried, listed)
			}
			if left := n - listed; left > 0 && !strings.HasSuffix(st.Message(), fmt.Sprintf("; and %d more", left)) ||
				left == 0 && strings.Contains(st.Message(), " more") {
				t.Errorf("message %q for %d violations, %d listed: want the rest counted", st.Message(), n, listed)
			}
		})
	}
}

// sdkErr wraps an API error the way aws-sdk-go-v2 returns it from an operation.
func sdkErr(err error) error {
	resp := &awshttp.ResponseError{
		ResponseError: &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: 400}}, Err: err},
		RequestID:     "REQ-123",
	}
	return &smithy.OperationError{ServiceID: "DynamoDB", OperationName: "CreateBackup", Err: resp}
}

// sdkErrStatus is sdkErr for an answer of the given HTTP status.
func sdkErrStatus(err error, status int) error {
	e := sdkErr(err).(*smithy.OperationError)
	e.Err.(*awshttp.ResponseError).Response.StatusCode = status
	return e
}

// stsErr is an AssumeRoleError as backupd gets it: STS's answer of the
// given status to operation op.
func stsErr(op string, err error, status int) error {
	e := sdkErrStatus(err, status).(*smithy.OperationError)
	e.ServiceID, e.OperationName = "STS", op
	return &auth.AssumeRoleError{AccountID: "111111111111", Err: e}
}

// DynamoDB's message loses the period that closes its sentence, not one
// that may belong to a name it ends with.
func TestWithoutClosingPeriod(t *testing.T) {
	for _, tt := range []struct{ msg, want string }{
		{"The security token included in the request is invalid.", "The security token included in the request is invalid"},
		{"Table not found: Orders", "Table not found: Orders"},
		{"Table not found: Orders.", "Table not found: Orders."},
		{"Table not found: ...", "Table not found: ..."},
		{"Invalid BackupArn: arn:aws:dynamodb:us-east-1:111111111111:table/T./backup/1-a", "Invalid BackupArn: arn:aws:dynamodb:us-east-1:111111111111:table/T./backup/1-a"},
		{"One or more parameter values were invalid: Table: T. not found.", "One or more parameter values were invalid: Table: T. not found"},
		{".", ""},
		{"", ""},
	} {
		if got := withoutClosingPeriod(tt.msg); got != tt.want {
			t.Errorf("withoutClosingPeriod(%q) = %q, want %q", tt.msg, got, tt.want)
		}
	}
}

func TestStatus(t *testing.T) {
	denied := &auth.AssumeRoleError{AccountID: "111111111111", Err: &smithy.GenericAPIError{Code: "AccessDenied", Message: "User arn:aws:iam::999:user/x is not authorized"}}
	tests := []struct {
		name      string
		err       error
		code      codes.Code
		reason    string
		field     string        // a BadRequest field violation expected, if any
		retry     time.Duration // a RetryInfo expected, if non-zero
		msgHas    string
		msgHasNot string
	}{
		{"field fails validation", &badrequest.Error{Violations: []badrequest.Violation{{Field: "backup_name", Description: "backup_name must be 3-255 characters; got 2"}}},
			codes.InvalidArgument, "INVALID_ARGUMENT", "backup_name", 0, "got 2", ""},
		{"region not allowed", &accounts.RegionNotAllowedError{AccountID: "111111111111", Region: "eu-west-1", Allowed: []string{"us-east-1"}},
			codes.InvalidArgument, "REGION_NOT_ALLOWED", "region", 0, `region "eu-west-1" is not allowed for account 111111111111`, ""},
		{"region of a backup ARN not allowed", &accounts.RegionNotAllowedError{AccountID: "111111111111", Region: "eu-west-1", Allowed: []string{"us-east-1"}, Field: "backup_arn"},
			codes.InvalidArgument, "REGION_NOT_ALLOWED", "backup_arn", 0, `backup_arn names region "eu-west-1", which is not allowed`, ""},
		{"DynamoDB ValidationException", sdkErr(&smithy.GenericAPIError{Code: "ValidationException", Message: "bad name"}),
			codes.InvalidArgument, "DYNAMODB_VALIDATION", "", 0, "DynamoDB refused the request as invalid: bad name", ""},
		{"STS AccessDenied", fmt.Errorf("op: %w", denied), codes.PermissionDenied, "ROLE_ASSUMPTION_DENIED", "", 0, "111111111111", "arn:aws:iam"},
		{"STS not activated in its region", fmt.Errorf("op: %w", &auth.AssumeRoleError{AccountID: "111111111111",
			Err: &smithy.GenericAPIError{Code: "RegionDisabledException", Message: "STS is not activated in this region for account:111111111111"}}),
			codes.PermissionDenied, "ROLE_ASSUMPTION_DENIED", "", 0, "STS is not activated in the region backupd calls it in", "trust policy"},
		{"DynamoDB AccessDenied", sdkErr(&smithy.GenericAPIError{Code: "AccessDeniedException",
			Message: "User: arn:aws:sts::111111111111:assumed-role/backupd-prod/backupd is not authorized to perform: dynamodb:CreateBackup"}),
			codes.PermissionDenied, "ACCESS_DENIED", "", 0, "refused backupd's role in this account (AccessDeniedException)", "assumed-role"},
		{"DynamoDB signature mismatch", sdkErr(&smithy.GenericAPIError{Code: "InvalidSignatureException",
			Message: "The request signature we calculated does not match. The Canonical String for this request should have been 'POST / x-amz-security-token:IQoJ...'"}),
			codes.PermissionDenied, "ACCESS_DENIED", "", 0, "(InvalidSignatureException)", "x-amz-security-token"},
		{"DynamoDB incomplete signature", sdkErr(&smithy.GenericAPIError{Code: "IncompleteSignatureException", Message: "Authorization header requires 'Signature'"}),
			codes.PermissionDenied, "ACCESS_DENIED", "", 0, "(IncompleteSignatureException)", "Authorization header"},
		{"DynamoDB missing token", sdkErr(&smithy.GenericAPIError{Code: "MissingAuthenticationTokenException", Message: "Request is missing Authentication Token"}),
			codes.PermissionDenied, "ACCESS_DENIED", "", 0, "(MissingAuthenticationTokenException)", ""},
		// AWS's common errors (the API reference's Common Errors), which
		// DynamoDB's reference lists beside its own.
		{"DynamoDB common ValidationError", sdkErr(&smithy.GenericAPIError{Code: "ValidationError", Message: "bad input"}),
			codes.InvalidArgument, "DYNAMODB_VALIDATION", "", 0, "DynamoDB refused the request as invalid: bad input", ""},
		{"DynamoDB common NotAuthorized", sdkErr(&smithy.GenericAPIError{Code: "NotAuthorized", Message: "You do not have permission"}),
			codes.PermissionDenied, "ACCESS_DENIED", "", 0, "(NotAuthorized)", ""},
		{"DynamoDB common InvalidClientTokenId", sdkErrStatus(&smithy.GenericAPIError{Code: "InvalidClientTokenId"}, 403),
			codes.PermissionDenied, "ACCESS_DENIED", "", 0, "did not accept the credentials", "permissions policy"},
		{"DynamoDB common OptInRequired", sdkErrStatus(&smithy.GenericAPIError{Code: "OptInRequired"}, 403),
			codes.PermissionDenied, "ACCESS_DENIED", "", 0, "(OptInRequired)", ""},
		{"DynamoDB common IncompleteSignature", sdkErr(&smithy.GenericAPIError{Code: "IncompleteSignature"}),
			codes.PermissionDenied, "ACCESS_DENIED", "", 0, "(IncompleteSignature)", ""},
		{"DynamoDB invalid token", sdkErr(&smithy.GenericAPIError{Code: "UnrecognizedClientException", Message: "The security token included in the request is invalid."}),
			codes.PermissionDenied, "ACCESS_DENIED", "", 0, "region is enabled in the account", "permissions policy"},
		{"DynamoDB error code unknown, 403", sdkErrStatus(&smithy.GenericAPIError{Code: "SomethingNew"}, 403),
			codes.PermissionDenied, "ACCESS_DENIED", "", 0, "(SomethingNew, HTTP 403)", ""},
		{"DynamoDB 403 whose body is not AWS's JSON", sdkErrStatus(&smithy.DeserializationError{Err: errors.New("invalid character '<'")}, 403),
			codes.PermissionDenied, "ACCESS_DENIED", "", 0, "(HTTP 403 without an AWS error)", "internal error"},
		{"DynamoDB 429 whose body is not AWS's JSON", sdkErrStatus(&smithy.DeserializationError{Err: errors.New("invalid character '<'")}, 429),
			codes.ResourceExhausted, "DYNAMODB_THROTTLED", "", DefaultRetryAfter, "HTTP 429 Too Many Requests", "internal error"},
		{"DynamoDB 429 with an error code not AWS's", sdkErrStatus(&smithy.GenericAPIError{Code: "UnknownError"}, 429),
			codes.ResourceExhausted, "DYNAMODB_THROTTLED", "", DefaultRetryAfter, "HTTP 429 Too Many Requests", "internal error"},
		{"DynamoDB 408 whose body is not AWS's JSON", sdkErrStatus(&smithy.DeserializationError{Err: errors.New("invalid character '<'")}, 408),
			codes.Unavailable, "DYNAMODB_UNAVAILABLE", "", DefaultRetryAfter, "HTTP 408", "internal error"},
		{"DynamoDB 407 whose body is not AWS's JSON", sdkErrStatus(&smithy.DeserializationError{Err: errors.New("invalid character '<'")}, 407),
			codes.Internal, "INTERNAL", "", 0, "internal error", "407"},
		{"DynamoDB 403 without an error code", sdkErrStatus(&smithy.GenericAPIError{Code: "UnknownError"}, 403),
			codes.PermissionDenied, "ACCESS_DENIED", "", 0, "(HTTP 403 without an error code)", "UnknownError"},
		{"STS packed policy too large", stsErr("AssumeRole", &smithy.GenericAPIError{Code: "PackedPolicyTooLarge"}, 400),
			codes.PermissionDenied, "ROLE_ASSUMPTION_DENIED", "", 0, "transitive tags", "trust policy"},
		{"STS malformed policy", stsErr("AssumeRole", &smithy.GenericAPIError{Code: "MalformedPolicyDocument"}, 400),
			codes.PermissionDenied, "ROLE_ASSUMPTION_DENIED", "", 0, "(MalformedPolicyDocument)", "trust policy"},
		{"DynamoDB expired token", sdkErr(&smithy.GenericAPIError{Code: "ExpiredTokenException", Message: "The security token included in the request is expired"}),
			codes.Unavailable, "CREDENTIALS_EXPIRED", "", DefaultRetryAfter, "nothing was done; retry later", ""},
		{"Redis failed a retry's turn", &smithy.OperationError{ServiceID: "DynamoDB", OperationName: "DeleteBackup",
			Err: &accounts.RetryStoppedError{Stopped: &sharedstate.UnavailableError{Op: "rate limit", Err: errors.New("connection refused")}}},
			codes.Unavailable, "SHARED_STATE_UNAVAILABLE", "", DefaultRetryAfter, "whose attempt before had failed at DynamoDB", "nothing was sent"},
		{"Redis failed the retry of a DeleteBackup whose attempt went unanswered", &accounts.MayHaveDeletedError{Err: &smithy.OperationError{ServiceID: "DynamoDB", OperationName: "DeleteBackup",
			Err: &accounts.RetryStoppedError{Stopped: &sharedstate.UnavailableError{Op: "rate limit", Err: errors.New("connection refused")}}}},
			codes.Unavailable, "SHARED_STATE_UNAVAILABLE", "", DefaultRetryAfter, "may have deleted the backup", ""},
		{"account not configured", fmt.Errorf("resolve: %w", &accounts.NotConfiguredError{AccountID: "333333333333"}), codes.NotFound, "ACCOUNT_NOT_CONFIGURED", "", 0, "333333333333", ""},
		{"table not found", sdkErr(&types.TableNotFoundException{Message: strPtr("Table not found: Orders")}), codes.NotFound, "TABLE_NOT_FOUND", "", 0, "Table not found: Orders; the table must exist in the account and region", ""},
		// A name may end in "."; the message names it whole.
		{"table not found, its name ending in a period", sdkErr(&types.TableNotFoundException{Message: strPtr("Table not found: Orders.")}), codes.NotFound, "TABLE_NOT_FOUND", "", 0,
			"Table not found: Orders.; the table must exist", ""},
		{"backup not found", sdkErr(&types.BackupNotFoundException{Message: strPtr("no backup")}), codes.NotFound, "BACKUP_NOT_FOUND", "", 0, "no backup; ListBackups gives", ""},
		{"backup gone after an unanswered DeleteBackup attempt", &smithy.OperationError{ServiceID: "DynamoDB", OperationName: "DeleteBackup",
			Err: &accounts.DeletedEarlierError{Err: sdkErr(&types.BackupNotFoundException{Message: strPtr("no backup")})}},
			codes.NotFound, "BACKUP_NOT_FOUND", "", 0, "an earlier attempt of this DeleteBackup went unanswered and may have deleted it", ""},
		{"restore target exists", sdkErr(&types.TableAlreadyExistsException{Message: strPtr("exists")}), codes.AlreadyExists, "TABLE_ALREADY_EXISTS", "", 0, "exists", ""},
		{"table in use", sdkErr(&types.TableInUseException{Message: strPtr("in use")}), codes.FailedPrecondition, "TABLE_IN_USE", "", 0, "in use", ""},
		{"resource in use", sdkErr(&types.ResourceInUseException{Message: strPtr("being created")}), codes.FailedPrecondition, "TABLE_IN_USE", "", 0, "being created", ""},
		{"backup in use", sdkErr(&types.BackupInUseException{Message: strPtr("in use")}), codes.FailedPrecondition, "BACKUP_IN_USE", "", 0, "in use", ""},
		{"backups not yet available", sdkErr(&types.ContinuousBackupsUnavailableException{Message: strPtr("not yet")}), codes.FailedPrecondition, "BACKUPS_UNAVAILABLE", "", 0, "not yet", ""},
		{"our rate limit", fmt.Errorf("op: %w", &ratelimit.LimitedError{Key: ratelimit.Key{Account: "111111111111", Region: "us-east-1", Operation: "CreateBackup"}, RetryAfter: 1500 * time.Millisecond}),
			codes.ResourceExhausted, "RATE_LIMITED", "", 1500 * time.Millisecond, "are over the account's rate; retry after 1.5s", ""},
		{"our rate limit, held after Redis restarted", &ratelimit.LimitedError{Key: ratelimit.Key{Account: "111111111111", Region: "us-east-1", Operation: "CreateBackup"}, RetryAfter: time.Second, Held: true},
			codes.ResourceExhausted, "RATE_LIMITED", "", time.Second, "are held back while backupd's shared rate limit recovers", "over the account's rate"},
		{"DynamoDB LimitExceeded, too many table operations at once, after retries", &retry.MaxAttemptsError{Attempt: 5, Err: sdkErr(&types.LimitExceededException{
			Message: strPtr("Subscriber limit exceeded: Only 10 tables can be created, updated, or deleted simultaneously")})},
			codes.ResourceExhausted, "DYNAMODB_THROTTLED", "", DefaultRetryAfter, "simultaneously; DynamoDB throttled", ""},
		{"DynamoDB LimitExceeded without a message", sdkErr(&types.LimitExceededException{}),
			codes.ResourceExhausted, "DYNAMODB_THROTTLED", "", DefaultRetryAfter, "DynamoDB throttled", ""},
		{"DynamoDB LimitExceeded, too many control-plane operations", sdkErr(&types.LimitExceededException{Message: strPtr("Too many concurrent control plane operations")}),
			codes.ResourceExhausted, "DYNAMODB_THROTTLED", "", DefaultRetryAfter, "DynamoDB throttled", ""},
		{"DynamoDB LimitExceeded over the account's table quota", sdkErr(&types.LimitExceededException{
			Message: strPtr("Subscriber limit exceeded: There is a limit of 2500 tables per subscriber")}),
			codes.ResourceExhausted, "DYNAMODB_QUOTA_EXCEEDED", "", 0, "2500 tables per subscriber; DynamoDB refused the call as over one of the account's quotas", "retry later"},
		{"DynamoDB throttling", sdkErr(&smithy.GenericAPIError{Code: "ThrottlingException", Message: "slow down"}), codes.ResourceExhausted, "DYNAMODB_THROTTLED", "", DefaultRetryAfter,
			"slow down; DynamoDB throttled this account's calls (after backupd's retries, or with no time left for another before the deadline) and did nothing: retry later", ""},
		{"DynamoDB common RequestLimitExceeded", sdkErr(&smithy.GenericAPIError{Code: "RequestLimitExceeded", Message: "Throughput exceeds the current throughput limit for your account"}),
			codes.ResourceExhausted, "DYNAMODB_THROTTLED", "", DefaultRetryAfter, "DynamoDB throttled", ""},
		{"DynamoDB throttling, its message a sentence", sdkErr(&smithy.GenericAPIError{Code: "ProvisionedThroughputExceededException", Message: "The level of configured provisioned throughput for the table was exceeded."}),
			codes.ResourceExhausted, "DYNAMODB_THROTTLED", "", DefaultRetryAfter, "was exceeded; DynamoDB throttled", ".;"},
		// The limiter did not admit the SDK's retry: the caller hears what DynamoDB answered, not of a rate it was never over.
		{"DynamoDB 5xx, its retry not admitted", &smithy.OperationError{ServiceID: "DynamoDB", OperationName: "DescribeBackup", Err: &accounts.RetryNotMadeError{
			Failed:  sdkErr(&types.InternalServerError{Message: strPtr("boom")}),
			Stopped: &ratelimit.LimitedError{Key: ratelimit.Key{Account: "111111111111", Region: "us-east-1", Operation: "DescribeBackup"}, RetryAfter: 50 * time.Millisecond}}},
			codes.Unavailable, "DYNAMODB_UNAVAILABLE", "", DefaultRetryAfter, "", "over the account's rate"},
		{"DynamoDB throttling, its retry not admitted", &accounts.RetryNotMadeError{
			Failed:  sdkErr(&smithy.GenericAPIError{Code: "ThrottlingException", Message: "slow down"}),
			Stopped: &ratelimit.LimitedError{Key: ratelimit.Key{Account: "111111111111", Region: "us-east-1", Operation: "CreateBackup"}, RetryAfter: 50 * time.Millisecond}},
			codes.ResourceExhausted, "DYNAMODB_THROTTLED", "", DefaultRetryAfter, "DynamoDB throttled", "over the account's rate"},
		{"STS did not answer within its timeout", &smithy.OperationError{ServiceID: "DynamoDB", Err: &auth.AssumeRoleError{AccountID: "111111111111",
			Err: fmt.Errorf("operation error STS: AssumeRole: %w", context.DeadlineExceeded)}},
			codes.Unavailable, "STS_UNAVAILABLE", "", DefaultRetryAfter, "111111111111", ""},
		{"STS refuses AssumeRole as invalid", stsErr("AssumeRole", &smithy.GenericAPIError{Code: "ValidationError", Message: "The requested DurationSeconds exceeds the MaxSessionDuration"}, 400),
			codes.Internal, "INTERNAL", "", 0, "internal error; the details are in backupd's log", "DurationSeconds"},
		{"STS refuses backupd's own web identity call as invalid", &auth.AssumeRoleError{AccountID: "111111111111",
			Err: &smithy.OperationError{ServiceID: "STS", OperationName: "AssumeRole",
				Err: fmt.Errorf("failed to refresh cached credentials, %w", stsErr("AssumeRoleWithWebIdentity", &smithy.GenericAPIError{Code: "ValidationError"}, 400).(*auth.AssumeRoleError).Err)}},
			codes.Unavailable, "STS_UNAVAILABLE", "", DefaultRetryAfter, "111111111111", ""},
		{"STS throttles", stsErr("AssumeRole", &smithy.GenericAPIError{Code: "Throttling", Message: "Rate exceeded"}, 400),
			codes.Unavailable, "STS_UNAVAILABLE", "", DefaultRetryAfter, "111111111111", ""},
		{"STS times out the request", stsErr("AssumeRole", &smithy.GenericAPIError{Code: "RequestTimeout"}, 400),
			codes.Unavailable, "STS_UNAVAILABLE", "", DefaultRetryAfter, "111111111111", ""},
		{"STS cannot reach the identity provider", stsErr("AssumeRole", &smithy.GenericAPIError{Code: "IDPCommunicationError"}, 400),
			codes.Unavailable, "STS_UNAVAILABLE", "", DefaultRetryAfter, "111111111111", ""},
		{"STS finds backupd's own token expired", stsErr("AssumeRole", &smithy.GenericAPIError{Code: "ExpiredTokenException"}, 400),
			codes.PermissionDenied, "ROLE_ASSUMPTION_DENIED", "", 0, "check backupd's own AWS credentials", "trust policy"},
		{"STS does not know backupd's own key", stsErr("AssumeRole", &smithy.GenericAPIError{Code: "InvalidClientTokenId"}, 403),
			codes.PermissionDenied, "ROLE_ASSUMPTION_DENIED", "", 0, "could not assume its role in account 111111111111", "trust policy"},
		{"STS finds backupd's own signature wrong", stsErr("AssumeRole", &smithy.GenericAPIError{Code: "SignatureDoesNotMatch"}, 403),
			codes.PermissionDenied, "ROLE_ASSUMPTION_DENIED", "", 0, "check backupd's own AWS credentials", "trust policy"},
		{"STS refuses the role", stsErr("AssumeRole", &smithy.GenericAPIError{Code: "AccessDenied"}, 403),
			codes.PermissionDenied, "ROLE_ASSUMPTION_DENIED", "", 0, "check the role's trust policy and ExternalId, and that backupd's own role or user may call sts:AssumeRole on it", "own AWS credentials"},
		{"STS 5xx", stsErr("AssumeRole", &smithy.GenericAPIError{Code: "InternalFailure"}, 500),
			codes.Unavailable, "STS_UNAVAILABLE", "", DefaultRetryAfter, "111111111111", ""},
		{"STS unreachable", &auth.AssumeRoleError{AccountID: "111111111111", Err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}},
			codes.Unavailable, "STS_UNAVAILABLE", "", DefaultRetryAfter, "111111111111", ""},
		{"DynamoDB 5xx after retries", &retry.MaxAttemptsError{Attempt: 5, Err: sdkErr(&types.InternalServerError{Message: strPtr("boom")})},
			codes.Unavailable, "DYNAMODB_UNAVAILABLE", "", DefaultRetryAfter, "", ""},
		// Error codes the SDK does not model are server faults by their 5xx.
		{"DynamoDB ServiceUnavailable after retries", &retry.MaxAttemptsError{Attempt: 5, Err: sdkErrStatus(&smithy.GenericAPIError{Code: "ServiceUnavailable"}, 503)},
			codes.Unavailable, "DYNAMODB_UNAVAILABLE", "", DefaultRetryAfter, "ServiceUnavailable", ""},
		{"DynamoDB InternalFailure after retries", &retry.MaxAttemptsError{Attempt: 5, Err: sdkErrStatus(&smithy.GenericAPIError{Code: "InternalFailure"}, 500)},
			codes.Unavailable, "DYNAMODB_UNAVAILABLE", "", DefaultRetryAfter, "InternalFailure", "deleted"},
		{"DynamoDB 5xx to DeleteBackup after retries", &accounts.MayHaveDeletedError{Err: &retry.MaxAttemptsError{Attempt: 5, Err: &smithy.OperationError{ServiceID: "DynamoDB", OperationName: "DeleteBackup",
			Err: sdkErrStatus(&smithy.GenericAPIError{Code: "InternalFailure"}, 500).(*smithy.OperationError).Err}}},
			codes.Unavailable, "DYNAMODB_UNAVAILABLE", "", DefaultRetryAfter, "may have deleted the backup", ""},
		{"DynamoDB throttling a DeleteBackup after an unanswered attempt", &accounts.MayHaveDeletedError{
			Err: &retry.MaxAttemptsError{Attempt: 5, Err: sdkErr(&smithy.GenericAPIError{Code: "ThrottlingException", Message: "slow down"})}},
			codes.ResourceExhausted, "DYNAMODB_THROTTLED", "", DefaultRetryAfter, "may have deleted the backup", ""},
		{"DynamoDB unreachable for every attempt of a DeleteBackup", &smithy.OperationError{ServiceID: "DynamoDB", OperationName: "DeleteBackup",
			Err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}},
			codes.Unavailable, "DYNAMODB_UNAVAILABLE", "", DefaultRetryAfter, "", "deleted"},
		{"DynamoDB empty 5xx after retries", &retry.MaxAttemptsError{Attempt: 5, Err: sdkErrStatus(&smithy.GenericAPIError{Code: "UnknownError", Message: "UnknownError"}, 500)},
			codes.Unavailable, "DYNAMODB_UNAVAILABLE", "", DefaultRetryAfter, "DynamoDB failed (HTTP 500 without an error code)", ""},
		{"DynamoDB error code unknown, 4xx", sdkErrStatus(&smithy.GenericAPIError{Code: "SomethingNew"}, 400),
			codes.Internal, "INTERNAL", "", 0, "internal error", ""},
		// The deadline cut off the SDK's backoff before a retry.
		{"DynamoDB throttling, the deadline before its retry", &accounts.RetryNotMadeError{
			Failed:  sdkErr(&smithy.GenericAPIError{Code: "ThrottlingException", Message: "slow down"}),
			Stopped: &aws.RequestCanceledError{Err: context.DeadlineExceeded}},
			codes.ResourceExhausted, "DYNAMODB_THROTTLED", "", DefaultRetryAfter, "DynamoDB throttled", "canceled"},
		{"DynamoDB unreachable", &smithy.OperationError{ServiceID: "DynamoDB", Err: &net.OpError{Op: "dial", Err: errors.New("refused")}},
			codes.Unavailable, "DYNAMODB_UNAVAILABLE", "", DefaultRetryAfter, "", ""},
		{"CreateBackup outcome unknown", &accounts.OutcomeUnknownError{Operation: "CreateBackup", AccountID: "111111111111", Region: "eu-west-1", Err: errors.New("connection reset by peer")},
			codes.Unavailable, "OUTCOME_UNKNOWN", "", 0, "CreateBackup in account 111111111111, region eu-west-1, definitively: it may or may not", ""},
		{"restore outcome unknown after a deadline", &accounts.OutcomeUnknownError{Operation: "RestoreTableFromBackup", AccountID: "111111111111", Err: fmt.Errorf("op: %w", context.DeadlineExceeded)},
			codes.Unavailable, "OUTCOME_UNKNOWN", "", 0, "may or may not have been done; check whether the target table exists (DynamoDB's DescribeTable", "ListBackups"},
		{"repeat of a request whose outcome is unknown", &idempotency.OutcomeUnknownError{Key: idempotency.Key{Account: "111111111111", RequestID: "req-1"}},
			codes.Unavailable, "OUTCOME_UNKNOWN", "", 0, "may or may not", ""},
		{"Redis unavailable to the limiter", &smithy.OperationError{ServiceID: "DynamoDB", Err: &sharedstate.UnavailableError{Op: "rate limit",
			Err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}}},
			codes.Unavailable, "SHARED_STATE_UNAVAILABLE", "", DefaultRetryAfter, "nothing was sent", "refused"},
		{"Redis unavailable to check a request_id", fmt.Errorf("claim: %w", &sharedstate.UnavailableError{Op: sharedstate.OpIdempotency,
			Err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}}),
			codes.Unavailable, "SHARED_STATE_UNAVAILABLE", "", DefaultRetryAfter, "another call with the same request_id may have; retry later with the same request_id", "nothing was sent"},
		{"no caller credentials", &callers.UnauthenticatedError{Missing: true}, codes.Unauthenticated, "UNAUTHENTICATED", "", 0, "Bearer", ""},
		{"unknown caller token", &callers.UnauthenticatedError{}, codes.Unauthenticated, "UNAUTHENTICATED", "", 0, "not one backupd knows", ""},
		{"caller not allowed", &callers.DeniedError{Caller: "orders", Operation: "DeleteBackup", AccountID: "111111111111"},
			codes.PermissionDenied, "CALLER_NOT_ALLOWED", "", 0, "orders may not call DeleteBackup in account 111111111111", ""},
		{"caller not allowed the operation anywhere", &callers.DeniedError{Caller: "orders", Operation: "DeleteBackup", AccountID: "111111111111", AnyAccount: true},
			codes.PermissionDenied, "CALLER_NOT_ALLOWED", "", 0, "orders may not call DeleteBackup;", ""},
		{"request_id reused", &idempotency.ConflictError{Key: idempotency.Key{Account: "111111111111", RequestID: "req-1"}},
			codes.AlreadyExists, "REQUEST_ID_REUSED", "request_id", 0, "req-1", ""},
		{"deadline passed", fmt.Errorf("op: %w", context.DeadlineExceeded), codes.DeadlineExceeded, "DEADLINE_EXCEEDED", "", 0, "upstream_timeout", "may or may not"},
		{"deadline passed before CreateBackup was sent", &accounts.NothingDoneError{Err: fmt.Errorf("op: %w", &ratelimit.InterruptedError{Err: context.DeadlineExceeded})},
			codes.DeadlineExceeded, "DEADLINE_EXCEEDED", "", 0, "before the request was sent to DynamoDB: nothing was done", "may or may not"},
		{"too little time left to send CreateBackup", &accounts.NothingDoneError{Err: fmt.Errorf("op: %w",
			&ratelimit.TooLateError{Key: ratelimit.Key{Operation: "CreateBackup"}, Lead: 50 * time.Millisecond})},
			codes.DeadlineExceeded, "DEADLINE_EXCEEDED", "", 0, "CreateBackup was not sent to DynamoDB: less than 50ms of the deadline was left", "may or may not"},
		// The limiter's error speaks of one attempt: an earlier one may have gone out (a retried DeleteBackup).
		{"deadline passed waiting for a retry's turn", fmt.Errorf("op: %w", &ratelimit.InterruptedError{Err: context.DeadlineExceeded}),
			codes.DeadlineExceeded, "DEADLINE_EXCEEDED", "", 0, "the deadline passed before AWS answered", "nothing was done"},
		// A GetBackup, ListBackups or DeleteBackup whose first attempt never had its turn (Redis stalling, say).
		{"deadline passed before any attempt's turn", &smithy.OperationError{ServiceID: "DynamoDB", OperationName: "DescribeBackup",
			Err: &accounts.NothingDoneError{Err: &ratelimit.InterruptedError{Err: context.DeadlineExceeded}}},
			codes.DeadlineExceeded, "DEADLINE_EXCEEDED", "", 0, "before the request was sent to DynamoDB: nothing was done", "may or may not"},
		{"deadline passed after CreateBackup was sent", &service.UnansweredError{Operation: "CreateBackup", Err: fmt.Errorf("op: %w", context.DeadlineExceeded)},
			codes.DeadlineExceeded, "DEADLINE_EXCEEDED", "", 0, "after CreateBackup was sent to DynamoDB, before it answered: it may or may not have been done", ""},
		{"deadline passed while a request_id run goes on", &service.StillRunningError{Operation: "CreateBackup", Err: context.DeadlineExceeded},
			codes.DeadlineExceeded, "DEADLINE_EXCEEDED", "", 0, "goes on under its request_id: repeat the request with the same request_id to get its result", ""},
		{"deadline passed while the request_id was still being checked", &service.NotStartedError{Operation: "CreateBackup", Err: context.DeadlineExceeded},
			codes.DeadlineExceeded, "DEADLINE_EXCEEDED", "", 0, "this call sent nothing to DynamoDB, but another call with the same request_id may have", "goes on"},
		// With the memory store (no Redis at all) a deadline already spent
		// on arrival ends the check too: the message must not blame Redis alone.
		{"deadline too short for the request_id check", &service.NotStartedError{Operation: "CreateBackup", Err: context.DeadlineExceeded},
			codes.DeadlineExceeded, "DEADLINE_EXCEEDED", "", 0, "the deadline left too little time for that, or its shared state (Redis)", "its request_id: its shared state"},
		{"canceled while the request_id was still being checked", &service.NotStartedError{Operation: "CreateBackup", Err: context.Canceled},
			codes.Canceled, "CANCELED", "", 0, "canceled before CreateBackup started: this call sent nothing to DynamoDB", "goes on"},
		{"canceled", context.Canceled, codes.Canceled, "CANCELED", "", 0, "", ""},
		{"canceled while a request_id run goes on", &service.StillRunningError{Operation: "CreateBackup", Err: context.Canceled},
			codes.Canceled, "CANCELED", "", 0, "canceled before CreateBackup finished; it goes on under its request_id", ""},
		{"canceled after CreateBackup was sent", &service.UnansweredError{Operation: "CreateBackup", Err: fmt.Errorf("op: %w", context.Canceled)},
			codes.Canceled, "CANCELED", "", 0, "canceled after CreateBackup was sent to DynamoDB, before it answered: it may or may not have been done", ""},
		{"a request a server refuses on its own", &RequestError{Code: codes.NotFound, Reason: ReasonRouteNotFound, Msg: "no route for GET /v2"},
			codes.NotFound, "ROUTE_NOT_FOUND", "", 0, "no route for GET /v2", ""},
		{"anything unexpected", errors.New("secret detail AKIAEXAMPLE"), codes.Internal, "INTERNAL", "", 0, "internal error", "AKIA"},
		// A 5xx whose body is not AWS's JSON (a proxy's 500 page): DynamoDB
		// unreachable, to be retried, not an internal error.
		{"DynamoDB 500 whose body is not AWS's JSON", sdkErrStatus(&smithy.DeserializationError{Err: errors.New("invalid character '<'")}, 500),
			codes.Unavailable, "DYNAMODB_UNAVAILABLE", "", DefaultRetryAfter, "retry later", "internal error"},
		// The codes mapAPI names that no other row sends.
		{"DynamoDB InvalidRestoreTimeException", sdkErr(&smithy.GenericAPIError{Code: "InvalidRestoreTimeException", Message: "bad time"}),
			codes.InvalidArgument, "DYNAMODB_VALIDATION", "", 0, "DynamoDB refused the request as invalid: bad time", ""},
		{"DynamoDB common MissingAuthenticationToken", sdkErr(&smithy.GenericAPIError{Code: "MissingAuthenticationToken"}),
			codes.PermissionDenied, "ACCESS_DENIED", "", 0, "(MissingAuthenticationToken)", ""},
		{"DynamoDB ResourceNotFoundException", sdkErr(&types.ResourceNotFoundException{Message: strPtr("Requested resource not found: Table: Orders not found")}),
			codes.NotFound, "TABLE_NOT_FOUND", "", 0, "Table: Orders not found; the table must exist", ""},
		// Without a message, the caller is told DynamoDB's error code.
		{"DynamoDB ValidationException without a message", sdkErr(&smithy.GenericAPIError{Code: "ValidationException"}),
			codes.InvalidArgument, "DYNAMODB_VALIDATION", "", 0, "DynamoDB refused the request as invalid: ValidationException (", ""},
		// INTERNAL's message is generic (DESIGN), an unanswered DeleteBackup's note included.
		{"anything unexpected after an unanswered DeleteBackup", &accounts.MayHaveDeletedError{Err: errors.New("nil map")},
			codes.Internal, "INTERNAL", "", 0, "internal error", "may have deleted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, internal := Status(tt.err, Request{AccountID: "111111111111"})
			if st.Code() != tt.code {
				t.Fatalf("code = %s, want %s (message %q)", st.Code(), tt.code, st.Message())
			}
			if internal != (tt.code == codes.Internal) {
				t.Errorf("internal = %v", internal)
			}
			if !strings.Contains(st.Message(), tt.msgHas) {
				t.Errorf("message %q lacks %q", st.Message(), tt.msgHas)
			}
			if tt.msgHasNot != "" && strings.Contains(st.Message(), tt.msgHasNot) {
				t.Errorf("message %q leaks %q", st.Message(), tt.msgHasNot)
			}
			var info *errdetails.ErrorInfo
			var field string
			var retryAfter time.Duration
			for _, d := range st.Details() {
				switch d := d.(type) {
				case *errdetails.ErrorInfo:
					info = d
				case *errdetails.BadRequest:
					field = d.GetFieldViolations()[0].GetField()
				case *errdetails.RetryInfo:
					retryAfter = d.GetRetryDelay().AsDuration()
				}
			}
			wantAccount := "111111111111"
			if d, ok := errors.AsType[*callers.DeniedError](tt.err); tt.code == codes.Unauthenticated || ok && d.AnyAccount {
				wantAccount = "" // as over gRPC, where the token and the operation are checked before the request is read
			}
			// The domain as clients match it, not as this package names it.
			if info == nil || info.GetDomain() != "backupd" || info.GetReason() != tt.reason || info.GetMetadata()["account_id"] != wantAccount {
				t.Errorf("ErrorInfo = %v, want domain %q reason %q with account_id %q", info, domain, tt.reason, wantAccount)
			}
			if got := ReasonOf(st); got != tt.reason {
				t.Errorf("ReasonOf = %q, want %q", got, tt.reason)
			}
			if d, ok := RetryDelay(st); d != tt.retry || ok != (tt.retry != 0) {
				t.Errorf("RetryDelay = %s, %v; want %s", d, ok, tt.retry)
			}
			if field != tt.field {
				t.Errorf("BadRequest field = %q, want %q", field, tt.field)
			}
			if retryAfter != tt.retry {
				t.Errorf("RetryInfo delay = %s, want %s", retryAfter, tt.retry)
			}
		})
	}
}

// TestReasonOf: a status without backupd's ErrorInfo, grpc-go's own or
// another domain's, has no reason; the ErrorInfo need not come first.
func TestReasonOf(t *testing.T) {
	withDetails := func(details ...protoadapt.MessageV1) *status.Status {
		st, err := status.New(codes.Unavailable, "x").WithDetails(details...)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	for _, tt := range []struct {
		name string
		st   *status.Status
		want string
	}{
		{"none", status.New(codes.Unavailable, "connection closed"), ""},
		{"another domain's", withDetails(&errdetails.ErrorInfo{Domain: "googleapis.com", Reason: "RATE_LIMIT_EXCEEDED"}), ""},
		{"after a RetryInfo", withDetails(&errdetails.RetryInfo{}, &errdetails.ErrorInfo{Domain: domain, Reason: "SHARED_STATE_UNAVAILABLE"}), "SHARED_STATE_UNAVAILABLE"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := ReasonOf(tt.st); got != tt.want {
				t.Errorf("ReasonOf = %q, want %q", got, tt.want)
			}
		})
	}
}

// DynamoDB's message reaches the caller with what the log leaves out of
// it left out: an endpoint between may quote the signed request, and a
// message may run to megabytes.
func TestStatusRedactsAWSMessages(t *testing.T) {
	const token = "AssumedSessionTok-XYZ-987"
	for name, err := range map[string]error{
		"validation": sdkErr(&smithy.GenericAPIError{Code: "ValidationException", Message: "bad request POST / X-Amz-Security-Token: " + token + " Signature=abc123"}),
		"not found":  sdkErr(&types.TableNotFoundException{Message: strPtr("no table; x-amz-security-token=" + token)}),
		"long":       sdkErr(&smithy.GenericAPIError{Code: "ValidationException", Message: strings.Repeat("x", 1<<20)}),
	} {
		st, _ := Status(err, Request{})
		if strings.Contains(st.Message(), token) || strings.Contains(st.Message(), "abc123") || len(st.Message()) > 2*maxAWSMessage {
			t.Errorf("%s: message %.200q (%d bytes) quotes a secret or runs long", name, st.Message(), len(st.Message()))
		}
	}
}

// The AWS request id, which AWS support asks for, is in the ErrorInfo of
// DynamoDB's and STS's answers, a 5xx whose outcome is unknown included.
func TestStatusAWSRequestID(t *testing.T) {
	for name, err := range map[string]error{
		"table not found": sdkErr(&types.TableNotFoundException{Message: strPtr("x")}),
		"outcome unknown": &accounts.OutcomeUnknownError{Operation: "CreateBackup", AccountID: "111111111111",
			Err: sdkErrStatus(&types.InternalServerError{Message: strPtr("boom")}, 500)},
		"STS refused the role": &auth.AssumeRoleError{AccountID: "111111111111", Err: sdkErrStatus(&smithy.GenericAPIError{Code: "AccessDenied"}, 403)},
		"STS failed":           &auth.AssumeRoleError{AccountID: "111111111111", Err: sdkErrStatus(&smithy.GenericAPIError{Code: "InternalFailure"}, 500)},
		// Answers that are not AWS's JSON (a proxy's page) carry AWS's request id all the same.
		"403 not AWS's JSON": sdkErrStatus(&smithy.DeserializationError{Err: errors.New("invalid character '<'")}, 403),
		"429 not AWS's JSON": sdkErrStatus(&smithy.DeserializationError{Err: errors.New("invalid character '<'")}, 429),
	} {
		st, _ := Status(err, Request{})
		found := false
		for _, d := range st.Details() {
			if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetMetadata()["aws_request_id"] == "REQ-123" {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no aws_request_id in %v", name, st.Details())
		}
	}
}

// A detail that is not UTF-8 (an AWS request id, say) cannot be encoded:
// it is made valid, and the status keeps its ErrorInfo.
func TestStatusKeepsDetailsOfInvalidUTF8(t *testing.T) {
	err := &smithy.OperationError{ServiceID: "DynamoDB", OperationName: "CreateBackup", Err: &awshttp.ResponseError{
		ResponseError: &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: 400}},
			Err: &types.TableNotFoundException{Message: strPtr("no table \xff")}},
		RequestID: "REQ-\xff",
	}}
	st, _ := Status(err, Request{})
	var info *errdetails.ErrorInfo
	for _, d := range st.Details() {
		if i, ok := d.(*errdetails.ErrorInfo); ok {
			info = i
		}
	}
	if info == nil || info.GetReason() != "TABLE_NOT_FOUND" || info.GetMetadata()["aws_request_id"] != "REQ-\uFFFD" || !utf8.ValidString(st.Message()) {
		t.Errorf("status %v, ErrorInfo %v; want TABLE_NOT_FOUND with the request id made valid", st, info)
	}
}

// A message that is not UTF-8 (a server's refusal quoting what it read)
// has its bad bytes replaced by U+FFFD, as everything else of it kept.
func TestStatusMakesMessagesValid(t *testing.T) {
	st, _ := Status(&RequestError{Code: codes.InvalidArgument, Reason: ReasonMalformed, Msg: "cannot read \xff here"}, Request{})
	if st.Message() != "cannot read \uFFFD here" {
		t.Errorf("message %q; want %q", st.Message(), "cannot read \uFFFD here")
	}
}

func strPtr(s string) *string { return &s }

// TestPushBack: a gRPC client's own retry is told RetryInfo's delay,
// rounded up to the millisecond, and forbidden (-1) for an outcome that
// may have been done or a call over the account's quota; told nothing
// where nothing helps, or a repeat with the same request_id answers.
func TestPushBack(t *testing.T) {
	key := ratelimit.Key{Account: "111111111111", Region: "us-east-1", Operation: "CreateBackup"}
	limited, err := status.New(codes.ResourceExhausted, "slow down").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(1500 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	unsure, err := status.New(codes.Unavailable, "maybe").WithDetails(&errdetails.ErrorInfo{Domain: domain, Reason: reasonOutcomeUnknown})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		err  error
		ms   int64
		ok   bool
	}{
		{"rate limited", &ratelimit.LimitedError{Key: key, RetryAfter: 1500 * time.Millisecond}, 1500, true},
		{"rate limited, rounded up", &ratelimit.LimitedError{Key: key, RetryAfter: 1000*time.Millisecond + 400*time.Microsecond}, 1001, true},
		{"rate limited, a nanosecond past a millisecond", &ratelimit.LimitedError{Key: key, RetryAfter: time.Second + time.Nanosecond}, 1001, true},
		{"shared state unavailable", &sharedstate.UnavailableError{Op: sharedstate.OpRateLimit, Err: errors.New("down")}, 1000, true},
		{"outcome unknown", &accounts.OutcomeUnknownError{Operation: "CreateBackup", AccountID: "111111111111", Region: "us-east-1", Err: errors.New("500")}, -1, true},
		{"a request_id's first outcome unknown", &idempotency.OutcomeUnknownError{Key: idempotency.Key{Account: "111111111111", RequestID: "req-1"}}, -1, true},
		{"sent, unanswered at the deadline", &service.UnansweredError{Operation: "CreateBackup", Err: context.DeadlineExceeded}, -1, true},
		{"sent, then canceled", &service.UnansweredError{Operation: "CreateBackup", Err: context.Canceled}, -1, true},
		// A repeat with the same request_id gets the run's result.
		{"still running under its request_id", &service.StillRunningError{Operation: "CreateBackup", Err: context.DeadlineExceeded}, 0, false},
		{"table not found", sdkErr(&types.TableNotFoundException{Message: strPtr("no table")}), 0, false},
		{"DynamoDB throttled", sdkErr(&smithy.GenericAPIError{Code: "LimitExceededException", Message: "Only 10 tables can be created, updated, or deleted simultaneously"}), 1000, true},
		// Refused the same way until the account is under its quota.
		{"over the account's DynamoDB quota", sdkErr(&smithy.GenericAPIError{Code: "LimitExceededException", Message: "There is a limit of 2500 tables per subscriber"}), -1, true},
		{"a status with RetryInfo", limited.Err(), 1500, true},
		{"a status of an unknown outcome", unsure.Err(), -1, true},
		{"a status without details", status.Error(codes.Unavailable, "down"), 0, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st, _ := Status(tt.err, Request{})
			if ms, ok := PushBack(st, tt.err); ms != tt.ms || ok != tt.ok {
				t.Errorf("PushBack = %d, %v; want %d, %v", ms, ok, tt.ms, tt.ok)
			}
		})
	}
}

// TestLevel: ERROR for what operators must look at, WARN for slowness
// and throttling upstream and for a caller gone while DynamoDB may act,
// INFO for the caller's own mistakes and backupd's own limits and
// shutdown. (Moved from server's TestLevelOf with the function.)
func TestLevel(t *testing.T) {
	tests := []struct {
		name     string
		code     codes.Code
		internal bool
		err      error
		want     slog.Level
	}{
		{"bad field", codes.InvalidArgument, false, errors.New("x"), slog.LevelInfo},
		{"our own limit", codes.ResourceExhausted, false, &ratelimit.LimitedError{}, slog.LevelInfo},
		{"DynamoDB throttling after retries", codes.ResourceExhausted, false, errors.New("ThrottlingException"), slog.LevelWarn},
		{"deadline", codes.DeadlineExceeded, false, context.DeadlineExceeded, slog.LevelWarn},
		{"AWS unreachable", codes.Unavailable, false, errors.New("dial"), slog.LevelError},
		{"a REST body cut short by the shutdown", codes.Unavailable, false,
			&RequestError{Code: codes.Unavailable, Reason: ReasonShuttingDown, Msg: "backupd is shutting down", RetryAfter: DefaultRetryAfter}, slog.LevelInfo},
		{"a server's other refusal as unavailable", codes.Unavailable, false,
			&RequestError{Code: codes.Unavailable, Reason: ReasonIdleStream, Msg: "idle"}, slog.LevelError},
		{"a bug", codes.Internal, true, errors.New("nil map"), slog.LevelError},
		{"AWS refuses backupd's role", codes.PermissionDenied, false, errors.New("AccessDeniedException"), slog.LevelError},
		{"a caller not allowed", codes.PermissionDenied, false, &callers.DeniedError{Caller: "orders"}, slog.LevelInfo},
		{"canceled by its caller", codes.Canceled, false, context.Canceled, slog.LevelInfo},
		{"canceled after a CreateBackup was sent", codes.Canceled, false,
			&service.UnansweredError{Operation: "CreateBackup", Err: context.Canceled}, slog.LevelWarn},
		{"canceled while its request_id run goes on", codes.Canceled, false,
			&service.StillRunningError{Operation: "CreateBackup", Err: context.Canceled}, slog.LevelWarn},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Level(tt.code, tt.internal, tt.err); got != tt.want {
				t.Errorf("Level = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestStatusMetadata: the ErrorInfo metadata clients read (docs/clients.md):
// a refused caller's name and RPC, a rate limit's operation and region,
// and no account_id when the request named none.
func TestStatusMetadata(t *testing.T) {
	key := ratelimit.Key{Account: "111111111111", Region: "eu-west-1", Operation: "DescribeBackup"}
	var twentyOne []badrequest.Violation
	for i := range MaxViolations + 1 {
		twentyOne = append(twentyOne, badrequest.Violation{Field: fmt.Sprint("f", i), Description: fmt.Sprint("f", i, " is bad")})
	}
	for _, tt := range []struct {
		name string
		err  error
		req  Request
		want map[string]string
	}{
		{"caller not allowed", &callers.DeniedError{Caller: "orders", Operation: "DeleteBackup", AccountID: "111111111111"}, Request{AccountID: "111111111111"},
			map[string]string{"account_id": "111111111111", "caller": "orders", "operation": "DeleteBackup"}},
		{"rate limited", &ratelimit.LimitedError{Key: key, RetryAfter: time.Second}, Request{AccountID: "111111111111"},
			map[string]string{"account_id": "111111111111", "operation": "DescribeBackup", "region": "eu-west-1"}},
		{"no account named", &badrequest.Error{Violations: []badrequest.Violation{{Field: "account_id", Description: "account_id is required"}}}, Request{},
			map[string]string{}},
		{"one violation left out", &badrequest.Error{Violations: twentyOne}, Request{}, map[string]string{"omitted_violations": "1"}},
		// No aws_request_id where AWS gave none.
		{"outcome unknown, no AWS answer", &accounts.OutcomeUnknownError{Operation: "CreateBackup", AccountID: "111111111111", Err: errors.New("connection reset")}, Request{},
			map[string]string{}},
		{"STS unreachable", &auth.AssumeRoleError{AccountID: "111111111111", Err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}}, Request{},
			map[string]string{}},
		{"a proxy's 403 without a request id", func() error {
			e := sdkErrStatus(&smithy.DeserializationError{Err: errors.New("invalid character '<'")}, 403).(*smithy.OperationError)
			e.Err.(*awshttp.ResponseError).RequestID = ""
			return e
		}(), Request{}, map[string]string{}},
		{"DynamoDB's error without its HTTP answer", &smithy.OperationError{ServiceID: "DynamoDB", Err: &types.TableNotFoundException{Message: strPtr("x")}}, Request{},
			map[string]string{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st, _ := Status(tt.err, tt.req)
			var got map[string]string
			for _, d := range st.Details() {
				if info, ok := d.(*errdetails.ErrorInfo); ok {
					got = info.GetMetadata()
				}
			}
			if len(got) != len(tt.want) {
				t.Errorf("metadata %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("metadata %v, want %s=%q", got, k, v)
				}
			}
		})
	}
}

// TestStatusOfNoErrorOrAStatus: no error is OK; an error that is already
// a status passes through as it is, not as an unexpected error (which
// would be logged at ERROR).
func TestStatusOfNoErrorOrAStatus(t *testing.T) {
	if st, internal := Status(nil, Request{}); st.Code() != codes.OK || st.Message() != "" || internal {
		t.Errorf("Status(nil) = %v, internal %v; want OK", st, internal)
	}
	in := status.Error(codes.Unavailable, "transport is closing")
	if st, internal := Status(in, Request{AccountID: "111111111111"}); st.Code() != codes.Unavailable || st.Message() != "transport is closing" || internal {
		t.Errorf("Status(%v) = %v, internal %v; want it as it is, not internal", in, st, internal)
	}
}

// TestBoundsKeepTheFirstViolation: a first violation over the byte
// bounds is carried and repeated all the same, and the rest counted: a
// client is never told only "and N more".
func TestBoundsKeepTheFirstViolation(t *testing.T) {
	huge := badrequest.Violation{Field: "global_secondary_index_override", Description: strings.Repeat("d", 3000)}
	small := badrequest.Violation{Field: "backup_name", Description: "backup_name is required"}
	vs, more := boundViolations([]badrequest.Violation{huge, small}, 0)
	if len(vs) != 1 || vs[0].Field != huge.Field || more != 1 {
		t.Errorf("boundViolations kept %d (more %d); want the first alone, 1 more", len(vs), more)
	}
	if msg := violationsMessage([]badrequest.Violation{huge, small}, 0); !strings.HasPrefix(msg, huge.Description) || !strings.HasSuffix(msg, "; and 1 more") {
		t.Errorf("violationsMessage = %.40q...%q; want the first, then the rest counted", msg, msg[max(0, len(msg)-20):])
	}
}
