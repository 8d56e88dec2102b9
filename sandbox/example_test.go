package sandbox_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/backupd/backupd/sandbox"
)

// The SDK is wired to the fake as to AWS, with BaseEndpoint pointing at it:
// operator credentials sign an AssumeRole, and the assumed role's cached
// credentials sign DynamoDB calls in that account.
func Example() {
	fake := sandbox.New(sandbox.Options{Accounts: sandbox.DemoAccounts()})
	srv := httptest.NewServer(fake)
	defer srv.Close()
	ctx := context.Background()

	base := aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.StaticCredentialsProvider{Value: fake.BaseCredentials()},
		BaseEndpoint: aws.String(srv.URL),
	}
	role := stscreds.NewAssumeRoleProvider(sts.NewFromConfig(base), "arn:aws:iam::111111111111:role/backupd-sandbox")
	cfg := base.Copy()
	cfg.Credentials = aws.NewCredentialsCache(role)
	db := dynamodb.NewFromConfig(cfg)

	out, err := db.CreateBackup(ctx, &dynamodb.CreateBackupInput{
		TableName:  aws.String("Orders"),
		BackupName: aws.String("first"),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(out.BackupDetails.BackupStatus, aws.ToInt64(out.BackupDetails.BackupSizeBytes))
	// Output: AVAILABLE 480000
}

// backupd takes its base credentials and endpoints from the SDK's own
// settings, so `backupd --sandbox` can point the default chain at the fake
// through the environment.
func TestDefaultConfigFromEnvironment(t *testing.T) {
	e := start(t, sandbox.Options{Accounts: sandbox.DemoAccounts()})
	base := e.fake.BaseCredentials()
	missing := filepath.Join(t.TempDir(), "none")
	t.Setenv("AWS_CONFIG_FILE", missing)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", missing)
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_ACCESS_KEY_ID", base.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", base.SecretAccessKey)
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_ENDPOINT_URL", e.srv.URL)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")

	cfg, err := config.LoadDefaultConfig(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Credentials = aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(sts.NewFromConfig(cfg), roleARN("222222222222")))
	out, err := dynamodb.NewFromConfig(cfg).DescribeTable(t.Context(), &dynamodb.DescribeTableInput{TableName: aws.String("Customers")})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := aws.ToString(out.Table.TableArn), "arn:aws:dynamodb:us-east-1:222222222222:table/Customers"; got != want {
		t.Errorf("TableArn = %s, want %s", got, want)
	}
}
