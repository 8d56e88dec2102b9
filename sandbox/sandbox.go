// Package sandbox is an in-process fake of AWS STS and of the DynamoDB backup
// API, spoken over real HTTP.
//
// It exists for two reasons. `backupd --sandbox` serves it on loopback so that
// teams can try the backupd API with no AWS account (with [DemoAccounts] and
// backupd's [DemoConfig]), and benchmarks use it as a fast, deterministic
// target. In both cases the point is that the real
// aws-sdk-go-v2 clients run against it unchanged: requests are SigV4-signed
// and verified, roles are assumed through STS's query protocol, and DynamoDB
// is spoken in its JSON 1.0 protocol. So the code path that talks to AWS in
// production is the one exercised here, and a bug in how backupd signs,
// caches credentials or maps errors shows up in the sandbox too.
//
// One [Fake] serves both services on one endpoint: requests that carry an
// X-Amz-Target header are DynamoDB calls, all others are STS calls. Point an
// SDK client's BaseEndpoint (or AWS_ENDPOINT_URL) at it.
//
// Credentials issued by AssumeRole belong to the role's account: every
// DynamoDB call signed with them acts in that account, in the region named
// by the request's SigV4 credential scope. Accounts and regions never see
// each other's tables or backups.
package sandbox

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// Options configures a Fake.
type Options struct {
	// Accounts are the AWS accounts the fake pretends to host: each has one
	// role that the sandbox operator may assume and a set of tables that
	// exist from the start, so that there is something to back up.
	Accounts []Account

	// Now is the clock used for creation times, backup ARNs and credential
	// expiry; nil means time.Now. It is injectable so that tests can make
	// time-range filters and expiry deterministic. Keep it near the wall
	// clock when real SDK clients talk to the fake: they judge credential
	// expiry by their own clock.
	Now func() time.Time
}

// Account is one fake AWS account.
type Account struct {
	// ID is the 12-digit account ID. 000000000000 is reserved for the
	// sandbox operator (see [Fake.BaseCredentials]).
	ID string

	// RoleName names the one role in the account that may be assumed:
	// arn:aws:iam::<ID>:role/<RoleName>. backupd assumes a role in every
	// account it serves, so the sandbox makes it do the same.
	RoleName string

	// ExternalID, if non-empty, must be presented by AssumeRole, as a role's
	// trust policy would demand with an sts:ExternalId condition; a missing
	// or different one is refused with AccessDenied.
	ExternalID string

	// Region is where Tables are created.
	Region string

	// Tables exist in Region from the start.
	Tables []TableSpec
}

// TableSpec describes a table that exists when the fake starts. Attributes
// are all of type S. Tables are on-demand (PAY_PER_REQUEST).
type TableSpec struct {
	// Name must match [a-zA-Z0-9_.-]{3,255}.
	Name string

	// HashKey is the partition key attribute; required.
	HashKey string

	// RangeKey is the sort key attribute; empty for a hash-only table.
	RangeKey string

	// GSIs names global secondary indexes. The i-th one (from 1) is keyed on
	// a hash attribute named gsi<i>pk and projects ALL attributes: backups
	// carry index definitions, so demo tables should have some.
	GSIs []string

	// LSIs names local secondary indexes, which need a RangeKey. The i-th
	// one (from 1) sorts on an attribute named lsi<i>sk and projects the
	// keys only.
	LSIs []string

	// StreamView is the table's stream view type (NEW_AND_OLD_IMAGES,
	// say); empty means no stream.
	StreamView string

	// ItemCount and SizeBytes are what DescribeTable reports, and what a
	// backup of the table records. There is no item data behind them.
	ItemCount int64
	SizeBytes int64

	// ManagedKey encrypts the table with the account's AWS managed key
	// (alias/aws/dynamodb), so that its description and its backups' have
	// an SSEDescription; false means an AWS owned key, DynamoDB's
	// default, for which DynamoDB describes none.
	ManagedKey bool

	// Status is the table status; empty means ACTIVE. CREATING, UPDATING or
	// DELETING make CreateBackup fail with TableInUseException, which is
	// otherwise unreachable because every fake operation completes at once;
	// CREATING or DELETING make a restore onto the table's name fail with
	// it too, where another existing table's is TableAlreadyExistsException.
	Status string

	// ReadCapacity and WriteCapacity, set both or neither, make the table
	// PROVISIONED with that capacity, and each of its global secondary
	// indexes with the same; both zero mean on-demand (PAY_PER_REQUEST),
	// and one alone is refused, as CreateTable refuses it.
	ReadCapacity, WriteCapacity int64

	// BackupTakes is how long each backup of the table stays CREATING,
	// its size not yet known, before it is AVAILABLE; 0 means none, as
	// every other fake operation completes at once. While it is CREATING,
	// deleting it or restoring from it, or another backup of the table,
	// fails with BackupInUseException, as in DynamoDB.
	BackupTakes time.Duration
}

// Fake is an in-process AWS STS and DynamoDB backup API. It is an
// http.Handler and is safe for concurrent use.
type Fake struct {
	now func() time.Time

	operator *principal

	// accounts and roles are read-only after New.
	accounts map[string]*accountConfig // by account ID
	roles    map[string]*accountConfig // by role ARN

	credMu    sync.RWMutex
	creds     map[string]*principal // by access key ID
	nextSweep int

	regionMu sync.RWMutex
	regions  map[regionKey]*regionState

	assumeRoleCalls atomic.Int64

	bufs      sync.Pool // *buffer
	verifiers sync.Pool // *verifyRequest
}

var _ http.Handler = (*Fake)(nil)

type accountConfig struct {
	Account
	roleARN string
	roleID  string // AROA..., the stable ID of the role
}

type regionKey struct {
	account, region string
}

// The sandbox operator: the identity whose static credentials the fake
// accepts, and the only one allowed to assume the accounts' roles.
const (
	operatorAccount   = "000000000000"
	operatorARN       = "arn:aws:iam::000000000000:user/sandbox-operator"
	operatorUserID    = "AIDASANDBOXOPERATOR0"
	operatorAccessKey = "AKIASANDBOX000000000"
	operatorSecretKey = "sandbox+operator/secret/key/not/for/aws0"
)

// New returns a Fake hosting opts.Accounts. It panics when the options are
// invalid (see [Options.Validate]): they are written by a programmer, and a
// half-configured fake would only fail later and less clearly. Callers that
// build options from input should call Validate first.
func New(opts Options) *Fake {
	if err := opts.Validate(); err != nil {
		panic("sandbox.New: " + err.Error())
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	f := &Fake{
		now:       now,
		accounts:  make(map[string]*accountConfig, len(opts.Accounts)),
		roles:     make(map[string]*accountConfig, len(opts.Accounts)),
		creds:     make(map[string]*principal),
		nextSweep: minSweep,
		regions:   make(map[regionKey]*regionState),
	}
	f.bufs.New = func() any { return new(buffer) }
	f.verifiers.New = func() any { return newVerifyRequest() }

	f.operator = newPrincipal(aws.Credentials{
		AccessKeyID:     operatorAccessKey,
		SecretAccessKey: operatorSecretKey,
		Source:          "sandbox",
	}, operatorAccount, operatorARN, operatorUserID, time.Time{})
	f.creds[operatorAccessKey] = f.operator

	created := f.clock()
	for _, a := range opts.Accounts {
		a.Tables = append([]TableSpec(nil), a.Tables...)
		cfg := &accountConfig{
			Account: a,
			roleARN: roleARN(a.ID, a.RoleName),
			roleID:  "AROA" + randomKeyID(),
		}
		f.accounts[a.ID] = cfg
		f.roles[cfg.roleARN] = cfg

		st := f.region(a.ID, a.Region, true)
		for _, spec := range a.Tables {
			t, _ := tableFromSpec(spec, a.ID, a.Region, created) // its error is Validate's
			st.tables[t.name] = t
		}
	}
	return f
}

// BaseCredentials returns the static credentials of the sandbox operator, a
// user in account 000000000000. They are what backupd's default credential
// chain would hold in production: sign STS calls with them to assume the
// accounts' roles. They are constant so that they can be put in a
// configuration or an environment; they are worthless outside the fake.
func (f *Fake) BaseCredentials() aws.Credentials {
	return f.operator.creds
}

// AssumeRoleCalls reports how many authenticated AssumeRole requests the fake
// has answered, successful or not, so that tests can check that callers
// cache credentials instead of assuming a role for every request.
func (f *Fake) AssumeRoleCalls() int {
	return int(f.assumeRoleCalls.Load())
}

// DemoBackupTakes is how long a backup of the demo table Slow stays
// CREATING: long enough to poll it, short enough to wait for.
const DemoBackupTakes = 10 * time.Second

// DemoAccounts returns the accounts `backupd --sandbox` starts with:
// 111111111111 and 222222222222, each with the role "backupd-sandbox" (no
// ExternalID) and the tables Orders (hash pk, range sk, GSI ByCustomer),
// Customers (encrypted with the AWS managed key), Events (hash pk,
// range ts, LSI ByType, a stream of new and old images) and Inventory
// (hash sku, GSI ByWarehouse, provisioned at 5/5) in us-east-1, so that
// backups show each part of a table's description; Busy, whose
// status stays UPDATING, so that its backups fail as a table in use's do;
// and Slow, whose backups stay CREATING for DemoBackupTakes. The two accounts differ in their sizes so that a caller can
// tell them apart.
func DemoAccounts() []Account {
	demo := func(id string, scale int64) Account {
		return Account{
			ID:       id,
			RoleName: "backupd-sandbox",
			Region:   "us-east-1",
			Tables: []TableSpec{
				{Name: "Orders", HashKey: "pk", RangeKey: "sk", GSIs: []string{"ByCustomer"}, ItemCount: 1200 * scale, SizeBytes: 480_000 * scale},
				{Name: "Customers", HashKey: "customerId", ManagedKey: true, ItemCount: 300 * scale, SizeBytes: 96_000 * scale},
				{Name: "Events", HashKey: "pk", RangeKey: "ts", LSIs: []string{"ByType"}, StreamView: "NEW_AND_OLD_IMAGES",
					ItemCount: 25_000 * scale, SizeBytes: 5_000_000 * scale},
				// Provisioned, so that a caller can try restoring a
				// backup with capacity, and the overrides' rules for it.
				{Name: "Inventory", HashKey: "sku", GSIs: []string{"ByWarehouse"}, ReadCapacity: 5, WriteCapacity: 5,
					ItemCount: 800 * scale, SizeBytes: 160_000 * scale},
				// Always being updated, so that a caller can try how it
				// handles a table in use (FAILED_PRECONDITION).
				{Name: "Busy", HashKey: "pk", Status: "UPDATING", ItemCount: 10 * scale, SizeBytes: 2_000 * scale},
				// Backed up as DynamoDB backs up, over time, so that a
				// caller can try its polling, and a backup in use.
				{Name: "Slow", HashKey: "pk", BackupTakes: DemoBackupTakes, ItemCount: 50 * scale, SizeBytes: 20_000 * scale},
			},
		}
	}
	return []Account{demo("111111111111", 1), demo("222222222222", 3)}
}

// Validate reports every problem with the options at once.
func (o Options) Validate() error {
	var problems []string
	add := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf(format, args...))
	}
	seen := make(map[string]bool, len(o.Accounts))
	for i, a := range o.Accounts {
		switch {
		case !isAccountID(a.ID):
			add("accounts[%d]: ID must be 12 digits; got %q", i, a.ID)
		case a.ID == operatorAccount:
			add("accounts[%d]: ID %s is reserved for the sandbox operator", i, a.ID)
		case seen[a.ID]:
			add("accounts[%d]: ID %s is listed twice", i, a.ID)
		}
		seen[a.ID] = true
		if !isRoleName(a.RoleName) {
			add("accounts[%d]: RoleName must be 1-64 characters of a-z A-Z 0-9 + = , . @ _ -; got %q", i, a.RoleName)
		}
		if !isRegion(a.Region) {
			add("accounts[%d]: Region must be a region name such as us-east-1; got %q", i, a.Region)
		}
		names := make(map[string]bool, len(a.Tables))
		for j, t := range a.Tables {
			if !isName(t.Name) {
				add("accounts[%d].tables[%d]: Name must be 3-255 characters of a-z A-Z 0-9 _ . -; got %q", i, j, t.Name)
			}
			if names[t.Name] {
				add("accounts[%d].tables[%d]: table %q is listed twice", i, j, t.Name)
			}
			names[t.Name] = true
			if t.HashKey == "" {
				add("accounts[%d].tables[%d]: HashKey is required", i, j)
			}
			if t.HashKey != "" {
				// The indexes, as CreateTable would take them.
				if _, derr := tableFromSpec(t, a.ID, a.Region, time.Time{}); derr != nil {
					add("accounts[%d].tables[%d]: %s", i, j, derr.msg)
				}
			}
			for _, key := range []string{t.HashKey, t.RangeKey} {
				if generatedKey(key) {
					add("accounts[%d].tables[%d]: key %q has the name of an index's key (gsi<i>pk, lsi<i>sk)", i, j, key)
				}
			}
			if t.ItemCount < 0 || t.SizeBytes < 0 {
				add("accounts[%d].tables[%d]: ItemCount and SizeBytes must not be negative", i, j)
			}
			switch t.Status {
			case "", statusActive, "CREATING", "UPDATING", "DELETING":
			default:
				add("accounts[%d].tables[%d]: Status must be empty, ACTIVE, CREATING, UPDATING or DELETING; got %q", i, j, t.Status)
			}
			if t.BackupTakes < 0 {
				add("accounts[%d].tables[%d]: BackupTakes must not be negative; got %s", i, j, t.BackupTakes)
			}
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("invalid sandbox options: %s", strings.Join(problems, "; "))
}

func (f *Fake) clock() time.Time {
	return f.now().UTC().Truncate(time.Millisecond)
}

// region returns the state of (account, region), creating it when create is
// set; without create it returns nil for a region nobody has written to, so
// that reads with arbitrary credential scopes do not allocate state.
func (f *Fake) region(account, region string, create bool) *regionState {
	k := regionKey{account, region}
	f.regionMu.RLock()
	st := f.regions[k]
	f.regionMu.RUnlock()
	if st != nil || !create {
		return st
	}
	f.regionMu.Lock()
	defer f.regionMu.Unlock()
	if st = f.regions[k]; st == nil {
		st = newRegionState()
		f.regions[k] = st
	}
	return st
}

func roleARN(account, role string) string {
	return "arn:aws:iam::" + account + ":role/" + role
}

func isAccountID(s string) bool {
	if len(s) != 12 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// isName reports whether s matches [a-zA-Z0-9_.-]{3,255}, DynamoDB's
// pattern for table, index and backup names.
func isName(s string) bool {
	if len(s) < 3 || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isNameByte(s[i]) {
			return false
		}
	}
	return true
}

func isNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
}

// isRoleName reports whether s matches IAM's role name pattern [\w+=,.@-]{1,64}.
func isRoleName(s string) bool {
	return len(s) >= 1 && len(s) <= 64 && isIAMChars(s)
}

func isIAMChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '_' || c == '+' || c == '=' || c == ',' || c == '.' || c == '@' || c == '-') {
			return false
		}
	}
	return true
}

func isRegion(s string) bool {
	if len(s) < 4 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// generatedKey reports whether key is named as the keys tableFromSpec
// makes for its indexes (gsi1pk, lsi2sk), which it would define twice.
func generatedKey(key string) bool {
	for _, affix := range [][2]string{{"gsi", "pk"}, {"lsi", "sk"}} {
		if n, ok := strings.CutPrefix(key, affix[0]); ok {
			if n, ok := strings.CutSuffix(n, affix[1]); ok {
				if _, err := strconv.Atoi(n); err == nil {
					return true
				}
			}
		}
	}
	return false
}
