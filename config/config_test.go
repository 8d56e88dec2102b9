package config

import (
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	backupv1 "github.com/backupd/backupd/gen/backup/v1"
	"github.com/backupd/backupd/testenv"
)

const validYAML = `
listen:
  grpc: 127.0.0.1:9090
  http: 127.0.0.1:8080
max_wait: 2s
drain_delay: 5s
accounts:
  - id: "111111111111"
    role_arn: arn:aws:iam::111111111111:role/backupd
    external_id: s3cret-external-id
    allowed_regions: [us-east-1, eu-west-1]
    limits:
      create_backup: 20
  - id: "222222222222"
    role_arn: arn:aws-cn:iam::222222222222:role/path/backupd
    default_region: cn-north-1
`

func TestParseValid(t *testing.T) {
	c, err := Parse(strings.NewReader(validYAML))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if c.MaxWait != 2*time.Second || c.UpstreamTimeout != 20*time.Second || c.DrainDelay != 5*time.Second || c.ShutdownTimeout != 25*time.Second {
		t.Errorf("durations: max_wait %s upstream_timeout %s drain_delay %s shutdown_timeout %s", c.MaxWait, c.UpstreamTimeout, c.DrainDelay, c.ShutdownTimeout)
	}
	a := c.Accounts[0]
	if a.DefaultRegion != "us-east-1" || a.Limits.Rate(OpCreateBackup) != 20 || a.Limits.Rate(OpListBackups) != 5 {
		t.Errorf("account 0 defaults: %+v", a)
	}
	b := c.Accounts[1]
	if len(b.AllowedRegions) != 1 || b.AllowedRegions[0] != "cn-north-1" || b.Limits.Rate(OpCreateBackup) != 50 {
		t.Errorf("account 1 defaults: %+v", b)
	}
	if c.SharedState.Backend != BackendMemory || c.SharedState.Redis.KeyPrefix != "backupd:" {
		t.Errorf("shared_state defaults: %+v", c.SharedState)
	}
	if *c.Listen.MaxConnections != DefaultMaxConnections || *c.Listen.MaxConnectionsPerIP != DefaultMaxConnectionsPerIP {
		t.Errorf("connection limits: %d and %d per IP; want the defaults", *c.Listen.MaxConnections, *c.Listen.MaxConnectionsPerIP)
	}
	limited := strings.Replace(validYAML, "http: 127.0.0.1:8080", "http: 127.0.0.1:8080\n  max_connections: 500\n  max_connections_per_ip: 20", 1)
	if l, err := Parse(strings.NewReader(limited)); err != nil || *l.Listen.MaxConnections != 500 || *l.Listen.MaxConnectionsPerIP != 20 {
		t.Errorf("connection limits set: %+v, %v", l.Listen, err)
	}
	r, err := Parse(strings.NewReader(validYAML + "shared_state: {backend: redis, redis: {address: 'redis.internal:6379', password: hunter2, db: 2}}\n"))
	if err != nil || r.SharedState.Backend != BackendRedis || r.SharedState.Redis.Address != "redis.internal:6379" || r.SharedState.Redis.DB != 2 {
		t.Errorf("redis backend: %+v, %v", r, err)
	}
	if r.SharedState.Redis.WaitReplicas != 0 || r.SharedState.Redis.WaitTimeout != DefaultWaitTimeout {
		t.Errorf("redis wait_replicas %d, wait_timeout %s; want 0 and the default", r.SharedState.Redis.WaitReplicas, r.SharedState.Redis.WaitTimeout)
	}
	w, err := Parse(strings.NewReader(validYAML + "shared_state: {backend: redis, redis: {address: 'redis:6379', wait_replicas: 2, wait_timeout: 50ms}}\n"))
	if err != nil || w.SharedState.Redis.WaitReplicas != 2 || w.SharedState.Redis.WaitTimeout != 50*time.Millisecond {
		t.Errorf("redis wait_replicas: %+v, %v", w, err)
	}
	// Both listeners on ports the system picks (for tests, say).
	anyPorts := strings.Replace(validYAML, "grpc: 127.0.0.1:9090\n  http: 127.0.0.1:8080", "grpc: 127.0.0.1:0\n  http: 127.0.0.1:0", 1)
	if p, err := Parse(strings.NewReader(anyPorts)); err != nil || p.Listen.GRPC != "127.0.0.1:0" || p.Listen.HTTP != "127.0.0.1:0" {
		t.Errorf("both listeners on port 0: %+v, %v", p, err)
	}
}

func TestParseInvalid(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // every substring must appear in the error
	}{
		{"no accounts", "listen: {grpc: ':1', http: ':2'}\n", []string{"accounts: must list at least one account"}},
		{"connection limits under 1", "listen: {max_connections: 0, max_connections_per_ip: -1}\naccounts: []\n", []string{
			"listen.max_connections: must be at least 1; leave it out for the default of 10000; got 0",
			"listen.max_connections_per_ip: must be at least 1; leave it out for the default of 1000; got -1"}},
		{"unknown key with a space", "bogus key: 1\naccounts: []\n", []string{"line 1: bogus key is not a configuration key here"}},
		{"repeated key", "listen: {grpc: \":1\"}\nlisten: {grpc: \":2\"}\n", []string{`mapping key "listen" already defined`}},
		{"unknown key", "acounts: []\n", []string{"line 1: acounts is not a configuration key here", "accounts: must list at least one account"}},
		{"unknown keys in sections", "listen:\n  grpc: 127.0.0.1:9090\n  bogus: 1\naccounts:\n  - id: \"111111111111\"\n    role_arn: arn:aws:iam::111111111111:role/x\n    limits: {create_backup: 5, bogus_limit: 3}\n",
			[]string{"listen: bogus is not a configuration key here (line 3;", "accounts[0].limits: bogus_limit is not a configuration key here (line 7;"}},
		{"redis settings without the redis backend", `
shared_state: {redis: {address: "redis:6379"}}
accounts:
  - id: "111111111111"
    role_arn: arn:aws:iam::111111111111:role/x
`, []string{`shared_state.redis: is set, but backend is "memory"`}},
		{"bad callers", `
accounts:
  - id: "111111111111"
    role_arn: arn:aws:iam::111111111111:role/x
callers:
  - name: a
    token_sha256: not-a-hash-secret
    accounts: ["333333333333"]
    operations: [CreateBackups]
  - name: a
    token_sha256: 0000000000000000000000000000000000000000000000000000000000000000
  - name: b
    token_sha256: 0000000000000000000000000000000000000000000000000000000000000000
    accounts: ["*"]
    operations: ["*"]
  - name: scraper
    token_sha256: 1111111111111111111111111111111111111111111111111111111111111111
    accounts: ["111111111111"]
    operations: [GetBackup, Metrics]
`, []string{
			"callers[0].token_sha256: must be the 64 hex digits",
			`callers[0].accounts[0]: "333333333333" is not a configured account id`,
			`callers[0].operations[0]: must be one of CreateBackup, GetBackup, ListBackups, DeleteBackup, RestoreTableFromBackup, Metrics, or "*"; got "CreateBackups"`,
			`callers[3].operations[1]: Metrics names every account and its rates: allow it only to a caller whose accounts are ["*"]`,
			`callers[1].name: "a" is already used by callers[0]`,
			"callers[1].accounts: must list account ids",
			"callers[1].operations: must list operations",
			"callers[2].token_sha256: is the same as callers[1]'s",
		}},
		{"regions of another partition than the role's", `
accounts:
  - id: "111111111111"
    role_arn: arn:aws-cn:iam::111111111111:role/x
    default_region: us-east-1
    allowed_regions: [us-east-1, cn-north-1, us-gov-west-1]
  - id: "222222222222"
    role_arn: arn:aws-us-gov:iam::222222222222:role/x
`, []string{
			`accounts[0].default_region: "us-east-1" is a region of partition aws, but role_arn is in aws-cn`,
			`accounts[0].allowed_regions[2]: "us-gov-west-1" is a region of partition aws-us-gov, but role_arn is in aws-cn`,
			`accounts[1].default_region: "us-east-1" is a region of partition aws, but role_arn is in aws-us-gov`,
		}},
		{"callers' names unfit for a log line", `
accounts:
  - id: "111111111111"
    role_arn: arn:aws:iam::111111111111:role/x
callers:
  - name: "orders\e[31m"
    token_sha256: 1111111111111111111111111111111111111111111111111111111111111111
    accounts: ["*"]
    operations: ["*"]
  - name: "` + strings.Repeat("n", 129) + `"
    token_sha256: 2222222222222222222222222222222222222222222222222222222222222222
    accounts: ["*"]
    operations: ["*"]
  - name: "` + strings.Repeat("é", 128) + `"
    token_sha256: 3333333333333333333333333333333333333333333333333333333333333333
    accounts: ["*"]
    operations: ["*"]
`, []string{
			`callers[0].name: must be at most 128 characters, none of them a control character: it names the caller in logs and errors; got "orders\x1b[31m"`,
			"callers[1].name: must be at most 128 characters",
		}},
		{"the empty token's hash", `
accounts:
  - id: "111111111111"
    role_arn: arn:aws:iam::111111111111:role/x
callers:
  - name: orders
    token_sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
    accounts: ["*"]
    operations: ["*"]
`, []string{"callers[0].token_sha256: is the SHA-256 of an empty token"}},
		// Its callers would be left out without a word: no authentication.
		{"two YAML documents", `
accounts:
  - id: "111111111111"
    role_arn: arn:aws:iam::111111111111:role/x
---
callers:
  - name: orders
    token_sha256: 5553ba1f8337a96125bf614250f78788ab617dfc4aa19ee94d4306f18711dcb1
    accounts: ["*"]
    operations: ["*"]
`, []string{"config: a second YAML document begins at line 5; backupd reads one"}},
		{"two YAML documents, the first with a problem", "max_wait: -1s\n---\nlisten: {grpc: ':1'}\n",
			[]string{"a second YAML document begins at line 2", "max_wait: must be more than 0; got -1s"}},
		{"two YAML documents, the second not YAML", "max_wait: 1s\n---\n{bad\n",
			[]string{"a second YAML document follows, which backupd would not read, and it is not YAML either"}},
		{"half a TLS config", "tls: {cert_file: /etc/backupd/tls.crt, client_ca_file: ca.pem}\n", []string{"tls: cert_file and key_file must be set together"}},
		{"client CA without TLS", "tls: {client_ca_file: ca.pem}\n", []string{"tls.client_ca_file: needs cert_file and key_file"}},
		{"unknown backend", "shared_state: {backend: etcd}\n", []string{`shared_state.backend: must be "memory" or "redis"; got "etcd"`}},
		{"redis without address", "shared_state: {backend: redis, redis: {password: bad id with spaces, db: -1}}\n", []string{
			`shared_state.redis.address: must be host:port for backend redis; got ""`,
			"shared_state.redis.db: must not be negative; got -1",
		}},
		{"redis waits out of range", "shared_state: {backend: redis, redis: {address: 'redis:6379', wait_replicas: -1, wait_timeout: 11s}}\n", []string{
			"shared_state.redis.wait_replicas: must not be negative; got -1",
			"shared_state.redis.wait_timeout: must be from 1ms to 10s; got 11s",
		}},
		{"redis wait under a millisecond", "shared_state: {backend: redis, redis: {address: 'redis:6379', wait_replicas: 1, wait_timeout: 500us}}\n",
			[]string{"shared_state.redis.wait_timeout: must be from 1ms to 10s; got 500µs"}},
		{"redis wait of 0", "shared_state: {backend: redis, redis: {address: 'redis:6379', wait_replicas: 1, wait_timeout: 0s}}\n",
			[]string{"shared_state.redis.wait_timeout: must be more than 0; leave it out for the default of 500ms"}},
		{"redis key prefix empty", "shared_state: {backend: redis, redis: {address: 'redis:6379', key_prefix: ''}}\n",
			[]string{`shared_state.redis.key_prefix: must not be empty`, `leave it out for the default of "backupd:"`}},
		{"redis replicas without the redis backend", "shared_state: {redis: {wait_replicas: 1}}\n",
			[]string{`shared_state.redis: is set, but backend is "memory"`}},
		// A password in the address would reach the error, and every log
		// line naming the address: refused, and not repeated.
		{"redis URL with a password", "shared_state: {backend: redis, redis: {address: 'redis://:not-a-hash-secret@redis:6379'}}\n",
			[]string{"shared_state.redis.address: must be host:port for backend redis, without a scheme or credentials"}},
		{"redis credentials before the host", "shared_state: {backend: redis, redis: {address: 'not-a-hash-secret@redis:6379'}}\n",
			[]string{"shared_state.redis.address: must be host:port for backend redis, without a scheme or credentials"}},
		{"redis password in a query", "shared_state: {backend: redis, redis: {address: 'redis:6379?password=not-a-hash-secret'}}\n",
			[]string{"shared_state.redis.address: must be host:port for backend redis, without a scheme or credentials", "the value given is not repeated"}},
		// A port no client can dial would let the replica start and
		// refuse every request.
		{"redis port not a port", "shared_state: {backend: redis, redis: {address: 'redis:63790x'}}\n",
			[]string{`shared_state.redis.address: must be host:port for backend redis, with a port of 1-65535 (or a service name); got "redis:63790x"`}},
		{"redis port out of range", "shared_state: {backend: redis, redis: {address: 'redis:70000'}}\n",
			[]string{`shared_state.redis.address: must be host:port for backend redis, with a port of 1-65535 (or a service name); got "redis:70000"`}},
		{"redis port empty", "shared_state: {backend: redis, redis: {address: 'redis:'}}\n",
			[]string{`shared_state.redis.address: must be host:port for backend redis, with a port of 1-65535 (or a service name); got "redis:"`}},
		{"redis port 0", "shared_state: {backend: redis, redis: {address: 'redis:0'}}\n",
			[]string{`shared_state.redis.address: must be host:port for backend redis, with a port of 1-65535 (or a service name); got "redis:0"`}},
		{"negative drain delay", "drain_delay: -5s\n", []string{"drain_delay: must not be negative; got -5s"}},
		{"one address for both listeners", "listen: {grpc: '127.0.0.1:9000', http: '127.0.0.1:9000'}\n",
			[]string{`listen: grpc and http must differ; both are "127.0.0.1:9000"`}},
		{"listeners on one port, one on every interface", "listen: {grpc: ':9000', http: '127.0.0.1:9000'}\n",
			[]string{`listen: grpc ":9000" and http "127.0.0.1:9000" would take the same port: give them different ports`}},
		{"listeners on one port of localhost", "listen: {grpc: 'localhost:9000', http: '127.0.0.1:9000'}\n",
			[]string{`listen: grpc "localhost:9000" and http "127.0.0.1:9000" would take the same port`}},
		// NaN passes a plain r <= 0 || r > max, and a tiny rate's spacing
		// overflows: either would turn the account's limit off.
		{"rates that are not rates", `
accounts:
  - id: "111111111111"
    role_arn: arn:aws:iam::111111111111:role/x
    limits: {create_backup: .nan, list_backups: 1e-300, delete_backup: .inf}
`, []string{
			"accounts[0].limits.create_backup: must be a rate per second from 0.001 to 10000; got NaN",
			"accounts[0].limits.list_backups: must be a rate per second from 0.001 to 10000; got 1e-300",
			"accounts[0].limits.delete_backup: must be a rate per second from 0.001 to 10000; got +Inf",
		}},
		{"many problems at once", `
bogus_key: 1
listen: {http: "nonsense", grpc: ":99999"}
default_region: nowhere
log: {format: xml}
max_wait: -1s
accounts:
  - id: "12345"
    role_arn: arn:aws:iam::111111111111:role/x
  - id: "111111111111"
    role_arn: arn:aws:iam::222222222222:role/x
    external_id: "bad id with spaces"
    allowed_regions: [us-east-1]
    default_region: eu-west-1
    limits: {create_backup: -3, list_backups: 0, bogus_limit: 2}
  - id: "111111111111"
    role_arn: not-an-arn
`, []string{
			`default_region: must be an AWS region such as us-east-1; got "nowhere"`,
			`log.format: must be "json" or "text"; got "xml"`,
			"max_wait: must be more than 0; got -1s",
			`accounts[0].id: must be exactly 12 digits (quote it in YAML); got "12345"`,
			"accounts[1].role_arn: names account 222222222222 but the account id is \"111111111111\"",
			"accounts[1].external_id: must be 2-1224 characters",
			`accounts[1].default_region: "eu-west-1" must be one of allowed_regions ["us-east-1"]`,
			"accounts[1].limits.create_backup: must be a rate per second from 0.001 to 10000; got -3",
			"accounts[1].limits.list_backups: must be a rate per second from 0.001 to 10000; got 0",
			"line 2: bogus_key is not a configuration key here",
			"bogus_limit is not a configuration key here",
			`listen.http: must be host:port or :port, with a port of 0-65535 (or a service name), such as ":9090"; got "nonsense"`,
			`listen.grpc: must be host:port or :port, with a port of 0-65535 (or a service name), such as ":9090"; got ":99999"`,
			`accounts[2].id: "111111111111" is already configured at accounts[1]`,
			"accounts[2].role_arn: must be an IAM role ARN",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkParseError(t, tt.yaml, tt.want, nil) })
	}
}

// checkParseError parses a file Parse must refuse, and checks that its
// error says every want and no notWant, and echoes no ExternalId.
func checkParseError(t *testing.T, yaml string, want, notWant []string) {
	t.Helper()
	_, err := Parse(strings.NewReader(yaml))
	if err == nil {
		t.Fatal("Parse succeeded; want error")
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q; got:\n%v", w, err)
		}
	}
	for _, nw := range notWant {
		if strings.Contains(err.Error(), nw) {
			t.Errorf("error has %q; got:\n%v", nw, err)
		}
	}
	if strings.Contains(err.Error(), "bad id with spaces") || strings.Contains(err.Error(), "not-a-hash-secret") {
		t.Errorf("error echoes the ExternalId: %v", err)
	}
}

// TestParseWrongTypes: a value of the wrong type is named by its key, with
// what the key wants, and reported once: not again by Validate for the
// zero yaml leaves in its place, nor for what it holds.
func TestParseWrongTypes(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		want    []string
		notWant []string
	}{
		{"rate", "accounts:\n  - id: \"111111111111\"\n    role_arn: arn:aws:iam::111111111111:role/x\n    limits:\n      create_backup: fast\n",
			[]string{"accounts[0].limits.create_backup: must be a number; got `fast` (line 5)"},
			[]string{"got 0", "cannot unmarshal"}},
		{"duration and list", "upstream_timeout: soon\nmax_wait: [1]\naccounts:\n  - id: \"111111111111\"\n    role_arn: arn:aws:iam::111111111111:role/x\n    allowed_regions: us-east-1\n",
			[]string{
				"upstream_timeout: must be a duration such as 500ms, 10s or 1m; got `soon` (line 1)",
				"max_wait: must be a duration such as 500ms, 10s or 1m; got a list (line 2)",
				"accounts[0].allowed_regions: must be a list of strings; got `us-east-1` (line 6)",
			},
			[]string{"allowed_regions: must list"}},
		{"flow mapping names the inner key", "listen: {grpc: [1], http: x}\naccounts:\n  - id: \"111111111111\"\n    role_arn: arn:aws:iam::111111111111:role/x\n",
			[]string{"listen.grpc: must be a string; got a list (line 1)", `listen.http: must be host:port`},
			[]string{"listen.grpc: must be host:port"}},
		{"two wrong values on one line keep yaml's words", "listen: {grpc: [1], http: [2]}\naccounts:\n  - id: \"111111111111\"\n    role_arn: arn:aws:iam::111111111111:role/x\n",
			[]string{"line 1: cannot unmarshal !!seq into string"},
			nil},
		{"mistyped id hides its consequences", "accounts:\n  - id: [111111111111]\n    role_arn: arn:aws:iam::111111111111:role/x\n  - 7\n",
			[]string{"accounts[0].id: must be a string; got a list (line 2)", "accounts[1]: must be a mapping; got `7` (line 4)"},
			[]string{"exactly 12 digits", "names account", "accounts[1].id", "accounts[1].role_arn"}},
		{"a mapping for a list, holding a list", "accounts:\n  bogus: []\n",
			[]string{"accounts: must be a list; got a mapping (line 2)"},
			[]string{"bogus"}},
		{"a list element of the wrong kind keeps the indices after it", "accounts: [7, {id: \"12345\", role_arn: arn:aws:iam::222222222222:role/x, limits: {create_backup: -5}}]\n",
			[]string{"accounts[0]: must be a mapping; got `7` (line 1)", `accounts[1].id: must be exactly 12 digits`, "accounts[1].limits.create_backup: must be a rate per second"},
			[]string{"accounts[0].id", "accounts[0].limits"}},
		{"a region list element of the wrong kind", "accounts:\n  - id: \"111111111111\"\n    role_arn: arn:aws:iam::111111111111:role/x\n    allowed_regions: [us-east-1, [eu-west-1], not-a-region]\n",
			[]string{"accounts[0].allowed_regions[2]: must be an AWS region", "accounts[0].allowed_regions[1]: must be a string; got a list (line 4)"},
			[]string{"allowed_regions[1]: must be an AWS region", "allowed_regions[0]"}},
		{"a caller of the wrong kind", "accounts:\n  - id: \"111111111111\"\n    role_arn: arn:aws:iam::111111111111:role/x\ncallers: [oops, {name: \"\", token_sha256: NOTAHASH, operations: [Bogus]}]\n",
			[]string{"callers[0]: must be a mapping; got `oops` (line 4)", "callers[1].name", "callers[1].token_sha256", "callers[1].operations[0]"},
			[]string{"callers[0].name", "callers[0].token_sha256"}},
		{"a wrong value merged in", "listen: {<<: {grpc: [1]}, http: [2]}\naccounts:\n  - id: \"111111111111\"\n    role_arn: arn:aws:iam::111111111111:role/x\n",
			[]string{"line 1: cannot unmarshal !!seq into string"},
			[]string{"listen.http: must be a string", "listen.grpc: must be host:port", "listen.http: must be host:port"}},
		{"a wrong value used through an alias", "accounts:\n  - id: &i [1]\n    role_arn: arn:aws:iam::111111111111:role/x\n  - id: *i\n    role_arn: arn:aws:iam::222222222222:role/x\n",
			[]string{"line 2: cannot unmarshal !!seq into string"},
			[]string{"exactly 12 digits", "already configured"}},
		{"a wrong rate in a merged account", "accounts:\n  - &a\n    id: \"111111111111\"\n    role_arn: arn:aws:iam::111111111111:role/x\n    limits: {create_backup: fast}\n  - <<: *a\n    id: \"222222222222\"\n    role_arn: arn:aws:iam::222222222222:role/x\n",
			[]string{"line 5: cannot unmarshal !!str `fast` into float64"},
			[]string{"got 0"}},
		{"a merged value the mapping sets itself", "accounts:\n  - id: \"111111111111\"\n    role_arn: arn:aws:iam::111111111111:role/x\n    limits: &l {create_backup: fast}\n  - id: \"222222222222\"\n    role_arn: arn:aws:iam::222222222222:role/x\n    limits: {<<: *l, create_backup: -5}\n",
			[]string{"accounts[0].limits.create_backup: must be a number; got `fast` (line 4)", "accounts[1].limits.create_backup: must be a rate per second from 0.001 to 10000; got -5"},
			[]string{"got 0"}},
		{"an empty list element", "accounts:\n  - id: \"111111111111\"\n    role_arn: arn:aws:iam::111111111111:role/x\ncallers:\n  -\n  - name: a\n    token_sha256: bad\n",
			[]string{"callers[0]: is empty (line 5); give it a value or remove its -", "callers[1].token_sha256"},
			[]string{"callers[0].name", "callers[0].token_sha256"}},
		{"an empty region", "accounts:\n  - id: \"111111111111\"\n    role_arn: arn:aws:iam::111111111111:role/x\n    allowed_regions: [us-east-1, ~, bogus]\n",
			[]string{"accounts[0].allowed_regions[1]: is empty (line 4)", "accounts[0].allowed_regions[2]: must be an AWS region"},
			[]string{"allowed_regions[1]: must be an AWS region"}},
		{"a value of several lines", "accounts:\n  - id: \"111111111111\"\n    role_arn: arn:aws:iam::111111111111:role/x\n    limits:\n      create_backup: |\n        a\n        b\n",
			[]string{"accounts[0].limits.create_backup: must be a number; got `a\nb\n` (line 5)"},
			[]string{"got 0", "cannot unmarshal"}},
		{"an aliased list with an element of the wrong kind", "accounts:\n  - id: \"111111111111\"\n    role_arn: arn:aws:iam::111111111111:role/x\n    allowed_regions: &r [us-east-1, [x], bogus]\n  - id: \"222222222222\"\n    role_arn: arn:aws:iam::222222222222:role/x\n    allowed_regions: *r\n",
			[]string{"line 4: cannot unmarshal !!seq into string", "must be an AWS region such as us-east-1; got \"bogus\""},
			nil},
		{"an anchor elsewhere keeps the indices after a dropped element", "accounts:\n  - id: \"111111111111\"\n    role_arn: arn:aws:iam::111111111111:role/x\n    limits: &std {create_backup: 5}\n  - \"222222222222\"\n  - id: \"333333333333\"\n    role_arn: arn:aws:iam::333333333333:role/x\n    default_region: nowhere\n    limits: *std\n",
			[]string{"accounts[1]: must be a mapping; got `2222222...` (line 5)", `accounts[2].default_region: must be an AWS region`},
			[]string{"accounts[1].default_region", "accounts[1].id"}},
		{"an empty list element through an alias", "role_session_name: &n\naccounts:\n  - id: \"111111111111\"\n    role_arn: arn:aws:iam::111111111111:role/x\ncallers: [*n]\n",
			[]string{"callers[0]: is empty (line 5)"},
			nil},
		{"two values of one type on one line, one wrong", "accounts:\n  - id: \"111111111111\"\n    role_arn: arn:aws:iam::111111111111:role/x\n    limits: {create_backup: x, list_backups: 0}\n",
			[]string{"accounts[0].limits.create_backup: must be a number; got `x` (line 4)", "accounts[0].limits.list_backups: must be a rate per second from 0.001 to 10000; got 0"},
			[]string{"accounts[0].limits.create_backup: must be a rate"}},
		{"a wrong top-level default_region, reported once", "default_region: us-east-99x\naccounts:\n  - id: \"111111111111\"\n    role_arn: arn:aws:iam::111111111111:role/x\n    limits: {create_backup: -1}\n  - id: \"222222222222\"\n    role_arn: arn:aws:iam::222222222222:role/x\n    default_region: nowhere\n  - id: \"333333333333\"\n    role_arn: arn:aws:iam::333333333333:role/x\n    allowed_regions: [us-east-1, bogus]\n",
			[]string{`default_region: must be an AWS region such as us-east-1; got "us-east-99x"`, "accounts[0].limits.create_backup: must be a rate per second",
				`accounts[1].default_region: must be an AWS region such as us-east-1; got "nowhere"`, `accounts[2].allowed_regions[1]: must be an AWS region such as us-east-1; got "bogus"`},
			[]string{"accounts[0].default_region", "accounts[0].allowed_regions", "accounts[2].default_region"}},
		{"redis settings", "shared_state:\n  backend: redis\n  redis:\n    address: 127.0.0.1:6379\n    db: zero\n    tls: maybe\naccounts:\n  - id: \"111111111111\"\n    role_arn: arn:aws:iam::111111111111:role/x\n",
			[]string{"shared_state.redis.db: must be a whole number; got `zero` (line 5)", "shared_state.redis.tls: must be true or false; got `maybe` (line 6)"},
			nil},
		{"whole numbers written with a fraction or an exponent, which yaml would cut", "listen: {max_connections: 0.5, max_connections_per_ip: 1e3}\nshared_state:\n  backend: redis\n  redis:\n    address: 127.0.0.1:6379\n    db: 1.7\n    wait_replicas: 0.9\naccounts:\n  - id: \"111111111111\"\n    role_arn: arn:aws:iam::111111111111:role/x\n",
			[]string{"listen.max_connections: must be a whole number; got `0.5` (line 1)", "listen.max_connections_per_ip: must be a whole number; got `1e3` (line 1)",
				"shared_state.redis.db: must be a whole number; got `1.7` (line 6)", "shared_state.redis.wait_replicas: must be a whole number; got `0.9` (line 7)"},
			[]string{"got 0;", "at least 1"}},
		{"values that do not fit the tags the file gave them, secrets among them, beside the file's other problems", "shared_state:\n  backend: redis\n  redis:\n    address: 127.0.0.1:6379\n    password: !!int PwTagSecret\naccounts:\n  - id: \"111111111111\"\n    role_arn: arn:aws:iam::111111111111:role/x\n    external_id: !!bool extidsecret\n    limits: {create_backup: !!str 5, list_backups: !!float fast}\n  - id: !!int tw\u00e9lve\n    role_arn: arn:aws:iam::222222222222:role/x\n    default_region: nowhere\n",
			[]string{"shared_state.redis.password: its value does not fit its tag !!int (line 5); remove the tag", "accounts[0].external_id: its value does not fit its tag !!bool (line 9)",
				"accounts[0].limits.list_backups: its value does not fit its tag !!float (line 10)", "accounts[1].id: its value does not fit its tag !!int (line 11)",
				// what the tags do not stop: a value that fits its tag and not its key, and the next account's region
				"accounts[0].limits.create_backup: must be a number; got `5` (line 10)", `accounts[1].default_region: must be an AWS region`},
			[]string{"PwTagSecret", "extidsecret", "fast", "accounts[1].id: must"}},
		{"a tag after a character of several bytes on its line", "accounts:\n  - id: \"111111111111\"\n    role_arn: arn:aws:iam::111111111111:role/x\n    allowed_regions: [\"\u00e9-bad\", !!int x]\n",
			[]string{"accounts[0].allowed_regions[1]: its value does not fit its tag !!int (line 4)", "accounts[0].allowed_regions[0]: must be an AWS region such as us-east-1; got \"\u00e9-bad\""},
			[]string{"allowed_regions[1]: must"}},
		{"a key that does not fit the tag the file gave it: no line to name, and its text left out", "accounts:\n  - id: \"111111111111\"\n    role_arn: arn:aws:iam::111111111111:role/x\n    !!int keysecret: 1\n",
			[]string{"config: yaml: cannot decode !!str (a value, not repeated) as a !!int"},
			[]string{"keysecret"}},
		{"two wrong values of one type on one line", "accounts:\n  - id: \"111111111111\"\n    role_arn: arn:aws:iam::111111111111:role/x\n    limits: {create_backup: x, list_backups: y}\n",
			[]string{"accounts[0].limits.create_backup: must be a number; got `x` (line 4)", "accounts[0].limits.list_backups: must be a number; got `y` (line 4)"},
			[]string{"cannot unmarshal"}},
		{"a whole number too large to cut, reported once", "shared_state:\n  backend: redis\n  redis:\n    address: 127.0.0.1:6379\n    db: 1e30\naccounts:\n  - id: \"111111111111\"\n    role_arn: arn:aws:iam::111111111111:role/x\n",
			[]string{"shared_state.redis.db: must be a whole number; got `1e30` (line 5)"},
			[]string{"got 1e30 (line 5)", "cannot unmarshal"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkParseError(t, tt.yaml, tt.want, tt.notWant) })
	}
}

func TestSnake(t *testing.T) {
	for op, want := range map[string]string{OpCreateBackup: "create_backup", OpRestoreTableFromBackup: "restore_table_from_backup"} {
		if got := snake(op); got != want {
			t.Errorf("snake(%q) = %q, want %q", op, got, want)
		}
	}
}

// TestREADMEExample parses the configuration example of the README, so the
// documentation cannot drift from what backupd accepts.
func TestREADMEExample(t *testing.T) {
	c, err := Parse(strings.NewReader(readmeExample(t)))
	if err != nil {
		t.Fatalf("README example: %v", err)
	}
	if c.SharedState.Backend != BackendMemory || len(c.Accounts) != 1 || !c.TLS.Enabled() || len(c.Callers) != 2 {
		t.Errorf("README example parsed as %+v", c)
	}
}

// readmeExample is the configuration example of the README, its TLS
// files replaced by ones that exist: Parse reads them.
func readmeExample(t *testing.T) string {
	t.Helper()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "## Configuration")
	if !ok {
		t.Fatal("README has no Configuration section")
	}
	_, rest, ok = strings.Cut(rest, "```yaml\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("README's Configuration section has no yaml block")
	}
	block = uncommentTLS(block)
	files := testenv.SelfSignedTLS(t)
	for from, to := range map[string]string{"/etc/backupd/tls.crt": files.CertFile, "/etc/backupd/tls.key": files.KeyFile} {
		if !strings.Contains(block, from) {
			t.Fatalf("README example names no %s", from)
		}
		block = strings.ReplaceAll(block, from, to)
	}
	return block
}

// uncommentTLS turns the README's commented-out tls section on, so that
// what it shows is parsed too.
func uncommentTLS(block string) string {
	var out strings.Builder
	inTLS := false
	for line := range strings.Lines(block) {
		switch {
		case strings.HasPrefix(line, "# tls:"):
			line, inTLS = strings.TrimPrefix(line, "# "), true
		case inTLS && strings.HasPrefix(line, "#   "):
			line = "  " + strings.TrimPrefix(line, "#   ")
		default:
			inTLS = false
		}
		out.WriteString(line)
	}
	return out.String()
}

func TestWarnings(t *testing.T) {
	block := readmeExample(t)
	tests := []struct {
		name   string
		change func(*Config)
		want   []string // the warnings' beginnings, in order
	}{
		{"the README's example", func(*Config) {}, nil},
		{"shutdown_timeout below upstream_timeout", func(c *Config) { c.ShutdownTimeout = c.UpstreamTimeout - time.Second },
			[]string{"shutdown_timeout is shorter than upstream_timeout"}},
		{"max_wait equal to upstream_timeout", func(c *Config) { c.MaxWait = c.UpstreamTimeout },
			[]string{"max_wait is not shorter than upstream_timeout"}},
		{"no callers", func(c *Config) { c.Callers = nil }, []string{"no callers configured"}},
		{"no caller may scrape", func(c *Config) { c.Callers = c.Callers[:1] },
			[]string{"callers are configured and none is allowed Metrics in every account: GET /metrics refuses every scrape"}},
		{"a caller of every operation may scrape", func(c *Config) {
			c.Callers = c.Callers[:1]
			c.Callers[0].Accounts, c.Callers[0].Operations = []string{Any}, []string{Any}
		}, nil},
		{"every operation in one account is no scrape", func(c *Config) {
			c.Callers = c.Callers[:1]
			c.Callers[0].Operations = []string{Any}
		}, []string{"callers are configured and none is allowed Metrics"}},
		{"callers without tls on every interface", func(c *Config) { c.TLS = TLS{} },
			[]string{`callers' tokens cross the network in the clear: no tls is configured, and listen.grpc (":9090") takes connections from beyond this host and listen.http (":8080") takes`}},
		{"callers without tls, one listener on loopback", func(c *Config) { c.TLS, c.Listen.GRPC, c.Listen.HTTP = TLS{}, "127.0.0.1:9090", "10.0.0.7:8080" },
			[]string{`callers' tokens cross the network in the clear: no tls is configured, and listen.http ("10.0.0.7:8080") takes`}},
		{"callers without tls, both listeners on loopback", func(c *Config) { c.TLS, c.Listen.GRPC, c.Listen.HTTP = TLS{}, "[::1]:9090", "localhost:8080" }, nil},
		{"no callers and no tls", func(c *Config) { c.TLS, c.Callers = TLS{}, nil }, []string{"no callers configured"}},
		{"an account of another partition", func(c *Config) {
			c.Accounts = append(c.Accounts, Account{ID: "999999999999", RoleARN: "arn:aws-cn:iam::999999999999:role/x",
				DefaultRegion: "cn-north-1", AllowedRegions: []string{"cn-north-1"}})
		}, []string{"accounts 999999999999 are of another partition than default_region us-east-1 (aws): backupd's own credentials belong to one partition"}},
		{"all three", func(c *Config) {
			c.UpstreamTimeout, c.Callers = c.ShutdownTimeout+time.Second, nil
			c.MaxWait = c.UpstreamTimeout
		},
			[]string{"shutdown_timeout", "max_wait", "no callers"}},
	}
	for _, tt := range tests {
		c, err := Parse(strings.NewReader(block))
		if err != nil {
			t.Fatalf("README example: %v", err)
		}
		tt.change(c)
		got := c.Warnings()
		if len(got) != len(tt.want) {
			t.Errorf("%s: warnings %q, want %d", tt.name, got, len(tt.want))
			continue
		}
		for i, w := range tt.want {
			if !strings.HasPrefix(got[i], w) {
				t.Errorf("%s: warning %d = %q, want it to begin %q", tt.name, i, got[i], w)
			}
		}
	}
}

// The exported list is a copy: a caller that changes it changes no one
// else's, nor what Validate accepts. (TestDefaultLimitsAreEachAccounts
// does the same for the limits.)
func TestListsAreFresh(t *testing.T) {
	ops := Operations()
	ops[0] = "Changed"
	if Operations()[0] != OpCreateBackup {
		t.Errorf("a change to a returned list is seen by the next caller: %v", Operations())
	}
}

// TestRPCsAreTheServiceMethods keeps the operations a caller may be
// allowed equal to what BackupService serves.
func TestRPCsAreTheServiceMethods(t *testing.T) {
	var served []string
	for _, m := range backupv1.BackupService_ServiceDesc.Methods {
		served = append(served, m.MethodName)
	}
	slices.Sort(served)
	if want := slices.Sorted(slices.Values(rpcs)); !slices.Equal(served, want) {
		t.Errorf("BackupService serves %v; a caller may be allowed %v", served, want)
	}
}

// yaml leaves out the mapping that repeats a key; the problems its absence
// would raise are not reported, since they are not so.
func TestRepeatedKeyAlone(t *testing.T) {
	_, err := Parse(strings.NewReader("listen: {grpc: \":1\"}\nlisten: {grpc: \":2\"}\naccounts:\n  - id: \"111111111111\"\n    role_arn: arn:aws:iam::111111111111:role/x\n"))
	if err == nil || !strings.Contains(err.Error(), "already defined") || strings.Contains(err.Error(), "accounts") {
		t.Errorf("err = %v; want the repeated key alone", err)
	}
}

// Accounts that take the default limits do not share them.
func TestDefaultLimitsAreEachAccounts(t *testing.T) {
	c, err := Parse(strings.NewReader("accounts:\n  - id: \"111111111111\"\n    role_arn: arn:aws:iam::111111111111:role/x\n" +
		"  - id: \"222222222222\"\n    role_arn: arn:aws:iam::222222222222:role/x\n"))
	if err != nil {
		t.Fatal(err)
	}
	*c.Accounts[0].Limits.CreateBackup = 1
	if got := c.Accounts[1].Limits.Rate(OpCreateBackup); got != 50 {
		t.Errorf("a change to one account's limit changed another's to %g", got)
	}
}

// TestRedisPasswordFile: password_file gives the Redis password from a
// file (a mounted secret), read at start without its trailing newline;
// a file that cannot be read, is empty or holds several lines, or one set
// beside password or with the memory backend, is a problem that names
// the field and never repeats what the file holds.
func TestRedisPasswordFile(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	redisYAML := func(backend, extra string) string {
		return validYAML + "shared_state: {backend: " + backend + ", redis: {address: 'redis:6379', " + extra + "}}\n"
	}
	for _, tt := range []struct {
		name, yaml string
		password   string   // the password Parse gives, when valid
		want       []string // every substring must appear in the error; none: valid
	}{
		{"with echo's newline", redisYAML("redis", "password_file: "+file("pw", "s3cret-pass\n")), "s3cret-pass", nil},
		{"with a CRLF", redisYAML("redis", "password_file: "+file("pw-crlf", "s3cret-pass\r\n")), "s3cret-pass", nil},
		{"without a newline", redisYAML("redis", "password_file: "+file("pw-bare", "s3cret-pass")), "s3cret-pass", nil},
		{"missing", redisYAML("redis", "password_file: /nonexistent/pw"),
			"", []string{"shared_state.redis.password_file: cannot be read: no such file or directory (the path is not repeated"}},
		// The password itself, put in place of the file's path: a value
		// that names no file may be a secret, and is not repeated.
		{"the password in place of its path", redisYAML("redis", "password_file: s3cret-pass"),
			"", []string{"shared_state.redis.password_file: cannot be read: no such file or directory (the path is not repeated",
				"a relative path is taken from backupd's working directory"}},
		// A path that names something is: it is no secret.
		{"a directory", redisYAML("redis", "password_file: "+dir),
			"", []string{"shared_state.redis.password_file: cannot be read: read " + dir + ": is a directory"}},
		{"empty", redisYAML("redis", "password_file: "+file("empty", "\n")),
			"", []string{"shared_state.redis.password_file: holds no password"}},
		{"several lines", redisYAML("redis", "password_file: "+file("lines", "s3cret-pass\nother-line\n")),
			"", []string{"shared_state.redis.password_file: must hold the password alone, on one line"}},
		{"beside password", redisYAML("redis", "password: x, password_file: "+file("pw2", "s3cret-pass")),
			"", []string{"shared_state.redis.password_file: is set beside password"}},
		{"with the memory backend", redisYAML("memory", "password_file: "+file("pw3", "s3cret-pass")),
			"", []string{"shared_state.redis: is set, but backend is \"memory\""}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(strings.NewReader(tt.yaml))
			if tt.want == nil {
				if err != nil || c.SharedState.Redis.Password != tt.password {
					t.Fatalf("Parse: password %q, %v; want %q", c.SharedState.Redis.Password, err, tt.password)
				}
				return
			}
			if err == nil {
				t.Fatal("Parse took it")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q; want %q in it", err, w)
				}
			}
			if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "other-line") {
				t.Errorf("error %q repeats what the file holds", err)
			}
		})
	}
}

// Every TLS file is read at parse time, so that a missing or wrong one is
// listed with the configuration's other problems.
func TestParseChecksTLSFiles(t *testing.T) {
	files := testenv.SelfSignedTLS(t)
	other := testenv.SelfSignedTLS(t)
	notPEM := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	expired := testenv.SelfSignedTLSValid(t, time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour))
	pastedKey, pastedCert := string(must(os.ReadFile(other.KeyFile))), string(must(os.ReadFile(other.CertFile)))
	indent := func(pem string, n int) string {
		sp := strings.Repeat(" ", n)
		return sp + strings.ReplaceAll(strings.TrimSuffix(pem, "\n"), "\n", "\n"+sp) + "\n"
	}
	bundle := filepath.Join(t.TempDir(), "bundle.pem")
	if err := os.WriteFile(bundle, append(must(os.ReadFile(expired.CertFile)), must(os.ReadFile(files.CertFile))...), 0o600); err != nil {
		t.Fatal(err)
	}
	tlsYAML := func(cert, key, ca string) string {
		return validYAML + "tls: {cert_file: " + cert + ", key_file: " + key + ", client_ca_file: '" + ca + "'}\n"
	}
	redisYAML := func(tls, ca string) string {
		return validYAML + "shared_state: {backend: redis, redis: {address: 'redis:6379', tls: " + tls + ", tls_ca_file: '" + ca + "'}}\n"
	}
	tests := []struct {
		name string
		yaml string
		want []string // every substring must appear in the error; none: valid
	}{
		{"a pair and a CA", tlsYAML(files.CertFile, files.KeyFile, files.CertFile), nil},
		{"every file missing, with another problem", tlsYAML("/nonexistent/tls.crt", "/nonexistent/tls.key", "/nonexistent/ca.pem") + "log: {format: xml}\n", []string{
			"tls.cert_file: cannot be read: no such file or directory (the path is not repeated",
			"tls.key_file: cannot be read: no such file or directory",
			"tls.client_ca_file: cannot be read: no such file or directory",
			`log.format: must be "json" or "text"`,
		}},
		{"a key of another certificate", tlsYAML(files.CertFile, other.KeyFile, ""), []string{
			"tls: cert_file and key_file must hold a PEM certificate and its private key: tls: private key does not match public key",
		}},
		{"a CA file without certificates", tlsYAML(files.CertFile, files.KeyFile, notPEM), []string{
			"tls.client_ca_file: must hold PEM certificates; it holds none",
		}},
		// Every client would refuse the first, and every client
		// certificate fail to verify against the second.
		{"an expired certificate and an expired CA", tlsYAML(expired.CertFile, expired.KeyFile, expired.CertFile), []string{
			"tls: cert_file's certificate expired at ",
			"tls: client_ca_file's certificates have all expired, the last at ",
		}},
		{"an expired CA beside its successor", tlsYAML(files.CertFile, files.KeyFile, bundle), nil},
		{"Redis' CA", redisYAML("true", files.CertFile), nil},
		{"Redis' CA without tls, missing", redisYAML("false", "/nonexistent/redis-ca.pem"), []string{
			"shared_state.redis.tls_ca_file: needs tls: true",
			"shared_state.redis.tls_ca_file: cannot be read: no such file or directory",
		}},
		{"Redis' CA file without certificates", redisYAML("true", notPEM), []string{
			"shared_state.redis.tls_ca_file: must hold PEM certificates; it holds none",
		}},
		{"Redis' CA without the redis backend", validYAML + "shared_state: {redis: {tls_ca_file: '" + files.CertFile + "'}}\n", []string{
			`shared_state.redis: is set, but backend is "memory"`,
		}},
		// A key pasted in place of its path is not repeated in the
		// error, which goes to the log (nor is a password file's or a
		// CA's contents).
		{"a key pasted as key_file", validYAML + "tls:\n  cert_file: " + files.CertFile + "\n  key_file: |\n" + indent(pastedKey, 4) +
			"  client_ca_file: |\n" + indent(pastedCert, 4) +
			"shared_state:\n  backend: redis\n  redis:\n    address: 'redis:6379'\n    tls: true\n    password_file: |\n" + indent(pastedKey, 6) +
			"    tls_ca_file: |\n" + indent(pastedCert, 6), []string{
			"tls.key_file: must be the path of a file; it holds several lines or PEM text (not repeated)",
			"tls.client_ca_file: must be the path of a file",
			"shared_state.redis.password_file: must be the path of a file",
			"shared_state.redis.tls_ca_file: must be the path of a file",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.yaml))
			if err != nil && (strings.Contains(err.Error(), "PRIVATE KEY") || strings.Contains(err.Error(), pastedKey[28:60])) {
				t.Errorf("the error repeats a pasted key:\n%v", err)
			}
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Parse succeeded; want error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q; got:\n%v", w, err)
				}
			}
		})
	}
}

// A duration the file sets to 0 is refused, not replaced by its default;
// one it leaves out takes the default.
func TestParseExplicitZeroDurations(t *testing.T) {
	c, err := Parse(strings.NewReader(validYAML))
	if err != nil {
		t.Fatal(err)
	}
	if c.UpstreamTimeout != 20*time.Second || c.ShutdownTimeout != 25*time.Second || c.MaxWait != 2*time.Second {
		t.Errorf("durations %s, %s, %s; want 20s, 25s and the file's 2s", c.UpstreamTimeout, c.ShutdownTimeout, c.MaxWait)
	}
	for _, tt := range []struct{ key, want string }{
		{"upstream_timeout", "upstream_timeout: must be more than 0; leave it out for the default of 20s"},
		{"max_wait", "max_wait: must be more than 0; leave it out for the default of 1s"},
		{"shutdown_timeout", "shutdown_timeout: must be more than 0; leave it out for the default of 25s"},
	} {
		yaml := strings.Replace(validYAML, "max_wait: 2s\n", "", 1) + tt.key + ": 0s\n"
		if _, err := Parse(strings.NewReader(yaml)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: 0s: Parse error %v; want %q", tt.key, err, tt.want)
		}
	}
	if _, err := Parse(strings.NewReader(strings.Replace(validYAML, "drain_delay: 5s", "drain_delay: 0s", 1))); err != nil {
		t.Errorf("drain_delay: 0s, its default, refused: %v", err)
	}
}

func TestSlogLevel(t *testing.T) {
	for _, tt := range []struct {
		level string
		want  slog.Level
		ok    bool
	}{
		{"debug", slog.LevelDebug, true},
		{"info", slog.LevelInfo, true},
		{"WARN", slog.LevelWarn, true},
		{"Error", slog.LevelError, true},
		{"info+2", slog.LevelInfo, false}, // slog's own parser takes it; backupd's docs do not
		{"trace", slog.LevelInfo, false},
		{"", slog.LevelInfo, false},
	} {
		got, ok := Log{Level: tt.level}.SlogLevel()
		if got != tt.want || ok != tt.ok {
			t.Errorf("SlogLevel(%q) = %v, %v; want %v, %v", tt.level, got, ok, tt.want, tt.ok)
		}
	}
}

// TestLimitOfCoversLimits: every operation has its own Limits field, whose
// YAML key is the operation's, and the rate DESIGN.md documents for it.
func TestLimitOfCoversLimits(t *testing.T) {
	documented := map[string]float64{OpCreateBackup: 50, OpDescribeBackup: 10, OpDeleteBackup: 10, OpListBackups: 5, OpRestoreTableFromBackup: 10}
	defaults := Config{Accounts: []Account{{}}}
	defaults.ApplyDefaults()
	var l Limits
	for i, op := range operations {
		lim, ok := limitOf[op]
		if !ok {
			t.Fatalf("operation %s has no limit", op)
		}
		*lim.field(&l) = new(float64(i + 1))
		if lim.defaultRate != documented[op] || defaults.Accounts[0].Limits.Rate(op) != documented[op] {
			t.Errorf("%s: default rate %g; want %g", op, lim.defaultRate, documented[op])
		}
	}
	v := reflect.ValueOf(l)
	for i := range v.NumField() {
		f := v.Type().Field(i)
		if v.Field(i).IsNil() {
			t.Errorf("Limits.%s belongs to no operation", f.Name)
			continue
		}
		op := operations[int(v.Field(i).Elem().Float())-1]
		if key := strings.Split(f.Tag.Get("yaml"), ",")[0]; key != snake(op) || f.Name != op {
			t.Errorf("Limits.%s (yaml %q) is the field of %s", f.Name, key, op)
		}
	}
	if len(limitOf) != len(operations) {
		t.Errorf("%d limits for %d operations", len(limitOf), len(operations))
	}
}

// TestParseOverrides: the flags' listener addresses replace the file's
// before validation, so their problems are listed with the file's, and a
// bad address the flag replaces is not.
func TestParseOverrides(t *testing.T) {
	const file = "listen: {grpc: 'nonsense', http: ':8080'}\n"
	_, err := Parse(strings.NewReader(file), Listen{GRPC: "127.0.0.1:9090", HTTP: "bad-flag"}.Override)
	if err == nil || !strings.Contains(err.Error(), "accounts: must list at least one account") ||
		!strings.Contains(err.Error(), `listen.http: must be host:port or :port`) || !strings.Contains(err.Error(), `got "bad-flag"`) ||
		strings.Contains(err.Error(), "nonsense") {
		t.Errorf("Parse with overrides: %v; want the file's and the flag's problems together, not the replaced address's", err)
	}
	c, err := Parse(strings.NewReader(file+"accounts: [{id: '111111111111', role_arn: 'arn:aws:iam::111111111111:role/x'}]\n"), Listen{GRPC: "127.0.0.1:9090"}.Override)
	if err != nil || c.Listen.GRPC != "127.0.0.1:9090" || c.Listen.HTTP != ":8080" {
		t.Errorf("Parse with an override: %+v, %v; want grpc from the flag, http from the file", c.Listen, err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestParseDoesNotRepeatSecrets: a secret that another field holds too (a
// YAML alias, a value pasted under the wrong key) is not echoed in that
// field's problem, whole or cut as yaml cuts long values; the problem
// names where the secret belongs instead.
func TestParseDoesNotRepeatSecrets(t *testing.T) {
	const password, externalID = "hunter2-not-a-hash", "ext-id-secret"
	yaml := `
shared_state:
  backend: redis
  redis:
    password: &pw ` + password + `
    address: *pw
    db: *pw
accounts:
  - id: "111111111111"
    role_arn: arn:aws:iam::111111111111:role/backupd
    external_id: ` + externalID + `
    default_region: ` + externalID + `
`
	_, err := Parse(strings.NewReader(yaml))
	if err == nil {
		t.Fatal("Parse took a bad config")
	}
	for _, leak := range []string{password, password[:7], externalID, externalID[:7]} {
		if strings.Contains(err.Error(), leak) {
			t.Errorf("the error repeats %q:\n%v", leak, err)
		}
	}
	for _, want := range []string{
		"shared_state.redis.address: must be host:port for backend redis; got (the value of shared_state.redis.password, not repeated)",
		"shared_state.redis.db: must be a whole number; got (the value of shared_state.redis.password, not repeated)",
		"accounts[0].default_region: must be an AWS region such as us-east-1; got (the value of accounts[0].external_id, not repeated)",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error lacks %q:\n%v", want, err)
		}
	}
}

// TestParseDoesNotRepeatSecretsElsewhere: the paths of the problems that
// TestParseDoesNotRepeatSecrets leaves out: a list echoed with %v
// (allowed_regions), problems reported beside a duplicate key, a key
// that is an alias of a secret, and a long value that yaml cuts inside a
// character, when the alias stands at two paths and yaml's words stay.
func TestParseDoesNotRepeatSecretsElsewhere(t *testing.T) {
	const password, externalID = "hunteré-pass", "ext-id-secret"
	config := func(extra string) string {
		return `
shared_state:
  backend: redis
  redis:
    address: 127.0.0.1:6379
    password: &pw ` + password + `
accounts:
  - id: "111111111111"
    role_arn: arn:aws:iam::111111111111:role/backupd
    external_id: &ext ` + externalID + `
    default_region: us-east-1
` + extra
	}
	for name, yaml := range map[string]string{
		"allowed_regions": config("    allowed_regions: [*ext]\n"),
		"duplicate key":   config("    default_region: us-west-2\nupstream_timeout: *pw\n"),
		"alias as a key":  config("    *ext : 1\n"),
		"cut character":   config("    limits: {create_backup: *pw, list_backups: *pw}\n"),
		"within a longer value": config("role_session_name: \"" + externalID + " x\"\n" +
			"callers:\n  - name: \"" + password + "\\x01\"\n    token_sha256: 0000000000000000000000000000000000000000000000000000000000000000\n"),
	} {
		_, err := Parse(strings.NewReader(yaml))
		if err == nil {
			t.Errorf("%s: Parse took a bad config", name)
			continue
		}
		for _, leak := range []string{password[:6], externalID[:6]} {
			if strings.Contains(err.Error(), leak) {
				t.Errorf("%s: the error repeats %q:\n%v", name, leak, err)
			}
		}
	}
}

func TestCallerName(t *testing.T) {
	for _, tt := range []struct {
		name string
		ok   bool
	}{
		{"orders-service", true},
		{"équipe paiements", true},
		{strings.Repeat("é", 128), true},
		{strings.Repeat("n", 129), false},
		{"orders\n", false},
		{"orders\x1b[31m", false},
		{"orders\u0085", false},
		{"orders\xff", false},
	} {
		if got := callerName(tt.name); got != tt.ok {
			t.Errorf("callerName(%q) = %v, want %v", tt.name, got, tt.ok)
		}
	}
}

// TestPartitionsAccepted: an account of each partition backupd takes
// parses with that partition's regions.
func TestPartitionsAccepted(t *testing.T) {
	_, err := Parse(strings.NewReader(`
accounts:
  - id: "111111111111"
    role_arn: arn:aws-cn:iam::111111111111:role/x
    default_region: cn-north-1
    allowed_regions: [cn-north-1, cn-northwest-1]
  - id: "222222222222"
    role_arn: arn:aws-us-gov:iam::222222222222:role/x
    default_region: us-gov-west-1
  - id: "333333333333"
    role_arn: arn:aws:iam::333333333333:role/x
    allowed_regions: [us-east-1, eu-west-1]
`))
	if err != nil {
		t.Fatal(err)
	}
}

// TestDefaultRegionInTheAccountsPartition: backupd gets its own
// credentials and calls STS in the top-level default_region, whose
// partition's STS alone takes them: accounts all of another partition
// need it set there.
func TestDefaultRegionInTheAccountsPartition(t *testing.T) {
	const china = `
accounts:
  - id: "111111111111"
    role_arn: arn:aws-cn:iam::111111111111:role/x
    default_region: cn-north-1
  - id: "222222222222"
    role_arn: arn:aws-cn:iam::222222222222:role/x
    default_region: cn-northwest-1
`
	_, err := Parse(strings.NewReader(china))
	want := `default_region: "us-east-1" (us-east-1 when not set) is a region of partition aws, but no account's role is: ` +
		`backupd gets its own credentials and calls STS in default_region, and STS of one partition takes only that partition's ` +
		`credentials and roles; set default_region to a region of the accounts' partition, such as cn-north-1`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v; want it to say %q", err, want)
	}
	// Accounts that take the default region are told both problems at
	// once: setting default_region fixes them all.
	_, err = Parse(strings.NewReader(strings.ReplaceAll(china, "    default_region: cn-north-1\n", "")))
	for _, want := range []string{`accounts[0].default_region: "us-east-1" is a region of partition aws, but role_arn is in aws-cn`,
		`default_region: "us-east-1" (us-east-1 when not set) is a region of partition aws, but no account's role is`, "such as cn-north-1"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v; want it to say %q", err, want)
		}
	}
	c, err := Parse(strings.NewReader("default_region: cn-northwest-1\n" + china))
	if err != nil {
		t.Fatal(err)
	}
	if ws := c.Warnings(); slices.ContainsFunc(ws, func(w string) bool { return strings.Contains(w, "partition") }) {
		t.Errorf("warnings %q; want none of partitions", ws)
	}
}

// TestCaseOfWordsAndDigits: a token's hash in upper-case hex (PowerShell's
// Get-FileHash writes it so) and log words in capitals are taken, as the
// log level is; two hashes that differ only in case are one token.
func TestCaseOfWordsAndDigits(t *testing.T) {
	const account = `
accounts:
  - id: "111111111111"
    role_arn: arn:aws:iam::111111111111:role/x
log: {format: TEXT, level: WARN}
callers:
  - name: orders
    token_sha256: 5553BA1F8337A96125BF614250F78788AB617DFC4AA19EE94D4306F18711DCB1
    accounts: ["*"]
    operations: ["*"]
`
	c, err := Parse(strings.NewReader(account))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Callers[0].TokenSHA256; got != "5553ba1f8337a96125bf614250f78788ab617dfc4aa19ee94d4306f18711dcb1" {
		t.Errorf("token_sha256 read as %q; want it in lower case", got)
	}
	if c.Log.Format != "text" {
		t.Errorf("log.format read as %q; want text", c.Log.Format)
	}
	if _, err := Parse(strings.NewReader(strings.Replace(account, "TEXT", "XML", 1))); err == nil ||
		!strings.Contains(err.Error(), `log.format: must be "json" or "text"; got "XML"`) {
		t.Errorf("err = %v; want log.format refused as written", err)
	}
	_, err = Parse(strings.NewReader(account + `  - name: billing
    token_sha256: 5553ba1f8337a96125bf614250f78788ab617dfc4aa19ee94d4306f18711dcb1
    accounts: ["*"]
    operations: ["*"]
`))
	if err == nil || !strings.Contains(err.Error(), "callers[1].token_sha256: is the same as callers[0]'s") {
		t.Errorf("err = %v; want the two hashes found one token", err)
	}
}

// TestRepeatsNameTheFirst: each repeat of a caller's name or token is
// told of the first caller that has it, where the operator looks.
func TestRepeatsNameTheFirst(t *testing.T) {
	caller := func(name, hash string) string {
		return "  - name: " + name + "\n    token_sha256: " + hash + "\n    accounts: [\"*\"]\n    operations: [\"*\"]\n"
	}
	const h1, h2 = "1111111111111111111111111111111111111111111111111111111111111111", "2222222222222222222222222222222222222222222222222222222222222222"
	_, err := Parse(strings.NewReader("accounts:\n  - id: \"111111111111\"\n    role_arn: arn:aws:iam::111111111111:role/x\ncallers:\n" +
		caller("a", h1) + caller("a", h2) + caller("a", h1) + caller("b", h1)))
	for _, want := range []string{
		`callers[1].name: "a" is already used by callers[0]`, `callers[2].name: "a" is already used by callers[0]`,
		"callers[2].token_sha256: is the same as callers[0]'s", "callers[3].token_sha256: is the same as callers[0]'s",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v; want it to say %q", err, want)
		}
	}
}
