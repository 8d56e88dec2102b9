package integration

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/testenv"
)

// restoreOverrideKeys are the overrides of DynamoDB's
// RestoreTableFromBackup request, as its API names them.
var restoreOverrideKeys = []string{
	"BillingModeOverride",
	"ProvisionedThroughputOverride",
	"GlobalSecondaryIndexOverride",
	"LocalSecondaryIndexOverride",
	"SSESpecificationOverride",
}

// createIndexedTable creates an on-demand table with a global (by-gk) and
// a local (by-lk) secondary index in the client's account.
func createIndexedTable(t *testing.T, db *dynamodb.Client, name string) {
	t.Helper()
	key := func(hash, rng string) []types.KeySchemaElement {
		ks := []types.KeySchemaElement{{AttributeName: aws.String(hash), KeyType: types.KeyTypeHash}}
		if rng != "" {
			ks = append(ks, types.KeySchemaElement{AttributeName: aws.String(rng), KeyType: types.KeyTypeRange})
		}
		return ks
	}
	attr := func(name string) types.AttributeDefinition {
		return types.AttributeDefinition{AttributeName: aws.String(name), AttributeType: types.ScalarAttributeTypeS}
	}
	_, err := db.CreateTable(context.Background(), &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		AttributeDefinitions: []types.AttributeDefinition{attr("pk"), attr("sk"), attr("gk"), attr("lk")},
		KeySchema:            key("pk", "sk"),
		GlobalSecondaryIndexes: []types.GlobalSecondaryIndex{{
			IndexName: aws.String("by-gk"), KeySchema: key("gk", ""), Projection: &types.Projection{ProjectionType: types.ProjectionTypeAll},
		}},
		LocalSecondaryIndexes: []types.LocalSecondaryIndex{{
			IndexName: aws.String("by-lk"), KeySchema: key("pk", "lk"), Projection: &types.Projection{ProjectionType: types.ProjectionTypeKeysOnly},
		}},
		BillingMode: types.BillingModePayPerRequest,
	})
	if err != nil {
		t.Fatalf("create table %s: %v", name, err)
	}
}

// TestRestoreOverridesReachDynamoDB restores a moto backup with each kind
// of override, over gRPC and over REST, and checks the
// RestoreTableFromBackup request backupd sent to DynamoDB, as the recorder
// saw it: each override under DynamoDB's name and in its shape, and the
// overrides not asked for absent. moto ignores every override (its restore
// copies the backup as it is), so what backupd sends is all there is to
// prove against it; lifecycle's TestGetBackupCarriesSourceTableFeatures
// shows the sandbox fake's restored table. An empty index selection must
// reach DynamoDB as an empty list, which drops every index, and no
// selection as no list at all, which keeps them.
func TestRestoreOverridesReachDynamoDB(t *testing.T) {
	moto := testenv.MotoURL(t)
	a, db := newAccount(t, moto)
	createIndexedTable(t, db, "Indexed")
	backup, err := db.CreateBackup(context.Background(), &dynamodb.CreateBackupInput{TableName: aws.String("Indexed"), BackupName: aws.String("src")})
	if err != nil {
		t.Fatal(err)
	}
	backupARN := aws.ToString(backup.BackupDetails.BackupArn)
	rec := newRecorder(t, moto)
	inst := startBackupd(t, instanceOptions{Accounts: []account{{ID: a}}, Env: motoEnv(rec.URL)})

	hash := func(name string) *backupv1.KeySchemaElement {
		return &backupv1.KeySchemaElement{AttributeName: name, KeyType: backupv1.KeyType_KEY_TYPE_HASH}
	}
	rng := func(name string) *backupv1.KeySchemaElement {
		return &backupv1.KeySchemaElement{AttributeName: name, KeyType: backupv1.KeyType_KEY_TYPE_RANGE}
	}
	tests := []struct {
		name string
		req  *backupv1.RestoreTableFromBackupRequest // without backup_arn and target_table_name
		want map[string]string                       // override -> its JSON; absent: not sent
	}{
		{"no overrides", &backupv1.RestoreTableFromBackupRequest{}, nil},
		{"billing mode on demand", &backupv1.RestoreTableFromBackupRequest{
			BillingModeOverride: backupv1.BillingMode_BILLING_MODE_PAY_PER_REQUEST,
		}, map[string]string{"BillingModeOverride": `"PAY_PER_REQUEST"`}},
		{"billing mode provisioned", &backupv1.RestoreTableFromBackupRequest{
			BillingModeOverride: backupv1.BillingMode_BILLING_MODE_PROVISIONED,
		}, map[string]string{"BillingModeOverride": `"PROVISIONED"`}},
		{"provisioned throughput", &backupv1.RestoreTableFromBackupRequest{
			BillingModeOverride:           backupv1.BillingMode_BILLING_MODE_PROVISIONED,
			ProvisionedThroughputOverride: &backupv1.ProvisionedThroughput{ReadCapacityUnits: 5, WriteCapacityUnits: 7},
		}, map[string]string{
			"BillingModeOverride":           `"PROVISIONED"`,
			"ProvisionedThroughputOverride": `{"ReadCapacityUnits":5,"WriteCapacityUnits":7}`,
		}},
		{"global index kept", &backupv1.RestoreTableFromBackupRequest{
			GlobalSecondaryIndexOverride: &backupv1.GlobalSecondaryIndexSelection{Indexes: []*backupv1.GlobalSecondaryIndex{{
				IndexName: "by-gk", KeySchema: []*backupv1.KeySchemaElement{hash("gk")},
				Projection: &backupv1.Projection{ProjectionType: backupv1.ProjectionType_PROJECTION_TYPE_ALL},
				// An on-demand table's index as GetBackup describes it: 0/0 is none.
				ProvisionedThroughput: &backupv1.ProvisionedThroughput{},
			}}},
		}, map[string]string{
			"GlobalSecondaryIndexOverride": `[{"IndexName":"by-gk","KeySchema":[{"AttributeName":"gk","KeyType":"HASH"}],"Projection":{"ProjectionType":"ALL"}}]`,
		}},
		{"global index kept with its projection and throughput changed", &backupv1.RestoreTableFromBackupRequest{
			BillingModeOverride:           backupv1.BillingMode_BILLING_MODE_PROVISIONED,
			ProvisionedThroughputOverride: &backupv1.ProvisionedThroughput{ReadCapacityUnits: 4, WriteCapacityUnits: 4},
			GlobalSecondaryIndexOverride: &backupv1.GlobalSecondaryIndexSelection{Indexes: []*backupv1.GlobalSecondaryIndex{{
				IndexName: "by-gk", KeySchema: []*backupv1.KeySchemaElement{hash("gk")},
				Projection:            &backupv1.Projection{ProjectionType: backupv1.ProjectionType_PROJECTION_TYPE_INCLUDE, NonKeyAttributes: []string{"total", "status"}},
				ProvisionedThroughput: &backupv1.ProvisionedThroughput{ReadCapacityUnits: 2, WriteCapacityUnits: 3},
			}}},
		}, map[string]string{
			"BillingModeOverride":           `"PROVISIONED"`,
			"ProvisionedThroughputOverride": `{"ReadCapacityUnits":4,"WriteCapacityUnits":4}`,
			"GlobalSecondaryIndexOverride": `[{"IndexName":"by-gk","KeySchema":[{"AttributeName":"gk","KeyType":"HASH"}],` +
				`"Projection":{"ProjectionType":"INCLUDE","NonKeyAttributes":["total","status"]},"ProvisionedThroughput":{"ReadCapacityUnits":2,"WriteCapacityUnits":3}}]`,
		}},
		{"no global index", &backupv1.RestoreTableFromBackupRequest{
			GlobalSecondaryIndexOverride: &backupv1.GlobalSecondaryIndexSelection{},
		}, map[string]string{"GlobalSecondaryIndexOverride": `[]`}},
		{"local index kept", &backupv1.RestoreTableFromBackupRequest{
			LocalSecondaryIndexOverride: &backupv1.LocalSecondaryIndexSelection{Indexes: []*backupv1.LocalSecondaryIndex{{
				IndexName: "by-lk", KeySchema: []*backupv1.KeySchemaElement{hash("pk"), rng("lk")},
				Projection: &backupv1.Projection{ProjectionType: backupv1.ProjectionType_PROJECTION_TYPE_KEYS_ONLY},
			}}},
		}, map[string]string{
			"LocalSecondaryIndexOverride": `[{"IndexName":"by-lk","KeySchema":[{"AttributeName":"pk","KeyType":"HASH"},{"AttributeName":"lk","KeyType":"RANGE"}],"Projection":{"ProjectionType":"KEYS_ONLY"}}]`,
		}},
		{"no local index", &backupv1.RestoreTableFromBackupRequest{
			LocalSecondaryIndexOverride: &backupv1.LocalSecondaryIndexSelection{},
		}, map[string]string{"LocalSecondaryIndexOverride": `[]`}},
		{"no index at all", &backupv1.RestoreTableFromBackupRequest{
			GlobalSecondaryIndexOverride: &backupv1.GlobalSecondaryIndexSelection{},
			LocalSecondaryIndexOverride:  &backupv1.LocalSecondaryIndexSelection{},
		}, map[string]string{"GlobalSecondaryIndexOverride": `[]`, "LocalSecondaryIndexOverride": `[]`}},
		{"encryption with a KMS key", &backupv1.RestoreTableFromBackupRequest{
			SseSpecificationOverride: &backupv1.SseSpecification{Enabled: true, SseType: backupv1.SseType_SSE_TYPE_KMS, KmsMasterKeyId: "alias/backupd-restore"},
		}, map[string]string{"SSESpecificationOverride": `{"Enabled":true,"SSEType":"KMS","KMSMasterKeyId":"alias/backupd-restore"}`}},
		{"encryption with the AWS managed key", &backupv1.RestoreTableFromBackupRequest{
			SseSpecificationOverride: &backupv1.SseSpecification{Enabled: true, SseType: backupv1.SseType_SSE_TYPE_KMS},
		}, map[string]string{"SSESpecificationOverride": `{"Enabled":true,"SSEType":"KMS"}`}},
		{"encryption with an AWS owned key", &backupv1.RestoreTableFromBackupRequest{
			SseSpecificationOverride: &backupv1.SseSpecification{Enabled: false},
		}, map[string]string{"SSESpecificationOverride": `{"Enabled":false}`}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, over := range []string{"gRPC", "REST"} {
				target := "Restored-" + over + "-" + string(rune('a'+i))
				req := proto.CloneOf(tt.req)
				req.TargetTableName = target
				if over == "gRPC" {
					req.BackupArn = backupARN
					if _, err := inst.client.RestoreTableFromBackup(context.Background(), req); err != nil {
						t.Fatalf("gRPC restore: %v", err)
					}
				} else {
					body, err := protojson.Marshal(req)
					if err != nil {
						t.Fatal(err)
					}
					if code, _, resp := inst.rest(t, "POST", "/v1/backups/"+escapeARN(backupARN)+":restore", string(body)); code != http.StatusOK {
						t.Fatalf("REST restore %s: %d %s", body, code, resp)
					}
				}
				sent := restoreSent(t, rec, target)
				if got := jsonString(t, sent["BackupArn"]); got != backupARN {
					t.Errorf("%s: BackupArn %q sent; want %q", over, got, backupARN)
				}
				for _, key := range restoreOverrideKeys {
					got, ok := sent[key]
					want, wanted := tt.want[key]
					switch {
					case !wanted && ok:
						t.Errorf("%s: %s %s sent; want none", over, key, got)
					case wanted && !ok:
						t.Errorf("%s: no %s sent; want %s", over, key, want)
					case wanted && !sameJSON(t, got, want):
						t.Errorf("%s: %s %s sent; want %s", over, key, got, want)
					}
				}
			}
		})
	}
}

// restoreSent is the RestoreTableFromBackup request, by its top-level
// members, that backupd sent for the restore to target; each of its
// attempts must have sent the same.
func restoreSent(t *testing.T, rec *recorder, target string) map[string]json.RawMessage {
	t.Helper()
	var sent map[string]json.RawMessage
	for _, c := range rec.Calls("RestoreTableFromBackup") {
		var body map[string]json.RawMessage
		if err := json.Unmarshal(c.Body, &body); err != nil {
			t.Fatalf("RestoreTableFromBackup body is not JSON: %v: %s", err, c.Body)
		}
		if jsonString(t, body["TargetTableName"]) != target {
			continue
		}
		if sent != nil && !reflect.DeepEqual(sent, body) {
			t.Errorf("attempts for %s sent different requests: %s", target, c.Body)
		}
		sent = body
	}
	if sent == nil {
		t.Fatalf("no RestoreTableFromBackup for %s reached DynamoDB", target)
	}
	return sent
}

func jsonString(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var s string
	if raw != nil {
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatalf("%s is not a JSON string: %v", raw, err)
		}
	}
	return s
}

// sameJSON says whether got and want are the same JSON value, whatever
// their spacing and the order of their objects' members.
func sameJSON(t *testing.T, got json.RawMessage, want string) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("want %s: %v", want, err)
	}
	return reflect.DeepEqual(g, w)
}
