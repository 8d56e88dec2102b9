package service

import (
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/backupd/backupd/badrequest"
	backupv1 "github.com/backupd/backupd/gen/backup/v1"
)

// validateRestore checks every field of a restore and returns DynamoDB's
// input and the backup ARN, which decides the account and region to act
// in: the handler's checks and Violations'.
func validateRestore(req *backupv1.RestoreTableFromBackupRequest) (*dynamodb.RestoreTableFromBackupInput, arn, error) {
	var vs violations
	in := checkRestore(&vs, req)
	a, ok := parseARN(&vs, "backup_arn", req.GetBackupArn(), true)
	// "arn:" in any case, as a caller may write it.
	if k := req.GetSseSpecificationOverride().GetKmsMasterKeyId(); ok && len(k) >= 4 && strings.EqualFold(k[:4], "arn:") {
		checkKMSKeyARN(&vs, "sse_specification_override.kms_master_key_id", k, a)
	}
	return in, a, vs.err()
}

// checkKMSKeyARN checks that a key named by its ARN (or its alias's) is a
// KMS key of the backup's partition and region: the restored table lives
// there, and DynamoDB takes keys of its own region only. Another
// account's key is left to KMS: its key policy decides whether the
// backup's account may use it, and backupd acts in that account alone.
func checkKMSKeyARN(vs *violations, field, key string, backup arn) {
	parts, ok := arnFields(key)
	switch {
	case !ok || parts[2] != "kms":
		vs.add(field, "must be a KMS key id, alias, or the ARN of a KMS key or alias (arn:%s:kms:%s:ACCOUNT:key/ID); got %s",
			backup.Partition, backup.Region, badrequest.Quote(key))
	case parts[1] != backup.Partition:
		vs.add(field, "names a key of partition %s; the restored table is in partition %s, the backup_arn's, and DynamoDB takes keys of its own region only",
			badrequest.Quote(parts[1]), backup.Partition)
	case parts[arnRegion] != backup.Region:
		vs.add(field, "names a key in region %s; the restored table is in %s, the backup_arn's region, and DynamoDB takes keys of its own region only",
			badrequest.Quote(parts[arnRegion]), backup.Region)
	}
}

// checkRestore checks a restore's target and overrides and builds
// DynamoDB's input.
func checkRestore(vs *violations, req *backupv1.RestoreTableFromBackupRequest) *dynamodb.RestoreTableFromBackupInput {
	checkName(vs, "target_table_name", req.GetTargetTableName())
	checkRequestID(vs, "request_id", req.GetRequestId())
	in := &dynamodb.RestoreTableFromBackupInput{
		BackupArn:       aws.String(req.GetBackupArn()),
		TargetTableName: aws.String(req.GetTargetTableName()),
	}
	switch req.GetBillingModeOverride() {
	case backupv1.BillingMode_BILLING_MODE_UNSPECIFIED:
	case backupv1.BillingMode_BILLING_MODE_PROVISIONED:
		in.BillingModeOverride = types.BillingModeProvisioned
	case backupv1.BillingMode_BILLING_MODE_PAY_PER_REQUEST:
		in.BillingModeOverride = types.BillingModePayPerRequest
	default:
		vs.add("billing_mode_override", "must be BILLING_MODE_PROVISIONED or BILLING_MODE_PAY_PER_REQUEST; got %d", req.GetBillingModeOverride())
	}
	if pt := req.GetProvisionedThroughputOverride(); pt != nil {
		in.ProvisionedThroughputOverride = checkThroughput(vs, "provisioned_throughput_override", pt)
		if req.GetBillingModeOverride() == backupv1.BillingMode_BILLING_MODE_PAY_PER_REQUEST {
			vs.add("provisioned_throughput_override", "must be absent with billing_mode_override PAY_PER_REQUEST")
		}
	}
	if sse := req.GetSseSpecificationOverride(); sse != nil {
		in.SSESpecificationOverride = checkSSE(vs, "sse_specification_override", sse)
	}
	named := indexNames{}
	if sel := req.GetGlobalSecondaryIndexOverride(); sel != nil && indexCount(vs, "global_secondary_index_override.indexes", len(sel.GetIndexes()), maxGlobalIndexes) {
		in.GlobalSecondaryIndexOverride = make([]types.GlobalSecondaryIndex, 0, len(sel.GetIndexes()))
		for i, g := range sel.GetIndexes() {
			f := fieldIndex("global_secondary_index_override.indexes", i)
			var idx types.GlobalSecondaryIndex
			idx.IndexName, idx.KeySchema, idx.Projection = checkIndex(vs, named, f, g)
			// Descriptions of on-demand tables carry 0/0 index throughput;
			// a copied description means "none", not an error.
			if pt := g.GetProvisionedThroughput(); pt != nil && (pt.GetReadCapacityUnits() != 0 || pt.GetWriteCapacityUnits() != 0) {
				idx.ProvisionedThroughput = checkThroughput(vs, f+".provisioned_throughput", g.GetProvisionedThroughput())
				if req.GetBillingModeOverride() == backupv1.BillingMode_BILLING_MODE_PAY_PER_REQUEST {
					vs.add(f+".provisioned_throughput", "must be absent with billing_mode_override PAY_PER_REQUEST")
				}
			}
			in.GlobalSecondaryIndexOverride = append(in.GlobalSecondaryIndexOverride, idx)
		}
	}
	if sel := req.GetLocalSecondaryIndexOverride(); sel != nil && indexCount(vs, "local_secondary_index_override.indexes", len(sel.GetIndexes()), maxLocalIndexes) {
		in.LocalSecondaryIndexOverride = make([]types.LocalSecondaryIndex, 0, len(sel.GetIndexes()))
		for i, l := range sel.GetIndexes() {
			f := fieldIndex("local_secondary_index_override.indexes", i)
			var idx types.LocalSecondaryIndex
			idx.IndexName, idx.KeySchema, idx.Projection = checkIndex(vs, named, f, l)
			in.LocalSecondaryIndexOverride = append(in.LocalSecondaryIndexOverride, idx)
		}
	}
	return in
}

// The most index overrides a restore may list: a table has at most 5
// local secondary indexes, and 20 global ones unless its account's quota
// was raised; global ones are taken up to five times that. A list over
// its bound is refused for its number alone, its indexes unchecked: a
// 1 MiB request of 500,000 empty overrides, each checked, took 2.5 s of
// CPU and 800 MB for the violations of every one.
const (
	maxGlobalIndexes = 100
	maxLocalIndexes  = 5
)

// indexCount reports whether an override's list of n indexes, at field,
// is within most, and refuses it otherwise.
func indexCount(vs *violations, field string, n, most int) bool {
	if n <= most {
		return true
	}
	vs.add(field, "must list at most %d indexes; got %d", most, n)
	return false
}

// indexNames are the index names of a restore's overrides so far, each
// with the field that named it first: a table's indexes, global and
// local, have names of their own, which DynamoDB would otherwise refuse
// with no field named.
type indexNames map[string]string

func (n indexNames) check(vs *violations, field, name string) {
	if first, ok := n[name]; ok {
		vs.add(field+".index_name", "repeats %s, the name of %s: a table's indexes, global and local, must have names of their own",
			badrequest.Quote(name), first)
		return
	}
	n[name] = field
}

// secondaryIndex is what a global and a local secondary index override
// have in common.
type secondaryIndex interface {
	GetIndexName() string
	GetKeySchema() []*backupv1.KeySchemaElement
	GetProjection() *backupv1.Projection
}

// checkIndex checks what every index override at field has, in the
// request's field order (name, key schema, projection), and returns it in
// DynamoDB's types. A valid name is one of named, the restore's so far.
func checkIndex(vs *violations, named indexNames, field string, idx secondaryIndex) (*string, []types.KeySchemaElement, *types.Projection) {
	before := len(*vs)
	checkName(vs, field+".index_name", idx.GetIndexName())
	if len(*vs) == before {
		named.check(vs, field, idx.GetIndexName())
	}
	_, local := idx.(*backupv1.LocalSecondaryIndex)
	return aws.String(idx.GetIndexName()),
		checkKeySchema(vs, field+".key_schema", idx.GetKeySchema(), local),
		checkProjection(vs, field+".projection", idx.GetProjection())
}

func fieldIndex(field string, i int) string {
	return field + "[" + strconv.Itoa(i) + "]"
}

func checkThroughput(vs *violations, field string, pt *backupv1.ProvisionedThroughput) *types.ProvisionedThroughput {
	if pt.GetReadCapacityUnits() < 1 {
		vs.add(field+".read_capacity_units", "must be at least 1; got %d", pt.GetReadCapacityUnits())
	}
	if pt.GetWriteCapacityUnits() < 1 {
		vs.add(field+".write_capacity_units", "must be at least 1; got %d", pt.GetWriteCapacityUnits())
	}
	return &types.ProvisionedThroughput{
		ReadCapacityUnits:  aws.Int64(pt.GetReadCapacityUnits()),
		WriteCapacityUnits: aws.Int64(pt.GetWriteCapacityUnits()),
	}
}

func checkSSE(vs *violations, field string, sse *backupv1.SseSpecification) *types.SSESpecification {
	out := &types.SSESpecification{Enabled: aws.Bool(sse.GetEnabled())}
	// DynamoDB's SSESpecification: "If enabled (true), server-side
	// encryption type is set to KMS": enabled with the type unset is KMS,
	// a key of its own included, and is sent as KMS.
	kms := sse.GetSseType() == backupv1.SseType_SSE_TYPE_KMS ||
		sse.GetSseType() == backupv1.SseType_SSE_TYPE_UNSPECIFIED && sse.GetEnabled()
	switch sse.GetSseType() {
	case backupv1.SseType_SSE_TYPE_UNSPECIFIED:
		if kms && sse.GetKmsMasterKeyId() != "" {
			out.SSEType = types.SSETypeKms
		}
	case backupv1.SseType_SSE_TYPE_KMS:
		out.SSEType = types.SSETypeKms
	case backupv1.SseType_SSE_TYPE_AES256:
		// A table's description may say AES256 (an AWS owned key); a
		// request may not: KMS is the only type DynamoDB takes.
		vs.add(field+".sse_type", "must be SSE_TYPE_KMS, the only type DynamoDB takes, or unset; got SSE_TYPE_AES256")
	default:
		vs.add(field+".sse_type", "must be SSE_TYPE_KMS, or unset; got %d", sse.GetSseType())
	}
	if !sse.GetEnabled() && (sse.GetSseType() == backupv1.SseType_SSE_TYPE_KMS || sse.GetKmsMasterKeyId() != "") {
		// DynamoDB takes SSE off as a request for its AWS owned key: it
		// would restore without the key asked for, or refuse the key.
		vs.add(field+".enabled", "must be true with sse_type SSE_TYPE_KMS or a kms_master_key_id; without it the table is encrypted with an AWS owned key")
	}
	if k := sse.GetKmsMasterKeyId(); k != "" {
		if !kms {
			vs.add(field+".kms_master_key_id", "is only allowed with sse_type SSE_TYPE_KMS, or unset with enabled true")
		}
		if len(k) > maxKMSKeyID || !visibleASCII(k) {
			vs.add(field+".kms_master_key_id", "must be a KMS key id, alias or ARN: at most %d ASCII characters, without spaces; got %s",
				maxKMSKeyID, badrequest.Quote(k))
		}
		out.KMSMasterKeyId = aws.String(k)
	}
	return out
}

// Bounds of what a restore names, from DynamoDB's API reference: a KMS key
// ARN is at most 2048 characters; an INCLUDE projection names 1-20
// attributes; an attribute name is 1-255 bytes.
const (
	maxKMSKeyID        = 2048
	maxNonKeyAttrs     = 20
	maxAttributeLength = 255
)

// checkAttributeName holds a key or projected attribute's name to
// DynamoDB's length, and refuses control characters, which no attribute a
// restore can name has.
func checkAttributeName(vs *violations, field, name string) {
	switch {
	case len(name) < 1 || len(name) > maxAttributeLength:
		vs.add(field, "must be 1-%d bytes; got %d", maxAttributeLength, len(name))
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		vs.add(field, "must have no control characters; got %s", badrequest.Quote(name))
	}
}

// maxKeyAttrs is how many attributes a global index's partition key, and
// its sort key, may each be made of (DynamoDB's multi-attribute keys).
const maxKeyAttrs = 4

// checkKeySchema checks an index's key. A global index's is its HASH
// elements then its RANGE elements: one HASH attribute or, a
// multi-attribute key, up to maxKeyAttrs of them, and none to
// maxKeyAttrs RANGE ones (GetBackup describes an index so). A local
// index (local) has exactly a HASH and a RANGE key: the table's HASH key
// and a RANGE key of its own, as DynamoDB makes every local index. No
// attribute may be two elements. DynamoDB would refuse any other, naming
// no field.
func checkKeySchema(vs *violations, field string, ks []*backupv1.KeySchemaElement, local bool) []types.KeySchemaElement {
	hashes := 0
	for hashes < len(ks) && ks[hashes].GetKeyType() == backupv1.KeyType_KEY_TYPE_HASH {
		hashes++
	}
	switch {
	case local && len(ks) != 2:
		vs.add(field, "must have a HASH key and a RANGE key, as every local secondary index has; got %d elements", len(ks))
	case len(ks) == 0:
		vs.add(field, "must have a HASH key and at most one RANGE key (or up to %d of each, a multi-attribute key); got 0 elements", maxKeyAttrs)
	case !local && (hashes > maxKeyAttrs || len(ks)-hashes > maxKeyAttrs):
		vs.add(field, "must have at most %d HASH and %d RANGE elements; got %d and %d", maxKeyAttrs, maxKeyAttrs, hashes, len(ks)-hashes)
	}
	if len(ks) > 2*maxKeyAttrs {
		// Refused for its number above, its elements unchecked: a
		// request of thousands must cost no more than one of a few, not
		// a violation or two for each (a 1 MiB one of 500,000 empty
		// elements took 1.6 s of CPU and 480 MB), nor the square of
		// their number for repeats (30 s).
		return nil
	}
	out := make([]types.KeySchemaElement, 0, len(ks))
	for i, k := range ks {
		f := fieldIndex(field, i)
		before := len(*vs)
		checkAttributeName(vs, f+".attribute_name", k.GetAttributeName())
		if len(*vs) == before {
			if j := slices.IndexFunc(ks[:i], func(e *backupv1.KeySchemaElement) bool { return e.GetAttributeName() == k.GetAttributeName() }); j >= 0 {
				vs.add(f+".attribute_name", "repeats %s, the attribute of key_schema[%d]: each of an index's keys is another attribute",
					badrequest.Quote(k.GetAttributeName()), j)
			}
		}
		kt := types.KeyTypeHash
		switch {
		case k.GetKeyType() == backupv1.KeyType_KEY_TYPE_HASH && (i == 0 || !local && i < hashes):
		case k.GetKeyType() == backupv1.KeyType_KEY_TYPE_RANGE && local && i == 1:
			kt = types.KeyTypeRange
		case k.GetKeyType() == backupv1.KeyType_KEY_TYPE_RANGE && !local && i >= hashes && hashes > 0:
			kt = types.KeyTypeRange
		case local && i >= 2:
			// Beyond a local index's two elements: refused for their
			// number above, not for a type they could not have right.
		case local:
			vs.add(f+".key_type", "must be HASH for the first element and RANGE for the second; got %s", k.GetKeyType())
		default:
			vs.add(f+".key_type", "must be HASH for the first elements and RANGE for those after them; got %s", k.GetKeyType())
		}
		out = append(out, types.KeySchemaElement{AttributeName: aws.String(k.GetAttributeName()), KeyType: kt})
	}
	return out
}

func checkProjection(vs *violations, field string, p *backupv1.Projection) *types.Projection {
	switch p.GetProjectionType() {
	case backupv1.ProjectionType_PROJECTION_TYPE_ALL:
		return &types.Projection{ProjectionType: types.ProjectionTypeAll}
	case backupv1.ProjectionType_PROJECTION_TYPE_KEYS_ONLY:
		return &types.Projection{ProjectionType: types.ProjectionTypeKeysOnly}
	case backupv1.ProjectionType_PROJECTION_TYPE_INCLUDE:
		switch n := len(p.GetNonKeyAttributes()); {
		case n == 0:
			vs.add(field+".non_key_attributes", "must name at least one attribute with projection_type INCLUDE")
		case n > maxNonKeyAttrs:
			vs.add(field+".non_key_attributes", "must name at most %d attributes; got %d", maxNonKeyAttrs, n)
		default:
			for i, a := range p.GetNonKeyAttributes() {
				checkAttributeName(vs, fieldIndex(field+".non_key_attributes", i), a)
			}
		}
		return &types.Projection{ProjectionType: types.ProjectionTypeInclude, NonKeyAttributes: p.GetNonKeyAttributes()}
	}
	vs.add(field+".projection_type", "must be PROJECTION_TYPE_ALL, PROJECTION_TYPE_KEYS_ONLY or PROJECTION_TYPE_INCLUDE; got %s", p.GetProjectionType())
	return nil
}
