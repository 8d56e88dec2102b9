package awsname

import (
	"regexp"
	"strings"
	"testing"
)

func TestValidAccountID(t *testing.T) {
	for id, want := range map[string]bool{
		"111111111111": true, "11111111111": false, "1111111111111": false,
		"11111111111a": false, "": false, " 11111111111": false, "١١١١١١١١١١١١": false,
		// Every digit, and the characters either side of them.
		"123456789012": true, "000000000000": true, "999999999999": true,
		"12345678901/": false, "12345678901:": false,
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
		"us-isof-south-1": "aws-iso-f",
	} {
		if got := RegionPartition(r); got != want {
			t.Errorf("RegionPartition(%q) = %q, want %q", r, got, want)
		}
	}
}

func TestKnownPartition(t *testing.T) {
	for p, want := range map[string]bool{
		"aws": true, "aws-cn": true, "aws-us-gov": true,
		"aws-iso": false, "aws-iso-b": false, "": false, "AWS": false, "aws-cn ": false,
	} {
		if got := KnownPartition(p); got != want {
			t.Errorf("KnownPartition(%q) = %v, want %v", p, got, want)
		}
	}
}

// TestValidRegion holds ValidRegion to examples written out, the length
// bound's edge among them: FuzzValidRegion's oracle shares that bound,
// so it could not tell it changed.
func TestValidRegion(t *testing.T) {
	long := "us-" + strings.Repeat("a", 27) + "-1" // 32 bytes, the bound
	for r, want := range map[string]bool{
		"us-east-1": true, "us-gov-west-1": true, "ap-southeast-3": true, "us-east-10": true,
		long: true, "us-" + strings.Repeat("a", 28) + "-1": false,
		"us-east-100": false, "us-east-": false, "": false,
	} {
		if got := ValidRegion(r); got != want {
			t.Errorf("ValidRegion(%q) (%d bytes) = %v, want %v", r, len(r), got, want)
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
