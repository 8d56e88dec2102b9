// Package awsname holds the shapes AWS gives the names backupd reads:
// account ids, regions and their partitions. The configuration and every
// request are held to these same rules, so that no account or region the
// configuration takes is one a request may not name.
package awsname

import (
	"slices"
	"strings"
)

// ValidAccountID reports whether id is an AWS account id: exactly 12
// digits. The configuration and every request are held to this one rule.
func ValidAccountID(id string) bool {
	if len(id) != 12 {
		return false
	}
	for i := range len(id) {
		if id[i] < '0' || id[i] > '9' {
			return false
		}
	}
	return true
}

// ValidRegion reports whether r has the shape every AWS region has: a
// two-letter area, one or more words, and a number of one or two digits
// (us-east-1, ap-southeast-3, us-gov-west-1, cn-north-1, il-central-1).
// No region has a number above 9 yet; two digits leave room, three do not
// look like a region. The configuration and every request are held to
// this one rule, so no configured region is one a request may not name.
// It is a loop, not a regular expression, as every request's log line
// asks it: the expression took about 2.5 µs.
func ValidRegion(r string) bool {
	if len(r) > maxRegionLength {
		return false
	}
	area, rest, ok := strings.Cut(r, "-")
	if !ok || len(area) != 2 || !lowerWord(area) {
		return false
	}
	for words := 0; ; words++ {
		w, after, more := strings.Cut(rest, "-")
		if !more { // the number
			return words > 0 && len(w) >= 1 && len(w) <= 2 && strings.Trim(w, "0123456789") == ""
		}
		if !lowerWord(w) {
			return false
		}
		rest = after
	}
}

// lowerWord reports whether w is one or more of a-z.
func lowerWord(w string) bool {
	return w != "" && strings.Trim(w, "abcdefghijklmnopqrstuvwxyz") == ""
}

// maxRegionLength bounds a region: the rule bounds neither its words'
// count nor their length, and the longest real region is half this.
const maxRegionLength = 32

// partitions are the partitions backupd acts in: those of the roles the
// configuration takes. A DynamoDB ARN of another is refused.
var partitions = []string{"aws", "aws-cn", "aws-us-gov"}

// Partitions returns the partitions backupd acts in, for the
// configuration's rule on role ARNs.
func Partitions() []string { return slices.Clone(partitions) }

// KnownPartition reports whether p is one of Partitions.
func KnownPartition(p string) bool {
	return slices.Contains(partitions, p)
}

// RegionPartition is the AWS partition of region r, by the prefixes AWS
// gives its partitions' regions. The configuration holds an account's
// regions to its role's partition, and the service a DynamoDB ARN's region
// to the ARN's partition, by this one rule.
func RegionPartition(r string) string {
	for _, p := range []struct{ prefix, partition string }{
		{"cn-", "aws-cn"}, {"us-gov-", "aws-us-gov"}, {"us-iso-", "aws-iso"}, {"us-isob-", "aws-iso-b"},
		{"us-isof-", "aws-iso-f"}, {"eu-isoe-", "aws-iso-e"},
	} {
		if strings.HasPrefix(r, p.prefix) {
			return p.partition
		}
	}
	return "aws"
}
