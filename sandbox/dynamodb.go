package sandbox

import (
	"encoding/json"
	"hash/crc32"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// DynamoDB error type namespaces, as DynamoDB puts them in "__type". The SDK
// strips everything up to '#' and maps the rest to its typed errors.
const (
	nsDynamoDB = "com.amazonaws.dynamodb.v20120810#"
	nsCoral    = "com.amazon.coral.service#"
	nsValidate = "com.amazon.coral.validate#"
)

const targetPrefix = "DynamoDB_20120810."

const contentTypeJSON10 = "application/x-amz-json-1.0"

// ddbError is a DynamoDB error response: always HTTP 400, as DynamoDB sends
// client errors.
type ddbError struct {
	typ string // the full "__type"
	msg string
}

func ddbErr(ns, code, msg string) *ddbError { return &ddbError{typ: ns + code, msg: msg} }

func validationErr(msg string) *ddbError { return ddbErr(nsValidate, "ValidationException", msg) }

func (f *Fake) dynamoDBAuthError(fail authFailure) *ddbError {
	switch fail {
	case authMissing:
		return ddbErr(nsCoral, "MissingAuthenticationTokenException", "Request is missing Authentication Token")
	case authIncomplete:
		return ddbErr(nsCoral, "IncompleteSignatureException", "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters, and an 'X-Amz-Date' header.")
	case authUnknownKey:
		return ddbErr(nsCoral, "UnrecognizedClientException", "The security token included in the request is invalid.")
	case authExpired:
		return ddbErr(nsCoral, "ExpiredTokenException", "The security token included in the request is expired")
	case authWrongService:
		return ddbErr(nsCoral, "InvalidSignatureException", "Credential should be scoped to correct service: 'dynamodb'.")
	default:
		return ddbErr(nsCoral, "InvalidSignatureException", "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.")
	}
}

// ddbCall is one authenticated DynamoDB request.
type ddbCall struct {
	f       *Fake
	p       *principal
	account string
	region  string
	op      string
	body    []byte
	w       *jsonWriter
}

func (f *Fake) serveDynamoDB(w http.ResponseWriter, r *http.Request, target string, body []byte, tooLarge bool, out *jsonWriter) {
	requestID := newRequestID()
	var derr *ddbError
	var p *principal
	var region string
	fail := authOK
	if !tooLarge { // a cut-short body cannot be verified
		p, region, fail = f.authenticate(r, body, "dynamodb")
	}
	op, known := strings.CutPrefix(target, targetPrefix)
	switch {
	case tooLarge:
		derr = ddbErr(nsCoral, "SerializationException", "request body exceeds "+strconv.Itoa(maxBodyBytes)+" bytes")
	case fail != authOK:
		derr = f.dynamoDBAuthError(fail)
	case !known:
		derr = ddbErr(nsCoral, "UnknownOperationException", "unknown target "+target)
	default:
		c := &ddbCall{f: f, p: p, account: p.account, region: region, op: op, body: body, w: out}
		out.open()
		switch op {
		case "CreateTable":
			derr = c.createTable()
		case "DescribeTable":
			derr = c.describeTable()
		case "ListTables":
			derr = c.listTables()
		case "DeleteTable":
			derr = c.deleteTable()
		case "CreateBackup":
			derr = c.createBackup()
		case "DescribeBackup":
			derr = c.answerBackup(false)
		case "ListBackups":
			derr = c.listBackups()
		case "DeleteBackup":
			derr = c.answerBackup(true)
		case "RestoreTableFromBackup":
			derr = c.restoreTableFromBackup()
		default:
			derr = ddbErr(nsCoral, "UnknownOperationException", "the sandbox does not implement DynamoDB operation "+op)
		}
		out.close()
	}
	status := http.StatusOK
	if derr != nil {
		status = http.StatusBadRequest
		out.reset()
		out.open()
		out.str("__type", derr.typ)
		out.str("message", derr.msg)
		out.close()
	}
	b := out.bytes()
	writeResponse(w, status, contentTypeJSON10, requestID, strconv.FormatUint(uint64(crc32.ChecksumIEEE(b)), 10), b)
}

// decode unmarshals the request body; DynamoDB answers malformed JSON with a
// SerializationException.
func (c *ddbCall) decode(v any) *ddbError {
	body := c.body
	if len(body) == 0 {
		body = []byte("{}")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return ddbErr(nsCoral, "SerializationException", "cannot parse request body: "+err.Error())
	}
	return nil
}

func (c *ddbCall) accessDenied(resource string) *ddbError {
	return ddbErr(nsCoral, "AccessDeniedException", "User: "+c.p.arn+" is not authorized to perform: dynamodb:"+c.op+" on resource: "+resource+" because no resource-based policy allows the dynamodb:"+c.op+" action")
}

// nameError explains why v, given for field, is not a valid DynamoDB name,
// in DynamoDB's words; nil when it is valid.
func nameError(field, v string) *ddbError {
	var constraint string
	switch {
	case v == "":
		return validationErr("1 validation error detected: Value null at '" + field + "' failed to satisfy constraint: Member must not be null")
	case len(v) < 3:
		constraint = "Member must have length greater than or equal to 3"
	case len(v) > 255:
		constraint = "Member must have length less than or equal to 255"
	case !isName(v):
		constraint = "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"
	default:
		return nil
	}
	return validationErr("1 validation error detected: Value '" + v + "' at '" + field + "' failed to satisfy constraint: " + constraint)
}

// arnParts splits arn:partition:dynamodb:region:account:resource.
func arnParts(arn string) (region, account, resource string, ok bool) {
	rest, ok := strings.CutPrefix(arn, "arn:")
	if !ok {
		return "", "", "", false
	}
	var partition, service string
	partition, rest, _ = strings.Cut(rest, ":")
	service, rest, _ = strings.Cut(rest, ":")
	region, rest, _ = strings.Cut(rest, ":")
	account, resource, ok = strings.Cut(rest, ":")
	if !ok || !strings.HasPrefix(partition, "aws") || service != "dynamodb" || !isRegion(region) || !isAccountID(account) {
		return "", "", "", false
	}
	return region, account, resource, true
}

// resolveTable turns a TableName parameter, a name or a table ARN, into a
// table name in the caller's account and region. It returns "" (and no
// error) for an ARN in another region of the caller's account: such a table
// is not found here. An ARN in another account is refused, so that accounts
// stay apart.
func (c *ddbCall) resolveTable(field, v string) (string, *ddbError) {
	if !strings.HasPrefix(v, "arn:") {
		return v, nameError(field, v)
	}
	region, account, resource, ok := arnParts(v)
	name, isTable := strings.CutPrefix(resource, "table/")
	if !ok || !isTable || !isName(name) {
		return "", validationErr("Invalid TableArn: " + v + ": a table ARN has the form arn:aws:dynamodb:<region>:<account>:table/<name>")
	}
	if account != c.account {
		return "", c.accessDenied(v)
	}
	if region != c.region {
		return "", nil
	}
	return name, nil
}

// backupRef parses a BackupArn parameter. It returns the creation time in
// Unix milliseconds encoded in the ARN, which places it in ListBackups'
// order even after the backup is gone. It takes the ids backupd takes
// (digits, a dash, hex in either case), which moto answers as not found
// when it has none such, rather than refusing those the fake would not
// make.
func (c *ddbCall) backupRef(field, v string) (ms int64, here bool, derr *ddbError) {
	if v == "" {
		return 0, false, validationErr("1 validation error detected: Value null at '" + field + "' failed to satisfy constraint: Member must not be null")
	}
	region, account, resource, ok := arnParts(v)
	var table, id string
	if ok {
		var rest string
		table, rest, _ = strings.Cut(strings.TrimPrefix(resource, "table/"), "/")
		id, ok = strings.CutPrefix(rest, "backup/")
		ok = ok && strings.HasPrefix(resource, "table/") && isName(table)
	}
	var digits, suffix string
	if ok {
		digits, suffix, ok = strings.Cut(id, "-")
	}
	if ok {
		// More digits than an int64 holds is ErrRange, with ms the
		// largest int64: after every backup the fake makes, none of
		// which it is.
		ms, _ = strconv.ParseInt(digits, 10, 64)
		ok = allDigits(digits) && isHex(suffix)
	}
	if !ok {
		return 0, false, validationErr("Invalid BackupArn: " + v)
	}
	if account != c.account {
		return 0, false, c.accessDenied(v)
	}
	return ms, region == c.region, nil
}

func isHex(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func tableNotFound(name string) *ddbError {
	return ddbErr(nsDynamoDB, "TableNotFoundException", "Table not found: "+name)
}

func resourceNotFound(name string) *ddbError {
	return ddbErr(nsDynamoDB, "ResourceNotFoundException", "Requested resource not found: Table: "+name+" not found")
}

func backupNotFound(arn string) *ddbError {
	return ddbErr(nsDynamoDB, "BackupNotFoundException", "Backup not found: "+arn)
}

// lookupTable finds a table by name or ARN; notFound builds the operation's
// own not-found error.
func (c *ddbCall) lookupTable(field, v string, notFound func(string) *ddbError) (*table, *ddbError) {
	name, derr := c.resolveTable(field, v)
	if derr != nil {
		return nil, derr
	}
	st := c.f.region(c.account, c.region, false)
	if name == "" || st == nil {
		return nil, notFound(v)
	}
	st.mu.RLock()
	t := st.tables[name]
	st.mu.RUnlock()
	if t == nil {
		return nil, notFound(v)
	}
	return t, nil
}

type tableNameInput struct {
	TableName string
}

func (c *ddbCall) describeTable() *ddbError {
	var in tableNameInput
	if derr := c.decode(&in); derr != nil {
		return derr
	}
	t, derr := c.lookupTable("tableName", in.TableName, resourceNotFound)
	if derr != nil {
		return derr
	}
	writeTableDescription(c.w, "Table", t, t.status)
	return nil
}

// pageLimit is a listing's Limit, 100 when absent, refused as DynamoDB
// refuses it outside 1-100.
func pageLimit(l *int) (int, *ddbError) {
	if l == nil {
		return 100, nil
	}
	if *l < 1 || *l > 100 {
		return 0, validationErr("1 validation error detected: Value '" + strconv.Itoa(*l) + "' at 'limit' failed to satisfy constraint: Member must have value between 1 and 100")
	}
	return *l, nil
}

func (c *ddbCall) listTables() *ddbError {
	var in struct {
		ExclusiveStartTableName string
		Limit                   *int
	}
	if derr := c.decode(&in); derr != nil {
		return derr
	}
	limit, derr := pageLimit(in.Limit)
	if derr != nil {
		return derr
	}
	var names []string
	if st := c.f.region(c.account, c.region, false); st != nil {
		st.mu.RLock()
		names = make([]string, 0, len(st.tables))
		for name := range st.tables {
			if name > in.ExclusiveStartTableName {
				names = append(names, name)
			}
		}
		st.mu.RUnlock()
	}
	slices.Sort(names)
	more := len(names) > limit
	if more {
		names = names[:limit]
	}
	c.w.array("TableNames")
	for _, n := range names {
		c.w.strElem(n)
	}
	c.w.closeArray()
	if more {
		c.w.str("LastEvaluatedTableName", names[len(names)-1])
	}
	return nil
}

func (c *ddbCall) deleteTable() *ddbError {
	var in tableNameInput
	if derr := c.decode(&in); derr != nil {
		return derr
	}
	name, derr := c.resolveTable("tableName", in.TableName)
	if derr != nil {
		return derr
	}
	st := c.f.region(c.account, c.region, false)
	if name == "" || st == nil {
		return resourceNotFound(in.TableName)
	}
	st.mu.Lock()
	t := st.tables[name]
	switch {
	case t == nil:
		derr = resourceNotFound(in.TableName)
	case t.status != statusActive:
		derr = ddbErr(nsDynamoDB, "ResourceInUseException", "Attempt to change a resource which is still in use: Table is in "+t.status+" state: "+name)
	case st.creating(t, c.f.clock()):
		// DynamoDB does not delete the source table of a backup in
		// progress.
		derr = ddbErr(nsDynamoDB, "ResourceInUseException", "Attempt to change a resource which is still in use: a backup of the table is in progress: "+name)
	default:
		// Backups outlive their table, as in DynamoDB.
		delete(st.tables, name)
	}
	st.mu.Unlock()
	if derr != nil {
		return derr
	}
	writeTableDescription(c.w, "TableDescription", t, statusDeleting)
	return nil
}

func (c *ddbCall) createBackup() *ddbError {
	var in struct {
		TableName  string
		BackupName string
	}
	if derr := c.decode(&in); derr != nil {
		return derr
	}
	if derr := nameError("backupName", in.BackupName); derr != nil {
		return derr
	}
	name, derr := c.resolveTable("tableName", in.TableName)
	if derr != nil {
		return derr
	}
	st := c.f.region(c.account, c.region, false)
	if name == "" || st == nil {
		return tableNotFound(in.TableName)
	}
	now := c.f.clock()
	b := &backup{name: in.BackupName, ms: now.UnixMilli(), created: now, typ: backupTypeUser}

	st.mu.Lock()
	t := st.tables[name]
	switch {
	case t == nil:
		derr = tableNotFound(in.TableName)
	case t.status != statusActive:
		derr = ddbErr(nsDynamoDB, "TableInUseException", "Table is in "+t.status+" state: "+name)
	case st.creating(t, now):
		// DynamoDB takes one backup of a table at a time: another
		// CreateBackup meanwhile is BackupInUseException.
		derr = backupInUse()
	default:
		b.src, b.ready = t, now.Add(t.backupTakes)
		for b.arn == "" || st.backups[b.arn] != nil {
			b.arn = backupARN(t.arn, b.ms)
		}
		st.insert(b)
	}
	st.mu.Unlock()
	if derr != nil {
		return derr
	}
	writeBackupDetails(c.w, b, b.status(now))
	return nil
}

type backupARNInput struct {
	BackupArn string
}

// answerBackup is DescribeBackup (remove false) and DeleteBackup (remove
// true): it finds the backup the input names, removing it when remove is
// set, and writes its description: with its status, or DELETED.
func (c *ddbCall) answerBackup(remove bool) *ddbError {
	var in backupARNInput
	if derr := c.decode(&in); derr != nil {
		return derr
	}
	b, derr := c.lookupBackup(in.BackupArn, remove)
	if derr != nil {
		return derr
	}
	status := backupDeleted
	if !remove {
		status = b.status(c.f.clock())
	}
	writeBackupDescription(c.w, b, status)
	return nil
}

// lookupBackup finds a backup of the caller's account and region, removing
// it when remove is set: one still being made cannot be removed
// (BackupInUseException).
func (c *ddbCall) lookupBackup(arn string, remove bool) (*backup, *ddbError) {
	_, here, derr := c.backupRef("backupArn", arn)
	if derr != nil {
		return nil, derr
	}
	st := c.f.region(c.account, c.region, false)
	if !here || st == nil {
		return nil, backupNotFound(arn)
	}
	var b *backup
	if remove {
		st.mu.Lock()
		b = st.backups[arn]
		switch {
		case b == nil:
		case b.creating(c.f.clock()):
			derr = backupInUse()
		default:
			st.remove(b)
		}
		st.mu.Unlock()
	} else {
		st.mu.RLock()
		b = st.backups[arn]
		st.mu.RUnlock()
	}
	switch {
	case derr != nil:
		return nil, derr
	case b == nil:
		return nil, backupNotFound(arn)
	}
	return b, nil
}

func (c *ddbCall) listBackups() *ddbError {
	var in struct {
		TableName               string
		Limit                   *int
		TimeRangeLowerBound     json.Number
		TimeRangeUpperBound     json.Number
		ExclusiveStartBackupArn string
		BackupType              string
	}
	if derr := c.decode(&in); derr != nil {
		return derr
	}
	limit, derr := pageLimit(in.Limit)
	if derr != nil {
		return derr
	}
	user := true // which types match: all fake backups are USER backups
	switch in.BackupType {
	case "", "USER", "ALL":
	case "SYSTEM", "AWS_BACKUP":
		user = false
	default:
		return validationErr("1 validation error detected: Value '" + in.BackupType + "' at 'backupType' failed to satisfy constraint: Member must satisfy enum value set: [USER, SYSTEM, AWS_BACKUP, ALL]")
	}
	lower, upper, derr := timeRange(in.TimeRangeLowerBound, in.TimeRangeUpperBound)
	if derr != nil {
		return derr
	}
	var tableName string
	if in.TableName != "" {
		name, derr := c.resolveTable("tableName", in.TableName)
		if derr != nil {
			return derr
		}
		if name == "" {
			user = false // a table of another region has no backups here
		}
		tableName = name
	}
	var startMS int64
	var startARN string
	if in.ExclusiveStartBackupArn != "" {
		ms, _, derr := c.backupRef("exclusiveStartBackupArn", in.ExclusiveStartBackupArn)
		if derr != nil {
			return derr
		}
		startMS, startARN = ms, in.ExclusiveStartBackupArn
	}

	var page []*backup
	var more bool
	if st := c.f.region(c.account, c.region, false); st != nil && user {
		page, more = st.page(lower, upper, startMS, startARN, tableName, limit)
	}
	c.w.array("BackupSummaries")
	now := c.f.clock()
	for _, b := range page {
		writeBackupSummary(c.w, b, now)
	}
	c.w.closeArray()
	if more {
		c.w.str("LastEvaluatedBackupArn", page[len(page)-1].arn)
	}
	return nil
}

// timeRange is ListBackups' [lower, upper) in milliseconds; a bound left
// out is open.
func timeRange(lowerBound, upperBound json.Number) (lower, upper int64, derr *ddbError) {
	lower, upper = int64(-1<<63), int64(1<<63-1)
	if lowerBound != "" {
		ms, ok := epochMillis(string(lowerBound))
		if !ok {
			return 0, 0, validationErr("TimeRangeLowerBound is not a timestamp: " + string(lowerBound))
		}
		lower = ms
	}
	if upperBound != "" {
		ms, ok := epochMillis(string(upperBound))
		if !ok {
			return 0, 0, validationErr("TimeRangeUpperBound is not a timestamp: " + string(upperBound))
		}
		upper = ms
	}
	if lower >= upper {
		return 0, 0, validationErr("TimeRangeLowerBound must be earlier than TimeRangeUpperBound")
	}
	return lower, upper, nil
}

// page is up to limit backups created in [lower, upper), of tableName
// when it is set, after the exclusive start (startMS, startARN) when it is
// set, and whether more follow.
func (st *regionState) page(lower, upper, startMS int64, startARN, tableName string, limit int) ([]*backup, bool) {
	page := make([]*backup, 0, min(limit, 16))
	st.mu.RLock()
	defer st.mu.RUnlock()
	// Start after the exclusive start, or at the lower bound; the ARN
	// need not exist any more, so a deletion never breaks paging.
	i, _ := searchBackups(st.ordered, lower, "")
	if startARN != "" {
		j, found := searchBackups(st.ordered, startMS, startARN)
		if found {
			j++
		}
		i = max(i, j)
	}
	for ; i < len(st.ordered); i++ {
		b := st.ordered[i]
		if b.ms >= upper {
			break
		}
		if tableName != "" && b.src.name != tableName {
			continue
		}
		if len(page) == limit {
			return page, true
		}
		page = append(page, b)
	}
	return page, false
}

// searchBackups returns the position of (ms, arn) in ordered and whether a
// backup is there.
func searchBackups(ordered []*backup, ms int64, arn string) (int, bool) {
	lo, hi := 0, len(ordered)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if backupOrder(ordered[m], ms, arn) < 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < len(ordered) && ordered[lo].ms == ms && ordered[lo].arn == arn
}

// epochMillis parses a JSON number of epoch seconds, as the SDK sends
// timestamps, into Unix milliseconds: exactly when it has at most three
// decimals, rounded otherwise. Times before 1970 are refused.
func epochMillis(s string) (int64, bool) {
	whole, frac, hasFrac := strings.Cut(s, ".")
	if allDigits(whole) && len(whole) <= 12 && (!hasFrac || len(frac) <= 3 && allDigits(frac)) {
		sec, _ := strconv.ParseInt(whole, 10, 64)
		ms := sec * 1000
		for i, scale := 0, int64(100); i < len(frac); i, scale = i+1, scale/10 {
			ms += int64(frac[i]-'0') * scale
		}
		return ms, true
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || !(v >= 0 && v < 1e13) { // also refuses NaN
		return 0, false
	}
	return int64(math.Round(v * 1000)), true
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
