package service

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

func TestHeldPage(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	sum := func(arn, table string, typ types.BackupType, created time.Time) types.BackupSummary {
		return types.BackupSummary{BackupArn: aws.String(arn), TableName: aws.String(table),
			TableArn: aws.String("arn:aws:dynamodb:us-east-1:111111111111:table/" + table), BackupType: typ, BackupCreationDateTime: aws.Time(created)}
	}
	// Five backups of Orders a millisecond apart, and one of another table
	// and type.
	var all []types.BackupSummary
	for i := range 5 {
		all = append(all, sum(string(rune('a'+i)), "Orders", types.BackupTypeUser, t0.Add(time.Duration(i)*time.Millisecond)))
	}
	all = append(all, sum("sys", "Other", types.BackupTypeSystem, t0.Add(10*time.Millisecond)))
	input := func(set func(*dynamodb.ListBackupsInput)) *dynamodb.ListBackupsInput {
		in := &dynamodb.ListBackupsInput{Limit: aws.Int32(100), BackupType: types.BackupTypeFilterAll}
		if set != nil {
			set(in)
		}
		return in
	}
	tests := []struct {
		name     string
		in       *dynamodb.ListBackupsInput
		table    string // the table the request names
		upstream []types.BackupSummary
		lastIn   string // DynamoDB's LastEvaluatedBackupArn
		want     string // the ARNs held, in order
		wantLast string
	}{
		{"a page DynamoDB held itself is unchanged", input(func(in *dynamodb.ListBackupsInput) { in.Limit = aws.Int32(2) }), "",
			all[:2], "b", "ab", "b"},
		{"a page DynamoDB held itself, with a start and filters, is unchanged",
			input(func(in *dynamodb.ListBackupsInput) {
				in.Limit, in.ExclusiveStartBackupArn, in.BackupType = aws.Int32(2), aws.String("a"), types.BackupTypeFilterUser
				in.TableName, in.TimeRangeLowerBound = aws.String("arn:aws:dynamodb:us-east-1:111111111111:table/Orders"), aws.Time(t0.Add(time.Millisecond))
			}), "Orders", all[1:3], "c", "bc", "c"},
		{"a page over the limit is cut and goes on after its last", input(func(in *dynamodb.ListBackupsInput) { in.Limit = aws.Int32(2) }), "",
			all, "", "ab", "b"},
		{"a page exactly at the limit with nothing after ends", input(func(in *dynamodb.ListBackupsInput) { in.Limit = aws.Int32(6) }), "",
			all, "", "abcdesys", ""},
		{"a page that repeats the start is read from after it", input(func(in *dynamodb.ListBackupsInput) {
			in.Limit, in.ExclusiveStartBackupArn = aws.Int32(2), aws.String("b")
		}), "", all, "", "cd", "d"},
		{"the last page after the start", input(func(in *dynamodb.ListBackupsInput) { in.ExclusiveStartBackupArn = aws.String("d") }), "",
			all, "", "esys", ""},
		{"a page that ignores the start ends rather than loops", input(func(in *dynamodb.ListBackupsInput) {
			in.Limit, in.ExclusiveStartBackupArn = aws.Int32(2), aws.String("b")
		}), "", all[:2], "b", "", ""},
		{"the table filter, given by name", input(func(in *dynamodb.ListBackupsInput) { in.TableName = aws.String("Other") }), "Other",
			all, "", "sys", ""},
		{"the table filter, given by an ARN of another partition", input(func(in *dynamodb.ListBackupsInput) {
			in.TableName = aws.String("arn:aws-cn:dynamodb:cn-north-1:111111111111:table/Other")
		}), "Other", all, "", "sys", ""},
		{"the table filter, on a summary with only the table's ARN", nil, "Orders",
			[]types.BackupSummary{{BackupArn: aws.String("x"), TableArn: aws.String("arn:aws:dynamodb:us-east-1:111111111111:table/Other")},
				{BackupArn: aws.String("y"), TableArn: aws.String("arn:aws:dynamodb:us-east-1:111111111111:table/Orders")}}, "", "y", ""},
		{"the table filter, on a summary with only the table's name", nil, "Orders",
			[]types.BackupSummary{{BackupArn: aws.String("x"), TableName: aws.String("Other")}, {BackupArn: aws.String("y"), TableName: aws.String("Orders")}}, "", "y", ""},
		{"the type filter", input(func(in *dynamodb.ListBackupsInput) { in.BackupType = types.BackupTypeFilterUser }), "",
			all, "", "abcde", ""},
		{"no type filter is DynamoDB's default, USER", input(func(in *dynamodb.ListBackupsInput) { in.BackupType = "" }), "",
			all, "", "abcde", ""},
		{"the type filter, none of the type", input(func(in *dynamodb.ListBackupsInput) { in.BackupType = types.BackupTypeFilterAwsBackup }), "",
			all, "", "", ""},
		{"time bounds: lower at or after, upper before, to the millisecond",
			input(func(in *dynamodb.ListBackupsInput) {
				in.TimeRangeLowerBound, in.TimeRangeUpperBound = aws.Time(t0.Add(2*time.Millisecond)), aws.Time(t0.Add(4*time.Millisecond))
			}), "", all, "", "cd", ""},
		{"filters before the limit", input(func(in *dynamodb.ListBackupsInput) {
			in.Limit, in.TimeRangeLowerBound = aws.Int32(2), aws.Time(t0.Add(3*time.Millisecond))
		}), "", all, "", "de", "e"},
		{"a page that starts with the start is read from after it", input(func(in *dynamodb.ListBackupsInput) {
			in.Limit, in.ExclusiveStartBackupArn = aws.Int32(2), aws.String("b")
		}), "", all[1:], "", "cd", "d"},
		{"a page size of one", input(func(in *dynamodb.ListBackupsInput) { in.Limit = aws.Int32(1) }), "",
			all, "", "a", "a"},
		{"no limit: every summary", input(func(in *dynamodb.ListBackupsInput) { in.Limit = nil }), "",
			all, "", "abcdesys", ""},
		{"what a summary leaves out is not held against it", input(func(in *dynamodb.ListBackupsInput) {
			in.TableName, in.BackupType, in.TimeRangeUpperBound = aws.String("Orders"), types.BackupTypeFilterUser, aws.Time(t0)
		}), "Orders", []types.BackupSummary{{BackupArn: aws.String("bare")}}, "", "bare", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := &dynamodb.ListBackupsOutput{BackupSummaries: slices.Clone(tt.upstream)}
			if tt.lastIn != "" {
				out.LastEvaluatedBackupArn = aws.String(tt.lastIn)
			}
			in := tt.in
			if in == nil {
				in = input(nil)
			}
			page, last := heldPage(in, tt.table, out)
			var got string
			for _, b := range page {
				got += aws.ToString(b.BackupArn)
			}
			if got != tt.want || last != tt.wantLast {
				t.Errorf("heldPage = %q, last %q; want %q, last %q", got, last, tt.want, tt.wantLast)
			}
		})
	}
}

// An upstream that ignores paging (moto answers every backup of the
// table at once) and whose start backup was deleted since the last page
// is read on from the start's creation time, not from its first backup
// again; a page that could be DynamoDB's own after the start is kept.
func TestHeldPageAfterADeletedStart(t *testing.T) {
	arn := func(ms int) string {
		return fmt.Sprintf("arn:aws:dynamodb:us-east-1:111111111111:table/Orders/backup/%014d-abcdef12", 1700000000000+ms)
	}
	summaries := func(ms ...int) []types.BackupSummary {
		var s []types.BackupSummary
		for _, m := range ms {
			s = append(s, types.BackupSummary{BackupArn: aws.String(arn(m)), TableName: aws.String("Orders"), BackupType: types.BackupTypeUser})
		}
		return s
	}
	// Another backup made in the millisecond of the deleted start.
	twin := "arn:aws:dynamodb:us-east-1:111111111111:table/Orders/backup/01700000000002-fedcba98"
	withTwin := func(s []types.BackupSummary, at int) []types.BackupSummary {
		return slices.Insert(slices.Clone(s), at, types.BackupSummary{BackupArn: aws.String(twin), TableName: aws.String("Orders"), BackupType: types.BackupTypeUser})
	}
	// The backup made at 2 was deleted since it ended a page.
	tests := []struct {
		name     string
		limit    int32
		table    string
		upstream []types.BackupSummary
		want     []string
		wantLast string
	}{
		{"over the limit: read on from the start's time", 2, "", summaries(1, 3, 4, 5), []string{arn(3), arn(4)}, arn(4)},
		{"one table, within the limit, both sides of the start: read on from its time", 5, "Orders",
			summaries(1, 3, 4, 5), []string{arn(3), arn(4), arn(5)}, ""},
		{"one table, after the start only (DynamoDB, oldest first): kept", 5, "Orders",
			summaries(3, 4), []string{arn(3), arn(4)}, ""},
		{"one table, before the start only (DynamoDB, newest first): kept", 5, "Orders",
			summaries(1), []string{arn(1)}, ""},
		{"every table, within the limit: kept, as an account's backups by ARN straddle times", 5, "",
			summaries(1, 3), []string{arn(1), arn(3)}, ""},
		{"every table, no limit: kept", 0, "",
			summaries(1, 3), []string{arn(1), arn(3)}, ""},
		{"every table, exactly at the limit: kept", 2, "",
			summaries(1, 3), []string{arn(1), arn(3)}, ""},
		{"over a limit of one: read on from the start's time", 1, "",
			summaries(1, 3), []string{arn(3)}, ""},
		{"over the limit: a backup made in the start's millisecond is kept", 2, "",
			withTwin(summaries(1, 3, 4), 1), []string{twin, arn(3)}, arn(3)},
		{"one table, before the start and in its millisecond (DynamoDB, newest first): kept", 5, "Orders",
			withTwin(summaries(1), 0), []string{twin, arn(1)}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := &dynamodb.ListBackupsInput{Limit: aws.Int32(tt.limit), ExclusiveStartBackupArn: aws.String(arn(2)), BackupType: types.BackupTypeFilterAll}
			page, last := heldPage(in, tt.table, &dynamodb.ListBackupsOutput{BackupSummaries: tt.upstream})
			var got []string
			for _, b := range page {
				got = append(got, aws.ToString(b.BackupArn))
			}
			if !slices.Equal(got, tt.want) || last != tt.wantLast {
				t.Errorf("page %q, last %q; want %q and %q", got, last, tt.want, tt.wantLast)
			}
		})
	}
}

// TestInTimeRange: a backup is held to the time bounds to the millisecond,
// as DynamoDB sends its time and the SDK reads it: exactly in this era (a
// millisecond's allowance for an early reading had let in backups from the
// millisecond before the lower bound), a millisecond low for some times
// from 2038-01-19 on, where what was sent decides, and where either
// millisecond reads the same, the backup is given the benefit of the
// doubt.
func TestInTimeRange(t *testing.T) {
	ms := time.Millisecond
	now := time.Date(2026, 11, 26, 16, 48, 18, 933_000_000, time.UTC)
	// In 2038, a time read a millisecond low that only the next one reads
	// as (early), and one that both it and the next read as (either).
	var early, either time.Time
	for at := time.Date(2038, 1, 19, 3, 14, 8, 0, time.UTC); early.IsZero() || either.IsZero(); at = at.Add(ms) {
		readsItself, nextReadsAs := sdkReads(at).Equal(at), sdkReads(at.Add(ms)).Equal(at)
		if !readsItself && nextReadsAs && early.IsZero() {
			early = at
		}
		if readsItself && nextReadsAs && either.IsZero() {
			either = at
		}
	}
	tests := []struct {
		name         string
		read         time.Time
		lower, upper time.Time
		want         bool
	}{
		{"read at the lower bound", now, now, now.Add(time.Hour), true},
		{"read a millisecond before the lower bound", now.Add(-ms), now, now.Add(time.Hour), false},
		{"read a millisecond before the upper bound", now.Add(-ms), now.Add(-time.Hour), now, true},
		{"read at the upper bound", now, now.Add(-time.Hour), now, false},
		{"read low, sent at the lower bound", early, early.Add(ms), early.Add(time.Hour), true},
		{"read low, sent at the upper bound", early, early.Add(-time.Hour), early.Add(ms), false},
		{"sent at or before the lower bound: the doubt counts for it", either, either.Add(ms), either.Add(time.Hour), true},
		{"sent before or at the upper bound: the doubt counts for it", either, either.Add(-time.Hour), either.Add(ms), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := inTimeRange(&tt.lower, &tt.upper, tt.read); got != tt.want {
				t.Errorf("read %s in [%s, %s): %v, want %v", tt.read.Format(time.RFC3339Nano),
					tt.lower.Format(time.RFC3339Nano), tt.upper.Format(time.RFC3339Nano), got, tt.want)
			}
		})
	}
	if got := inTimeRange(nil, nil, now); !got {
		t.Error("no bounds: out of range")
	}
}
