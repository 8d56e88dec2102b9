package service

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	backupv1 "github.com/backupd/backupd/gen/backup/v1"
)

func TestValidateRestore(t *testing.T) {
	const arn = "arn:aws:dynamodb:us-east-1:111111111111:table/Orders/backup/01700000000000-abcdef12"
	hash := []*backupv1.KeySchemaElement{{AttributeName: "pk", KeyType: backupv1.KeyType_KEY_TYPE_HASH}}
	all := &backupv1.Projection{ProjectionType: backupv1.ProjectionType_PROJECTION_TYPE_ALL}
	twenty := make([]string, 20)
	for i := range twenty {
		twenty[i] = "attr é " + strconv.Itoa(i) // any UTF-8 but control characters
	}
	tests := []struct {
		name   string
		req    *backupv1.RestoreTableFromBackupRequest
		field  string // "" means valid
		verify func(t *testing.T, req *backupv1.RestoreTableFromBackupRequest)
	}{
		{"plain", &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy"}, "", nil},
		{"every override", &backupv1.RestoreTableFromBackupRequest{
			BackupArn: arn, TargetTableName: "Copy",
			BillingModeOverride:           backupv1.BillingMode_BILLING_MODE_PROVISIONED,
			ProvisionedThroughputOverride: &backupv1.ProvisionedThroughput{ReadCapacityUnits: 5, WriteCapacityUnits: 6},
			SseSpecificationOverride:      &backupv1.SseSpecification{Enabled: true, SseType: backupv1.SseType_SSE_TYPE_KMS, KmsMasterKeyId: "alias/backups"},
			GlobalSecondaryIndexOverride: &backupv1.GlobalSecondaryIndexSelection{Indexes: []*backupv1.GlobalSecondaryIndex{
				{IndexName: "ByCustomer", KeySchema: hash, Projection: all, ProvisionedThroughput: &backupv1.ProvisionedThroughput{}},
			}},
			LocalSecondaryIndexOverride: &backupv1.LocalSecondaryIndexSelection{},
		}, "", nil},
		{"20 projected attributes", &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy",
			GlobalSecondaryIndexOverride: &backupv1.GlobalSecondaryIndexSelection{Indexes: []*backupv1.GlobalSecondaryIndex{{IndexName: "Idx", KeySchema: hash,
				Projection: &backupv1.Projection{ProjectionType: backupv1.ProjectionType_PROJECTION_TYPE_INCLUDE, NonKeyAttributes: twenty}}}}}, "", nil},
		{"attribute names of 1 and 255 bytes", &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy",
			GlobalSecondaryIndexOverride: &backupv1.GlobalSecondaryIndexSelection{Indexes: []*backupv1.GlobalSecondaryIndex{{IndexName: "Idx",
				KeySchema:  []*backupv1.KeySchemaElement{{AttributeName: "k", KeyType: backupv1.KeyType_KEY_TYPE_HASH}},
				Projection: &backupv1.Projection{ProjectionType: backupv1.ProjectionType_PROJECTION_TYPE_INCLUDE, NonKeyAttributes: []string{strings.Repeat("a", 255)}}}}}}, "", nil},
		{"an empty key attribute", &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy",
			GlobalSecondaryIndexOverride: &backupv1.GlobalSecondaryIndexSelection{Indexes: []*backupv1.GlobalSecondaryIndex{{IndexName: "Idx", Projection: all,
				KeySchema: []*backupv1.KeySchemaElement{{KeyType: backupv1.KeyType_KEY_TYPE_HASH}}}}}},
			"global_secondary_index_override.indexes[0].key_schema[0].attribute_name", nil},
		{"a projected attribute of 256 bytes", &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy",
			GlobalSecondaryIndexOverride: &backupv1.GlobalSecondaryIndexSelection{Indexes: []*backupv1.GlobalSecondaryIndex{{IndexName: "Idx", KeySchema: hash,
				Projection: &backupv1.Projection{ProjectionType: backupv1.ProjectionType_PROJECTION_TYPE_INCLUDE, NonKeyAttributes: []string{strings.Repeat("a", 256)}}}}}},
			"global_secondary_index_override.indexes[0].projection.non_key_attributes[0]", nil},
		{"missing target", &backupv1.RestoreTableFromBackupRequest{BackupArn: arn}, "target_table_name", nil},
		{"bad target", &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "a b"}, "target_table_name", nil},
		{"zero throughput", &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy",
			ProvisionedThroughputOverride: &backupv1.ProvisionedThroughput{ReadCapacityUnits: 1}}, "provisioned_throughput_override.write_capacity_units", nil},
		{"zero read throughput", &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy",
			ProvisionedThroughputOverride: &backupv1.ProvisionedThroughput{WriteCapacityUnits: 1}}, "provisioned_throughput_override.read_capacity_units", nil},
		{"throughput with on-demand", &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy",
			BillingModeOverride:           backupv1.BillingMode_BILLING_MODE_PAY_PER_REQUEST,
			ProvisionedThroughputOverride: &backupv1.ProvisionedThroughput{ReadCapacityUnits: 1, WriteCapacityUnits: 1}}, "provisioned_throughput_override", nil},
		{"unknown billing mode", &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy", BillingModeOverride: 9}, "billing_mode_override", nil},
		// DynamoDB: "If enabled (true), server-side encryption type is set to KMS".
		{"KMS key with enabled, its type left to DynamoDB's default", &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy",
			SseSpecificationOverride: &backupv1.SseSpecification{Enabled: true, KmsMasterKeyId: "alias/backups"}}, "", nil},
		{"KMS key without KMS", &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy",
			SseSpecificationOverride: &backupv1.SseSpecification{Enabled: true, SseType: backupv1.SseType_SSE_TYPE_AES256, KmsMasterKeyId: "k"}}, "sse_specification_override.kms_master_key_id", nil},
		{"AES256, which DynamoDB does not take", &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy",
			SseSpecificationOverride: &backupv1.SseSpecification{Enabled: true, SseType: backupv1.SseType_SSE_TYPE_AES256}}, "sse_specification_override.sse_type", nil},
		{"an SSE type of no name", &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy",
			SseSpecificationOverride: &backupv1.SseSpecification{Enabled: true, SseType: 9}}, "sse_specification_override.sse_type", nil},
		{"KMS without enabled", &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy",
			SseSpecificationOverride: &backupv1.SseSpecification{SseType: backupv1.SseType_SSE_TYPE_KMS}}, "sse_specification_override.enabled", nil},
		{"KMS key without enabled", &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy",
			SseSpecificationOverride: &backupv1.SseSpecification{SseType: backupv1.SseType_SSE_TYPE_KMS, KmsMasterKeyId: "alias/mine"}}, "sse_specification_override.enabled", nil},
		{"index without key schema", &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy",
			GlobalSecondaryIndexOverride: &backupv1.GlobalSecondaryIndexSelection{Indexes: []*backupv1.GlobalSecondaryIndex{{IndexName: "Idx", Projection: all}}}},
			"global_secondary_index_override.indexes[0].key_schema", nil},
		{"index with range key first", &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy",
			LocalSecondaryIndexOverride: &backupv1.LocalSecondaryIndexSelection{Indexes: []*backupv1.LocalSecondaryIndex{{IndexName: "Idx", Projection: all,
				KeySchema: []*backupv1.KeySchemaElement{{AttributeName: "sk", KeyType: backupv1.KeyType_KEY_TYPE_RANGE}}}}}},
			"local_secondary_index_override.indexes[0].key_schema[0].key_type", nil},
		{"INCLUDE without attributes", &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy",
			GlobalSecondaryIndexOverride: &backupv1.GlobalSecondaryIndexSelection{Indexes: []*backupv1.GlobalSecondaryIndex{{IndexName: "Idx", KeySchema: hash,
				Projection: &backupv1.Projection{ProjectionType: backupv1.ProjectionType_PROJECTION_TYPE_INCLUDE}}}}},
			"global_secondary_index_override.indexes[0].projection.non_key_attributes", nil},
		{"KMS key id with a newline", &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy",
			SseSpecificationOverride: &backupv1.SseSpecification{Enabled: true, SseType: backupv1.SseType_SSE_TYPE_KMS, KmsMasterKeyId: "alias/x\n"}},
			"sse_specification_override.kms_master_key_id", nil},
		{"KMS key id too long", &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy",
			SseSpecificationOverride: &backupv1.SseSpecification{Enabled: true, SseType: backupv1.SseType_SSE_TYPE_KMS, KmsMasterKeyId: strings.Repeat("k", 2049)}},
			"sse_specification_override.kms_master_key_id", nil},
		{"21 projected attributes", &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy",
			GlobalSecondaryIndexOverride: &backupv1.GlobalSecondaryIndexSelection{Indexes: []*backupv1.GlobalSecondaryIndex{{IndexName: "Idx", KeySchema: hash,
				Projection: &backupv1.Projection{ProjectionType: backupv1.ProjectionType_PROJECTION_TYPE_INCLUDE, NonKeyAttributes: make([]string, 21)}}}}},
			"global_secondary_index_override.indexes[0].projection.non_key_attributes", nil},
		{"a projected attribute with a NUL", &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy",
			GlobalSecondaryIndexOverride: &backupv1.GlobalSecondaryIndexSelection{Indexes: []*backupv1.GlobalSecondaryIndex{{IndexName: "Idx", KeySchema: hash,
				Projection: &backupv1.Projection{ProjectionType: backupv1.ProjectionType_PROJECTION_TYPE_INCLUDE, NonKeyAttributes: []string{"total", "\x00"}}}}}},
			"global_secondary_index_override.indexes[0].projection.non_key_attributes[1]", nil},
		{"two global indexes of one name", &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy",
			GlobalSecondaryIndexOverride: &backupv1.GlobalSecondaryIndexSelection{Indexes: []*backupv1.GlobalSecondaryIndex{
				{IndexName: "Idx", KeySchema: hash, Projection: all}, {IndexName: "Idx", KeySchema: hash, Projection: all}}}},
			"global_secondary_index_override.indexes[1].index_name", nil},
		{"a local index named as a global one", &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy",
			GlobalSecondaryIndexOverride: &backupv1.GlobalSecondaryIndexSelection{Indexes: []*backupv1.GlobalSecondaryIndex{{IndexName: "Idx", KeySchema: hash, Projection: all}}},
			LocalSecondaryIndexOverride:  &backupv1.LocalSecondaryIndexSelection{Indexes: []*backupv1.LocalSecondaryIndex{{IndexName: "Idx", KeySchema: hash, Projection: all}}}},
			"local_secondary_index_override.indexes[0].index_name", nil},
		{"a global index's throughput with on-demand", &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy",
			BillingModeOverride: backupv1.BillingMode_BILLING_MODE_PAY_PER_REQUEST,
			GlobalSecondaryIndexOverride: &backupv1.GlobalSecondaryIndexSelection{Indexes: []*backupv1.GlobalSecondaryIndex{{IndexName: "Idx", KeySchema: hash, Projection: all,
				ProvisionedThroughput: &backupv1.ProvisionedThroughput{ReadCapacityUnits: 5, WriteCapacityUnits: 5}}}}},
			"global_secondary_index_override.indexes[0].provisioned_throughput", nil},
		{"a key attribute with a control character", &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy",
			GlobalSecondaryIndexOverride: &backupv1.GlobalSecondaryIndexSelection{Indexes: []*backupv1.GlobalSecondaryIndex{{IndexName: "Idx", Projection: all,
				KeySchema: []*backupv1.KeySchemaElement{{AttributeName: "\x01\n", KeyType: backupv1.KeyType_KEY_TYPE_HASH}}}}}},
			"global_secondary_index_override.indexes[0].key_schema[0].attribute_name", nil},
		// Keys no index of any backup has, which DynamoDB refuses
		// naming no field.
		{"a local index without a RANGE key", &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy",
			LocalSecondaryIndexOverride: &backupv1.LocalSecondaryIndexSelection{Indexes: []*backupv1.LocalSecondaryIndex{{IndexName: "ByDate", KeySchema: hash, Projection: all}}}},
			"local_secondary_index_override.indexes[0].key_schema", nil},
		{"an index whose RANGE key is its HASH key", &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy",
			GlobalSecondaryIndexOverride: &backupv1.GlobalSecondaryIndexSelection{Indexes: []*backupv1.GlobalSecondaryIndex{{IndexName: "Idx", Projection: all,
				KeySchema: []*backupv1.KeySchemaElement{{AttributeName: "gk", KeyType: backupv1.KeyType_KEY_TYPE_HASH}, {AttributeName: "gk", KeyType: backupv1.KeyType_KEY_TYPE_RANGE}}}}}},
			"global_secondary_index_override.indexes[0].key_schema[1].attribute_name", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var vs violations
			in := checkRestore(&vs, tt.req)
			if tt.field == "" {
				if len(vs) != 0 {
					t.Fatalf("valid request refused: %v", vs)
				}
				if tt.req.GlobalSecondaryIndexOverride != nil && (len(in.GlobalSecondaryIndexOverride) != 1 || in.GlobalSecondaryIndexOverride[0].ProvisionedThroughput != nil) {
					t.Errorf("GSI override = %+v; 0/0 throughput must be dropped", in.GlobalSecondaryIndexOverride)
				}
				if tt.req.LocalSecondaryIndexOverride != nil && (in.LocalSecondaryIndexOverride == nil || len(in.LocalSecondaryIndexOverride) != 0) {
					t.Errorf("an empty LSI selection must be sent as an empty list (drop them all), got %v", in.LocalSecondaryIndexOverride)
				}
				if tt.req.SseSpecificationOverride != nil && (in.SSESpecificationOverride.SSEType != types.SSETypeKms || *in.SSESpecificationOverride.KMSMasterKeyId != "alias/backups") {
					t.Errorf("SSE override = %+v", in.SSESpecificationOverride)
				}
				return
			}
			found := false
			for _, v := range vs {
				found = found || v.Field == tt.field && strings.HasPrefix(v.Description, tt.field)
			}
			if !found {
				t.Errorf("violations %+v; want one on %s", vs, tt.field)
			}
		})
	}
}

// keyTestARN is the backup the key schema tests restore.
const keyTestARN = "arn:aws:dynamodb:us-east-1:111111111111:table/Orders/backup/01700000000000-abcdef12"

// keyElement is a key schema element of attr, of type typ.
func keyElement(typ backupv1.KeyType, attr string) *backupv1.KeySchemaElement {
	return &backupv1.KeySchemaElement{AttributeName: attr, KeyType: typ}
}

// A local index has the table's HASH key and a RANGE key of its own: the
// one key schema a restore's local index takes; one without a RANGE key,
// or with keys of one attribute, is told in one violation of its field.
func TestLocalIndexKeySchema(t *testing.T) {
	const arn = keyTestARN
	key, hash, rng := keyElement, backupv1.KeyType_KEY_TYPE_HASH, backupv1.KeyType_KEY_TYPE_RANGE
	tests := []struct {
		name      string
		keys      []*backupv1.KeySchemaElement
		field     string // "" means valid
		wantWords string
	}{
		{"HASH and RANGE", []*backupv1.KeySchemaElement{key(hash, "pk"), key(rng, "lk")}, "", ""},
		{"HASH only", []*backupv1.KeySchemaElement{key(hash, "pk")}, "local_secondary_index_override.indexes[0].key_schema",
			"must have a HASH key and a RANGE key, as every local secondary index has; got 1 elements"},
		{"none", nil, "local_secondary_index_override.indexes[0].key_schema",
			"must have a HASH key and a RANGE key, as every local secondary index has; got 0 elements"},
		{"one attribute twice", []*backupv1.KeySchemaElement{key(hash, "pk"), key(rng, "pk")}, "local_secondary_index_override.indexes[0].key_schema[1].attribute_name",
			`repeats "pk", the attribute of key_schema[0]`},
		// The third element's type is not what is wrong: one violation,
		// of the count, not also "must be HASH ... RANGE for the second".
		{"HASH and two RANGE", []*backupv1.KeySchemaElement{key(hash, "pk"), key(rng, "lk"), key(rng, "mk")}, "local_secondary_index_override.indexes[0].key_schema",
			"got 3 elements"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var vs violations
			in := checkRestore(&vs, &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy",
				LocalSecondaryIndexOverride: &backupv1.LocalSecondaryIndexSelection{Indexes: []*backupv1.LocalSecondaryIndex{{
					IndexName: "ByLk", KeySchema: tt.keys, Projection: &backupv1.Projection{ProjectionType: backupv1.ProjectionType_PROJECTION_TYPE_ALL}}}}})
			if tt.field == "" {
				if len(vs) != 0 || len(in.LocalSecondaryIndexOverride) != 1 || len(in.LocalSecondaryIndexOverride[0].KeySchema) != 2 {
					t.Fatalf("violations %+v, override %+v; want none, and the index sent", vs, in.LocalSecondaryIndexOverride)
				}
				return
			}
			if len(vs) != 1 || vs[0].Field != tt.field || !strings.Contains(vs[0].Description, tt.wantWords) {
				t.Errorf("violations %+v; want one on %s saying %q", vs, tt.field, tt.wantWords)
			}
		})
	}
}

// Both kinds of index override are checked alike and in the request's
// field order: name, key schema, projection (then a GSI's throughput).
func TestIndexOverrideViolationOrder(t *testing.T) {
	const arn = "arn:aws:dynamodb:us-east-1:111111111111:table/Orders/backup/01700000000000-abcdef12"
	req := &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy",
		GlobalSecondaryIndexOverride: &backupv1.GlobalSecondaryIndexSelection{Indexes: []*backupv1.GlobalSecondaryIndex{
			{IndexName: "x", ProvisionedThroughput: &backupv1.ProvisionedThroughput{ReadCapacityUnits: 1}}}},
		LocalSecondaryIndexOverride: &backupv1.LocalSecondaryIndexSelection{Indexes: []*backupv1.LocalSecondaryIndex{{IndexName: "y"}}},
	}
	var vs violations
	checkRestore(&vs, req)
	var got []string
	for _, v := range vs {
		got = append(got, v.Field)
	}
	want := []string{
		"global_secondary_index_override.indexes[0].index_name",
		"global_secondary_index_override.indexes[0].key_schema",
		"global_secondary_index_override.indexes[0].projection.projection_type",
		"global_secondary_index_override.indexes[0].provisioned_throughput.write_capacity_units",
		"local_secondary_index_override.indexes[0].index_name",
		"local_secondary_index_override.indexes[0].key_schema",
		"local_secondary_index_override.indexes[0].projection.projection_type",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("violations on\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestSourceTableFeaturesConversion(t *testing.T) {
	s := New(Options{})
	str := func(v string) *string { return &v }
	in := &types.SourceTableFeatureDetails{
		LocalSecondaryIndexes: []types.LocalSecondaryIndexInfo{{IndexName: str("ByDate"),
			KeySchema:  []types.KeySchemaElement{{AttributeName: str("pk"), KeyType: types.KeyTypeHash}, {AttributeName: str("date"), KeyType: types.KeyTypeRange}},
			Projection: &types.Projection{ProjectionType: types.ProjectionTypeInclude, NonKeyAttributes: []string{"total"}}}},
		StreamDescription:     &types.StreamSpecification{StreamEnabled: new(bool), StreamViewType: types.StreamViewTypeNewAndOldImages},
		TimeToLiveDescription: &types.TimeToLiveDescription{TimeToLiveStatus: types.TimeToLiveStatusEnabled, AttributeName: str("expires")},
		SSEDescription:        &types.SSEDescription{Status: types.SSEStatusEnabled, SSEType: types.SSETypeKms, KMSMasterKeyArn: str("arn:aws:kms:us-east-1:111111111111:key/k")},
	}
	got := sourceTableFeatures(s.warner(t.Context()), in)
	lsi := got.GetLocalSecondaryIndexes()
	if len(lsi) != 1 || lsi[0].GetKeySchema()[1].GetKeyType() != backupv1.KeyType_KEY_TYPE_RANGE ||
		lsi[0].GetProjection().GetProjectionType() != backupv1.ProjectionType_PROJECTION_TYPE_INCLUDE || lsi[0].GetProjection().GetNonKeyAttributes()[0] != "total" {
		t.Errorf("LSI = %v", lsi)
	}
	if st := got.GetStreamDescription(); st.GetStreamViewType() != backupv1.StreamViewType_STREAM_VIEW_TYPE_NEW_AND_OLD_IMAGES {
		t.Errorf("stream = %v", st)
	}
	if ttl := got.GetTimeToLiveDescription(); ttl.GetTimeToLiveStatus() != backupv1.TimeToLiveStatus_TIME_TO_LIVE_STATUS_ENABLED || ttl.GetAttributeName() != "expires" {
		t.Errorf("TTL = %v", ttl)
	}
	if sse := got.GetSseDescription(); sse.GetStatus() != backupv1.SseStatus_SSE_STATUS_ENABLED || sse.GetSseType() != backupv1.SseType_SSE_TYPE_KMS || sse.GetKmsMasterKeyArn() == "" {
		t.Errorf("SSE = %v", sse)
	}
}

// TestRestoreKMSKeyARN: a KMS key named by its ARN, or its alias's, must
// be of the backup's partition and region; a key id or alias name is
// DynamoDB's to resolve, and another account's key KMS's to allow.
func TestRestoreKMSKeyARN(t *testing.T) {
	const backup = "arn:aws:dynamodb:us-east-1:111111111111:table/Orders/backup/01700000000000-abcdef12"
	for _, tt := range []struct {
		key  string
		want string // a part of the violation; "" for none
	}{
		{"arn:aws:kms:us-east-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab", ""},
		{"arn:aws:kms:us-east-1:111111111111:alias/backups", ""},
		{"1234abcd-12ab-34cd-56ef-1234567890ab", ""},
		{"alias/backups", ""},
		{"alias/" + strings.Repeat("k", 2042), ""},              // 2048 characters, DynamoDB's most
		{"arn:aws:kms:us-east-1:222222222222:key/1234abcd", ""}, // its key policy's to allow
		{"arn:aws:kms:eu-west-1:111111111111:key/1234abcd", `names a key in region "eu-west-1"; the restored table is in us-east-1`},
		{"arn:aws-cn:kms:us-east-1:111111111111:key/1234abcd", `names a key of partition "aws-cn"; the restored table is in partition aws`},
		{"arn:aws:s3:us-east-1:111111111111:key/1234abcd", "must be a KMS key id, alias, or the ARN of a KMS key or alias"},
		{"arn:aws:kms:us-east-1", "must be a KMS key id, alias, or the ARN of a KMS key or alias"},
		{"arn:", "must be a KMS key id, alias, or the ARN of a KMS key or alias"},
		{"ARN:aws:kms:eu-west-1:111111111111:key/1234abcd", `names a key in region "eu-west-1"`},
	} {
		t.Run(tt.key, func(t *testing.T) {
			_, _, err := validateRestore(&backupv1.RestoreTableFromBackupRequest{BackupArn: backup, TargetTableName: "Copy",
				SseSpecificationOverride: &backupv1.SseSpecification{Enabled: true, SseType: backupv1.SseType_SSE_TYPE_KMS, KmsMasterKeyId: tt.key}})
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), "sse_specification_override.kms_master_key_id "+tt.want)):
				t.Errorf("error %v; want one with %q", err, tt.want)
			}
		})
	}
}

// TestRestoreInput: what a valid restore asks for is what DynamoDB is
// sent: the target, each override and each index's name, keys,
// projection and throughput, in DynamoDB's terms.
func TestRestoreInput(t *testing.T) {
	const arn = "arn:aws:dynamodb:us-east-1:111111111111:table/Orders/backup/01700000000000-abcdef12"
	keys := []*backupv1.KeySchemaElement{{AttributeName: "pk", KeyType: backupv1.KeyType_KEY_TYPE_HASH}, {AttributeName: "sk", KeyType: backupv1.KeyType_KEY_TYPE_RANGE}}
	sdkKeys := []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}, {AttributeName: aws.String("sk"), KeyType: types.KeyTypeRange}}
	tests := []struct {
		name string
		req  *backupv1.RestoreTableFromBackupRequest
		want *dynamodb.RestoreTableFromBackupInput
	}{
		{"no override", &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy"},
			&dynamodb.RestoreTableFromBackupInput{BackupArn: aws.String(arn), TargetTableName: aws.String("Copy")}},
		{"provisioned, a KMS key, every kind of index", &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy",
			BillingModeOverride:           backupv1.BillingMode_BILLING_MODE_PROVISIONED,
			ProvisionedThroughputOverride: &backupv1.ProvisionedThroughput{ReadCapacityUnits: 5, WriteCapacityUnits: 6},
			SseSpecificationOverride:      &backupv1.SseSpecification{Enabled: true, SseType: backupv1.SseType_SSE_TYPE_KMS, KmsMasterKeyId: "alias/backups"},
			GlobalSecondaryIndexOverride: &backupv1.GlobalSecondaryIndexSelection{Indexes: []*backupv1.GlobalSecondaryIndex{
				{IndexName: "ByTotal", KeySchema: keys, Projection: &backupv1.Projection{ProjectionType: backupv1.ProjectionType_PROJECTION_TYPE_INCLUDE, NonKeyAttributes: []string{"total"}},
					ProvisionedThroughput: &backupv1.ProvisionedThroughput{ReadCapacityUnits: 7, WriteCapacityUnits: 8}},
				{IndexName: "ByKey", KeySchema: keys[:1], Projection: &backupv1.Projection{ProjectionType: backupv1.ProjectionType_PROJECTION_TYPE_ALL},
					ProvisionedThroughput: &backupv1.ProvisionedThroughput{WriteCapacityUnits: 1, ReadCapacityUnits: 2}},
			}},
			LocalSecondaryIndexOverride: &backupv1.LocalSecondaryIndexSelection{Indexes: []*backupv1.LocalSecondaryIndex{
				{IndexName: "ByDate", KeySchema: keys, Projection: &backupv1.Projection{ProjectionType: backupv1.ProjectionType_PROJECTION_TYPE_KEYS_ONLY}},
			}},
		}, &dynamodb.RestoreTableFromBackupInput{BackupArn: aws.String(arn), TargetTableName: aws.String("Copy"),
			BillingModeOverride:           types.BillingModeProvisioned,
			ProvisionedThroughputOverride: &types.ProvisionedThroughput{ReadCapacityUnits: aws.Int64(5), WriteCapacityUnits: aws.Int64(6)},
			SSESpecificationOverride:      &types.SSESpecification{Enabled: aws.Bool(true), SSEType: types.SSETypeKms, KMSMasterKeyId: aws.String("alias/backups")},
			GlobalSecondaryIndexOverride: []types.GlobalSecondaryIndex{
				{IndexName: aws.String("ByTotal"), KeySchema: sdkKeys, Projection: &types.Projection{ProjectionType: types.ProjectionTypeInclude, NonKeyAttributes: []string{"total"}},
					ProvisionedThroughput: &types.ProvisionedThroughput{ReadCapacityUnits: aws.Int64(7), WriteCapacityUnits: aws.Int64(8)}},
				{IndexName: aws.String("ByKey"), KeySchema: sdkKeys[:1], Projection: &types.Projection{ProjectionType: types.ProjectionTypeAll},
					ProvisionedThroughput: &types.ProvisionedThroughput{ReadCapacityUnits: aws.Int64(2), WriteCapacityUnits: aws.Int64(1)}},
			},
			LocalSecondaryIndexOverride: []types.LocalSecondaryIndex{
				{IndexName: aws.String("ByDate"), KeySchema: sdkKeys, Projection: &types.Projection{ProjectionType: types.ProjectionTypeKeysOnly}},
			},
		}},
		{"on demand, SSE on with DynamoDB's default type, an index's 0/0 throughput dropped", &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy",
			BillingModeOverride:      backupv1.BillingMode_BILLING_MODE_PAY_PER_REQUEST,
			SseSpecificationOverride: &backupv1.SseSpecification{Enabled: true},
			GlobalSecondaryIndexOverride: &backupv1.GlobalSecondaryIndexSelection{Indexes: []*backupv1.GlobalSecondaryIndex{
				{IndexName: "ByCustomer", KeySchema: keys[:1], Projection: &backupv1.Projection{ProjectionType: backupv1.ProjectionType_PROJECTION_TYPE_ALL},
					ProvisionedThroughput: &backupv1.ProvisionedThroughput{}},
			}},
		}, &dynamodb.RestoreTableFromBackupInput{BackupArn: aws.String(arn), TargetTableName: aws.String("Copy"),
			BillingModeOverride:      types.BillingModePayPerRequest,
			SSESpecificationOverride: &types.SSESpecification{Enabled: aws.Bool(true)},
			GlobalSecondaryIndexOverride: []types.GlobalSecondaryIndex{
				{IndexName: aws.String("ByCustomer"), KeySchema: sdkKeys[:1], Projection: &types.Projection{ProjectionType: types.ProjectionTypeAll}},
			},
		}},
		{"SSE on, a key of its own, the type left unset: sent as KMS", &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy",
			SseSpecificationOverride: &backupv1.SseSpecification{Enabled: true, KmsMasterKeyId: "alias/mine"}},
			&dynamodb.RestoreTableFromBackupInput{BackupArn: aws.String(arn), TargetTableName: aws.String("Copy"),
				SSESpecificationOverride: &types.SSESpecification{Enabled: aws.Bool(true), SSEType: types.SSETypeKms, KMSMasterKeyId: aws.String("alias/mine")}}},
		{"empty selections: no index kept", &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy",
			GlobalSecondaryIndexOverride: &backupv1.GlobalSecondaryIndexSelection{}, LocalSecondaryIndexOverride: &backupv1.LocalSecondaryIndexSelection{}},
			&dynamodb.RestoreTableFromBackupInput{BackupArn: aws.String(arn), TargetTableName: aws.String("Copy"),
				GlobalSecondaryIndexOverride: []types.GlobalSecondaryIndex{}, LocalSecondaryIndexOverride: []types.LocalSecondaryIndex{}}},
		{"SSE off: DynamoDB's AWS owned key", &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy",
			SseSpecificationOverride: &backupv1.SseSpecification{}},
			&dynamodb.RestoreTableFromBackupInput{BackupArn: aws.String(arn), TargetTableName: aws.String("Copy"),
				SSESpecificationOverride: &types.SSESpecification{Enabled: aws.Bool(false)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, a, err := validateRestore(tt.req)
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if a.Account != "111111111111" || a.Region != "us-east-1" || a.Table != "Orders" || a.BackupID != "01700000000000-abcdef12" {
				t.Errorf("backup ARN read as %+v", a)
			}
			got, _ := json.Marshal(in)
			want, _ := json.Marshal(tt.want)
			if string(got) != string(want) {
				t.Errorf("DynamoDB is sent\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// A global index's key may be made of several attributes (DynamoDB's
// multi-attribute keys, as GetBackup describes them): up to four HASH
// elements, then up to four RANGE ones, each another attribute.
func TestGlobalIndexMultiAttributeKeySchema(t *testing.T) {
	const arn = keyTestARN
	key, hash, rng := keyElement, backupv1.KeyType_KEY_TYPE_HASH, backupv1.KeyType_KEY_TYPE_RANGE
	tests := []struct {
		name  string
		keys  []*backupv1.KeySchemaElement
		field string // "" means valid
	}{
		{"HASH", []*backupv1.KeySchemaElement{key(hash, "a")}, ""},
		{"HASH and RANGE", []*backupv1.KeySchemaElement{key(hash, "a"), key(rng, "b")}, ""},
		{"two HASH", []*backupv1.KeySchemaElement{key(hash, "a"), key(hash, "b")}, ""},
		{"two HASH and a RANGE", []*backupv1.KeySchemaElement{key(hash, "a"), key(hash, "b"), key(rng, "c")}, ""},
		{"four of each", []*backupv1.KeySchemaElement{key(hash, "a"), key(hash, "b"), key(hash, "c"), key(hash, "d"),
			key(rng, "e"), key(rng, "f"), key(rng, "g"), key(rng, "h")}, ""},
		{"five HASH", []*backupv1.KeySchemaElement{key(hash, "a"), key(hash, "b"), key(hash, "c"), key(hash, "d"), key(hash, "e")},
			"global_secondary_index_override.indexes[0].key_schema"},
		{"five RANGE", []*backupv1.KeySchemaElement{key(hash, "a"), key(rng, "b"), key(rng, "c"), key(rng, "d"), key(rng, "e"), key(rng, "f")},
			"global_secondary_index_override.indexes[0].key_schema"},
		{"HASH after RANGE", []*backupv1.KeySchemaElement{key(hash, "a"), key(rng, "b"), key(hash, "c")},
			"global_secondary_index_override.indexes[0].key_schema[2].key_type"},
		{"RANGE first", []*backupv1.KeySchemaElement{key(rng, "a")}, "global_secondary_index_override.indexes[0].key_schema[0].key_type"},
		{"one attribute twice", []*backupv1.KeySchemaElement{key(hash, "a"), key(hash, "b"), key(rng, "a")},
			"global_secondary_index_override.indexes[0].key_schema[2].attribute_name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var vs violations
			in := checkRestore(&vs, &backupv1.RestoreTableFromBackupRequest{BackupArn: arn, TargetTableName: "Copy",
				GlobalSecondaryIndexOverride: &backupv1.GlobalSecondaryIndexSelection{Indexes: []*backupv1.GlobalSecondaryIndex{{
					IndexName: "ByKey", KeySchema: tt.keys, Projection: &backupv1.Projection{ProjectionType: backupv1.ProjectionType_PROJECTION_TYPE_ALL}}}}})
			if tt.field == "" {
				if len(vs) != 0 || len(in.GlobalSecondaryIndexOverride) != 1 {
					t.Fatalf("violations %+v; want none", vs)
				}
				for i, k := range in.GlobalSecondaryIndexOverride[0].KeySchema {
					if want := map[backupv1.KeyType]types.KeyType{hash: types.KeyTypeHash, rng: types.KeyTypeRange}[tt.keys[i].KeyType]; k.KeyType != want {
						t.Errorf("key_schema[%d] sent as %s; want %s", i, k.KeyType, want)
					}
				}
				return
			}
			if len(vs) != 1 || vs[0].Field != tt.field {
				t.Errorf("violations %+v; want one on %s", vs, tt.field)
			}
		})
	}
}
