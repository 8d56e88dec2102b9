package service

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// heldPage holds the page DynamoDB returned to what the ListBackups asked
// for: the summaries after the start backup, of the table (by its name,
// however the request gave it) and within the type and time filters, at
// most Limit of them, and the backup the next page starts after ("" for
// none). DynamoDB does all of that itself, and then heldPage changes
// nothing. An upstream that ignores paging or filters (moto answers every
// backup of the table at once) would otherwise have backupd answer more
// than page_size summaries, the same ones on every page, or backups the
// caller filtered out. A page cut short continues after its last summary.
// Such an upstream still lists from the first backup again when the start
// backup was deleted in between: it is not in the page to read on from.
func heldPage(in *dynamodb.ListBackupsInput, table string, out *dynamodb.ListBackupsOutput) (page []types.BackupSummary, last string) {
	page = out.BackupSummaries
	start := aws.ToString(in.ExclusiveStartBackupArn)
	if start != "" {
		if i := slices.IndexFunc(page, func(b types.BackupSummary) bool { return aws.ToString(b.BackupArn) == start }); i >= 0 {
			page = page[i+1:]
		}
	}
	page = slices.DeleteFunc(page, func(b types.BackupSummary) bool { return !inFilters(in, table, &b) })
	last = aws.ToString(out.LastEvaluatedBackupArn)
	if limit := int(aws.ToInt32(in.Limit)); limit > 0 && len(page) > limit {
		page = page[:limit]
		last = aws.ToString(page[limit-1].BackupArn)
	}
	if last == start {
		// More after the start, yet nothing read past it: the upstream
		// ignores the start, and the next page would be this one again.
		last = ""
	}
	return page, last
}

// inFilters reports whether a summary is of the table (when the request
// names one) and within the type and time filters. What a summary leaves
// out is not held against it. The SDK reads DynamoDB's creation times
// (seconds with a fraction) as a float cut to the millisecond, which can
// come out a millisecond early: a summary up to a millisecond before the
// lower bound is kept, since it may be a backup made at the bound itself.
func inFilters(in *dynamodb.ListBackupsInput, table string, b *types.BackupSummary) bool {
	if name := summaryTable(b); table != "" && name != "" && name != table {
		return false
	}
	want := cmp.Or(in.BackupType, types.BackupTypeFilterUser) // DynamoDB's default
	if want != types.BackupTypeFilterAll && b.BackupType != "" && string(b.BackupType) != string(want) {
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

// summaryTable is the name of a summary's table, from its name or its ARN
// ("" when it has neither).
func summaryTable(b *types.BackupSummary) string {
	if n := aws.ToString(b.TableName); n != "" {
		return n
	}
	_, name, _ := strings.Cut(aws.ToString(b.TableArn), ":table/")
	return name
}
