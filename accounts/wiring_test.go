package accounts

import (
	"testing"
	"time"

	"github.com/backupd/backupd/config"
)

// TestLeads: the operations DynamoDB cannot safely be asked twice go no
// later than SendLead before their deadline; the others may go until it.
func TestLeads(t *testing.T) {
	tests := []struct {
		op   string
		want time.Duration
	}{
		{config.OpCreateBackup, SendLead},
		{config.OpRestoreTableFromBackup, SendLead},
		{config.OpDescribeBackup, 0},
		{config.OpListBackups, 0},
		{config.OpDeleteBackup, 0},
	}
	leads := Leads()
	for _, tt := range tests {
		if got := leads[tt.op]; got != tt.want {
			t.Errorf("lead of %s = %s; want %s", tt.op, got, tt.want)
		}
	}
	if len(leads) != 2 {
		t.Errorf("leads = %v; want CreateBackup's and RestoreTableFromBackup's only", leads)
	}
}
