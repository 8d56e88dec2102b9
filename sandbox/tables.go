package sandbox

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
)

// Request shapes shared by CreateTable and RestoreTableFromBackup.

type keySchemaIn struct {
	AttributeName string
	KeyType       string
}

type projectionIn struct {
	ProjectionType   string
	NonKeyAttributes []string
}

type throughputIn struct {
	ReadCapacityUnits  *int64
	WriteCapacityUnits *int64
}

type indexIn struct {
	IndexName             string
	KeySchema             []keySchemaIn
	Projection            *projectionIn
	ProvisionedThroughput *throughputIn
}

type sseIn struct {
	Enabled        *bool
	SSEType        string
	KMSMasterKeyId string
}

func invalidParam(msg string) *ddbError {
	return validationErr("One or more parameter values were invalid: " + msg)
}

func parseKeys(what string, in []keySchemaIn) ([]keyElement, *ddbError) {
	if len(in) < 1 || len(in) > 2 {
		return nil, invalidParam(what + " must have one HASH key and at most one RANGE key")
	}
	keys := make([]keyElement, len(in))
	for i, k := range in {
		if k.AttributeName == "" || len(k.AttributeName) > 255 {
			return nil, invalidParam(what + ": AttributeName must be 1-255 characters")
		}
		want := "HASH"
		if i == 1 {
			want = "RANGE"
			if k.AttributeName == in[0].AttributeName {
				return nil, invalidParam(what + ": the HASH and RANGE keys must be different attributes")
			}
		}
		if k.KeyType != want {
			return nil, invalidParam(what + ": key " + strconv.Itoa(i+1) + " must have KeyType " + want + "; got " + strconv.Quote(k.KeyType))
		}
		keys[i] = keyElement{k.AttributeName, k.KeyType}
	}
	return keys, nil
}

func parseProjection(what string, in *projectionIn) (projection, *ddbError) {
	if in == nil {
		return projection{}, invalidParam(what + ": Projection is required")
	}
	switch in.ProjectionType {
	case "", "ALL", "KEYS_ONLY":
		if len(in.NonKeyAttributes) > 0 {
			return projection{}, invalidParam(what + ": NonKeyAttributes may only be given with ProjectionType INCLUDE")
		}
		return projection{typ: cmp.Or(in.ProjectionType, "ALL")}, nil
	case "INCLUDE":
		if len(in.NonKeyAttributes) == 0 {
			return projection{}, invalidParam(what + ": ProjectionType INCLUDE needs NonKeyAttributes")
		}
		return projection{typ: "INCLUDE", nonKey: slices.Clone(in.NonKeyAttributes)}, nil
	default:
		return projection{}, invalidParam(what + ": ProjectionType must be ALL, KEYS_ONLY or INCLUDE; got " + strconv.Quote(in.ProjectionType))
	}
}

// parseThroughput checks a ProvisionedThroughput against the billing mode:
// required with PROVISIONED, forbidden with PAY_PER_REQUEST.
func parseThroughput(what string, in *throughputIn, billing string) (rcu, wcu int64, derr *ddbError) {
	if billing == billingPPR {
		if in != nil {
			return 0, 0, invalidParam(what + ": neither ReadCapacityUnits nor WriteCapacityUnits can be specified when BillingMode is PAY_PER_REQUEST")
		}
		return 0, 0, nil
	}
	if in == nil || in.ReadCapacityUnits == nil || in.WriteCapacityUnits == nil {
		return 0, 0, invalidParam(what + ": ReadCapacityUnits and WriteCapacityUnits must both be specified when BillingMode is PROVISIONED")
	}
	if *in.ReadCapacityUnits < 1 || *in.WriteCapacityUnits < 1 {
		return 0, 0, invalidParam(what + ": ReadCapacityUnits and WriteCapacityUnits must be at least 1")
	}
	return *in.ReadCapacityUnits, *in.WriteCapacityUnits, nil
}

func parseBillingMode(v, dflt string) (string, *ddbError) {
	switch v {
	case "":
		return dflt, nil
	case billingProv, billingPPR:
		return v, nil
	default:
		return "", validationErr("1 validation error detected: Value '" + v + "' at 'billingMode' failed to satisfy constraint: Member must satisfy enum value set: [PROVISIONED, PAY_PER_REQUEST]")
	}
}

// kmsKeyARN turns an SSESpecification into the KMS key a table is encrypted
// with; "" means an AWS owned key, DynamoDB's default.
func (c *ddbCall) kmsKeyARN(in *sseIn) (string, *ddbError) {
	if in == nil || in.Enabled == nil || !*in.Enabled {
		if in != nil && in.KMSMasterKeyId != "" {
			return "", invalidParam("KMSMasterKeyId can only be specified when SSE is enabled")
		}
		return "", nil
	}
	if in.SSEType != "" && in.SSEType != "KMS" {
		return "", invalidParam("SSEType must be KMS; got " + strconv.Quote(in.SSEType))
	}
	prefix := "arn:aws:kms:" + c.region + ":" + c.account + ":"
	switch id := in.KMSMasterKeyId; {
	case id == "":
		return managedKeyARN(c.region, c.account), nil
	case strings.HasPrefix(id, "arn:"):
		// An alias's ARN names its key's; a key's ARN is the key's.
		if parts := strings.SplitN(id, ":", 6); len(parts) == 6 && strings.HasPrefix(parts[5], "alias/") {
			return aliasKeyARN(parts[1], parts[3], parts[4], parts[5]), nil
		}
		return id, nil
	case strings.HasPrefix(id, "alias/"):
		return aliasKeyARN("aws", c.region, c.account, id), nil
	default:
		return prefix + "key/" + id, nil
	}
}

// attrDefIn is an attribute definition of CreateTable's input.
type attrDefIn struct {
	AttributeName string
	AttributeType string
}

// streamIn is CreateTable's StreamSpecification.
type streamIn struct {
	StreamEnabled  bool
	StreamViewType string
}

func (c *ddbCall) createTable() *ddbError {
	var in struct {
		TableName              string
		AttributeDefinitions   []attrDefIn
		KeySchema              []keySchemaIn
		GlobalSecondaryIndexes []indexIn
		LocalSecondaryIndexes  []indexIn
		BillingMode            string
		ProvisionedThroughput  *throughputIn
		StreamSpecification    *streamIn
		SSESpecification       *sseIn
	}
	if derr := c.decode(&in); derr != nil {
		return derr
	}
	name, derr := c.resolveTable("tableName", in.TableName)
	if derr != nil {
		return derr
	}
	if name == "" {
		return validationErr("table ARN " + in.TableName + " is not in the request's region " + c.region)
	}
	now := c.f.clock()
	t := &table{
		name:    name,
		id:      newUUID(),
		arn:     tableARN(c.region, c.account, name),
		status:  statusActive, // the fake creates tables at once
		created: now,
	}
	if t.billing, derr = parseBillingMode(in.BillingMode, billingProv); derr != nil {
		return derr
	}
	if t.keys, derr = parseKeys("KeySchema", in.KeySchema); derr != nil {
		return derr
	}
	if t.rcu, t.wcu, derr = parseThroughput("ProvisionedThroughput", in.ProvisionedThroughput, t.billing); derr != nil {
		return derr
	}
	if t.attrs, derr = parseAttributes(in.AttributeDefinitions); derr != nil {
		return derr
	}
	if derr := t.addIndexes(in.GlobalSecondaryIndexes, in.LocalSecondaryIndexes); derr != nil {
		return derr
	}
	if derr := checkAttributesUsed(t); derr != nil {
		return derr
	}
	if t.streamView, derr = parseStream(in.StreamSpecification); derr != nil {
		return derr
	}
	if t.kmsKeyARN, derr = c.kmsKeyARN(in.SSESpecification); derr != nil {
		return derr
	}

	st := c.f.region(c.account, c.region, true)
	st.mu.Lock()
	exists := st.tables[name] != nil
	if !exists {
		st.tables[name] = t
	}
	st.mu.Unlock()
	if exists {
		return ddbErr(nsDynamoDB, "ResourceInUseException", "Table already exists: "+name)
	}
	writeTableDescription(c.w, "TableDescription", t, t.status)
	return nil
}

// parseAttributes checks CreateTable's attribute definitions.
func parseAttributes(in []attrDefIn) ([]attrDef, *ddbError) {
	var attrs []attrDef
	for _, a := range in {
		switch {
		case a.AttributeName == "":
			return nil, invalidParam("AttributeDefinitions: AttributeName is required")
		case a.AttributeType != "S" && a.AttributeType != "N" && a.AttributeType != "B":
			return nil, invalidParam("AttributeDefinitions: AttributeType of " + a.AttributeName + " must be S, N or B")
		case slices.ContainsFunc(attrs, func(d attrDef) bool { return d.name == a.AttributeName }):
			return nil, invalidParam("AttributeDefinitions: " + a.AttributeName + " is defined twice")
		}
		attrs = append(attrs, attrDef{a.AttributeName, a.AttributeType})
	}
	return attrs, nil
}

// addIndexes checks CreateTable's secondary indexes, against the table's
// keys and billing mode, and adds them to t.
func (t *table) addIndexes(gsis, lsis []indexIn) *ddbError {
	if len(gsis) > 20 || len(lsis) > 5 {
		return invalidParam("a table has at most 20 global and 5 local secondary indexes")
	}
	names := make(map[string]bool)
	for _, g := range gsis {
		ix, derr := parseIndex("GlobalSecondaryIndexes", g, names)
		if derr != nil {
			return derr
		}
		if ix.rcu, ix.wcu, derr = parseThroughput("GlobalSecondaryIndexes["+g.IndexName+"]", g.ProvisionedThroughput, t.billing); derr != nil {
			return derr
		}
		t.gsis = append(t.gsis, ix)
	}
	for _, l := range lsis {
		ix, derr := parseIndex("LocalSecondaryIndexes", l, names)
		if derr != nil {
			return derr
		}
		if derr := checkLSIKeys(t.keys, ix); derr != nil {
			return derr
		}
		t.lsis = append(t.lsis, ix)
	}
	return nil
}

// parseStream is the stream view type CreateTable's StreamSpecification
// asks for; empty for none.
func parseStream(in *streamIn) (string, *ddbError) {
	if in == nil || !in.StreamEnabled {
		return "", nil
	}
	switch in.StreamViewType {
	case "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES", "KEYS_ONLY":
		return in.StreamViewType, nil
	}
	return "", invalidParam("StreamViewType must be NEW_IMAGE, OLD_IMAGE, NEW_AND_OLD_IMAGES or KEYS_ONLY when StreamEnabled is true")
}

// parseIndex checks an index's name, keys and projection; names collects
// the index names seen so far, which must be unique across the table.
func parseIndex(what string, in indexIn, names map[string]bool) (index, *ddbError) {
	if derr := nameError("indexName", in.IndexName); derr != nil {
		return index{}, derr
	}
	if names[in.IndexName] {
		return index{}, invalidParam(what + ": duplicate index name: " + in.IndexName)
	}
	names[in.IndexName] = true
	what += "[" + in.IndexName + "]"
	keys, derr := parseKeys(what+".KeySchema", in.KeySchema)
	if derr != nil {
		return index{}, derr
	}
	proj, derr := parseProjection(what, in.Projection)
	if derr != nil {
		return index{}, derr
	}
	return index{name: in.IndexName, keys: keys, proj: proj}, nil
}

// checkLSIKeys enforces that a local index shares the table's hash key and
// has a range key of its own.
func checkLSIKeys(tableKeys []keyElement, ix index) *ddbError {
	if len(tableKeys) < 2 {
		return invalidParam("Table KeySchema does not have a range key, which is required when specifying a LocalSecondaryIndex")
	}
	if len(ix.keys) != 2 || ix.keys[0].attr != tableKeys[0].attr {
		return invalidParam("LocalSecondaryIndexes[" + ix.name + "]: a local index must have the table's hash key and a range key")
	}
	return nil
}

// checkAttributesUsed enforces DynamoDB's rule that AttributeDefinitions
// holds exactly the key attributes of the table and its indexes.
func checkAttributesUsed(t *table) *ddbError {
	used := make(map[string]bool)
	mark := func(keys []keyElement) {
		for _, k := range keys {
			used[k.attr] = true
		}
	}
	mark(t.keys)
	for _, ix := range t.gsis {
		mark(ix.keys)
	}
	for _, ix := range t.lsis {
		mark(ix.keys)
	}
	for attr := range used {
		if !slices.ContainsFunc(t.attrs, func(d attrDef) bool { return d.name == attr }) {
			return invalidParam("Some index key attributes are not defined in AttributeDefinitions: " + attr)
		}
	}
	if len(used) != len(t.attrs) {
		return invalidParam("Number of attributes in KeySchema does not exactly match number of attributes defined in AttributeDefinitions")
	}
	return nil
}

func (c *ddbCall) restoreTableFromBackup() *ddbError {
	var in struct {
		TargetTableName               string
		BackupArn                     string
		BillingModeOverride           string
		GlobalSecondaryIndexOverride  []indexIn
		LocalSecondaryIndexOverride   []indexIn
		ProvisionedThroughputOverride *throughputIn
		SSESpecificationOverride      *sseIn
	}
	if derr := c.decode(&in); derr != nil {
		return derr
	}
	if derr := nameError("targetTableName", in.TargetTableName); derr != nil {
		return derr
	}
	b, derr := c.lookupBackup(in.BackupArn, false)
	if derr != nil {
		return derr
	}
	src := b.src
	now := c.f.clock()
	if b.creating(now) {
		return backupInUse()
	}
	t := &table{
		name:    in.TargetTableName,
		id:      newUUID(),
		arn:     tableARN(c.region, c.account, in.TargetTableName),
		status:  statusActive, // the fake restores at once
		created: now,
		keys:    src.keys,
		items:   src.items,
		size:    src.size,
		// Streams and TTL are not restored, as in DynamoDB.
		// DynamoDB's restore time of a backup is the backup's time.
		restore: &restoreSummary{backupARN: b.arn, tableARN: src.arn, at: b.created},
	}
	if t.billing, derr = parseBillingMode(in.BillingModeOverride, src.billing); derr != nil {
		return derr
	}
	switch {
	case in.ProvisionedThroughputOverride != nil || t.billing == billingPPR:
		t.rcu, t.wcu, derr = parseThroughput("ProvisionedThroughputOverride", in.ProvisionedThroughputOverride, t.billing)
	case src.billing == billingProv:
		t.rcu, t.wcu = src.rcu, src.wcu
	default:
		derr = invalidParam("ProvisionedThroughputOverride is required to restore an on-demand table's backup with BillingModeOverride PROVISIONED")
	}
	if derr != nil {
		return derr
	}
	if t.gsis, derr = t.overrideIndexes("GlobalSecondaryIndexOverride", src.gsis, in.GlobalSecondaryIndexOverride, in.GlobalSecondaryIndexOverride != nil, true); derr != nil {
		return derr
	}
	if t.lsis, derr = t.overrideIndexes("LocalSecondaryIndexOverride", src.lsis, in.LocalSecondaryIndexOverride, in.LocalSecondaryIndexOverride != nil, false); derr != nil {
		return derr
	}
	t.kmsKeyARN = src.kmsKeyARN
	if in.SSESpecificationOverride != nil {
		if t.kmsKeyARN, derr = c.kmsKeyARN(in.SSESpecificationOverride); derr != nil {
			return derr
		}
	}
	// Keep the attribute definitions the remaining keys use.
	t.attrs = slices.DeleteFunc(slices.Clone(src.attrs), func(a attrDef) bool { return !t.usesAttr(a.name) })

	st := c.f.region(c.account, c.region, true)
	st.mu.Lock()
	switch old := st.tables[t.name]; {
	case old == nil:
		st.tables[t.name] = t
	case old.status == statusCreating || old.status == statusDeleting:
		// DynamoDB: "A target table with the specified name is either
		// being created or deleted."
		derr = ddbErr(nsDynamoDB, "TableInUseException", "Table is in "+old.status+" state: "+t.name)
	default:
		derr = ddbErr(nsDynamoDB, "TableAlreadyExistsException", "Table already exists: "+t.name)
	}
	st.mu.Unlock()
	if derr != nil {
		return derr
	}
	// Answered as DynamoDB answers a restore it has taken: the table
	// CREATING, empty, the restore in progress. It is ACTIVE at once.
	writeTableDescription(c.w, "TableDescription", t, statusCreating)
	return nil
}

// overrideIndexes computes the restored table's indexes: the backup's, or
// the subset an override names (DynamoDB lets a restore drop indexes, not
// invent them), with throughput fitted to the restored table's billing mode.
func (t *table) overrideIndexes(what string, src []index, override []indexIn, overridden, global bool) ([]index, *ddbError) {
	if !overridden {
		out := slices.Clone(src)
		for i := range out {
			out[i].rcu, out[i].wcu = t.indexThroughput(src[i])
		}
		return out, nil
	}
	out := make([]index, 0, len(override))
	names := make(map[string]bool, len(override))
	for _, o := range override {
		i := slices.IndexFunc(src, func(ix index) bool { return ix.name == o.IndexName })
		if i < 0 {
			return nil, invalidParam(what + ": index " + strconv.Quote(o.IndexName) + " is not in the backup; an override can only keep or drop the backup's indexes")
		}
		if names[o.IndexName] {
			return nil, invalidParam(what + ": duplicate index name: " + o.IndexName)
		}
		names[o.IndexName] = true
		ix := src[i]
		if len(o.KeySchema) > 0 {
			keys, derr := parseKeys(what+"["+o.IndexName+"].KeySchema", o.KeySchema)
			if derr != nil {
				return nil, derr
			}
			if !slices.Equal(keys, ix.keys) {
				return nil, invalidParam(what + "[" + o.IndexName + "]: KeySchema must match the backup's")
			}
		}
		if o.Projection != nil {
			proj, derr := parseProjection(what+"["+o.IndexName+"]", o.Projection)
			if derr != nil {
				return nil, derr
			}
			ix.proj = proj
		}
		if global {
			if o.ProvisionedThroughput != nil {
				var derr *ddbError
				if ix.rcu, ix.wcu, derr = parseThroughput(what+"["+o.IndexName+"]", o.ProvisionedThroughput, t.billing); derr != nil {
					return nil, derr
				}
			} else {
				ix.rcu, ix.wcu = t.indexThroughput(ix)
			}
		}
		out = append(out, ix)
	}
	return out, nil
}

// indexThroughput is a kept index's throughput on the restored table: none
// on demand; its own, or else the table's, when provisioned.
func (t *table) indexThroughput(ix index) (rcu, wcu int64) {
	switch {
	case t.billing == billingPPR:
		return 0, 0
	case ix.rcu > 0:
		return ix.rcu, ix.wcu
	default:
		return t.rcu, t.wcu
	}
}

func (t *table) usesAttr(name string) bool {
	has := func(keys []keyElement) bool {
		return slices.ContainsFunc(keys, func(k keyElement) bool { return k.attr == name })
	}
	if has(t.keys) {
		return true
	}
	for _, ix := range t.gsis {
		if has(ix.keys) {
			return true
		}
	}
	for _, ix := range t.lsis {
		if has(ix.keys) {
			return true
		}
	}
	return false
}
