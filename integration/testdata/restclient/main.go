// Command restclient drives backupd's REST API through a client that
// go-swagger generates from backupd's OpenAPI description, as a team
// calling backupd over REST would: every operation, the typed error
// bodies and the Retry-After of a 429. TestGeneratedRESTClient generates
// the client beside this file (packages client and models) and runs it;
// it exits non-zero, saying why, at the first answer that is not what the
// description promises.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-openapi/runtime"
	httptransport "github.com/go-openapi/runtime/client"
	"github.com/go-openapi/strfmt"

	"backupd.test/restclient/client"
	"backupd.test/restclient/client/backup_service"
	"backupd.test/restclient/models"
)

func main() {
	base := flag.String("url", "", "backupd's HTTP base URL")
	token := flag.String("token", "", "a caller token allowed every operation")
	reader := flag.String("reader-token", "", "a caller token allowed only GetBackup and ListBackups")
	account := flag.String("account", "", "a configured account with the table")
	slow := flag.String("slow-account", "", "a configured account whose CreateBackup rate is low")
	table := flag.String("table", "", "a table in both accounts")
	flag.Parse()
	u, err := url.Parse(*base)
	if err != nil {
		log.Fatal(err)
	}
	c := checks{
		api:    client.NewHTTPClientWithConfig(strfmt.Default, client.DefaultTransportConfig().WithHost(u.Host).WithSchemes([]string{u.Scheme})).BackupService,
		auth:   httptransport.BearerToken(*token),
		reader: httptransport.BearerToken(*reader),
		ctx:    context.Background(),
	}
	arn := c.create(*account, *table)
	c.get(arn)
	c.list(*account, *table, arn, c.createAnother(*account, *table))
	c.restore(arn)
	c.refusals(*account, *table)
	c.rateLimited(*slow, *table)
	c.delete(arn)
	fmt.Println("all checks passed")
}

type checks struct {
	api          backup_service.ClientService
	auth, reader runtime.ClientAuthInfoWriter
	ctx          context.Context
}

func (c checks) create(account, table string) string {
	body := &models.BackupServiceCreateBackupBody{BackupName: new("generated-rest"), RequestID: "rest-client-" + time.Now().Format("150405.000000")}
	params := backup_service.NewBackupServiceCreateBackupParamsWithContext(c.ctx).WithAccountID(account).WithTableName(table).WithBody(body)
	ok, err := c.api.BackupServiceCreateBackup(params, c.auth)
	if err != nil {
		log.Fatalf("CreateBackup: %v", describe(err))
	}
	again, err := c.api.BackupServiceCreateBackup(params, c.auth)
	if err != nil {
		log.Fatalf("CreateBackup repeated with its request_id: %v", describe(err))
	}
	d := ok.Payload.BackupDetails
	valid("CreateBackup", ok.Payload)
	switch {
	case !strings.Contains(*d.BackupArn, ":"+account+":table/"+table+"/backup/"):
		log.Fatalf("CreateBackup: ARN %s is not of table %s in account %s", *d.BackupArn, table, account)
	case *d.BackupName != "generated-rest" || *d.BackupType != models.V1BackupTypeBACKUPTYPEUSER:
		log.Fatalf("CreateBackup: details %+v", d)
	case time.Time(*ok.Payload.Consistency.IncludesWritesBefore).After(time.Time(*ok.Payload.Consistency.ExcludesWritesAfter)):
		log.Fatalf("CreateBackup: consistency window from %v to %v", ok.Payload.Consistency.IncludesWritesBefore, ok.Payload.Consistency.ExcludesWritesAfter)
	case *again.Payload.BackupDetails.BackupArn != *d.BackupArn:
		log.Fatalf("CreateBackup repeated with its request_id made %s, not %s again", *again.Payload.BackupDetails.BackupArn, *d.BackupArn)
	}
	fmt.Printf("CreateBackup: %s, %s\n", *d.BackupArn, *d.BackupStatus)
	return *d.BackupArn
}

// createAnother makes a second backup, so that listing one backup a page
// takes two pages.
func (c checks) createAnother(account, table string) string {
	body := &models.BackupServiceCreateBackupBody{BackupName: new("generated-rest-2")}
	ok, err := c.api.BackupServiceCreateBackup(
		backup_service.NewBackupServiceCreateBackupParamsWithContext(c.ctx).WithAccountID(account).WithTableName(table).WithBody(body), c.auth)
	if err != nil {
		log.Fatalf("CreateBackup: %v", describe(err))
	}
	return *ok.Payload.BackupDetails.BackupArn
}

func (c checks) get(arn string) {
	// The ARN goes in unchanged: the client escapes its slashes and colons.
	ok, err := c.api.BackupServiceGetBackup(backup_service.NewBackupServiceGetBackupParamsWithContext(c.ctx).WithBackupArn(arn), c.reader)
	if err != nil {
		log.Fatalf("GetBackup: %v", describe(err))
	}
	valid("GetBackup", ok.Payload)
	d := ok.Payload.BackupDescription.BackupDetails
	if d == nil || *d.BackupArn != arn {
		log.Fatalf("GetBackup(%s) answered %+v", arn, ok.Payload.BackupDescription)
	}
	fmt.Printf("GetBackup: %s\n", *d.BackupStatus)
}

// list pages one backup at a time through the table's backups made since a
// minute ago, with a time filter the client writes: the two backups made,
// each once, on two pages.
func (c checks) list(account, table string, arns ...string) {
	since := strfmt.DateTime(time.Now().Add(-time.Minute))
	params := backup_service.NewBackupServiceListBackupsParamsWithContext(c.ctx).WithAccountID(account).
		WithTableName(&table).WithPageSize(new(int32(1))).WithTimeRangeLowerBound(&since)
	var seen []string
	for page := 1; ; page++ {
		ok, err := c.api.BackupServiceListBackups(params, c.reader)
		if err != nil {
			log.Fatalf("ListBackups page %d: %v", page, describe(err))
		}
		valid("ListBackups", ok.Payload)
		for _, s := range ok.Payload.BackupSummaries {
			seen = append(seen, *s.BackupArn)
		}
		if *ok.Payload.NextPageToken == "" || page == 100 {
			break
		}
		params = params.WithPageToken(ok.Payload.NextPageToken)
	}
	slices.Sort(seen)
	slices.Sort(arns)
	if !slices.Equal(seen, arns) {
		log.Fatalf("ListBackups: pages gave %v; want %v, each once", seen, arns)
	}
	fmt.Printf("ListBackups: %d backups, one page each\n", len(seen))
}

func (c checks) restore(arn string) {
	target := "restored-" + time.Now().Format("150405")
	body := &models.BackupServiceRestoreTableFromBackupBody{TargetTableName: &target}
	ok, err := c.api.BackupServiceRestoreTableFromBackup(
		backup_service.NewBackupServiceRestoreTableFromBackupParamsWithContext(c.ctx).WithBackupArn(arn).WithBody(body), c.auth)
	if err != nil {
		log.Fatalf("RestoreTableFromBackup: %v", describe(err))
	}
	valid("RestoreTableFromBackup", ok.Payload)
	if *ok.Payload.TableDescription.TableName != target {
		log.Fatalf("RestoreTableFromBackup: table %s, want %s", *ok.Payload.TableDescription.TableName, target)
	}
	fmt.Printf("RestoreTableFromBackup: %s\n", target)
}

func (c checks) delete(arn string) {
	ok, err := c.api.BackupServiceDeleteBackup(backup_service.NewBackupServiceDeleteBackupParamsWithContext(c.ctx).WithBackupArn(arn), c.auth)
	if err != nil {
		log.Fatalf("DeleteBackup: %v", describe(err))
	}
	valid("DeleteBackup", ok.Payload)
	if b := ok.Payload.BackupDescription; b == nil || b.BackupDetails == nil || *b.BackupDetails.BackupStatus != models.V1BackupStatusBACKUPSTATUSDELETED {
		log.Fatalf("DeleteBackup: %+v; want status BACKUP_STATUS_DELETED", ok.Payload.BackupDescription)
	}
	_, err = c.api.BackupServiceGetBackup(backup_service.NewBackupServiceGetBackupParamsWithContext(c.ctx).WithBackupArn(arn), c.reader)
	if nf, ok := errors.AsType[*backup_service.BackupServiceGetBackupNotFound](err); !ok || reason(nf.Payload) != "BACKUP_NOT_FOUND" {
		log.Fatalf("GetBackup after DeleteBackup: %v; want 404 BACKUP_NOT_FOUND", describe(err))
	}
	fmt.Println("DeleteBackup: deleted, then 404")
}

// refusals reads backupd's errors as the typed responses the description
// declares, each with its google.rpc details.
func (c checks) refusals(account, table string) {
	params := func(name string) *backup_service.BackupServiceCreateBackupParams {
		return backup_service.NewBackupServiceCreateBackupParamsWithContext(c.ctx).WithAccountID(account).WithTableName(table).
			WithBody(&models.BackupServiceCreateBackupBody{BackupName: &name})
	}
	_, err := c.api.BackupServiceCreateBackup(params("ab"), c.auth)
	bad, ok := errors.AsType[*backup_service.BackupServiceCreateBackupBadRequest](err)
	if !ok || bad.Payload.Code != 3 || !slices.Contains(violations(bad.Payload), "backup_name") {
		log.Fatalf("CreateBackup of a 2-character name: %v; want 400 with a field violation of backup_name", describe(err))
	}
	_, err = c.api.BackupServiceCreateBackup(params("no-token"), nil)
	if unauth, ok := errors.AsType[*backup_service.BackupServiceCreateBackupUnauthorized](err); !ok || unauth.Payload.Code != 16 {
		log.Fatalf("CreateBackup without a token: %v; want 401", describe(err))
	}
	_, err = c.api.BackupServiceCreateBackup(params("reader"), c.reader)
	if denied, ok := errors.AsType[*backup_service.BackupServiceCreateBackupForbidden](err); !ok || reason(denied.Payload) != "CALLER_NOT_ALLOWED" {
		log.Fatalf("CreateBackup with the reader's token: %v; want 403 CALLER_NOT_ALLOWED", describe(err))
	}
	_, err = c.api.BackupServiceCreateBackup(params("no-table").WithTableName("NoSuchTable"), c.auth)
	if nf, ok := errors.AsType[*backup_service.BackupServiceCreateBackupNotFound](err); !ok || reason(nf.Payload) != "TABLE_NOT_FOUND" {
		log.Fatalf("CreateBackup of a missing table: %v; want 404 TABLE_NOT_FOUND", describe(err))
	}
	fmt.Println("refusals: 400 with its field violation, 401, 403, 404, each typed")
}

// rateLimited makes CreateBackup calls on the slow account until one is
// refused: 429, with its Retry-After header read into the response.
func (c checks) rateLimited(account, table string) {
	for i := range 5 {
		name := fmt.Sprintf("rate-%d", i)
		params := backup_service.NewBackupServiceCreateBackupParamsWithContext(c.ctx).WithAccountID(account).WithTableName(table).
			WithBody(&models.BackupServiceCreateBackupBody{BackupName: &name}).WithGrpcTimeout(new("100m"))
		_, err := c.api.BackupServiceCreateBackup(params, c.auth)
		if limited, ok := errors.AsType[*backup_service.BackupServiceCreateBackupTooManyRequests](err); ok {
			if limited.RetryAfter < 1 || reason(limited.Payload) != "RATE_LIMITED" {
				log.Fatalf("CreateBackup over the rate: Retry-After %d, %v; want at least 1 and RATE_LIMITED", limited.RetryAfter, describe(err))
			}
			fmt.Printf("rate limit: 429 after %d calls, Retry-After %d s\n", i, limited.RetryAfter)
			return
		}
		if err != nil {
			log.Fatalf("CreateBackup on the slow account: %v", describe(err))
		}
	}
	log.Fatal("5 CreateBackup calls on the slow account: none refused")
}

// valid checks an answer against the description's own rules (required
// fields, patterns, enums), as a client that validates responses would.
func valid(op string, v interface{ Validate(strfmt.Registry) error }) {
	if err := v.Validate(strfmt.Default); err != nil {
		log.Fatalf("%s: the answer breaks the OpenAPI description: %v", op, err)
	}
}

// reason is the ErrorInfo reason among st's details.
func reason(st *models.RPCStatus) string {
	for _, d := range st.Details {
		if d.AtType == "type.googleapis.com/google.rpc.ErrorInfo" {
			r, _ := d.ProtobufAnyAdditionalProperties["reason"].(string)
			return r
		}
	}
	return ""
}

// violations lists the fields a google.rpc.BadRequest among st's details
// names.
func violations(st *models.RPCStatus) []string {
	var fields []string
	for _, d := range st.Details {
		if d.AtType != "type.googleapis.com/google.rpc.BadRequest" {
			continue
		}
		vs, _ := d.ProtobufAnyAdditionalProperties["fieldViolations"].([]any)
		for _, v := range vs {
			if m, ok := v.(map[string]any); ok {
				f, _ := m["field"].(string)
				fields = append(fields, f)
			}
		}
	}
	return fields
}

// describe gives an error with the body of a typed error response, which
// go-swagger's own message leaves out.
func describe(err error) string {
	if p, ok := err.(interface{ GetPayload() *models.RPCStatus }); ok && p.GetPayload() != nil {
		return fmt.Sprintf("%v: %d %s (%s)", err, p.GetPayload().Code, p.GetPayload().Message, reason(p.GetPayload()))
	}
	return fmt.Sprint(err)
}
