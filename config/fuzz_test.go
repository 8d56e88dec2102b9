package config

import (
	"bytes"
	"math"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/backupd/backupd/awsname"

	"go.yaml.in/yaml/v3"
)

// problemLine is how every line of Parse's error begins: a field path
// ("accounts[0].limits.create_backup: "), a YAML line ("line 3: "), or
// the YAML parser's own error ("config: yaml: ...").
var problemLine = regexp.MustCompile(`^(line \d+: |config: |[a-z_0-9]+(\[\d+\])?(\.[a-z_0-9]+(\[\d+\])?)*: )`)

var typeErrorLine = regexp.MustCompile(`^line \d+: cannot unmarshal `)

// FuzzParse: Parse never panics; each line of its error names a field
// (or a line of the file) and repeats no secret the file holds (an
// ExternalId, the Redis password, a token hash); a configuration it
// takes is one backupd can run: valid ids and regions, positive
// durations, and finite rates in (0, 10000] whose spacing between calls
// is a positive duration, which the rate limiters divide a second by.
func FuzzParse(f *testing.F) {
	f.Add([]byte(validYAML))
	f.Add([]byte(validYAML + `
upstream_timeout: 5s
shutdown_timeout: 0s
log: {format: text, level: DEBUG}
shared_state:
  backend: redis
  redis: {address: "localhost:6379", password: hunter2-secret, db: -1}
callers:
  - name: orders
    token_sha256: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
    accounts: ["111111111111", "*"]
    operations: [CreateBackup, Nope]
  - name: orders
    token_sha256: NOT-A-HASH-secret-value
    accounts: []
`))
	f.Add([]byte(`accounts: [{id: 1, role_arn: arn:aws:iam::1:role/x, external_id: "a b c secret", limits: {create_backup: 0, list_backups: 1e400}}]`))
	f.Add([]byte("accounts:\n  - id: \"111111111111\"\n    id: \"222222222222\"\n"))
	f.Add([]byte("listen: {grpc: ':http', http: '[::1]:99999'}\nmax_wait: -1s\ndrain_delay: 1h\nnope: 1\naccounts: [{id: '111111111111', role_arn: 'arn:aws:iam::111111111111:role/r', allowed_regions: [eu-west-1]}]"))
	f.Add([]byte("&a [*a]"))
	f.Add([]byte("shared_state: {backend: redis, redis: {address: 'h:1', password: !!int s3cret-pw}}\naccounts: [{id: !!int x, role_arn: arn:aws:iam::1:role/x, allowed_regions: [\"\u00e9\", !!bool y]}]\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		// Parse reads the TLS files a configuration names: keep it away
		// from devices and the like, which may never end.
		for _, p := range []string{"/dev", "/proc", "/sys", "/run", "/var", "file:"} {
			if bytes.Contains(data, []byte(p)) {
				return
			}
		}
		c, err := Parse(bytes.NewReader(data))
		if err != nil {
			checkProblems(t, data, err)
			return
		}
		checkRunnable(t, c)
		checkFileValuesKept(t, data, c)
	})
}

func checkProblems(t *testing.T, data []byte, err error) {
	t.Helper()
	text := err.Error()
	problems := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		problems = j.Unwrap()
	}
	for _, p := range problems {
		if !problemLine.MatchString(p.Error()) {
			t.Errorf("problem names no field: %q\n(input %q)", p.Error(), data)
		}
		// yaml's own type errors quote the value cut at a byte count,
		// which may split a character; backupd's own problems are whole.
		if !utf8.ValidString(p.Error()) && !typeErrorLine.MatchString(p.Error()) {
			t.Errorf("problem is not valid UTF-8: %q", p.Error())
		}
	}
	var loose Config
	if yaml.Unmarshal(data, &loose) != nil {
		return
	}
	secrets := []string{loose.SharedState.Redis.Password}
	for _, a := range loose.Accounts {
		secrets = append(secrets, a.ExternalID)
	}
	for _, c := range loose.Callers {
		secrets = append(secrets, c.TokenSHA256)
	}
	for _, s := range secrets {
		if len(s) < 8 || !strings.Contains(text, s) || bytes.Count(data, []byte(s)) != 1 {
			continue
		}
		// It may be in the text by chance ("role/backupd"): put a marker
		// in its place, and see whether the marker is repeated.
		marker := strings.Repeat("Q", len(s))
		if bytes.Contains(data, []byte(marker)) {
			continue
		}
		_, err := Parse(bytes.NewReader(bytes.Replace(data, []byte(s), []byte(marker), 1)))
		if err != nil && strings.Contains(err.Error(), marker) {
			t.Errorf("error repeats the secret %q: %q", s, text)
		}
	}
}

func checkRunnable(t *testing.T, c *Config) {
	t.Helper()
	if c.UpstreamTimeout <= 0 || c.MaxWait <= 0 || c.ShutdownTimeout <= 0 || c.DrainDelay < 0 {
		t.Errorf("durations taken: upstream %v, max_wait %v, shutdown %v, drain %v", c.UpstreamTimeout, c.MaxWait, c.ShutdownTimeout, c.DrainDelay)
	}
	if len(c.Accounts) == 0 {
		t.Errorf("no accounts taken")
	}
	for _, a := range c.Accounts {
		if !awsname.ValidAccountID(a.ID) || !awsname.ValidRegion(a.DefaultRegion) {
			t.Errorf("account %+v taken", a)
		}
		for _, op := range Operations() {
			r := a.Limits.Rate(op)
			spacing := time.Duration(float64(time.Second) / r)
			if math.IsNaN(r) || math.IsInf(r, 0) || r <= 0 || r > 10000 || spacing <= 0 {
				t.Errorf("account %s: %s rate %v taken; the limiter would space its calls by %v", a.ID, op, r, spacing)
			}
		}
	}
}

// checkFileValuesKept: a duration the file sets is the one backupd
// runs with, not a default put in its place.
func checkFileValuesKept(t *testing.T, data []byte, c *Config) {
	t.Helper()
	var file struct {
		UpstreamTimeout *time.Duration `yaml:"upstream_timeout"`
		MaxWait         *time.Duration `yaml:"max_wait"`
		ShutdownTimeout *time.Duration `yaml:"shutdown_timeout"`
	}
	if yaml.Unmarshal(data, &file) != nil {
		return
	}
	for _, d := range []struct {
		name      string
		file      *time.Duration
		effective time.Duration
	}{{"upstream_timeout", file.UpstreamTimeout, c.UpstreamTimeout}, {"max_wait", file.MaxWait, c.MaxWait}, {"shutdown_timeout", file.ShutdownTimeout, c.ShutdownTimeout}} {
		if d.file != nil && *d.file != d.effective {
			t.Errorf("%s: the file says %v, backupd would run with %v", d.name, *d.file, d.effective)
		}
	}
}
