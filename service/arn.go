package service

import (
	"strings"

	"github.com/backupd/backupd/awsname"
	"github.com/backupd/backupd/badrequest"
)

// arn is a DynamoDB table or backup ARN, split into its parts.
type arn struct {
	Partition string
	Region    string
	Account   string
	Table     string
	BackupID  string // empty for a table ARN
}

// inKnownPartition reports whether partition is one backupd acts in and
// region one of its, so that aws-cn:us-east-1 is caught as a mismatch.
func inKnownPartition(partition, region string) bool {
	return awsname.KnownPartition(partition) && awsname.RegionPartition(region) == partition
}

// The fields of an ARN that name where it acts.
const (
	arnRegion  = 3
	arnAccount = 4
)

// arnFields splits s at its first five colons: an ARN has six fields,
// and the last, the resource, may hold colons of its own.
func arnFields(s string) ([]string, bool) {
	parts := strings.SplitN(s, ":", 6)
	return parts, len(parts) == 6
}

// ARNTarget is the account and region an ARN names, read as the service
// reads them before it checks the rest: authorization and the log must
// see the account the call would act in. Both are "" when s has too few
// fields to name them; an ARN that names them but is otherwise invalid
// is still refused by the service, after authorization.
func ARNTarget(s string) (account, region string) {
	parts, ok := arnFields(s)
	if !ok {
		return "", ""
	}
	return parts[arnAccount], parts[arnRegion]
}

// parseARN checks s strictly and names the first wrong part in a violation
// of field. wantBackup selects backup ARNs (…:table/T/backup/ID) over table
// ARNs (…:table/T).
func parseARN(vs *violations, field, s string, wantBackup bool) (arn, bool) {
	shape := "arn:aws:dynamodb:REGION:ACCOUNT:table/TABLE"
	if wantBackup {
		shape += "/backup/BACKUP_ID"
	}
	if s == "" {
		vs.add(field, "is required: a DynamoDB ARN of the form %s", shape)
		return arn{}, false
	}
	parts, ok := arnFields(s)
	if !ok || parts[0] != "arn" {
		vs.add(field, "must be a DynamoDB ARN of the form %s; got %s%s", shape, badrequest.Quote(s), escapedHint(s))
		return arn{}, false
	}
	a := arn{Partition: parts[1], Region: parts[arnRegion], Account: parts[arnAccount]}
	switch {
	case !awsname.KnownPartition(a.Partition):
		vs.add(field, "has partition %s; want aws, aws-cn or aws-us-gov", badrequest.Quote(a.Partition))
	case parts[2] != "dynamodb":
		vs.add(field, "names service %s; want a dynamodb ARN", badrequest.Quote(parts[2]))
	case !awsname.ValidRegion(a.Region):
		vs.add(field, "has region %s; want an AWS region such as us-east-1", badrequest.Quote(a.Region))
	case awsname.RegionPartition(a.Region) != a.Partition: // a known partition (above)
		vs.add(field, "has region %s, which is not in partition %s", a.Region, a.Partition)
	case !awsname.ValidAccountID(a.Account):
		vs.add(field, "has account id %s; want exactly 12 digits", badrequest.Quote(a.Account))
	default:
		return a, parseResource(vs, field, parts[5], wantBackup, shape, &a)
	}
	return arn{}, false
}

// escapedHint tells a caller who sent an ARN URL-escaped, as a REST path
// takes it, in a field that takes it as it is.
func escapedHint(s string) string {
	if l := strings.ToLower(s); strings.Contains(l, "%2f") || strings.Contains(l, "%3a") {
		return " (it looks URL-escaped: escape an ARN once, in a URL only; in a gRPC field or a JSON body send it as it is)"
	}
	return ""
}

func parseResource(vs *violations, field, res string, wantBackup bool, shape string, a *arn) bool {
	segs := resourceSegments(res)
	if segs[0] != "table" || len(segs) < 2 {
		vs.add(field, "has resource %s; want %s%s", badrequest.Quote(res), shape[strings.LastIndex(shape, ":")+1:], escapedHint(res))
		return false
	}
	a.Table = segs[1]
	var sub violations
	checkName(&sub, "its table name", a.Table)
	if len(sub) > 0 {
		vs.add(field, "is not a valid ARN: %s", sub[0].Description)
		return false
	}
	switch {
	case !wantBackup && len(segs) == 2:
		return true
	case !wantBackup:
		vs.add(field, "has extra path segments after table/%s; want a table ARN", a.Table)
	case len(segs) == 2:
		vs.add(field, "is a table ARN; want a backup ARN (…/backup/BACKUP_ID)")
	case len(segs) != 4 || segs[2] != "backup":
		vs.add(field, "has resource %s; want table/TABLE/backup/BACKUP_ID%s", badrequest.Quote(res), escapedHint(res))
	case strings.HasSuffix(segs[3], ":restore"):
		vs.add(field, "ends in \":restore\": a restore is POST /v1/backups/{backup_arn}:restore, with the colon unescaped")
	case !backupIDOK(segs[3]):
		vs.add(field, "has backup id %s; want digits, a dash and hex digits such as 01700000000000-abcdef12", badrequest.Quote(segs[3]))
	default:
		a.BackupID = segs[3]
		return true
	}
	return false
}

// resourceSegments splits an ARN's resource at its slashes, into at most
// one segment more than a backup ARN's four (table/T/backup/ID), the
// last holding the rest: enough to tell a resource of more segments,
// without a string for each of the hundreds of thousands of slashes a
// 1 MiB field may hold (60 ms of CPU and 19 MB).
func resourceSegments(res string) []string {
	return strings.SplitN(res, "/", 5)
}

func backupIDOK(id string) bool {
	dash := strings.IndexByte(id, '-')
	if dash < 1 || dash == len(id)-1 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case i < dash && c >= '0' && c <= '9':
		case i > dash && (c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'):
		case i == dash:
		default:
			return false
		}
	}
	return true
}
