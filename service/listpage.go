package service

import (
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// heldPage holds the page DynamoDB returned to what the ListBackups asked
// for: the summaries after the start backup, within the filters, at most
// Limit of them, and the backup the next page starts after ("" for none).
// DynamoDB does all of that itself, and then heldPage changes nothing. An
// upstream that ignores paging or filters (moto answers every backup of
// the table at once) would otherwise have backupd answer more than
// page_size summaries, the same ones on every page, or backups the caller
// filtered out. A page cut short continues after its last summary.
func heldPage(in *dynamodb.ListBackupsInput, out *dynamodb.ListBackupsOutput) (page []types.BackupSummary, last string) {
	page = out.BackupSummaries
	if start := aws.ToString(in.ExclusiveStartBackupArn); start != "" {
		if i := slices.IndexFunc(page, func(b types.BackupSummary) bool { return aws.ToString(b.BackupArn) == start }); i >= 0 {
			page = page[i+1:]
		}
	}
	page = slices.DeleteFunc(page, func(b types.BackupSummary) bool { return !inFilters(in, &b) })
	last = aws.ToString(out.LastEvaluatedBackupArn)
	if limit := int(aws.ToInt32(in.Limit)); limit > 0 && len(page) > limit {
		page = page[:limit]
		last = aws.ToString(page[limit-1].BackupArn)
	}
	return page, last
}

// inFilters reports whether a summary is within the request's table, type
// and time filters. What a summary leaves out is not held against it. The
// SDK reads DynamoDB's creation times (seconds with a fraction) as a float
// cut to the millisecond, which can come out a millisecond early: a backup
// made at the lower bound itself is kept.
func inFilters(in *dynamodb.ListBackupsInput, b *types.BackupSummary) bool {
	if t := aws.ToString(in.TableName); t != "" && b.TableName != nil && t != aws.ToString(b.TableName) && t != aws.ToString(b.TableArn) {
		return false
	}
	if in.BackupType != types.BackupTypeFilterAll && b.BackupType != "" && string(b.BackupType) != string(in.BackupType) {
		return false
	}
	created := b.BackupCreationDateTime
	if created == nil {
		return true
	}
	if in.TimeRangeLowerBound != nil && created.Add(time.Millisecond).Before(*in.TimeRangeLowerBound) {
		return false
	}
	return in.TimeRangeUpperBound == nil || created.Before(*in.TimeRangeUpperBound)
}
