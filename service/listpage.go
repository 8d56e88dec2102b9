package service

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	smithytime "github.com/aws/smithy-go/time"
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
// When the start backup was deleted in between, it is not in the page to
// read on from. An upstream that ignores the start is then read on from
// the start's creation time, which its ARN carries, that millisecond
// included (a backup made in it may repeat, none is skipped). It is told
// from DynamoDB by answering more than the limit or, for one table,
// backups made both before and after the start: DynamoDB answers only one
// side of it, whether it orders a table's backups by time or by ARN
// (which begins with the table's name, so an account's backups by ARN
// are not in time order). An upstream that ignores the start and
// answers only backups made before it (the start was the newest) cannot
// be told from DynamoDB, and may repeat summaries.
func heldPage(in *dynamodb.ListBackupsInput, table string, out *dynamodb.ListBackupsOutput) (page []types.BackupSummary, last string) {
	page = out.BackupSummaries
	start := aws.ToString(in.ExclusiveStartBackupArn)
	if start != "" {
		if i := slices.IndexFunc(page, func(b types.BackupSummary) bool { return aws.ToString(b.BackupArn) == start }); i >= 0 {
			page = page[i+1:]
		} else if at, ok := backupMillis(start); ok && ignoresStart(page, in.Limit, at, table != "") {
			page = slices.DeleteFunc(slices.Clone(page), func(b types.BackupSummary) bool {
				made, ok := backupMillis(aws.ToString(b.BackupArn))
				return ok && made < at
			})
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

// ignoresStart reports whether an upstream's page, asked for after a
// backup made at the millisecond at that is not in it, shows that the
// upstream ignored the start: more summaries than the limit, or, in a
// page of one table's backups, summaries made both before and after at.
func ignoresStart(page []types.BackupSummary, limit *int32, at int64, oneTable bool) bool {
	if n := aws.ToInt32(limit); n > 0 && len(page) > int(n) {
		return true
	}
	if !oneTable {
		return false
	}
	var before, after bool
	for _, b := range page {
		if made, ok := backupMillis(aws.ToString(b.BackupArn)); ok {
			before, after = before || made < at, after || made > at
		}
	}
	return before && after
}

// inFilters reports whether a summary is of the table (when the request
// names one) and within the type and time filters, to the millisecond, as
// DynamoDB keeps backup times. What a summary leaves out is not held
// against it.
func inFilters(in *dynamodb.ListBackupsInput, table string, b *types.BackupSummary) bool {
	if name := summaryTable(b); table != "" && name != "" && name != table {
		return false
	}
	want := cmp.Or(in.BackupType, types.BackupTypeFilterUser) // DynamoDB's default
	if want != types.BackupTypeFilterAll && b.BackupType != "" && string(b.BackupType) != string(want) {
		return false
	}
	read := b.BackupCreationDateTime
	return read == nil || inTimeRange(in.TimeRangeLowerBound, in.TimeRangeUpperBound, *read)
}

// inTimeRange reports whether a backup the SDK read as made at read was
// made at or after lower and before upper (nil for no bound). It may have
// been made a millisecond later (sdkReads); where only that millisecond
// is in the range, it counts when that is what DynamoDB sent, and so the
// other way round.
func inTimeRange(lower, upper *time.Time, read time.Time) bool {
	in := func(t time.Time) bool {
		return (lower == nil || !t.Before(*lower)) && (upper == nil || t.Before(*upper))
	}
	next := read.Add(time.Millisecond)
	switch inRead, inNext := in(read), in(next); {
	case inRead == inNext:
		return inRead
	case inRead:
		// Unless only next reads as read (and neither does, for an
		// upstream that does not send milliseconds: read is taken).
		return sdkReads(read).Equal(read) || !sdkReads(next).Equal(read)
	default:
		return sdkReads(next).Equal(read)
	}
}

// sdkReads is the time the SDK reads for a backup time DynamoDB sent as t:
// epoch seconds to the millisecond, which the SDK reads as a float
// (smithytime.ParseEpochSeconds). That comes out a millisecond low for
// some times (from 2038-01-19 to 2039-09-07, for one: the float's error,
// times 1000, outgrows half the product's last place), so a summary read
// at t may have been made at t+1ms (TestInTimeRange).
func sdkReads(t time.Time) time.Time {
	return smithytime.ParseEpochSeconds(float64(t.UnixMilli()) / 1000)
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

// backupMillis is when a backup was made, in Unix milliseconds, as its
// ARN's id begins (…/backup/01700000000000-abcdef12).
func backupMillis(arn string) (int64, bool) {
	i := strings.LastIndex(arn, "/backup/")
	if i < 0 {
		return 0, false
	}
	id, _, ok := strings.Cut(arn[i+len("/backup/"):], "-")
	if !ok {
		return 0, false
	}
	ms, err := strconv.ParseInt(id, 10, 64)
	return ms, err == nil
}
