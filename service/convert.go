package service

import (
	"context"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"google.golang.org/protobuf/types/known/timestamppb"

	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/redact"
	"github.com/backupd/backupd/reqlog"
)

// warnFunc logs, at WARN, what converting DynamoDB's answer to a request
// left out or could not name.
type warnFunc func(msg string, attrs ...slog.Attr)

// warner is the warnFunc of the request whose context is ctx: its lines
// are logged on that context, with what ties them to the request's own
// line (reqlog.Attrs), so that a warning names the request it came from.
func (s *Server) warner(ctx context.Context) warnFunc {
	return func(msg string, attrs ...slog.Attr) {
		s.log.LogAttrs(ctx, slog.LevelWarn, msg, append(reqlog.Attrs(ctx), attrs...)...)
	}
}

// enumValue maps a DynamoDB enum string to ours. DynamoDB may add values; an
// unknown one maps to the zero value and is logged, never a failure.
func enumValue[E ~int32](warn warnFunc, kind, v string, m map[string]E) E {
	if v == "" {
		return 0
	}
	e, ok := m[v]
	if !ok {
		warn("unknown DynamoDB enum value", slog.String("enum", kind), slog.String("value", redact.Cut(v, maxValueEcho)))
	}
	return e
}

// maxValueEcho bounds an unknown enum value in its log line: DynamoDB's
// are short names, and an answer that is not DynamoDB's may hold anything.
const maxValueEcho = 64

var (
	backupStatuses = map[string]backupv1.BackupStatus{
		string(types.BackupStatusCreating):  backupv1.BackupStatus_BACKUP_STATUS_CREATING,
		string(types.BackupStatusDeleted):   backupv1.BackupStatus_BACKUP_STATUS_DELETED,
		string(types.BackupStatusAvailable): backupv1.BackupStatus_BACKUP_STATUS_AVAILABLE,
	}
	backupTypes = map[string]backupv1.BackupType{
		string(types.BackupTypeUser):      backupv1.BackupType_BACKUP_TYPE_USER,
		string(types.BackupTypeSystem):    backupv1.BackupType_BACKUP_TYPE_SYSTEM,
		string(types.BackupTypeAwsBackup): backupv1.BackupType_BACKUP_TYPE_AWS_BACKUP,
	}
)

// ts is a time DynamoDB gave, absent when it gave none, and left out, with
// a warning, when a Timestamp cannot hold it (before year 1 or after
// 9999): REST could not write such an answer, and a gRPC caller's library
// may refuse it.
func ts(warn warnFunc, t *time.Time) *timestamppb.Timestamp {
	if t == nil {
		return nil
	}
	out := timestamppb.New(*t)
	if err := out.CheckValid(); err != nil {
		warn("DynamoDB time out of range; left out", slog.String("error", err.Error()))
		return nil
	}
	return out
}

// backupSize is a backup's size, absent while it is not known: DynamoDB
// answers a CreateBackup with the backup CREATING and a size of 0, which
// is no size at all.
func backupSize(size *int64, status types.BackupStatus) *int64 {
	if status == types.BackupStatusCreating && aws.ToInt64(size) == 0 {
		return nil
	}
	return size
}

// tableCount is a table's item count or size, absent while it is not
// known: DynamoDB answers a restore with the new table CREATING and 0 for
// both, which would read as an empty table.
func tableCount(n *int64, t *types.TableDescription) *int64 {
	filling := t.TableStatus == types.TableStatusCreating || (t.RestoreSummary != nil && aws.ToBool(t.RestoreSummary.RestoreInProgress))
	if filling && aws.ToInt64(n) == 0 {
		return nil
	}
	return n
}

func backupDetails(warn warnFunc, d *types.BackupDetails) *backupv1.BackupDetails {
	if d == nil {
		return nil
	}
	return &backupv1.BackupDetails{
		BackupArn:              aws.ToString(d.BackupArn),
		BackupName:             aws.ToString(d.BackupName),
		BackupSizeBytes:        backupSize(d.BackupSizeBytes, d.BackupStatus),
		BackupStatus:           enumValue(warn, "BackupStatus", string(d.BackupStatus), backupStatuses),
		BackupType:             enumValue(warn, "BackupType", string(d.BackupType), backupTypes),
		BackupCreationDateTime: ts(warn, d.BackupCreationDateTime),
		BackupExpiryDateTime:   ts(warn, d.BackupExpiryDateTime),
	}
}

var (
	keyTypes = map[string]backupv1.KeyType{
		string(types.KeyTypeHash):  backupv1.KeyType_KEY_TYPE_HASH,
		string(types.KeyTypeRange): backupv1.KeyType_KEY_TYPE_RANGE,
	}
	billingModes = map[string]backupv1.BillingMode{
		string(types.BillingModeProvisioned):   backupv1.BillingMode_BILLING_MODE_PROVISIONED,
		string(types.BillingModePayPerRequest): backupv1.BillingMode_BILLING_MODE_PAY_PER_REQUEST,
	}
	projectionTypes = map[string]backupv1.ProjectionType{
		string(types.ProjectionTypeAll):      backupv1.ProjectionType_PROJECTION_TYPE_ALL,
		string(types.ProjectionTypeKeysOnly): backupv1.ProjectionType_PROJECTION_TYPE_KEYS_ONLY,
		string(types.ProjectionTypeInclude):  backupv1.ProjectionType_PROJECTION_TYPE_INCLUDE,
	}
	streamViewTypes = map[string]backupv1.StreamViewType{
		string(types.StreamViewTypeNewImage):        backupv1.StreamViewType_STREAM_VIEW_TYPE_NEW_IMAGE,
		string(types.StreamViewTypeOldImage):        backupv1.StreamViewType_STREAM_VIEW_TYPE_OLD_IMAGE,
		string(types.StreamViewTypeNewAndOldImages): backupv1.StreamViewType_STREAM_VIEW_TYPE_NEW_AND_OLD_IMAGES,
		string(types.StreamViewTypeKeysOnly):        backupv1.StreamViewType_STREAM_VIEW_TYPE_KEYS_ONLY,
	}
	ttlStatuses = map[string]backupv1.TimeToLiveStatus{
		string(types.TimeToLiveStatusEnabling):  backupv1.TimeToLiveStatus_TIME_TO_LIVE_STATUS_ENABLING,
		string(types.TimeToLiveStatusDisabling): backupv1.TimeToLiveStatus_TIME_TO_LIVE_STATUS_DISABLING,
		string(types.TimeToLiveStatusEnabled):   backupv1.TimeToLiveStatus_TIME_TO_LIVE_STATUS_ENABLED,
		string(types.TimeToLiveStatusDisabled):  backupv1.TimeToLiveStatus_TIME_TO_LIVE_STATUS_DISABLED,
	}
	sseStatuses = map[string]backupv1.SseStatus{
		string(types.SSEStatusEnabling):  backupv1.SseStatus_SSE_STATUS_ENABLING,
		string(types.SSEStatusEnabled):   backupv1.SseStatus_SSE_STATUS_ENABLED,
		string(types.SSEStatusDisabling): backupv1.SseStatus_SSE_STATUS_DISABLING,
		string(types.SSEStatusDisabled):  backupv1.SseStatus_SSE_STATUS_DISABLED,
		string(types.SSEStatusUpdating):  backupv1.SseStatus_SSE_STATUS_UPDATING,
	}
	sseTypes = map[string]backupv1.SseType{
		string(types.SSETypeAes256): backupv1.SseType_SSE_TYPE_AES256,
		string(types.SSETypeKms):    backupv1.SseType_SSE_TYPE_KMS,
	}
	tableStatuses = map[string]backupv1.TableStatus{
		string(types.TableStatusCreating):                          backupv1.TableStatus_TABLE_STATUS_CREATING,
		string(types.TableStatusUpdating):                          backupv1.TableStatus_TABLE_STATUS_UPDATING,
		string(types.TableStatusDeleting):                          backupv1.TableStatus_TABLE_STATUS_DELETING,
		string(types.TableStatusActive):                            backupv1.TableStatus_TABLE_STATUS_ACTIVE,
		string(types.TableStatusInaccessibleEncryptionCredentials): backupv1.TableStatus_TABLE_STATUS_INACCESSIBLE_ENCRYPTION_CREDENTIALS,
		string(types.TableStatusArchiving):                         backupv1.TableStatus_TABLE_STATUS_ARCHIVING,
		string(types.TableStatusArchived):                          backupv1.TableStatus_TABLE_STATUS_ARCHIVED,
	}
)

func backupDescription(warn warnFunc, d *types.BackupDescription) *backupv1.BackupDescription {
	if d == nil {
		return nil
	}
	return &backupv1.BackupDescription{
		BackupDetails:             backupDetails(warn, d.BackupDetails),
		SourceTableDetails:        sourceTableDetails(warn, d.SourceTableDetails),
		SourceTableFeatureDetails: sourceTableFeatures(warn, d.SourceTableFeatureDetails),
	}
}

// billingMode is DynamoDB's billing mode, or PROVISIONED when it names none
// for a table with provisioned capacity (pt, as converted): DynamoDB leaves
// the mode out for tables that have always been provisioned.
func billingMode(warn warnFunc, mode types.BillingMode, pt *backupv1.ProvisionedThroughput) backupv1.BillingMode {
	if mode == "" && (pt.GetReadCapacityUnits() > 0 || pt.GetWriteCapacityUnits() > 0) {
		return backupv1.BillingMode_BILLING_MODE_PROVISIONED
	}
	return enumValue(warn, "BillingMode", string(mode), billingModes)
}

func sourceTableDetails(warn warnFunc, d *types.SourceTableDetails) *backupv1.SourceTableDetails {
	if d == nil {
		return nil
	}
	pt := throughput(d.ProvisionedThroughput)
	return &backupv1.SourceTableDetails{
		TableName:             aws.ToString(d.TableName),
		TableId:               aws.ToString(d.TableId),
		TableArn:              aws.ToString(d.TableArn),
		TableSizeBytes:        d.TableSizeBytes,
		ItemCount:             d.ItemCount,
		KeySchema:             keySchema(warn, d.KeySchema),
		BillingMode:           billingMode(warn, d.BillingMode, pt),
		ProvisionedThroughput: pt,
		TableCreationDateTime: ts(warn, d.TableCreationDateTime),
	}
}

func sourceTableFeatures(warn warnFunc, d *types.SourceTableFeatureDetails) *backupv1.SourceTableFeatureDetails {
	if d == nil {
		return nil
	}
	out := &backupv1.SourceTableFeatureDetails{
		TimeToLiveDescription: ttl(warn, d.TimeToLiveDescription),
		SseDescription:        sse(warn, d.SSEDescription),
	}
	for _, g := range d.GlobalSecondaryIndexes {
		out.GlobalSecondaryIndexes = append(out.GlobalSecondaryIndexes, globalIndex(warn, g.IndexName, g.KeySchema, g.Projection, throughput(g.ProvisionedThroughput)))
	}
	for _, l := range d.LocalSecondaryIndexes {
		out.LocalSecondaryIndexes = append(out.LocalSecondaryIndexes, localIndex(warn, l.IndexName, l.KeySchema, l.Projection))
	}
	if st := d.StreamDescription; st != nil {
		out.StreamDescription = &backupv1.StreamSpecification{
			StreamEnabled:  aws.ToBool(st.StreamEnabled),
			StreamViewType: enumValue(warn, "StreamViewType", string(st.StreamViewType), streamViewTypes),
		}
	}
	return out
}

// globalIndex and localIndex convert a secondary index of a backup's
// source table (DynamoDB's …Info) or of a table (…Description): two types
// for each kind of index, whose fields backupd answers with are the same
// but for the throughput's type, which the caller converts.
func globalIndex(warn warnFunc, name *string, ks []types.KeySchemaElement, p *types.Projection, pt *backupv1.ProvisionedThroughput) *backupv1.GlobalSecondaryIndex {
	return &backupv1.GlobalSecondaryIndex{IndexName: aws.ToString(name), KeySchema: keySchema(warn, ks), Projection: projection(warn, p), ProvisionedThroughput: pt}
}

func localIndex(warn warnFunc, name *string, ks []types.KeySchemaElement, p *types.Projection) *backupv1.LocalSecondaryIndex {
	return &backupv1.LocalSecondaryIndex{IndexName: aws.ToString(name), KeySchema: keySchema(warn, ks), Projection: projection(warn, p)}
}

func keySchema(warn warnFunc, ks []types.KeySchemaElement) []*backupv1.KeySchemaElement {
	if len(ks) == 0 {
		return nil
	}
	out := make([]*backupv1.KeySchemaElement, len(ks))
	for i, k := range ks {
		out[i] = &backupv1.KeySchemaElement{AttributeName: aws.ToString(k.AttributeName), KeyType: enumValue(warn, "KeyType", string(k.KeyType), keyTypes)}
	}
	return out
}

func projection(warn warnFunc, p *types.Projection) *backupv1.Projection {
	if p == nil {
		return nil
	}
	return &backupv1.Projection{
		ProjectionType:   enumValue(warn, "ProjectionType", string(p.ProjectionType), projectionTypes),
		NonKeyAttributes: p.NonKeyAttributes,
	}
}

func throughput(p *types.ProvisionedThroughput) *backupv1.ProvisionedThroughput {
	if p == nil {
		return nil
	}
	return &backupv1.ProvisionedThroughput{ReadCapacityUnits: aws.ToInt64(p.ReadCapacityUnits), WriteCapacityUnits: aws.ToInt64(p.WriteCapacityUnits)}
}

func throughputDescription(p *types.ProvisionedThroughputDescription) *backupv1.ProvisionedThroughput {
	if p == nil {
		return nil
	}
	return &backupv1.ProvisionedThroughput{ReadCapacityUnits: aws.ToInt64(p.ReadCapacityUnits), WriteCapacityUnits: aws.ToInt64(p.WriteCapacityUnits)}
}

func ttl(warn warnFunc, t *types.TimeToLiveDescription) *backupv1.TimeToLiveDescription {
	if t == nil {
		return nil
	}
	return &backupv1.TimeToLiveDescription{
		TimeToLiveStatus: enumValue(warn, "TimeToLiveStatus", string(t.TimeToLiveStatus), ttlStatuses),
		AttributeName:    aws.ToString(t.AttributeName),
	}
}

func sse(warn warnFunc, d *types.SSEDescription) *backupv1.SseDescription {
	if d == nil {
		return nil
	}
	return &backupv1.SseDescription{
		Status:                         enumValue(warn, "SSEStatus", string(d.Status), sseStatuses),
		SseType:                        enumValue(warn, "SSEType", string(d.SSEType), sseTypes),
		KmsMasterKeyArn:                aws.ToString(d.KMSMasterKeyArn),
		InaccessibleEncryptionDateTime: ts(warn, d.InaccessibleEncryptionDateTime),
	}
}

func backupSummary(warn warnFunc, b *types.BackupSummary) *backupv1.BackupSummary {
	return &backupv1.BackupSummary{
		TableName:              aws.ToString(b.TableName),
		TableId:                aws.ToString(b.TableId),
		TableArn:               aws.ToString(b.TableArn),
		BackupArn:              aws.ToString(b.BackupArn),
		BackupName:             aws.ToString(b.BackupName),
		BackupCreationDateTime: ts(warn, b.BackupCreationDateTime),
		BackupExpiryDateTime:   ts(warn, b.BackupExpiryDateTime),
		BackupStatus:           enumValue(warn, "BackupStatus", string(b.BackupStatus), backupStatuses),
		BackupType:             enumValue(warn, "BackupType", string(b.BackupType), backupTypes),
		BackupSizeBytes:        backupSize(b.BackupSizeBytes, b.BackupStatus),
	}
}

func tableDescription(warn warnFunc, t *types.TableDescription) *backupv1.TableDescription {
	if t == nil {
		return nil
	}
	out := &backupv1.TableDescription{
		TableName:             aws.ToString(t.TableName),
		TableArn:              aws.ToString(t.TableArn),
		TableId:               aws.ToString(t.TableId),
		TableStatus:           enumValue(warn, "TableStatus", string(t.TableStatus), tableStatuses),
		CreationDateTime:      ts(warn, t.CreationDateTime),
		KeySchema:             keySchema(warn, t.KeySchema),
		ProvisionedThroughput: throughputDescription(t.ProvisionedThroughput),
		ItemCount:             tableCount(t.ItemCount, t),
		TableSizeBytes:        tableCount(t.TableSizeBytes, t),
		SseDescription:        sse(warn, t.SSEDescription),
	}
	var mode types.BillingMode
	if t.BillingModeSummary != nil {
		mode = t.BillingModeSummary.BillingMode
	}
	out.BillingMode = billingMode(warn, mode, out.ProvisionedThroughput)
	for _, g := range t.GlobalSecondaryIndexes {
		out.GlobalSecondaryIndexes = append(out.GlobalSecondaryIndexes, globalIndex(warn, g.IndexName, g.KeySchema, g.Projection, throughputDescription(g.ProvisionedThroughput)))
	}
	for _, l := range t.LocalSecondaryIndexes {
		out.LocalSecondaryIndexes = append(out.LocalSecondaryIndexes, localIndex(warn, l.IndexName, l.KeySchema, l.Projection))
	}
	if r := t.RestoreSummary; r != nil {
		out.RestoreSummary = &backupv1.RestoreSummary{
			SourceBackupArn:   aws.ToString(r.SourceBackupArn),
			SourceTableArn:    aws.ToString(r.SourceTableArn),
			RestoreDateTime:   ts(warn, r.RestoreDateTime),
			RestoreInProgress: aws.ToBool(r.RestoreInProgress),
		}
	}
	return out
}
