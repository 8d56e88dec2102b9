package service

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strconv"
	"strings"

	awsarn "github.com/aws/aws-sdk-go-v2/aws/arn"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Page tokens carry DynamoDB's LastEvaluatedBackupArn to the caller and back.
// They are opaque and integrity-checked, bound to the account, region and
// filters of the listing that made them: a token reused with other filters
// or altered is refused rather than silently listing the wrong thing. They
// grant nothing (every request is checked on its own), so they need no
// secret and work across replicas. Without a secret anyone can build one,
// so the ARN a token carries must also be a backup ARN in the listing's
// account, region and table: a hand-made token cannot send DynamoDB
// another account's ARN (refused as backupd's role lacking access) or a
// malformed one (refused in DynamoDB's words, not as a bad page_token).

const pageTokenVersion = 1

var errBadPageToken = errors.New("bad page token")

// listScope is what a page token is bound to.
type listScope struct {
	account, region, table, backupType string
	lower, upper                       timeBoundScope
}

// timeBoundScope is a time bound of a listing: unset, or set at unix
// nanos (the epoch included, which is not the same listing as no bound).
type timeBoundScope struct {
	set   bool
	nanos int64
}

// String is how the digest spells it: the nanos, as tokens spelled every
// bound before a bound at the epoch was told from none (so that they stay
// good across an upgrade), "0" when unset, and "=0" at the epoch, the one
// spelling that was ambiguous.
func (b timeBoundScope) String() string {
	if b.set && b.nanos == 0 {
		return "=0"
	}
	return strconv.FormatInt(b.nanos, 10)
}

func (s listScope) digest() [sha256.Size]byte {
	var b bytes.Buffer
	for _, f := range []string{s.account, s.region, s.table, s.backupType, s.lower.String(), s.upper.String()} {
		b.WriteString(f)
		b.WriteByte(0)
	}
	return sha256.Sum256(b.Bytes())
}

// encodePageToken: version byte, 8 bytes of the scope digest, the ARN, and 8
// bytes of a checksum over all of it.
func encodePageToken(scope listScope, lastARN string) string {
	d := scope.digest()
	buf := make([]byte, 0, 1+8+len(lastARN)+8)
	buf = append(buf, pageTokenVersion)
	buf = append(buf, d[:8]...)
	buf = append(buf, lastARN...)
	sum := sha256.Sum256(buf)
	buf = append(buf, sum[:8]...)
	return base64.RawURLEncoding.EncodeToString(buf)
}

// decodePageToken returns the ARN to start after, or errBadPageToken when
// the token is malformed, altered, or from another listing.
func decodePageToken(scope listScope, token string) (string, error) {
	body, err := pageTokenBody(token)
	if err != nil {
		return "", err
	}
	d := scope.digest()
	if !bytes.Equal(body[1:9], d[:8]) || !scope.holds(string(body[9:])) {
		return "", errBadPageToken
	}
	return string(body[9:]), nil
}

// pageTokenBody returns what the token encodes, or errBadPageToken when it
// is malformed or altered: whatever the listing, it is no token
// encodePageToken wrote.
func pageTokenBody(token string) ([]byte, error) {
	buf, err := base64.RawURLEncoding.DecodeString(token)
	// The decoder takes other spellings of the same bytes (line breaks,
	// other trailing bits): a token is only the one encodePageToken wrote.
	if err != nil || len(buf) < 1+8+1+8 || buf[0] != pageTokenVersion || base64.RawURLEncoding.EncodeToString(buf) != token {
		return nil, errBadPageToken
	}
	body, sum := buf[:len(buf)-8], buf[len(buf)-8:]
	want := sha256.Sum256(body)
	if binary.BigEndian.Uint64(sum) != binary.BigEndian.Uint64(want[:8]) {
		return nil, errBadPageToken
	}
	return body, nil
}

// maxBackupARN is the longest BackupArn DynamoDB's API allows.
const maxBackupARN = 1024

// holds reports whether backupARN is one the listing can return: a backup
// ARN GetBackup takes, in its account and region and of its table when it
// names one, or, for listings of AWS_BACKUP or ALL backups, an AWS Backup
// recovery point of its account and region (which names no table).
func (s listScope) holds(backupARN string) bool {
	a, err := awsarn.Parse(backupARN)
	if err != nil || a.AccountID != s.account || a.Region != s.region {
		return false
	}
	switch a.Service {
	case "dynamodb":
		var vs violations
		b, ok := parseARN(&vs, "page_token", backupARN, true)
		return ok && (s.table == "" || b.Table == s.table)
	case "backup":
		id, isPoint := strings.CutPrefix(a.Resource, "recovery-point:")
		return (s.backupType == string(types.BackupTypeFilterAwsBackup) || s.backupType == string(types.BackupTypeFilterAll)) &&
			inKnownPartition(a.Partition, a.Region) && isPoint && id != "" && len(backupARN) <= maxBackupARN && visibleASCII(a.Resource)
	}
	return false
}
