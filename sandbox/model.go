package sandbox

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"strconv"
	"sync"
	"time"
)

const (
	statusActive   = "ACTIVE"
	statusCreating = "CREATING"
	statusDeleting = "DELETING"
	billingPPR     = "PAY_PER_REQUEST"
	billingProv    = "PROVISIONED"
	backupTypeUser = "USER"

	// A backup's statuses.
	backupCreating  = "CREATING"
	backupAvailable = "AVAILABLE"
	backupDeleted   = "DELETED"
)

type keyElement struct {
	attr, typ string // typ: HASH or RANGE
}

type attrDef struct {
	name, typ string // typ: S, N or B
}

type projection struct {
	typ    string // ALL, KEYS_ONLY or INCLUDE
	nonKey []string
}

type index struct {
	name     string
	keys     []keyElement
	proj     projection
	rcu, wcu int64 // zero for on-demand tables
}

// table is immutable once created: a backup keeps a pointer to the table it
// was taken of as its snapshot, and responses are written outside the lock.
type table struct {
	name, id, arn string
	status        string
	created       time.Time
	attrs         []attrDef
	keys          []keyElement
	gsis, lsis    []index
	billing       string
	rcu, wcu      int64
	items, size   int64
	streamView    string // empty: no stream
	kmsKeyARN     string // empty: encrypted with an AWS owned key, as by default
	restore       *restoreSummary
	backupTakes   time.Duration // how long its backups stay CREATING
}

type restoreSummary struct {
	backupARN, tableARN string
	at                  time.Time
}

// backup is immutable once created.
type backup struct {
	arn, name string
	ms        int64 // creation time in Unix milliseconds; orders backups
	created   time.Time
	ready     time.Time // when it is AVAILABLE; CREATING before
	typ       string
	src       *table
}

// creating reports whether the backup is still being made at now.
func (b *backup) creating(now time.Time) bool { return now.Before(b.ready) }

// status is the backup's status at now: CREATING until it is ready.
func (b *backup) status(now time.Time) string {
	if b.creating(now) {
		return backupCreating
	}
	return backupAvailable
}

// backupInUse is DynamoDB's answer to deleting or restoring a backup that
// is still being made.
func backupInUse() *ddbError {
	return ddbErr(nsDynamoDB, "BackupInUseException", "There is another ongoing conflicting backup control plane operation on the table. The backup is either being created, deleted or restored to a table.")
}

// regionState holds one account's tables and backups in one region. Each has
// its own lock, so accounts and regions do not contend.
type regionState struct {
	mu      sync.RWMutex
	tables  map[string]*table
	backups map[string]*backup // by ARN
	// ordered holds the backups sorted by (creation time, ARN): the stable
	// order ListBackups pages through.
	ordered []*backup
}

func newRegionState() *regionState {
	return &regionState{
		tables:  make(map[string]*table),
		backups: make(map[string]*backup),
	}
}

// backupOrder compares a backup with the position (ms, arn).
func backupOrder(b *backup, ms int64, arn string) int {
	if c := cmp.Compare(b.ms, ms); c != 0 {
		return c
	}
	return cmp.Compare(b.arn, arn)
}

// creating reports whether a backup of t is CREATING at now; st.mu is
// held. Only a table with BackupTakes has any, so the others skip the scan.
func (st *regionState) creating(t *table, now time.Time) bool {
	if t.backupTakes == 0 {
		return false
	}
	for _, b := range st.backups {
		if b.src == t && b.creating(now) {
			return true
		}
	}
	return false
}

// insert adds b; the caller holds mu.
func (st *regionState) insert(b *backup) {
	i, _ := slices.BinarySearchFunc(st.ordered, b, func(x, y *backup) int { return backupOrder(x, y.ms, y.arn) })
	st.ordered = slices.Insert(st.ordered, i, b)
	st.backups[b.arn] = b
}

// remove deletes b; the caller holds mu.
func (st *regionState) remove(b *backup) {
	if i, ok := slices.BinarySearchFunc(st.ordered, b, func(x, y *backup) int { return backupOrder(x, y.ms, y.arn) }); ok {
		st.ordered = slices.Delete(st.ordered, i, i+1)
	}
	delete(st.backups, b.arn)
}

func tableARN(region, account, name string) string {
	return "arn:aws:dynamodb:" + region + ":" + account + ":table/" + name
}

// backupARN has the shape DynamoDB uses: the creation time in Unix
// milliseconds, zero-padded to 14 digits, and 8 random hex digits.
func backupARN(tableARN string, ms int64) string {
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	b := make([]byte, 0, len(tableARN)+len("/backup/")+14+1+8)
	b = append(b, tableARN...)
	b = append(b, "/backup/"...)
	var scratch [20]byte
	digits := strconv.AppendInt(scratch[:0], ms, 10)
	for i := len(digits); i < 14; i++ {
		b = append(b, '0')
	}
	b = append(b, digits...)
	b = append(b, '-')
	b = hex.AppendEncode(b, suffix[:])
	return string(b)
}

// tableFromSpec makes the table spec describes. Its indexes and stream
// pass the checks CreateTable's do (addIndexes, parseStream):
// Options.Validate reports their error, so New never meets one.
func tableFromSpec(spec TableSpec, account, region string, created time.Time) (*table, *ddbError) {
	t := &table{
		name:    spec.Name,
		id:      newUUID(),
		arn:     tableARN(region, account, spec.Name),
		status:  cmp.Or(spec.Status, statusActive),
		created: created,
		attrs:   []attrDef{{spec.HashKey, "S"}},
		keys:    []keyElement{{spec.HashKey, "HASH"}},
		billing: billingPPR,
		rcu:     spec.ReadCapacity,
		wcu:     spec.WriteCapacity,
		items:   spec.ItemCount,
		size:    spec.SizeBytes,

		backupTakes: spec.BackupTakes,
	}
	if spec.ManagedKey {
		t.kmsKeyARN = managedKeyARN(region, account)
	}
	if spec.RangeKey != "" {
		t.attrs = append(t.attrs, attrDef{spec.RangeKey, "S"})
		t.keys = append(t.keys, keyElement{spec.RangeKey, "RANGE"})
	}
	var capacity *throughputIn
	if spec.ReadCapacity != 0 || spec.WriteCapacity != 0 {
		t.billing = billingProv
		capacity = &throughputIn{ReadCapacityUnits: &t.rcu, WriteCapacityUnits: &t.wcu}
		if _, _, derr := parseThroughput("ProvisionedThroughput", capacity, billingProv); derr != nil {
			return t, derr
		}
	}
	var gsis, lsis []indexIn
	for i, name := range spec.GSIs {
		attr := "gsi" + strconv.Itoa(i+1) + "pk"
		t.attrs = append(t.attrs, attrDef{attr, "S"})
		gsis = append(gsis, indexIn{IndexName: name, KeySchema: []keySchemaIn{{attr, "HASH"}}, Projection: &projectionIn{ProjectionType: "ALL"},
			ProvisionedThroughput: capacity})
	}
	for i, name := range spec.LSIs {
		attr := "lsi" + strconv.Itoa(i+1) + "sk"
		t.attrs = append(t.attrs, attrDef{attr, "S"})
		lsis = append(lsis, indexIn{IndexName: name, KeySchema: []keySchemaIn{{spec.HashKey, "HASH"}, {attr, "RANGE"}},
			Projection: &projectionIn{ProjectionType: "KEYS_ONLY"}})
	}
	view, derr := parseStream(&streamIn{StreamEnabled: spec.StreamView != "", StreamViewType: spec.StreamView})
	if derr != nil {
		return t, derr
	}
	t.streamView = view
	return t, t.addIndexes(gsis, lsis)
}

// Writers of DynamoDB's shapes, field names as in the API reference.

func writeKeySchema(w *jsonWriter, keys []keyElement) {
	w.array("KeySchema")
	for _, k := range keys {
		w.open()
		w.str("AttributeName", k.attr)
		w.str("KeyType", k.typ)
		w.close()
	}
	w.closeArray()
}

// writeIndexHead writes what every shape of an index starts with: its
// name, key schema and projection.
func writeIndexHead(w *jsonWriter, ix index) {
	w.str("IndexName", ix.name)
	writeKeySchema(w, ix.keys)
	writeProjection(w, ix.proj)
}

func writeProjection(w *jsonWriter, p projection) {
	w.object("Projection")
	w.str("ProjectionType", p.typ)
	if len(p.nonKey) > 0 {
		w.array("NonKeyAttributes")
		for _, a := range p.nonKey {
			w.strElem(a)
		}
		w.closeArray()
	}
	w.close()
}

func writeThroughput(w *jsonWriter, rcu, wcu int64) {
	w.object("ProvisionedThroughput")
	w.int("ReadCapacityUnits", rcu)
	w.int("WriteCapacityUnits", wcu)
	w.close()
}

func writeThroughputDescription(w *jsonWriter, rcu, wcu int64) {
	w.object("ProvisionedThroughput")
	w.int("NumberOfDecreasesToday", 0)
	w.int("ReadCapacityUnits", rcu)
	w.int("WriteCapacityUnits", wcu)
	w.close()
}

// managedKeyARN is the KMS key a table encrypted with the account's AWS
// managed key names: the key of alias/aws/dynamodb.
func managedKeyARN(region, account string) string {
	return aliasKeyARN("aws", region, account, "alias/aws/dynamodb")
}

// aliasKeyARN is the ARN of the key alias names in an account and region:
// DynamoDB describes a table's key by the key's ARN, never the alias's it
// was given. The fake's key of an alias is always the same.
func aliasKeyARN(partition, region, account, alias string) string {
	return "arn:" + partition + ":kms:" + region + ":" + account + ":key/" + nameUUID(account+"/"+region+"/"+alias)
}

func writeSSEDescription(w *jsonWriter, t *table) {
	if t.kmsKeyARN == "" {
		return
	}
	w.object("SSEDescription")
	w.str("Status", "ENABLED")
	w.str("SSEType", "KMS")
	w.str("KMSMasterKeyArn", t.kmsKeyARN)
	w.close()
}

// writeTableDescription writes a TableDescription under key.
func writeTableDescription(w *jsonWriter, key string, t *table, status string) {
	// A table CREATING (a restore just taken) is empty so far, its
	// indexes CREATING too.
	creating, indexStatus := status == statusCreating, statusActive
	if creating {
		indexStatus = statusCreating
	}
	w.object(key)
	w.array("AttributeDefinitions")
	for _, a := range t.attrs {
		w.open()
		w.str("AttributeName", a.name)
		w.str("AttributeType", a.typ)
		w.close()
	}
	w.closeArray()
	w.str("TableName", t.name)
	writeKeySchema(w, t.keys)
	w.str("TableStatus", status)
	w.time("CreationDateTime", t.created)
	writeThroughputDescription(w, t.rcu, t.wcu)
	if creating {
		w.int("TableSizeBytes", 0)
		w.int("ItemCount", 0)
	} else {
		w.int("TableSizeBytes", t.size)
		w.int("ItemCount", t.items)
	}
	w.str("TableArn", t.arn)
	w.str("TableId", t.id)
	w.object("BillingModeSummary")
	w.str("BillingMode", t.billing)
	if t.billing == billingPPR {
		w.time("LastUpdateToPayPerRequestDateTime", t.created)
	}
	w.close()
	if len(t.lsis) > 0 {
		w.array("LocalSecondaryIndexes")
		for _, ix := range t.lsis {
			w.open()
			writeIndexHead(w, ix)
			w.int("IndexSizeBytes", 0)
			w.int("ItemCount", 0)
			w.str("IndexArn", t.arn+"/index/"+ix.name)
			w.close()
		}
		w.closeArray()
	}
	if len(t.gsis) > 0 {
		w.array("GlobalSecondaryIndexes")
		for _, ix := range t.gsis {
			w.open()
			writeIndexHead(w, ix)
			w.str("IndexStatus", indexStatus)
			writeThroughputDescription(w, ix.rcu, ix.wcu)
			w.int("IndexSizeBytes", 0)
			w.int("ItemCount", 0)
			w.str("IndexArn", t.arn+"/index/"+ix.name)
			w.close()
		}
		w.closeArray()
	}
	if t.streamView != "" {
		w.object("StreamSpecification")
		w.bool("StreamEnabled", true)
		w.str("StreamViewType", t.streamView)
		w.close()
		label := streamLabel(t.created)
		w.str("LatestStreamLabel", label)
		w.str("LatestStreamArn", t.arn+"/stream/"+label)
	}
	if r := t.restore; r != nil {
		w.object("RestoreSummary")
		w.str("SourceBackupArn", r.backupARN)
		w.str("SourceTableArn", r.tableARN)
		w.time("RestoreDateTime", r.at)
		w.bool("RestoreInProgress", creating)
		w.close()
	}
	writeSSEDescription(w, t)
	w.bool("DeletionProtectionEnabled", false)
	w.close()
}

func streamLabel(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000")
}

// writeBackupDetails writes a backup's details with status: a backup
// being made has no size yet, as DynamoDB gives none.
func writeBackupDetails(w *jsonWriter, b *backup, status string) {
	w.object("BackupDetails")
	w.str("BackupArn", b.arn)
	w.str("BackupName", b.name)
	if status != backupCreating {
		w.int("BackupSizeBytes", b.src.size)
	}
	w.str("BackupStatus", status)
	w.str("BackupType", b.typ)
	w.time("BackupCreationDateTime", b.created)
	w.close()
}

// writeBackupDescription writes DescribeBackup's and DeleteBackup's
// BackupDescription: the backup and what it holds of its source table.
func writeBackupDescription(w *jsonWriter, b *backup, status string) {
	t := b.src
	w.object("BackupDescription")
	writeBackupDetails(w, b, status)

	w.object("SourceTableDetails")
	w.str("TableName", t.name)
	w.str("TableId", t.id)
	w.str("TableArn", t.arn)
	w.int("TableSizeBytes", t.size)
	writeKeySchema(w, t.keys)
	w.time("TableCreationDateTime", t.created)
	writeThroughput(w, t.rcu, t.wcu)
	w.int("ItemCount", t.items)
	w.str("BillingMode", t.billing)
	w.close()

	w.object("SourceTableFeatureDetails")
	if len(t.lsis) > 0 {
		w.array("LocalSecondaryIndexes")
		for _, ix := range t.lsis {
			w.open()
			writeIndexHead(w, ix)
			w.close()
		}
		w.closeArray()
	}
	if len(t.gsis) > 0 {
		w.array("GlobalSecondaryIndexes")
		for _, ix := range t.gsis {
			w.open()
			writeIndexHead(w, ix)
			writeThroughput(w, ix.rcu, ix.wcu)
			w.close()
		}
		w.closeArray()
	}
	w.object("StreamDescription")
	w.bool("StreamEnabled", t.streamView != "")
	w.strOmit("StreamViewType", t.streamView)
	w.close()
	w.object("TimeToLiveDescription")
	w.str("TimeToLiveStatus", "DISABLED")
	w.close()
	writeSSEDescription(w, t)
	w.close()

	w.close()
}

func writeBackupSummary(w *jsonWriter, b *backup, now time.Time) {
	t := b.src
	status := b.status(now)
	w.open()
	w.str("TableName", t.name)
	w.str("TableId", t.id)
	w.str("TableArn", t.arn)
	w.str("BackupArn", b.arn)
	w.str("BackupName", b.name)
	w.time("BackupCreationDateTime", b.created)
	w.str("BackupStatus", status)
	w.str("BackupType", b.typ)
	if status != backupCreating {
		w.int("BackupSizeBytes", t.size)
	}
	w.close()
}
