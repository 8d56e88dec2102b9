package service

import "testing"

// TestARNTarget: the account and region of an ARN's fields, whatever
// its resource holds; none for a string with too few fields.
func TestARNTarget(t *testing.T) {
	tests := []struct {
		in              string
		account, region string
	}{
		{fuzzBackupARN, "111111111111", "us-east-1"},
		{fuzzTableARN, "111111111111", "us-east-1"},
		{"arn:aws:dynamodb:eu-west-1:222222222222:table/T/backup/1-a:restore", "222222222222", "eu-west-1"},
		{"arn:aws:dynamodb:eu-west-1:x:table/T", "x", "eu-west-1"},
		{"arn:aws:dynamodb:eu-west-1:222222222222", "", ""},
		{"", "", ""},
	}
	for _, tt := range tests {
		if account, region := ARNTarget(tt.in); account != tt.account || region != tt.region {
			t.Errorf("ARNTarget(%q) = %q, %q; want %q, %q", tt.in, account, region, tt.account, tt.region)
		}
	}
}
