package service

import (
	"testing"

	"google.golang.org/protobuf/proto"

	backupv1 "github.com/backupd/backupd/gen/backup/v1"
)

func TestRestoreFingerprintOfEquivalentRequests(t *testing.T) {
	base := func() *backupv1.RestoreTableFromBackupRequest {
		return &backupv1.RestoreTableFromBackupRequest{BackupArn: "arn:aws:dynamodb:us-east-1:111111111111:table/Tab/backup/01700000000000-abcdef12",
			TargetTableName: "Copy", RequestId: "r"}
	}
	gsi := func(name string, pt *backupv1.ProvisionedThroughput, nka ...string) *backupv1.GlobalSecondaryIndex {
		pj := &backupv1.Projection{ProjectionType: backupv1.ProjectionType_PROJECTION_TYPE_ALL, NonKeyAttributes: nka}
		return &backupv1.GlobalSecondaryIndex{IndexName: name, KeySchema: []*backupv1.KeySchemaElement{{AttributeName: "k", KeyType: backupv1.KeyType_KEY_TYPE_HASH}},
			Projection: pj, ProvisionedThroughput: pt}
	}
	fp := func(r *backupv1.RestoreTableFromBackupRequest) [32]byte {
		if _, _, err := validateRestore(r); err != nil {
			t.Fatalf("invalid: %v", err)
		}
		f, _ := fingerprint(normRestore(r))
		return f
	}
	cases := []struct {
		name string
		a, b func(*backupv1.RestoreTableFromBackupRequest)
	}{
		{"gsi order", func(r *backupv1.RestoreTableFromBackupRequest) {
			r.GlobalSecondaryIndexOverride = &backupv1.GlobalSecondaryIndexSelection{Indexes: []*backupv1.GlobalSecondaryIndex{gsi("ix1", nil), gsi("ix2", nil)}}
		}, func(r *backupv1.RestoreTableFromBackupRequest) {
			r.GlobalSecondaryIndexOverride = &backupv1.GlobalSecondaryIndexSelection{Indexes: []*backupv1.GlobalSecondaryIndex{gsi("ix2", nil), gsi("ix1", nil)}}
		}},
		{"gsi throughput 0/0 vs absent", func(r *backupv1.RestoreTableFromBackupRequest) {
			r.GlobalSecondaryIndexOverride = &backupv1.GlobalSecondaryIndexSelection{Indexes: []*backupv1.GlobalSecondaryIndex{gsi("ix1", nil)}}
		}, func(r *backupv1.RestoreTableFromBackupRequest) {
			r.GlobalSecondaryIndexOverride = &backupv1.GlobalSecondaryIndexSelection{Indexes: []*backupv1.GlobalSecondaryIndex{gsi("ix1", &backupv1.ProvisionedThroughput{})}}
		}},
		{"sse enabled unset type vs KMS", func(r *backupv1.RestoreTableFromBackupRequest) {
			r.SseSpecificationOverride = &backupv1.SseSpecification{Enabled: true, KmsMasterKeyId: "alias/k"}
		}, func(r *backupv1.RestoreTableFromBackupRequest) {
			r.SseSpecificationOverride = &backupv1.SseSpecification{Enabled: true, SseType: backupv1.SseType_SSE_TYPE_KMS, KmsMasterKeyId: "alias/k"}
		}},
	}
	for _, c := range cases {
		a, b := base(), base()
		c.a(a)
		c.b(b)
		if fp(a) != fp(b) {
			t.Errorf("%s: equivalent restores get different fingerprints (REQUEST_ID_REUSED on a retry)", c.name)
		}
	}
	// What DynamoDB is sent differently still differs.
	one, two := base(), base()
	one.GlobalSecondaryIndexOverride = &backupv1.GlobalSecondaryIndexSelection{Indexes: []*backupv1.GlobalSecondaryIndex{gsi("ix1", nil)}}
	two.GlobalSecondaryIndexOverride = &backupv1.GlobalSecondaryIndexSelection{Indexes: []*backupv1.GlobalSecondaryIndex{gsi("ix1", &backupv1.ProvisionedThroughput{ReadCapacityUnits: 1, WriteCapacityUnits: 1})}}
	if fp(one) == fp(two) {
		t.Error("an index's throughput does not change the fingerprint")
	}
	three := base()
	three.GlobalSecondaryIndexOverride = &backupv1.GlobalSecondaryIndexSelection{}
	if fp(three) == fp(base()) {
		t.Error("dropping every index and keeping them have the same fingerprint")
	}
	four := base()
	four.SseSpecificationOverride = &backupv1.SseSpecification{}
	if fp(four) == fp(base()) {
		t.Error("an AWS owned key and no override have the same fingerprint")
	}
	// A request already written one way keeps its earlier fingerprint.
	if got, want := fp(one), fpOfClone(t, one); got != want {
		t.Error("a request already in order changed its fingerprint")
	}
}

func fpOfClone(t *testing.T, r *backupv1.RestoreTableFromBackupRequest) [32]byte {
	n := proto.CloneOf(r)
	n.RequestId = ""
	f, err := fingerprint(n)
	if err != nil {
		t.Fatal(err)
	}
	return f
}
