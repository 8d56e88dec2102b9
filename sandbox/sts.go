package sandbox

import (
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

const (
	stsNamespace       = "https://sts.amazonaws.com/doc/2011-06-15/"
	stsVersion         = "2011-06-15"
	contentTypeXML     = "text/xml"
	defaultSessionTime = 3600 // seconds, as STS defaults DurationSeconds
	// maxSessionDuration is the demo roles' MaxSessionDuration: IAM's
	// default of an hour, which STS holds DurationSeconds to.
	maxSessionDuration = 3600
)

// stsError is an STS ErrorResponse.
type stsError struct {
	status int
	code   string
	msg    string
}

func stsErr(status int, code, msg string) *stsError {
	return &stsError{status: status, code: code, msg: msg}
}

func stsAuthError(fail authFailure) *stsError {
	switch fail {
	case authMissing:
		return stsErr(http.StatusForbidden, "MissingAuthenticationToken", "Request is missing Authentication Token")
	case authIncomplete:
		return stsErr(http.StatusBadRequest, "IncompleteSignature", "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters, and an 'X-Amz-Date' header.")
	case authUnknownKey:
		return stsErr(http.StatusForbidden, "InvalidClientTokenId", "The security token included in the request is invalid.")
	case authExpired:
		return stsErr(http.StatusForbidden, "ExpiredToken", "The security token included in the request is expired")
	case authWrongService:
		return stsErr(http.StatusForbidden, "SignatureDoesNotMatch", "Credential should be scoped to correct service: 'sts'.")
	default:
		return stsErr(http.StatusForbidden, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.")
	}
}

func stsValidation(msg string) *stsError {
	return stsErr(http.StatusBadRequest, "ValidationError", msg)
}

func (f *Fake) serveSTS(w http.ResponseWriter, r *http.Request, body []byte, tooLarge bool, out *jsonWriter) {
	requestID := newRequestID()
	b := out.b[:0]
	var serr *stsError
	var p *principal
	fail := authOK
	if !tooLarge { // a cut-short body cannot be verified
		p, _, fail = f.authenticate(r, body, "sts")
	}
	switch {
	case tooLarge:
		serr = stsErr(http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", "request body exceeds "+strconv.Itoa(maxBodyBytes)+" bytes")
	case fail != authOK:
		serr = stsAuthError(fail)
	default:
		params, err := url.ParseQuery(string(body))
		if err != nil {
			serr = stsErr(http.StatusBadRequest, "MalformedQueryString", "cannot parse the form body: "+err.Error())
			break
		}
		for k, v := range r.URL.Query() {
			params[k] = append(params[k], v...)
		}
		action, version := params.Get("Action"), params.Get("Version")
		switch {
		case action == "":
			serr = stsErr(http.StatusBadRequest, "MissingAction", "Missing Action")
		case version != "" && version != stsVersion:
			serr = stsErr(http.StatusBadRequest, "InvalidAction", "Could not find operation "+action+" for version "+version)
		case action == "AssumeRole":
			b, serr = f.assumeRole(b, p, params, requestID)
		case action == "GetCallerIdentity":
			b = getCallerIdentity(b, p, requestID)
		default:
			serr = stsErr(http.StatusBadRequest, "InvalidAction", "Could not find operation "+action+" for version "+stsVersion)
		}
	}
	status := http.StatusOK
	if serr != nil {
		status = serr.status
		typ := "Sender"
		if status >= 500 {
			typ = "Receiver"
		}
		b = append(b[:0], `<ErrorResponse xmlns="`+stsNamespace+`"><Error>`...)
		b = xmlElem(b, "Type", typ)
		b = xmlElem(b, "Code", serr.code)
		b = xmlElem(b, "Message", serr.msg)
		b = append(b, "</Error>"...)
		b = xmlElem(b, "RequestId", requestID)
		b = append(b, "</ErrorResponse>"...)
	}
	out.b = b
	writeResponse(w, status, contentTypeXML, requestID, "", b)
}

func (f *Fake) assumeRole(b []byte, caller *principal, params url.Values, requestID string) ([]byte, *stsError) {
	f.assumeRoleCalls.Add(1)
	roleARN := params.Get("RoleArn")
	session := params.Get("RoleSessionName")
	switch {
	case roleARN == "":
		return b, stsValidation("1 validation error detected: Value null at 'roleArn' failed to satisfy constraint: Member must not be null")
	case session == "":
		return b, stsValidation("1 validation error detected: Value null at 'roleSessionName' failed to satisfy constraint: Member must not be null")
	case len(session) < 2 || len(session) > 64 || !isIAMChars(session):
		return b, stsValidation("1 validation error detected: Value '" + session + "' at 'roleSessionName' failed to satisfy constraint: Member must have length between 2 and 64 and satisfy regular expression pattern: [\\w+=,.@-]*")
	}
	duration := defaultSessionTime
	if d := params.Get("DurationSeconds"); d != "" {
		n, err := strconv.Atoi(d)
		if err != nil || n < 900 || n > 43200 {
			return b, stsValidation("1 validation error detected: Value '" + d + "' at 'durationSeconds' failed to satisfy constraint: Member must have value between 900 and 43200")
		}
		duration = n
	}
	// Only the sandbox operator is trusted by the roles; an assumed role
	// cannot chain into another account.
	acct := f.roles[roleARN]
	denied := acct == nil || caller != f.operator
	if !denied && acct.ExternalID != "" {
		denied = params.Get("ExternalId") != acct.ExternalID
	}
	if denied {
		return b, stsErr(http.StatusForbidden, "AccessDenied", "User: "+caller.arn+" is not authorized to perform: sts:AssumeRole on resource: "+roleARN)
	}
	if duration > maxSessionDuration {
		return b, stsValidation("The requested DurationSeconds exceeds the MaxSessionDuration set for this role.")
	}

	now := f.now().UTC()
	expires := now.Truncate(time.Second).Add(time.Duration(duration) * time.Second)
	arn := "arn:aws:sts::" + acct.ID + ":assumed-role/" + acct.RoleName + "/" + session
	p := newPrincipal(aws.Credentials{
		AccessKeyID:     "ASIA" + randomKeyID(),
		SecretAccessKey: randomBase64(30),
		SessionToken:    randomBase64(96),
		Source:          "sandbox",
		CanExpire:       true,
		Expires:         expires,
		AccountID:       acct.ID,
	}, acct.ID, arn, acct.roleID+":"+session, expires)
	f.addCredentials(p, now)

	b = append(b, `<AssumeRoleResponse xmlns="`+stsNamespace+`"><AssumeRoleResult><AssumedRoleUser>`...)
	b = xmlElem(b, "AssumedRoleId", p.userID)
	b = xmlElem(b, "Arn", p.arn)
	b = append(b, "</AssumedRoleUser><Credentials>"...)
	b = xmlElem(b, "AccessKeyId", p.creds.AccessKeyID)
	b = xmlElem(b, "SecretAccessKey", p.creds.SecretAccessKey)
	b = xmlElem(b, "SessionToken", p.creds.SessionToken)
	b = xmlElem(b, "Expiration", expires.Format(time.RFC3339))
	b = append(b, "</Credentials></AssumeRoleResult><ResponseMetadata>"...)
	b = xmlElem(b, "RequestId", requestID)
	b = append(b, "</ResponseMetadata></AssumeRoleResponse>"...)
	return b, nil
}

func getCallerIdentity(b []byte, p *principal, requestID string) []byte {
	b = append(b, `<GetCallerIdentityResponse xmlns="`+stsNamespace+`"><GetCallerIdentityResult>`...)
	b = xmlElem(b, "Arn", p.arn)
	b = xmlElem(b, "UserId", p.userID)
	b = xmlElem(b, "Account", p.account)
	b = append(b, "</GetCallerIdentityResult><ResponseMetadata>"...)
	b = xmlElem(b, "RequestId", requestID)
	return append(b, "</ResponseMetadata></GetCallerIdentityResponse>"...)
}

// xmlElem appends <name>text</name>, escaping text.
func xmlElem(b []byte, name, text string) []byte {
	b = append(b, '<')
	b = append(b, name...)
	b = append(b, '>')
	for i := 0; i < len(text); i++ {
		switch c := text[i]; c {
		case '&':
			b = append(b, "&amp;"...)
		case '<':
			b = append(b, "&lt;"...)
		case '>':
			b = append(b, "&gt;"...)
		case '"':
			b = append(b, "&quot;"...)
		case '\'':
			b = append(b, "&apos;"...)
		default:
			if c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
				c = '?' // not representable in XML 1.0
			}
			b = append(b, c)
		}
	}
	b = append(b, "</"...)
	b = append(b, name...)
	return append(b, '>')
}
