package service

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/backupd/backupd/awsname"
	"github.com/backupd/backupd/badrequest"
	"github.com/backupd/backupd/config"
	backupv1 "github.com/backupd/backupd/gen/backup/v1"
)

func TestValidateCreate(t *testing.T) {
	valid := func() *backupv1.CreateBackupRequest {
		return &backupv1.CreateBackupRequest{AccountId: "111111111111", TableName: "Orders", BackupName: "nightly-1"}
	}
	tests := []struct {
		name   string
		modify func(r *backupv1.CreateBackupRequest)
		field  string // "" means valid
		msgHas string
	}{
		{"valid", func(*backupv1.CreateBackupRequest) {}, "", ""},
		{"valid with region and request id", func(r *backupv1.CreateBackupRequest) {
			r.Region, r.RequestId = "eu-west-1", "6f1c2b7e-3f4a-4c1e-9a37-1a2b3c4d5e6f"
		}, "", ""},
		{"valid table ARN", func(r *backupv1.CreateBackupRequest) {
			r.TableName = "arn:aws:dynamodb:us-east-1:111111111111:table/Orders"
		}, "", ""},
		{"missing account", func(r *backupv1.CreateBackupRequest) { r.AccountId = "" }, "account_id", "is required"},
		{"account 11 digits", func(r *backupv1.CreateBackupRequest) { r.AccountId = "11111111111" }, "account_id", "exactly 12 digits"},
		{"account 13 digits", func(r *backupv1.CreateBackupRequest) { r.AccountId = "1111111111111" }, "account_id", "exactly 12 digits"},
		{"account with letters", func(r *backupv1.CreateBackupRequest) { r.AccountId = "11111111111a" }, "account_id", "exactly 12 digits"},
		{"bad region", func(r *backupv1.CreateBackupRequest) { r.Region = "mars" }, "region", "AWS region"},
		// The edges of DynamoDB's name rule are names it takes.
		{"table 3 chars", func(r *backupv1.CreateBackupRequest) { r.TableName = "abc" }, "", ""},
		{"table 255 chars", func(r *backupv1.CreateBackupRequest) { r.TableName = strings.Repeat("a", 255) }, "", ""},
		{"backup name 255 chars", func(r *backupv1.CreateBackupRequest) { r.BackupName = strings.Repeat("b", 255) }, "", ""},
		{"names of the ends of every range", func(r *backupv1.CreateBackupRequest) { r.TableName, r.BackupName = "azAZ09_.-", "zaZA90-._" }, "", ""},
		{"request id 128", func(r *backupv1.CreateBackupRequest) { r.RequestId = strings.Repeat("r", 128) }, "", ""},
		{"request id of the ends of printable ASCII", func(r *backupv1.CreateBackupRequest) { r.RequestId = " ~" }, "", ""},
		{"request id DEL", func(r *backupv1.CreateBackupRequest) { r.RequestId = "abc\x7f" }, "request_id", "printable ASCII"},
		{"missing table", func(r *backupv1.CreateBackupRequest) { r.TableName = "" }, "table_name", "is required"},
		{"table 2 chars", func(r *backupv1.CreateBackupRequest) { r.TableName = "ab" }, "table_name", "got 2"},
		{"table 256 chars", func(r *backupv1.CreateBackupRequest) { r.TableName = strings.Repeat("a", 256) }, "table_name", "got 256"},
		{"table with space", func(r *backupv1.CreateBackupRequest) { r.TableName = "my table" }, "table_name", "a-z A-Z 0-9"},
		{"table with slash", func(r *backupv1.CreateBackupRequest) { r.TableName = "a/b/c" }, "table_name", "a-z A-Z 0-9"},
		{"table unicode", func(r *backupv1.CreateBackupRequest) { r.TableName = "tablé" }, "table_name", "a-z A-Z 0-9"},
		{"table ARN of other account", func(r *backupv1.CreateBackupRequest) {
			r.TableName = "arn:aws:dynamodb:us-east-1:222222222222:table/Orders"
		}, "table_name", "account 222222222222"},
		{"table ARN of other region", func(r *backupv1.CreateBackupRequest) {
			r.Region, r.TableName = "us-east-1", "arn:aws:dynamodb:eu-west-1:111111111111:table/Orders"
		}, "table_name", "region eu-west-1"},
		{"table ARN of a backup", func(r *backupv1.CreateBackupRequest) {
			r.TableName = "arn:aws:dynamodb:us-east-1:111111111111:table/Orders/backup/01700000000000-abcdef12"
		}, "table_name", "extra path segments"},
		{"missing backup name", func(r *backupv1.CreateBackupRequest) { r.BackupName = "" }, "backup_name", "is required"},
		{"backup name 2 chars", func(r *backupv1.CreateBackupRequest) { r.BackupName = "ab" }, "backup_name", "3-255 characters of a-z A-Z 0-9 _ . -; got 2"},
		{"backup name 256 chars", func(r *backupv1.CreateBackupRequest) { r.BackupName = strings.Repeat("b", 256) }, "backup_name", "got 256"},
		{"backup name dotdot slash", func(r *backupv1.CreateBackupRequest) { r.BackupName = "../etc" }, "backup_name", "a-z A-Z 0-9"},
		{"request id 129", func(r *backupv1.CreateBackupRequest) { r.RequestId = strings.Repeat("r", 129) }, "request_id", "at most 128"},
		{"request id control char", func(r *backupv1.CreateBackupRequest) { r.RequestId = "abc\n" }, "request_id", "printable ASCII"},
		{"a long region with a table ARN", func(r *backupv1.CreateBackupRequest) {
			r.Region = "us-" + strings.Repeat("a", 100000) + "-1"
			r.TableName = "arn:aws:dynamodb:us-east-1:111111111111:table/Orders"
		}, "region", "AWS region"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := valid()
			tt.modify(r)
			_, err := validateCreate(r)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("valid request refused: %v", err)
				}
				return
			}
			ia, ok := err.(*badrequest.Error)
			if !ok {
				t.Fatalf("err = %v, want *badrequest.Error", err)
			}
			if len(ia.Violations) != 1 || ia.Violations[0].Field != tt.field {
				t.Fatalf("violations = %+v, want one on %s", ia.Violations, tt.field)
			}
			if d := ia.Violations[0].Description; !strings.Contains(d, tt.msgHas) || !strings.HasPrefix(d, tt.field) || len(d) > 512 {
				t.Errorf("description %.600q (%d bytes): want it to start with %q, contain %q, and echo at most a bounded part of the request",
					d, len(d), tt.field, tt.msgHas)
			}
		})
	}
}

// DESIGN.md gives this message as its example, word for word.
func TestValidateCreateSpeaksAsDesignSays(t *testing.T) {
	_, err := validateCreate(&backupv1.CreateBackupRequest{AccountId: "111111111111", TableName: "Orders", BackupName: "ab"})
	const want = "backup_name must be 3-255 characters of a-z A-Z 0-9 _ . -; got 2"
	if ia, ok := err.(*badrequest.Error); !ok || len(ia.Violations) != 1 || ia.Violations[0].Description != want || err.Error() != want {
		t.Errorf("err = %v; want %q", err, want)
	}
}

func TestValidateCreateReportsEveryField(t *testing.T) {
	_, err := validateCreate(&backupv1.CreateBackupRequest{AccountId: "1", TableName: "x", BackupName: "y", RequestId: strings.Repeat("z", 200)})
	ia, ok := err.(*badrequest.Error)
	if !ok || len(ia.Violations) != 4 {
		t.Fatalf("err = %v, want 4 violations", err)
	}
}

func TestParseARN(t *testing.T) {
	const good = "arn:aws:dynamodb:us-east-1:111111111111:table/Orders/backup/01700000000000-abcdef12"
	tests := []struct {
		name, arn, msgHas string
	}{
		{"valid", good, ""},
		{"valid china", "arn:aws-cn:dynamodb:cn-north-1:111111111111:table/Orders/backup/01700000000000-abcdef12", ""},
		{"valid govcloud", "arn:aws-us-gov:dynamodb:us-gov-west-1:111111111111:table/Orders/backup/01700000000000-abcdef12", ""},
		{"empty", "", "is required"},
		{"not an ARN", "Orders", "must be a DynamoDB ARN of the form arn:aws:dynamodb:REGION:ACCOUNT:table/TABLE/backup/BACKUP_ID; got \"Orders\""},
		{"other service", "arn:aws:s3:us-east-1:111111111111:table/Orders/backup/01700000000000-abcdef12", `names service "s3"`},
		{"table not backup", "arn:aws:dynamodb:us-east-1:111111111111:table/Orders", "is a table ARN"},
		{"bad partition", "arn:aws-mars:dynamodb:us-east-1:111111111111:table/Orders/backup/01700000000000-abcdef12", "want aws, aws-cn or aws-us-gov"},
		// A partition backupd does not act in, though its region is one of its.
		{"an isolated partition", "arn:aws-iso:dynamodb:us-iso-east-1:111111111111:table/Orders/backup/01700000000000-abcdef12", `has partition "aws-iso"`},
		{"region not in partition", "arn:aws-cn:dynamodb:us-east-1:111111111111:table/Orders/backup/01700000000000-abcdef12", "not in partition aws-cn"},
		{"a china region in aws", "arn:aws:dynamodb:cn-north-1:111111111111:table/Orders/backup/01700000000000-abcdef12", "not in partition aws"},
		{"an isolated region in aws", "arn:aws:dynamodb:us-iso-east-1:111111111111:table/Orders/backup/01700000000000-abcdef12", "not in partition aws"},
		{"bad region", "arn:aws:dynamodb:useast1:111111111111:table/Orders/backup/01700000000000-abcdef12", "has region"},
		{"short account", "arn:aws:dynamodb:us-east-1:11111111111:table/Orders/backup/01700000000000-abcdef12", "account id"},
		{"long account", "arn:aws:dynamodb:us-east-1:1111111111111:table/Orders/backup/01700000000000-abcdef12", "account id"},
		{"extra segments", good + "/more", "want table/TABLE/backup/BACKUP_ID"},
		{"bad table name", "arn:aws:dynamodb:us-east-1:111111111111:table/a b/backup/01700000000000-abcdef12", `backup_arn is not a valid ARN: its table name must be 3-255 characters of a-z A-Z 0-9 _ . -; got "a b"`},
		{"a restore route read as an ARN", good + ":restore", `ends in ":restore": a restore is POST`},
		{"bad backup id", "arn:aws:dynamodb:us-east-1:111111111111:table/Orders/backup/xyz", "backup id"},
		{"not a table resource", "arn:aws:dynamodb:us-east-1:111111111111:global-table/Orders", `has resource "global-table/Orders"; want table/TABLE/backup/BACKUP_ID`},
		{"escaped as a REST path is", "arn:aws:dynamodb:us-east-1:111111111111:table%2FOrders%2Fbackup%2F01700000000000-abcdef12", "it looks URL-escaped"},
		{"colons escaped alone", "arn%3Aaws%3Adynamodb%3Aus-east-1%3A111111111111%3Atable", "it looks URL-escaped"},
		{"colons escaped too", "arn%3Aaws%3Adynamodb%3Aus-east-1%3A111111111111%3Atable%2FOrders", "it looks URL-escaped"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var vs violations
			a, ok := parseARN(&vs, "backup_arn", tt.arn, true)
			if tt.msgHas == "" {
				if !ok || len(vs) != 0 || a.Account != "111111111111" || a.Table != "Orders" || a.BackupID != "01700000000000-abcdef12" {
					t.Fatalf("parseARN(%q) = %+v, %v, %v", tt.arn, a, ok, vs)
				}
				return
			}
			if ok || len(vs) != 1 || !strings.Contains(vs[0].Description, tt.msgHas) {
				t.Fatalf("parseARN(%q): ok=%v violations %+v; want one containing %q", tt.arn, ok, vs, tt.msgHas)
			}
			// Only an ARN that looks URL-escaped is told it does.
			if hinted := strings.Contains(vs[0].Description, "URL-escaped"); hinted != strings.Contains(tt.msgHas, "URL-escaped") {
				t.Errorf("parseARN(%q): %q says it looks URL-escaped: %v", tt.arn, vs[0].Description, hinted)
			}
		})
	}
}

func TestCheckTableRef(t *testing.T) {
	const arn = "arn:aws:dynamodb:eu-west-1:111111111111:table/Orders"
	tests := []struct {
		name, ref, region string
		want              tableRef
		// actIn is the region the request acts in once resolved (the
		// account's default when region is empty); inRegion's
		// violation, if any, contains wantErr.
		actIn, wantErr string
	}{
		{"name, default region", "Orders", "", tableRef{ref: "Orders", name: "Orders"}, "us-east-1", ""},
		{"name, region given", "Orders", "eu-west-1", tableRef{ref: "Orders", name: "Orders"}, "eu-west-1", ""},
		{"ARN, same region given", arn, "eu-west-1", tableRef{ref: arn, name: "Orders", arnRegion: "eu-west-1", field: "table_name"}, "eu-west-1", ""},
		{"ARN in the default region, no region", arn, "", tableRef{ref: arn, name: "Orders", arnRegion: "eu-west-1", field: "table_name"}, "eu-west-1", ""},
		// As DESIGN.md has it, the table ARN must be in the request's
		// region, the account's default when region is empty: the ARN
		// does not choose another.
		{"ARN in another region than the default, no region", arn, "", tableRef{ref: arn, name: "Orders", arnRegion: "eu-west-1", field: "table_name"}, "us-east-1",
			"table_name is a table ARN in region eu-west-1; it must be in region us-east-1, the account's default, as region is empty: set region to eu-west-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var vs violations
			got := checkTableRef(&vs, "table_name", tt.ref, "111111111111", tt.region)
			if got != tt.want || len(vs) != 0 {
				t.Errorf("checkTableRef(%q, %q) = %+v, %v; want %+v", tt.ref, tt.region, got, vs, tt.want)
			}
			err := got.inRegion(tt.actIn)
			ia, _ := err.(*badrequest.Error)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("inRegion(%s) = %v; want none", tt.actIn, err)
			case tt.wantErr != "" && (ia == nil || len(ia.Violations) != 1 || ia.Violations[0].Field != "table_name" || !strings.Contains(ia.Violations[0].Description, tt.wantErr)):
				t.Errorf("inRegion(%s) = %v; want a table_name violation containing %q", tt.actIn, err, tt.wantErr)
			}
		})
	}
}

// A region or account id is accepted by the configuration exactly when a
// request may name it: both are held to awsname.ValidRegion and
// awsname.ValidAccountID. Before, the configuration took us-east-100, which
// every request naming it was refused.
func TestConfigAndRequestsAgree(t *testing.T) {
	regions := []struct {
		region string
		ok     bool
	}{
		{"us-east-1", true},
		{"ap-southeast-3", true},
		{"us-gov-west-1", true},
		{"cn-north-1", true},
		{"eu-central-2", true},
		{"il-central-1", true},
		{"us-east-10", true},
		{"us-east-100", false}, // a three-digit number
		{"us-east", false},
		{"useast1", false},
		{"US-EAST-1", false},
		{"u-east-1", false},
		{"us-east-1 ", false},
		{"us-" + strings.Repeat("a", 27) + "-1", true},  // 32 bytes
		{"us-" + strings.Repeat("a", 28) + "-1", false}, // 33: no region is that long, and its echoes would grow with it
	}
	for _, tt := range regions {
		// The account's role is in its regions' partition, and so is the
		// default_region where backupd calls STS.
		partition := awsname.RegionPartition(tt.region)
		yaml := fmt.Sprintf("default_region: %q\naccounts:\n  - id: \"111111111111\"\n    role_arn: arn:%s:iam::111111111111:role/x\n    default_region: %q\n",
			tt.region, partition, tt.region)
		_, cfgErr := config.Parse(strings.NewReader(yaml))
		var vs violations
		checkRegion(&vs, "region", tt.region)
		var arnVs violations
		_, arnOK := parseARN(&arnVs, "backup_arn", "arn:"+partition+":dynamodb:"+tt.region+":111111111111:table/Orders/backup/01700000000000-abcdef12", true)
		if got := []bool{awsname.ValidRegion(tt.region), cfgErr == nil, len(vs) == 0, arnOK && len(arnVs) == 0}; slices.Contains(got, !tt.ok) {
			t.Errorf("region %q: ValidRegion, config, request, ARN accept it: %v; want all %v (config: %v; request: %v %v)", tt.region, got, tt.ok, cfgErr, vs, arnVs)
		}
	}
	ids := []struct {
		id string
		ok bool
	}{
		{"111111111111", true},
		{"000000000000", true},
		{"11111111111", false},
		{"1111111111111", false},
		{"11111111111a", false},
		{"", false},
	}
	for _, tt := range ids {
		yaml := "accounts:\n  - id: \"" + tt.id + "\"\n    role_arn: arn:aws:iam::" + tt.id + ":role/x\n"
		_, cfgErr := config.Parse(strings.NewReader(yaml))
		var vs violations
		checkAccountID(&vs, "account_id", tt.id)
		if got := []bool{awsname.ValidAccountID(tt.id), cfgErr == nil, len(vs) == 0}; slices.Contains(got, !tt.ok) {
			t.Errorf("account id %q: ValidAccountID, config, request accept it: %v; want all %v (config: %v; request: %v)", tt.id, got, tt.ok, cfgErr, vs)
		}
	}
}

// A field wrong in two ways has one violation that says both, as
// google.rpc.BadRequest has one per bad field.
func TestOneViolationPerField(t *testing.T) {
	var vs violations
	checkTableRef(&vs, "table_name", "arn:aws:dynamodb:us-west-2:222222222222:table/Orders", "111111111111", "us-east-1")
	if len(vs) != 1 || vs[0].Field != "table_name" ||
		!strings.Contains(vs[0].Description, "account 222222222222") || !strings.Contains(vs[0].Description, "and it is a table ARN in region us-west-2") {
		t.Errorf("violations %+v; want one on table_name naming both its account and its region", vs)
	}
}

// A restore of thousands of bad index overrides is judged in time in
// proportion to its size: each violation is merged with its field's
// among the first ones only.
func BenchmarkValidateManyIndexes(b *testing.B) {
	for _, n := range []int{1000, 16000} {
		req := &backupv1.RestoreTableFromBackupRequest{GlobalSecondaryIndexOverride: &backupv1.GlobalSecondaryIndexSelection{
			Indexes: make([]*backupv1.GlobalSecondaryIndex, n)}}
		for i := range req.GlobalSecondaryIndexOverride.Indexes {
			req.GlobalSecondaryIndexOverride.Indexes[i] = &backupv1.GlobalSecondaryIndex{}
		}
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				var vs violations
				checkRestore(&vs, req)
			}
		})
	}
}

// TestVisibleASCII: a KMS key id is held to printable ASCII without
// spaces, wherever the bad character is, its first place included.
func TestVisibleASCII(t *testing.T) {
	for s, want := range map[string]bool{
		"alias/backups": true, "!~": true, "": true,
		" alias/x": false, "alias x": false, "\nalias": false, "alias\x7f": false, "aliasé": false,
	} {
		if got := visibleASCII(s); got != want {
			t.Errorf("visibleASCII(%q) = %v, want %v", s, got, want)
		}
	}
}

// TestBackupIDOK: a backup id is digits, a dash, and hex digits of either
// case, at most 64 characters: every end of every range is taken, and
// the characters just outside them are not, wherever they stand.
func TestBackupIDOK(t *testing.T) {
	for id, want := range map[string]bool{
		"01700000000000-abcdef12": true, "01700000000000-ABCDEF12": true,
		"0-a": true, "9-0": true, "1-9": true, "1-A": true, "1-F": true, "1-f": true,
		"01700000000000-" + strings.Repeat("a", 49): true,  // 64
		"01700000000000-" + strings.Repeat("a", 50): false, // 65
		"": false, "017": false, "-abc": false, "017-": false,
		"a17-abc": false, "/17-abc": false, ":17-abc": false,
		"017-ab.c": false, "017-g": false, "017-G": false, "017-@": false, "017-`": false, "017-ab-c": false,
	} {
		if got := backupIDOK(id); got != want {
			t.Errorf("backupIDOK(%q) = %v, want %v", id, got, want)
		}
	}
}

// TestKeySchemaOverItsCountIsNotSearchedForRepeats: a key_schema of
// more elements than a key may have is refused for their number alone,
// and its elements are not each looked up among those before them, which
// for a 1 MiB request of 100,000 took 30 s of CPU: nine elements of one
// attribute get the count's violation and none for repeating it.
func TestKeySchemaOverItsCountIsNotSearchedForRepeats(t *testing.T) {
	ks := make([]*backupv1.KeySchemaElement, 2*maxKeyAttrs+1)
	for i := range ks {
		ks[i] = &backupv1.KeySchemaElement{AttributeName: "a", KeyType: backupv1.KeyType_KEY_TYPE_HASH}
	}
	req := &backupv1.RestoreTableFromBackupRequest{TargetTableName: "Copy",
		GlobalSecondaryIndexOverride: &backupv1.GlobalSecondaryIndexSelection{Indexes: []*backupv1.GlobalSecondaryIndex{{
			IndexName: "ByKey", KeySchema: ks, Projection: &backupv1.Projection{ProjectionType: backupv1.ProjectionType_PROJECTION_TYPE_ALL}}}}}
	var vs violations
	checkRestore(&vs, req)
	var counted bool
	for _, v := range vs {
		if strings.Contains(v.Description, "repeats") {
			t.Errorf("violation %s: %s; want none for repeats in a key refused for its number", v.Field, v.Description)
		}
		counted = counted || strings.Contains(v.Description, "at most 4 HASH")
	}
	if !counted {
		t.Errorf("violations %v; want the key refused for its number of elements", vs)
	}
}

// TestIndexOverridesOverTheirCountAreNotChecked: a restore's list of
// index overrides over its bound is refused for its number alone, with
// one violation, its indexes unchecked: a 1 MiB request of 500,000 empty
// overrides, each given its violations, took 2.5 s of CPU and 800 MB. At
// the bound, each index is still checked.
func TestIndexOverridesOverTheirCountAreNotChecked(t *testing.T) {
	restoreOf := func(gsis, lsis int) *backupv1.RestoreTableFromBackupRequest {
		req := &backupv1.RestoreTableFromBackupRequest{TargetTableName: "Copy",
			GlobalSecondaryIndexOverride: &backupv1.GlobalSecondaryIndexSelection{},
			LocalSecondaryIndexOverride:  &backupv1.LocalSecondaryIndexSelection{}}
		for range gsis {
			req.GlobalSecondaryIndexOverride.Indexes = append(req.GlobalSecondaryIndexOverride.Indexes, &backupv1.GlobalSecondaryIndex{})
		}
		for range lsis {
			req.LocalSecondaryIndexOverride.Indexes = append(req.LocalSecondaryIndexOverride.Indexes, &backupv1.LocalSecondaryIndex{})
		}
		return req
	}
	var over violations
	checkRestore(&over, restoreOf(maxGlobalIndexes+1, maxLocalIndexes+1))
	var fields []string
	for _, v := range over {
		fields = append(fields, v.Field)
	}
	if want := []string{"global_secondary_index_override.indexes", "local_secondary_index_override.indexes"}; !slices.Equal(fields, want) {
		t.Errorf("violations of %d global and %d local empty overrides name %q; want only the lists, %q",
			maxGlobalIndexes+1, maxLocalIndexes+1, fields, want)
	}
	for _, v := range over {
		if !strings.Contains(v.Description, "at most") {
			t.Errorf("%s: %s; want it refused for its number", v.Field, v.Description)
		}
	}
	var at violations
	checkRestore(&at, restoreOf(maxGlobalIndexes, maxLocalIndexes))
	for _, f := range []string{fieldIndex("global_secondary_index_override.indexes", maxGlobalIndexes-1) + ".index_name",
		fieldIndex("local_secondary_index_override.indexes", maxLocalIndexes-1) + ".index_name"} {
		if !slices.ContainsFunc(at, func(v badrequest.Violation) bool { return v.Field == f }) {
			t.Errorf("no violation of %s among %d; want each index at the bound checked", f, len(at))
		}
	}
}

// TestKeySchemaOverItsCountIsNotChecked: a key_schema of more elements
// than a key may have gets the count's violation and none of its
// elements: 500,000 empty ones, each given two, took 1.6 s of CPU and
// 480 MB.
func TestKeySchemaOverItsCountIsNotChecked(t *testing.T) {
	for _, local := range []bool{false, true} {
		var vs violations
		checkKeySchema(&vs, "key_schema", make([]*backupv1.KeySchemaElement, 2*maxKeyAttrs+1), local)
		if len(vs) != 1 || vs[0].Field != "key_schema" {
			t.Errorf("local %v: violations %v; want one, of key_schema's number of elements", local, vs)
		}
	}
}
