package awsname

import (
	"regexp"
	"testing"
)

func TestValidAccountID(t *testing.T) {
	for id, want := range map[string]bool{
		"111111111111": true, "11111111111": false, "1111111111111": false,
		"11111111111a": false, "": false, " 11111111111": false, "١١١١١١١١١١١١": false,
	} {
		if got := ValidAccountID(id); got != want {
			t.Errorf("ValidAccountID(%q) = %v, want %v", id, got, want)
		}
	}
}

func TestRegionPartition(t *testing.T) {
	for r, want := range map[string]string{
		"us-east-1": "aws", "eu-west-1": "aws", "il-central-1": "aws", "us-gov-west-1": "aws-us-gov", "cn-north-1": "aws-cn",
		"cn-northwest-1": "aws-cn", "us-iso-east-1": "aws-iso", "us-isob-east-1": "aws-iso-b", "eu-isoe-west-1": "aws-iso-e",
	} {
		if got := RegionPartition(r); got != want {
			t.Errorf("RegionPartition(%q) = %q, want %q", r, got, want)
		}
	}
}

// regionRe is the region rule as a regular expression: the oracle
// FuzzValidRegion holds ValidRegion's loop to.
var regionRe = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$`)

// FuzzValidRegion: ValidRegion takes exactly what the rule's regular
// expression takes, within the length bound.
func FuzzValidRegion(f *testing.F) {
	for _, s := range []string{"us-east-1", "us-gov-west-1", "ap-southeast-3", "us-east-10", "us-east-100", "us-1", "us-east-",
		"US-east-1", "u-east-1", "use-east-1", "us--east-1", "us-east1", "-us-east-1", "us-east-1-", "us-ea5t-1", "us-east-x",
		"us-east-1\n", "", "us", "us-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := ValidRegion(s), len(s) <= maxRegionLength && regionRe.MatchString(s); got != want {
			t.Errorf("ValidRegion(%q) = %v, the rule says %v", s, got, want)
		}
	})
}
