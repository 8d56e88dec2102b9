package sandbox_test

import (
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/backupd/backupd/sandbox"
)

func TestAssumeRole(t *testing.T) {
	t0 := time.Now().UTC().Truncate(time.Second)
	clk := newClock(t0, 0)
	e := start(t, sandbox.Options{
		Now: clk.Now,
		Accounts: []sandbox.Account{
			{ID: "111111111111", RoleName: "backupd-sandbox", Region: "us-east-1"},
			{ID: "333333333333", RoleName: "backupd-sandbox", ExternalID: "ext-123", Region: "eu-west-1"},
		},
	})
	tests := []struct {
		name       string
		roleARN    string
		externalID *string
		duration   *int32
		wantCode   string
		wantTTL    time.Duration
	}{
		{name: "no external id required", roleARN: roleARN("111111111111"), wantTTL: time.Hour},
		{name: "external id matches", roleARN: roleARN("333333333333"), externalID: aws.String("ext-123"), wantTTL: time.Hour},
		{name: "duration honoured", roleARN: roleARN("111111111111"), duration: aws.Int32(900), wantTTL: 15 * time.Minute},
		{name: "wrong external id", roleARN: roleARN("333333333333"), externalID: aws.String("ext-999"), wantCode: "AccessDenied"},
		{name: "missing external id", roleARN: roleARN("333333333333"), wantCode: "AccessDenied"},
		{name: "unknown role", roleARN: "arn:aws:iam::111111111111:role/admin", wantCode: "AccessDenied"},
		{name: "unknown account", roleARN: roleARN("999999999999"), wantCode: "AccessDenied"},
		{name: "duration too short", roleARN: roleARN("111111111111"), duration: aws.Int32(60), wantCode: "ValidationError"},
		{name: "duration over the role's maximum session", roleARN: roleARN("111111111111"), duration: aws.Int32(7200), wantCode: "ValidationError"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := e.sts().AssumeRole(t.Context(), &sts.AssumeRoleInput{
				RoleArn:         aws.String(tc.roleARN),
				RoleSessionName: aws.String("test-session"),
				ExternalId:      tc.externalID,
				DurationSeconds: tc.duration,
			})
			if got := errorCode(err); got != tc.wantCode {
				t.Fatalf("AssumeRole error code = %q (%v), want %q", got, err, tc.wantCode)
			}
			if tc.wantCode != "" {
				return
			}
			c := out.Credentials
			if !strings.HasPrefix(aws.ToString(c.AccessKeyId), "ASIA") || aws.ToString(c.SecretAccessKey) == "" || aws.ToString(c.SessionToken) == "" {
				t.Errorf("credentials = %+v, want an ASIA key, a secret and a session token", c)
			}
			if got := c.Expiration.Sub(t0); got != tc.wantTTL {
				t.Errorf("expiration = now + %v, want now + %v", got, tc.wantTTL)
			}
			wantARN := strings.Replace(strings.Replace(tc.roleARN, ":iam:", ":sts:", 1), ":role/", ":assumed-role/", 1) + "/test-session"
			if got := aws.ToString(out.AssumedRoleUser.Arn); got != wantARN {
				t.Errorf("assumed role ARN = %q, want %q", got, wantARN)
			}
		})
	}
	if got, want := e.fake.AssumeRoleCalls(), len(tests); got != want {
		t.Errorf("AssumeRoleCalls() = %d, want %d", got, want)
	}
}

// An AccessDenied from STS reaches a DynamoDB caller through stscreds and the
// credentials cache with its code intact, so backupd can map it.
func TestAssumeRoleDeniedThroughSDKChain(t *testing.T) {
	accounts := sandbox.DemoAccounts()
	accounts[0].ExternalID = "right"
	e := start(t, sandbox.Options{Accounts: accounts})
	_, err := e.dynamo(e.assumed("111111111111", "wrong"), "us-east-1").ListTables(t.Context(), &dynamodb.ListTablesInput{})
	if got := errorCode(err); got != "AccessDenied" {
		t.Fatalf("ListTables with a wrongly assumed role: code %q (%v), want AccessDenied", got, err)
	}
	if _, err := e.dynamo(e.assumed("111111111111", "right"), "us-east-1").ListTables(t.Context(), &dynamodb.ListTablesInput{}); err != nil {
		t.Fatalf("ListTables with the right external id: %v", err)
	}
}

func TestAssumedRoleCannotChain(t *testing.T) {
	e := start(t, sandbox.Options{Accounts: sandbox.DemoAccounts()})
	chained := sts.NewFromConfig(e.config(e.assumed("111111111111", ""), "us-east-1"))
	_, err := chained.AssumeRole(t.Context(), &sts.AssumeRoleInput{
		RoleArn:         aws.String(roleARN("222222222222")),
		RoleSessionName: aws.String("hop"),
	})
	if got := errorCode(err); got != "AccessDenied" {
		t.Fatalf("chained AssumeRole: code %q (%v), want AccessDenied", got, err)
	}
}

func TestGetCallerIdentity(t *testing.T) {
	e := start(t, sandbox.Options{Accounts: sandbox.DemoAccounts()})
	tests := []struct {
		name        string
		creds       aws.CredentialsProvider
		wantAccount string
		wantARN     string // prefix
	}{
		{name: "operator", creds: e.operator(), wantAccount: "000000000000", wantARN: "arn:aws:iam::000000000000:user/sandbox-operator"},
		{name: "assumed 111", creds: e.assumed("111111111111", ""), wantAccount: "111111111111", wantARN: "arn:aws:sts::111111111111:assumed-role/backupd-sandbox/"},
		{name: "assumed 222", creds: e.assumed("222222222222", ""), wantAccount: "222222222222", wantARN: "arn:aws:sts::222222222222:assumed-role/backupd-sandbox/"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := sts.NewFromConfig(e.config(tc.creds, "us-east-1")).GetCallerIdentity(t.Context(), &sts.GetCallerIdentityInput{})
			if err != nil {
				t.Fatalf("GetCallerIdentity: %v", err)
			}
			if aws.ToString(out.Account) != tc.wantAccount || !strings.HasPrefix(aws.ToString(out.Arn), tc.wantARN) || aws.ToString(out.UserId) == "" {
				t.Errorf("identity = {%s %s %s}, want account %s, ARN starting %s", aws.ToString(out.Account), aws.ToString(out.Arn), aws.ToString(out.UserId), tc.wantAccount, tc.wantARN)
			}
		})
	}
}

func TestExpiredCredentialsAreRefused(t *testing.T) {
	clk := newClock(time.Now(), 0)
	e := start(t, sandbox.Options{Accounts: sandbox.DemoAccounts(), Now: clk.Now})
	out, err := e.sts().AssumeRole(t.Context(), &sts.AssumeRoleInput{
		RoleArn:         aws.String(roleARN("111111111111")),
		RoleSessionName: aws.String("short"),
		DurationSeconds: aws.Int32(900),
	})
	if err != nil {
		t.Fatalf("AssumeRole: %v", err)
	}
	c := out.Credentials
	static := credentials.NewStaticCredentialsProvider(*c.AccessKeyId, *c.SecretAccessKey, *c.SessionToken)
	db := e.dynamo(static, "us-east-1")
	if _, err := db.ListTables(t.Context(), &dynamodb.ListTablesInput{}); err != nil {
		t.Fatalf("ListTables with fresh credentials: %v", err)
	}
	clk.Advance(901 * time.Second)
	_, err = db.ListTables(t.Context(), &dynamodb.ListTablesInput{})
	if got := errorCode(err); got != "ExpiredTokenException" {
		t.Fatalf("ListTables with expired credentials: code %q (%v), want ExpiredTokenException", got, err)
	}
	_, err = sts.NewFromConfig(e.config(static, "us-east-1")).GetCallerIdentity(t.Context(), &sts.GetCallerIdentityInput{})
	if got := errorCode(err); got != "ExpiredToken" {
		t.Fatalf("GetCallerIdentity with expired credentials: code %q (%v), want ExpiredToken", got, err)
	}
}
