// Package config loads and validates backupd's YAML configuration.
//
// Role ARNs and ExternalIds come only from here, never from a request. A bad
// file is refused whole at start with every problem listed, so an operator
// fixes it in one pass.
package config

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/backupd/backupd/awsname"
	"github.com/backupd/backupd/certreload"
	"github.com/backupd/backupd/redact"
)

// Operation names DynamoDB calls that backupd rate limits; they match the SDK's
// operation names so a middleware can key on them.
const (
	OpCreateBackup           = "CreateBackup"
	OpDescribeBackup         = "DescribeBackup"
	OpDeleteBackup           = "DeleteBackup"
	OpListBackups            = "ListBackups"
	OpRestoreTableFromBackup = "RestoreTableFromBackup"
)

// operations lists every rate-limited operation; read only.
var operations = []string{OpCreateBackup, OpDescribeBackup, OpDeleteBackup, OpListBackups, OpRestoreTableFromBackup}

// limitOf gives each operation its field in Limits and its default rate,
// DynamoDB's documented per-account control-plane rate: the one place,
// with the Op constant and the Limits field, that an operation is added.
var limitOf = map[string]struct {
	field       func(*Limits) **float64
	defaultRate float64
}{
	OpCreateBackup:           {func(l *Limits) **float64 { return &l.CreateBackup }, 50},
	OpDescribeBackup:         {func(l *Limits) **float64 { return &l.DescribeBackup }, 10},
	OpDeleteBackup:           {func(l *Limits) **float64 { return &l.DeleteBackup }, 10},
	OpListBackups:            {func(l *Limits) **float64 { return &l.ListBackups }, 5},
	OpRestoreTableFromBackup: {func(l *Limits) **float64 { return &l.RestoreTableFromBackup }, 10},
}

// Operations returns every rate-limited operation, a fresh slice the
// caller may change.
func Operations() []string { return slices.Clone(operations) }

// Config is the whole server configuration.
type Config struct {
	Listen Listen `yaml:"listen"`
	// DefaultRegion is used for accounts that name none.
	DefaultRegion string `yaml:"default_region"`
	// RoleSessionName appears in the target accounts' CloudTrail for every
	// call backupd makes, so their owners can tell backupd's calls apart.
	RoleSessionName string `yaml:"role_session_name"`
	// UpstreamTimeout is the deadline given to requests that carry none,
	// and the longest one a request keeps. A CreateBackup or restore with
	// a request_id waits a second more (service's resultSlack) for its
	// run, which this bounds from when the request_id is claimed: a run
	// that ends at its bound, or another replica's run it waits for, is
	// still answered with its result.
	UpstreamTimeout time.Duration `yaml:"upstream_timeout"`
	// MaxWait is how long a request over its account's rate waits its turn
	// before it is refused with RESOURCE_EXHAUSTED.
	MaxWait time.Duration `yaml:"max_wait"`
	// ShutdownTimeout bounds how long SIGTERM waits for in-flight requests.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// DrainDelay is how long backupd keeps serving after SIGTERM, with
	// /readyz and grpc.health.v1 saying not ready, before it closes its
	// listeners: time for load balancers to stop sending it requests.
	DrainDelay time.Duration `yaml:"drain_delay"`
	Log        Log           `yaml:"log"`
	// SharedState is where the rate limits' turns and the results of
	// requests with a request_id are kept.
	SharedState SharedState `yaml:"shared_state"`
	Accounts    []Account   `yaml:"accounts"`
	// TLS, when set, serves both listeners over TLS.
	TLS TLS `yaml:"tls"`
	// Callers are who may call backupd, and what each may do. None means
	// anyone may do anything: fit for a sandbox, logged loudly otherwise.
	Callers []Caller `yaml:"callers"`
	// AnonymousCallers lets a request without a token through even when
	// callers are configured. Only the sandbox sets it; it has no YAML key.
	AnonymousCallers bool `yaml:"-"`
}

// TLS names the listeners' certificate and key (PEM files) and,
// optionally, the CA whose client certificates are required (mutual TLS).
type TLS struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
}

// Enabled reports whether the listeners serve TLS.
func (t TLS) Enabled() bool { return t.CertFile != "" }

// checkFiles reads the files the listeners load at start, so that one
// that is missing, unreadable or not what it should be is listed with
// every other problem, not found alone once they are mended.
func (t TLS) checkFiles(bad reporter) {
	read := func(field, path string) []byte {
		if path == "" {
			return nil
		}
		b, err := readNamedFile(path)
		if err != nil {
			bad(field, "%v", err)
			return nil
		}
		return b
	}
	now := time.Now()
	cert, key := read("tls.cert_file", t.CertFile), read("tls.key_file", t.KeyFile)
	if cert != nil && key != nil {
		if _, err := certreload.KeyPair(cert, key, now); err != nil {
			if pair, ok := errors.AsType[*certreload.NotKeyPairError](err); ok {
				bad("tls", "cert_file and key_file must hold a PEM certificate and its private key: %v", pair.Err)
			} else {
				bad("tls", "%v", strings.TrimPrefix(err.Error(), "tls: "))
			}
		}
	}
	if ca := read("tls.client_ca_file", t.ClientCAFile); ca != nil {
		if _, err := certreload.CAs(ca, now); errors.Is(err, certreload.ErrNoCAs) {
			bad("tls.client_ca_file", "must hold PEM certificates; it holds none")
		} else if err != nil {
			bad("tls", "%v", strings.TrimPrefix(err.Error(), "tls: "))
		}
	}
}

// readNamedFile reads the file a field names, never repeating a value
// that may be a secret put in its place (redact.ReadNamedFile).
func readNamedFile(path string) ([]byte, error) { return redact.ReadNamedFile(path) }

// problems collects configuration errors, each naming its field.
type problems []error

// at returns a function that adds a problem of the field under prefix
// ("accounts[0].", say).
func (ps *problems) at(prefix string) func(field, format string, args ...any) {
	return func(field, format string, args ...any) {
		*ps = append(*ps, fmt.Errorf("%s%s: "+format, append([]any{prefix, field}, args...)...))
	}
}

// rpcs names the BackupService methods a caller may be allowed; read only.
var rpcs = []string{"CreateBackup", "GetBackup", "ListBackups", "DeleteBackup", "RestoreTableFromBackup"}

// OpMetrics, in a caller's operations, allows it GET /metrics. The
// metrics name every configured account and its request rates, so only a
// caller allowed every account (accounts ["*"]) may be allowed it.
const OpMetrics = "Metrics"

// callerOperations names what a caller may be allowed: the BackupService
// methods and OpMetrics; read only.
var callerOperations = append(slices.Clone(rpcs), OpMetrics)

// Any, in a caller's accounts or operations, allows every one.
const Any = "*"

// Caller is one service that calls backupd: how it proves who it is and
// what it may do.
type Caller struct {
	// Name identifies the caller in logs and errors.
	Name string `yaml:"name"`
	// TokenSHA256 is the hex SHA-256 of the caller's bearer token; the
	// token itself is never written down.
	TokenSHA256 string `yaml:"token_sha256"`
	// Accounts the caller may act in (ids, or "*").
	Accounts []string `yaml:"accounts"`
	// Operations the caller may call (RPC names such as CreateBackup, or "*").
	Operations []string `yaml:"operations"`
}

// DefaultUpstreamTimeout bounds a request that sets no deadline. It is
// under shutdown_timeout's default, so a request in flight at SIGTERM ends
// before the drain does.
const DefaultUpstreamTimeout = 20 * time.Second

// The shared-state backends.
const (
	// BackendMemory keeps state in the process: right for one replica.
	BackendMemory = "memory"
	// BackendRedis keeps state in Redis, shared by every replica that
	// names the same server and key prefix.
	BackendRedis = "redis"
)

// SharedState selects and configures the shared-state backend.
type SharedState struct {
	Backend string `yaml:"backend"`
	Redis   Redis  `yaml:"redis"`
}

// Redis is how to reach the Redis server of the redis backend.
type Redis struct {
	Address  string `yaml:"address"`
	Username string `yaml:"username"`
	// Password is never logged or echoed in an error.
	Password string `yaml:"password"`
	// PasswordFile names a file that holds the password, in place of
	// Password: a secret mounted as a file (a Kubernetes Secret, say)
	// keeps it out of the configuration. Parse reads it into Password,
	// without one trailing newline; a changed file takes a restart.
	PasswordFile string `yaml:"password_file"`
	DB           int    `yaml:"db"`
	// KeyPrefix starts every key backupd writes, so that several
	// deployments can share one server.
	KeyPrefix string `yaml:"key_prefix"`
	TLS       bool   `yaml:"tls"`
	// TLSCAFile, with TLS, names the PEM certificates of the CAs that
	// Redis' certificate is checked against in place of the system's:
	// for a Redis whose certificate a private CA signed. Read at start,
	// once, by Parse (rootCAs).
	TLSCAFile string `yaml:"tls_ca_file"`
	rootCAs   *x509.CertPool
	// WaitReplicas, when above 0, is how many of the server's replicas
	// must hold a request_id's claim before its request runs (Redis'
	// WAIT, for up to WaitTimeout): Redis sends writes on to its replicas
	// after answering them, so a failover to one otherwise loses the
	// claims and results of its last moments, and their repeats run again.
	WaitReplicas int           `yaml:"wait_replicas"`
	WaitTimeout  time.Duration `yaml:"wait_timeout"`
}

// DefaultWaitTimeout is how long a request waits for Redis' replicas to
// confirm its claim when wait_replicas is set: replicas answer within a
// millisecond or two when they are up.
const DefaultWaitTimeout = 500 * time.Millisecond

// maxWaitTimeout bounds wait_timeout: a request with a request_id waits
// that long for a replica that is down before it is refused.
const maxWaitTimeout = 10 * time.Second

// Listen holds the listener addresses, and how many connections they
// hold open at once, both listeners together: a connection costs a file
// descriptor before its client has said who it is.
type Listen struct {
	GRPC string `yaml:"grpc"`
	HTTP string `yaml:"http"`
	// MaxConnections bounds the open connections in all;
	// MaxConnectionsPerIP, those from one IP address, so that one client
	// cannot take them all. Keep MaxConnections well under the process's
	// open-file limit (ulimit -n), which also holds backupd's own
	// connections to STS, DynamoDB and Redis.
	MaxConnections      *int `yaml:"max_connections"`
	MaxConnectionsPerIP *int `yaml:"max_connections_per_ip"`
}

// addresses are the listeners' addresses, each with its key, for the
// problems and warnings that name them.
func (l Listen) addresses() []struct{ name, addr string } {
	return []struct{ name, addr string }{{"listen.grpc", l.GRPC}, {"listen.http", l.HTTP}}
}

// Defaults of Listen's limits.
const (
	DefaultMaxConnections      = 10000
	DefaultMaxConnectionsPerIP = 1000
)

// Override puts l's addresses that are set (flags') in c, in place of
// the file's: a Parse override.
func (l Listen) Override(c *Config) {
	if l.GRPC != "" {
		c.Listen.GRPC = l.GRPC
	}
	if l.HTTP != "" {
		c.Listen.HTTP = l.HTTP
	}
}

// Log selects the log format: "json" in production, "text" for people.
type Log struct {
	Format string `yaml:"format"`
	Level  string `yaml:"level"`
}

// Account is one AWS account backupd may act in, and how.
type Account struct {
	ID string `yaml:"id"`
	// RoleARN is the role backupd assumes in the account; its account must be ID.
	RoleARN string `yaml:"role_arn"`
	// ExternalID is presented to STS; the role's trust policy should require it.
	ExternalID     string   `yaml:"external_id"`
	DefaultRegion  string   `yaml:"default_region"`
	AllowedRegions []string `yaml:"allowed_regions"`
	Limits         Limits   `yaml:"limits"`
}

// Limits are per-second call rates per (account, region, operation). Nil
// means the default, AWS's published per-account rate for the operation;
// pointers, so that a 0 written in the file is refused rather than taken
// for the default.
type Limits struct {
	CreateBackup           *float64 `yaml:"create_backup"`
	DescribeBackup         *float64 `yaml:"describe_backup"`
	DeleteBackup           *float64 `yaml:"delete_backup"`
	ListBackups            *float64 `yaml:"list_backups"`
	RestoreTableFromBackup *float64 `yaml:"restore_table_from_backup"`
}

// Rate returns the per-second rate for op, or 0 for an unknown op or one
// whose rate is not set.
func (l Limits) Rate(op string) float64 {
	lim, ok := limitOf[op]
	if !ok || *lim.field(&l) == nil {
		return 0
	}
	return **lim.field(&l)
}

// Load reads, defaults, overrides and validates the file at path (Parse).
func Load(path string, overrides ...func(*Config)) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	return Parse(f, overrides...)
}

// Parse decodes YAML strictly (unknown keys are errors), applies defaults
// and overrides (what flags set), then validates. The error lists every
// problem found, the overrides' with the file's.
func Parse(r io.Reader, overrides ...func(*Config)) (*Config, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, rep, err := decode(data)
	if err != nil {
		return nil, err
	}
	zeros := c.explicitZeros()
	c.ApplyDefaults()
	for _, o := range overrides {
		o(c)
	}
	problems := append(append(rep.problems, zeros...), rep.without(c.Validate())...)
	password, err := c.SharedState.passwordFromFile()
	if err != nil {
		problems = append(problems, fmt.Errorf("shared_state.redis.password_file: %w", err))
	}
	roots, err := c.SharedState.rootCAsFromFile()
	if err != nil {
		problems = append(problems, fmt.Errorf("shared_state.redis.tls_ca_file: %w", err))
	}
	if err := errors.Join(problems...); err != nil {
		return nil, c.withoutSecrets(err)
	}
	if password != "" {
		c.SharedState.Redis.Password = password
	}
	c.SharedState.Redis.rootCAs = roots
	return c, nil
}

// withoutSecrets takes the file's secrets (the Redis password, the
// ExternalIds) out of err's problems, where another field quotes them: a
// YAML alias (address: *pw) or a value pasted into the wrong key puts a
// secret where a problem echoes the value it got, with %q or in
// backquotes. The problem names the field that holds it instead, also
// for a quoted value that holds a secret beside other text.
func (c *Config) withoutSecrets(err error) error {
	type secret struct{ field, value string }
	secrets := []secret{{"shared_state.redis.password", c.SharedState.Redis.Password}}
	for i, a := range c.Accounts {
		secrets = append(secrets, secret{fmt.Sprintf("accounts[%d].external_id", i), a.ExternalID})
	}
	msg := err.Error()
	redacted := msg
	for _, s := range secrets {
		if s.value == "" {
			continue
		}
		said := "(the value of " + s.field + ", not repeated)"
		redacted = strings.ReplaceAll(redacted, strconv.Quote(s.value), said)
		redacted = strings.ReplaceAll(redacted, "`"+s.value+"`", said)
		// A key that is an alias of the secret is named bare.
		redacted = strings.ReplaceAll(redacted, ": "+s.value+" is not a configuration key", ": "+said+" is not a configuration key")
		// yaml quotes a value over 10 bytes by its first 7: a secret
		// of 7 or more bytes that begins a longer value shows so too.
		if len(s.value) >= 7 {
			// explain drops a character the cut splits; yaml's own
			// words, kept when a value stands at several paths, do not.
			redacted = strings.ReplaceAll(redacted, "`"+strings.ToValidUTF8(s.value[:7], "")+"...`", said)
			redacted = strings.ReplaceAll(redacted, "`"+s.value[:7]+"...`", said)
		}
	}
	// A secret within a longer quoted value (pasted beside other text)
	// takes the whole value; text outside quotes is the message's own.
	redacted = echoed.ReplaceAllStringFunc(redacted, func(v string) string {
		for _, s := range secrets {
			if q := strconv.Quote(s.value); len(s.value) >= 4 && (strings.Contains(v, q[1:len(q)-1]) || cutBefore(v, s.value)) {
				return "(a value holding that of " + s.field + ", not repeated)"
			}
		}
		return v
	})
	if redacted == msg {
		return err
	}
	return errors.New(redacted)
}

// cutBefore reports whether v, a value yaml echoed cut to its first
// characters (`abcdefg...`), ends in the first 3 or more of secret: the
// value went on with the secret, which the cut would otherwise show the
// start of.
func cutBefore(v, secret string) bool {
	shown, ok := strings.CutSuffix(strings.TrimPrefix(v, "`"), "...`")
	if !ok || !strings.HasPrefix(v, "`") {
		return false
	}
	for i := range len(shown) {
		if rest := shown[i:]; len(rest) >= 3 && strings.HasPrefix(secret, rest) {
			return true
		}
	}
	return false
}

// echoed matches a value a problem echoes: as %q quotes it, or yaml's
// messages (in backquotes).
var echoed = regexp.MustCompile(`"(?:[^"\\]|\\.)*"` + "|`[^`]*`")

// unsetDuration marks, while a file is decoded, a duration that has a
// default and that the file leaves out, so that a 0 the file writes is not
// taken for "unset" (see explicitZeros).
const unsetDuration = time.Duration(math.MinInt64)

// unsetString marks, as unsetDuration does, a string with a default that
// the file leaves out: a value no file would write.
const unsetString = "\x00unset"

// explicitZeros resets the durations the file left out to 0, which
// ApplyDefaults fills in, and reports those the file set to 0: none of
// them works at 0 (no time for any request, no wait for a turn, no drain),
// and replacing the operator's 0 by the default would do what was not
// asked without saying so. Likewise an empty Redis key prefix, which
// would otherwise become the default one, shared with other deployments.
func (c *Config) explicitZeros() []error {
	var defaults Config
	defaults.ApplyDefaults()
	var ps problems
	bad := ps.at("")
	for _, d := range []struct {
		name     string
		v        *time.Duration
		fallback time.Duration
	}{
		{"upstream_timeout", &c.UpstreamTimeout, defaults.UpstreamTimeout},
		{"max_wait", &c.MaxWait, defaults.MaxWait},
		{"shutdown_timeout", &c.ShutdownTimeout, defaults.ShutdownTimeout},
		{"shared_state.redis.wait_timeout", &c.SharedState.Redis.WaitTimeout, defaults.SharedState.Redis.WaitTimeout},
	} {
		switch *d.v {
		case unsetDuration:
			*d.v = 0
		case 0:
			bad(d.name, "must be more than 0; leave it out for the default of %s", d.fallback)
		}
	}
	switch p := &c.SharedState.Redis.KeyPrefix; *p {
	case unsetString:
		*p = ""
	case "":
		bad("shared_state.redis.key_prefix", "must not be empty: backupd's keys would mix with every other key of the database; "+
			"leave it out for the default of %q, or give each deployment sharing a Redis a prefix of its own", defaults.SharedState.Redis.KeyPrefix)
	}
	return ps
}

// ApplyDefaults fills every unset field with its default.
func (c *Config) ApplyDefaults() {
	setDefault(&c.Listen.GRPC, ":9090")
	setDefault(&c.Listen.HTTP, ":8080")
	if c.Listen.MaxConnections == nil {
		c.Listen.MaxConnections = new(DefaultMaxConnections)
	}
	if c.Listen.MaxConnectionsPerIP == nil {
		c.Listen.MaxConnectionsPerIP = new(DefaultMaxConnectionsPerIP)
	}
	setDefault(&c.DefaultRegion, "us-east-1")
	setDefault(&c.RoleSessionName, "backupd")
	setDefault(&c.Log.Format, "json")
	setDefault(&c.Log.Level, "info")
	setDefault(&c.SharedState.Backend, BackendMemory)
	setDefault(&c.SharedState.Redis.KeyPrefix, "backupd:")
	if c.UpstreamTimeout == 0 {
		c.UpstreamTimeout = DefaultUpstreamTimeout
	}
	if c.MaxWait == 0 {
		c.MaxWait = time.Second
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 25 * time.Second
	}
	if c.SharedState.Redis.WaitTimeout == 0 {
		c.SharedState.Redis.WaitTimeout = DefaultWaitTimeout
	}
	// Hex digits and the log's words in either case, as tools write them
	// (PowerShell's Get-FileHash gives upper case).
	for i := range c.Callers {
		c.Callers[i].TokenSHA256 = strings.ToLower(c.Callers[i].TokenSHA256)
	}
	if f := strings.ToLower(c.Log.Format); f == "json" || f == "text" {
		c.Log.Format = f // any other is refused as written
	}
	for i := range c.Accounts {
		a := &c.Accounts[i]
		setDefault(&a.DefaultRegion, c.DefaultRegion)
		if len(a.AllowedRegions) == 0 {
			a.AllowedRegions = []string{a.DefaultRegion}
		}
		for _, op := range operations {
			if r := limitOf[op].field(&a.Limits); *r == nil {
				*r = new(limitOf[op].defaultRate) // each account its own value
			}
		}
	}
}

// unknownKeyRe matches yaml's report of an unknown key, which names Go
// types rather than the file's sections.
var unknownKeyRe = regexp.MustCompile(`^(line \d+): field (.+) not found in type \S+$`)

// CheckListenAddr says what is wrong with addr as a listener's address,
// or nil: for a command line to name its own flag, where the
// configuration names listen.grpc or listen.http.
func CheckListenAddr(addr string) error {
	if !validListenAddr(addr) {
		return fmt.Errorf(`must be host:port or :port, with a port of 0-65535 (or a service name), such as ":9090"; got %q`, addr)
	}
	return nil
}

// validListenAddr reports whether addr is a TCP listen address: an
// optional host and a port, a number or a service name net.Listen knows.
func validListenAddr(addr string) bool {
	_, ok := listenPort(addr)
	return ok
}

// anyPort reports whether addr asks for a port the system picks (port 0),
// which two listeners can both ask for.
func anyPort(addr string) bool {
	port, ok := listenPort(addr)
	return ok && port == 0
}

// samePort reports whether listening on a and then b would fail for a
// port taken: the same port, not 0, on the same host, or on every
// interface for either (":9090", "0.0.0.0:9090", "[::]:9090"); "localhost"
// is listened on as 127.0.0.1.
func samePort(a, b string) bool {
	pa, okA := listenPort(a)
	pb, okB := listenPort(b)
	if !okA || !okB || pa != pb || pa == 0 {
		return false
	}
	ha, _, _ := net.SplitHostPort(a)
	hb, _, _ := net.SplitHostPort(b)
	canonical := func(h string) string {
		if strings.EqualFold(h, "localhost") {
			return "127.0.0.1"
		}
		if ip, err := netip.ParseAddr(h); err == nil {
			if ip.IsUnspecified() {
				return ""
			}
			return ip.Unmap().String()
		}
		return h
	}
	ha, hb = canonical(ha), canonical(hb)
	return ha == "" || hb == "" || ha == hb
}

// listenPort is the port of a listen address, by number or service name.
func listenPort(addr string) (int, bool) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, false
	}
	n, err := net.LookupPort("tcp", port)
	return n, err == nil
}

// dialPort reports whether port is one a client can dial: a number of
// 1-65535 or a service name.
func dialPort(port string) bool {
	n, err := net.LookupPort("tcp", port)
	return err == nil && n > 0
}

func setDefault(s *string, v string) {
	if *s == "" {
		*s = v
	}
}

var (
	roleARNRe     = regexp.MustCompile(`^arn:(` + strings.Join(awsname.Partitions(), "|") + `):iam::([0-9]{12}):role/[\w+=,.@/-]{1,512}$`)
	externalIDRe  = regexp.MustCompile(`^[\w+=,.@:/-]+$`)
	sessionNameRe = regexp.MustCompile(`^[\w+=,.@-]{2,64}$`)
)

// The rates a limit may have, per second: one call in about 17 minutes,
// up to 10000 calls.
const (
	minRate = 0.001
	maxRate = 10000.0
)

// Validate reports every problem in c, one per line, each naming its field.
// It reads the TLS files, so that one that will not load is among them.
func (c *Config) Validate() error {
	var ps problems
	bad := ps.at("")
	c.validateServing(bad)
	c.SharedState.validate(bad)
	c.TLS.validate(bad)
	seen := c.validateAccounts(&ps)
	c.validateCallers(&ps, seen)
	return errors.Join(ps...)
}

// reporter records one problem with a field.
type reporter = func(field, format string, args ...any)

// validateServing checks how backupd serves: listeners, region, session
// name, durations and log.
func (c *Config) validateServing(bad reporter) {
	if c.Listen.GRPC == c.Listen.HTTP && !anyPort(c.Listen.GRPC) {
		bad("listen", "grpc and http must differ; both are %q", c.Listen.GRPC)
	} else if samePort(c.Listen.GRPC, c.Listen.HTTP) {
		bad("listen", "grpc %q and http %q would take the same port: give them different ports", c.Listen.GRPC, c.Listen.HTTP)
	}
	for _, l := range c.Listen.addresses() {
		if err := CheckListenAddr(l.addr); err != nil {
			bad(l.name, "%v", err)
		}
	}
	for _, l := range []struct {
		name     string
		v        *int
		fallback int
	}{{"listen.max_connections", c.Listen.MaxConnections, DefaultMaxConnections},
		{"listen.max_connections_per_ip", c.Listen.MaxConnectionsPerIP, DefaultMaxConnectionsPerIP}} {
		if l.v != nil && *l.v < 1 {
			bad(l.name, "must be at least 1; leave it out for the default of %d; got %d", l.fallback, *l.v)
		}
	}
	if !awsname.ValidRegion(c.DefaultRegion) {
		bad("default_region", "must be an AWS region such as us-east-1; got %q", c.DefaultRegion)
	}
	if !sessionNameRe.MatchString(c.RoleSessionName) {
		bad("role_session_name", "must be 2-64 characters of a-z A-Z 0-9 + = , . @ _ -; got %q", c.RoleSessionName)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"upstream_timeout", c.UpstreamTimeout}, {"max_wait", c.MaxWait}, {"shutdown_timeout", c.ShutdownTimeout}} {
		if d.v < 0 {
			bad(d.name, "must be more than 0; got %s", d.v)
		}
	}
	if c.DrainDelay < 0 {
		bad("drain_delay", "must not be negative; got %s", c.DrainDelay)
	}
	if c.Log.Format != "json" && c.Log.Format != "text" {
		bad("log.format", `must be "json" or "text"; got %q`, c.Log.Format)
	}
	if _, ok := c.Log.SlogLevel(); !ok {
		bad("log.level", `must be debug, info, warn or error; got %q`, c.Log.Level)
	}
}

func (s SharedState) validate(bad reporter) {
	switch s.Backend {
	case BackendMemory:
		// Replicas would each keep their own limits and request_ids.
		if r := s.Redis; r.Address != "" || r.Username != "" || r.Password != "" || r.PasswordFile != "" || r.DB != 0 || r.TLS || r.TLSCAFile != "" ||
			r.WaitReplicas != 0 || r.WaitTimeout != DefaultWaitTimeout {
			bad("shared_state.redis", `is set, but backend is "memory", which does not use it: set backend: redis, or remove the redis section`)
		}
	case BackendRedis:
		switch _, port, err := net.SplitHostPort(s.Redis.Address); {
		case strings.ContainsAny(s.Redis.Address, "@/?#"):
			// A URL (redis://user:password@host:port, or one whose
			// query names the password) or credentials before the
			// host: not repeated, as it may hold a password, which
			// would otherwise reach the error and every log line
			// naming the address.
			bad("shared_state.redis.address", "must be host:port for backend redis, without a scheme or credentials "+
				"(put them in username and password); the value given is not repeated, as it may hold a password")
		case err != nil:
			bad("shared_state.redis.address", "must be host:port for backend redis; got %q", s.Redis.Address)
		case !dialPort(port):
			// Otherwise every dial fails ("unknown port"), while the
			// replica starts, reports ready and refuses every request.
			bad("shared_state.redis.address", "must be host:port for backend redis, with a port of 1-65535 (or a service name); got %q", s.Redis.Address)
		}
		if s.Redis.DB < 0 {
			bad("shared_state.redis.db", "must not be negative; got %d", s.Redis.DB)
		}
		if s.Redis.WaitReplicas < 0 {
			bad("shared_state.redis.wait_replicas", "must not be negative; got %d", s.Redis.WaitReplicas)
		}
		// WAIT takes whole milliseconds, and 0 waits for ever. The
		// Redis client's read timeout is 1 s longer, whatever this is.
		if w := s.Redis.WaitTimeout; w < time.Millisecond || w > maxWaitTimeout {
			bad("shared_state.redis.wait_timeout", "must be from 1ms to %s; got %s", maxWaitTimeout, w)
		}
		s.Redis.checkCAFile(bad)
		s.Redis.checkPasswordFile(bad)
	default:
		bad("shared_state.backend", `must be "memory" or "redis"; got %q`, s.Backend)
	}
}

// checkCAFile reports a tls_ca_file set without tls. The file itself is
// read by Parse alone (rootCAsFromFile), and once, as password_file is.
func (r Redis) checkCAFile(bad reporter) {
	if r.TLSCAFile != "" && !r.TLS {
		bad("shared_state.redis.tls_ca_file", "needs tls: true: the CAs are for checking Redis' certificate over TLS")
	}
}

// rootCAsFromFile is the CAs the redis backend's tls_ca_file holds, or
// nil when the backend takes none from a file.
func (s SharedState) rootCAsFromFile() (*x509.CertPool, error) {
	if s.Backend != BackendRedis || s.Redis.TLSCAFile == "" {
		return nil, nil
	}
	return s.Redis.readRootCAs()
}

// checkPasswordFile reports a password_file set beside password. The
// file itself is read by Parse alone (passwordFromFile), and once: a
// second read of a pipe (a FIFO, a shell's <(...)) would wait for a
// writer that has gone, or find it empty.
func (r Redis) checkPasswordFile(bad reporter) {
	if r.PasswordFile != "" && r.Password != "" {
		bad("shared_state.redis.password_file", "is set beside password: set one of them")
	}
}

// passwordFromFile is the password the redis backend's password_file
// holds, or "" when the backend takes none from a file: another backend,
// no password_file, or one set beside password (checkPasswordFile).
func (s SharedState) passwordFromFile() (string, error) {
	if s.Backend != BackendRedis || s.Redis.PasswordFile == "" || s.Redis.Password != "" {
		return "", nil
	}
	return s.Redis.filePassword()
}

// filePassword is the password PasswordFile holds: its contents without
// one trailing newline (echo's, or a CRLF). What it holds is never
// repeated in its error.
func (r Redis) filePassword() (string, error) {
	b, err := readNamedFile(r.PasswordFile)
	if err != nil {
		return "", err
	}
	p, _ := strings.CutSuffix(string(b), "\n")
	p, _ = strings.CutSuffix(p, "\r")
	switch {
	case p == "":
		return "", errors.New("holds no password: the file is empty")
	case strings.ContainsAny(p, "\r\n"):
		return "", errors.New("must hold the password alone, on one line; it holds several lines (not repeated)")
	}
	return p, nil
}

// RootCAs returns the CAs of TLSCAFile, or nil, for the system's, when
// it is not set: those Parse read, or, for a Redis not from Parse, the
// file's.
func (r Redis) RootCAs() (*x509.CertPool, error) {
	if r.rootCAs != nil {
		return r.rootCAs, nil
	}
	if r.TLSCAFile == "" {
		return nil, nil
	}
	return r.readRootCAs()
}

// readRootCAs reads the CAs of TLSCAFile.
func (r Redis) readRootCAs() (*x509.CertPool, error) {
	b, err := readNamedFile(r.TLSCAFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New("must hold PEM certificates; it holds none")
	}
	return pool, nil
}

func (t TLS) validate(bad reporter) {
	if (t.CertFile == "") != (t.KeyFile == "") {
		bad("tls", "cert_file and key_file must be set together")
	}
	if t.ClientCAFile != "" && t.CertFile == "" {
		bad("tls.client_ca_file", "needs cert_file and key_file: client certificates are checked over TLS only")
	}
	t.checkFiles(bad)
}

// validateAccounts checks each account, and returns where each id is
// configured, for the callers' account lists.
func (c *Config) validateAccounts(ps *problems) map[string]int {
	bad := ps.at("")
	if len(c.Accounts) == 0 {
		bad("accounts", "must list at least one account")
	}
	seen := make(map[string]int, len(c.Accounts))
	for i, a := range c.Accounts {
		p := fmt.Sprintf("accounts[%d]", i)
		if j, dup := seen[a.ID]; dup {
			bad(p+".id", "%q is already configured at accounts[%d]", a.ID, j)
		}
		seen[a.ID] = i
		// An account's region that is the top-level default_region, when
		// that is wrong, is that field's problem, reported there once.
		a.validate(ps.at(p+"."), !awsname.ValidRegion(c.DefaultRegion) && a.DefaultRegion == c.DefaultRegion)
	}
	if away := c.outsideHome(); awsname.ValidRegion(c.DefaultRegion) && len(c.Accounts) > 0 && len(away) == len(c.Accounts) {
		bad("default_region", "%q (us-east-1 when not set) is a region of partition %s, but no account's role is: backupd gets its own "+
			"credentials and calls STS in default_region, and STS of one partition takes only that partition's credentials and roles; "+
			"set default_region to a region of the accounts' partition, such as %s", c.DefaultRegion, awsname.RegionPartition(c.DefaultRegion),
			regionOf(c.Accounts[away[0]]))
	}
	return seen
}

// outsideHome lists the accounts whose role is of another partition than
// the top-level default_region, where backupd gets its own credentials
// and calls STS; by the role, so that an account that takes the default
// region, and is told its partition is wrong, is counted too, and both
// problems are told at once.
func (c *Config) outsideHome() []int {
	home := awsname.RegionPartition(c.DefaultRegion)
	var away []int
	for i, a := range c.Accounts {
		if m := roleARNRe.FindStringSubmatch(a.RoleARN); m != nil && m[1] != home {
			away = append(away, i)
		}
	}
	return away
}

// regionOf is a region of a's role's partition: its default region when
// that is one.
func regionOf(a Account) string {
	m := roleARNRe.FindStringSubmatch(a.RoleARN)
	switch {
	case m == nil || awsname.RegionPartition(a.DefaultRegion) == m[1]:
		return a.DefaultRegion
	case m[1] == "aws-cn":
		return "cn-north-1"
	case m[1] == "aws-us-gov":
		return "us-gov-west-1"
	}
	return "us-east-1"
}

// Warnings lists what in c is allowed but likely a mistake, for the log
// at start: settings that undo one another, and a service open to anyone
// who reaches it.
func (c *Config) Warnings() []string {
	var ws []string
	if c.ShutdownTimeout < c.UpstreamTimeout {
		ws = append(ws, fmt.Sprintf("shutdown_timeout is shorter than upstream_timeout: a request in flight at SIGTERM "+
			"may be cut off before AWS answers it (shutdown_timeout %s, upstream_timeout %s)", c.ShutdownTimeout, c.UpstreamTimeout))
	}
	if c.MaxWait >= c.UpstreamTimeout {
		ws = append(ws, fmt.Sprintf("max_wait is not shorter than upstream_timeout, which bounds every request: a request over "+
			"the rate is refused at upstream_timeout, not max_wait (max_wait %s, upstream_timeout %s)", c.MaxWait, c.UpstreamTimeout))
	}
	if away := c.outsideHome(); len(away) > 0 && len(away) < len(c.Accounts) {
		ids := make([]string, len(away))
		for i, j := range away {
			ids[i] = c.Accounts[j].ID
		}
		ws = append(ws, fmt.Sprintf("accounts %s are of another partition than default_region %s (%s): backupd's own credentials "+
			"belong to one partition, and STS of another refuses them, so every request to those accounts fails; "+
			"run one backupd per partition", strings.Join(ids, ", "), c.DefaultRegion, awsname.RegionPartition(c.DefaultRegion)))
	}
	if len(c.Callers) == 0 {
		ws = append(ws, "no callers configured: requests are not authenticated, and anyone who reaches backupd may act in every configured account")
	}
	if len(c.Callers) > 0 && !slices.ContainsFunc(c.Callers, scrapes) {
		ws = append(ws, `callers are configured and none is allowed Metrics in every account: GET /metrics refuses every scrape `+
			`(401 without a token); give the scraper a caller of its own, with operations [Metrics] and accounts ["*"]`)
	}
	if open := c.beyondLoopback(); len(open) > 0 && len(c.Callers) > 0 && !c.TLS.Enabled() {
		ws = append(ws, fmt.Sprintf("callers' tokens cross the network in the clear: no tls is configured, and %s; "+
			"configure tls, unless a proxy or mesh encrypts every connection to backupd", strings.Join(open, " and ")))
	}
	return ws
}

// scrapes reports whether cl may read GET /metrics: allowed OpMetrics
// (or every operation) in every account.
func scrapes(cl Caller) bool {
	return slices.Contains(cl.Accounts, Any) && (slices.Contains(cl.Operations, OpMetrics) || slices.Contains(cl.Operations, Any))
}

// beyondLoopback names the listeners that take connections from beyond
// this host: those not bound to a loopback address.
func (c *Config) beyondLoopback() []string {
	var open []string
	for _, l := range c.Listen.addresses() {
		host, _, err := net.SplitHostPort(l.addr)
		if err != nil || host == "localhost" {
			continue
		}
		if ip, err := netip.ParseAddr(host); err == nil && ip.IsLoopback() {
			continue
		}
		open = append(open, fmt.Sprintf("%s (%q) takes connections from beyond this host", l.name, l.addr))
	}
	return open
}

var tokenHashRe = regexp.MustCompile(`^[0-9a-f]{64}$`)

// maxCallerName bounds a caller's name, which every log line of its
// requests and every refusal it gets repeats.
const maxCallerName = 128

// callerName reports whether name is fit to stand in a log line and an
// error: valid UTF-8, at most maxCallerName characters, no control
// characters (a newline or an escape sequence that a terminal or a log
// viewer would act on).
func callerName(name string) bool {
	if !utf8.ValidString(name) || utf8.RuneCountInString(name) > maxCallerName {
		return false
	}
	return !strings.ContainsFunc(name, unicode.IsControl)
}

// emptyTokenSHA256 is the SHA-256 of "" (what `echo -n | sha256sum` gives
// when $TOKEN was unset).
const emptyTokenSHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

func (c *Config) validateCallers(ps *problems, accounts map[string]int) {
	names, tokens := map[string]int{}, map[string]int{}
	for i, cl := range c.Callers {
		bad := ps.at(fmt.Sprintf("callers[%d].", i))
		if cl.Name == "" {
			bad("name", "must be set; it names the caller in logs")
		} else if !callerName(cl.Name) {
			bad("name", "must be at most %d characters, none of them a control character: it names the caller in logs and errors; got %q",
				maxCallerName, cl.Name)
		} else if j, dup := names[cl.Name]; dup {
			bad("name", "%q is already used by callers[%d]", cl.Name, j)
		} else {
			names[cl.Name] = i // each repeat is told of the first
		}
		if !tokenHashRe.MatchString(cl.TokenSHA256) {
			// Never echo it: it is as good as a token to someone who can
			// reach backupd's configuration.
			bad("token_sha256", "must be the 64 hex digits of the token's SHA-256 (sha256sum)")
		} else if j, dup := tokens[cl.TokenSHA256]; dup {
			bad("token_sha256", "is the same as callers[%d]'s; every caller needs its own token", j)
		} else if cl.TokenSHA256 == emptyTokenSHA256 {
			bad("token_sha256", "is the SHA-256 of an empty token, which no request can send; hash the caller's token (printf %%s \"$TOKEN\" | sha256sum)")
		} else {
			tokens[cl.TokenSHA256] = i
		}
		if len(cl.Accounts) == 0 {
			bad("accounts", `must list account ids, or "*" for all`)
		}
		for j, a := range cl.Accounts {
			if _, ok := accounts[a]; !ok && a != Any {
				bad(fmt.Sprintf("accounts[%d]", j), `%q is not a configured account id, nor "*"`, a)
			}
		}
		if len(cl.Operations) == 0 {
			bad("operations", `must list operations (%s), or "*" for all`, strings.Join(callerOperations, ", "))
		}
		for j, op := range cl.Operations {
			switch {
			case op != Any && !slices.Contains(callerOperations, op):
				bad(fmt.Sprintf("operations[%d]", j), `must be one of %s, or "*"; got %q`, strings.Join(callerOperations, ", "), op)
			case op == OpMetrics && !slices.Contains(cl.Accounts, Any):
				bad(fmt.Sprintf("operations[%d]", j), `%s names every account and its rates: allow it only to a caller whose accounts are ["*"]`, OpMetrics)
			}
		}
	}
}

// validate reports a's problems; inherited marks a default_region that is
// the top-level one, and wrong there.
func (a Account) validate(bad func(field, format string, args ...any), inherited bool) {
	if !awsname.ValidAccountID(a.ID) {
		bad("id", "must be exactly 12 digits (quote it in YAML); got %q", a.ID)
	}
	if m := roleARNRe.FindStringSubmatch(a.RoleARN); m == nil {
		bad("role_arn", "must be an IAM role ARN such as arn:aws:iam::%s:role/backupd", orPlaceholder(a.ID))
	} else {
		if m[2] != a.ID && awsname.ValidAccountID(a.ID) {
			bad("role_arn", "names account %s but the account id is %q; a role must live in its own account", m[2], a.ID)
		}
		a.validatePartition(bad, m[1])
	}
	if n := len(a.ExternalID); n != 0 && (n < 2 || n > 1224 || !externalIDRe.MatchString(a.ExternalID)) {
		// Never echo the ExternalId: it is a shared secret with the account owner.
		bad("external_id", "must be 2-1224 characters of a-z A-Z 0-9 + = , . @ : / _ -")
	}
	a.validateRegions(bad, inherited)
	for _, op := range operations {
		// Written so NaN fails too; below the least rate a call's spacing
		// (1/rate) would overflow time.Duration, which the limiter reads
		// as no limit at all.
		if r := a.Limits.Rate(op); !(r >= minRate && r <= maxRate) {
			bad("limits."+snake(op), "must be a rate per second from %g to %g; got %g", minRate, maxRate, r)
		}
	}
}

func (a Account) validateRegions(bad func(field, format string, args ...any), inherited bool) {
	if !inherited && !awsname.ValidRegion(a.DefaultRegion) {
		bad("default_region", "must be an AWS region such as us-east-1; got %q", a.DefaultRegion)
	}
	allowed := inherited
	for j, r := range a.AllowedRegions {
		if !awsname.ValidRegion(r) && !(inherited && r == a.DefaultRegion) {
			bad(fmt.Sprintf("allowed_regions[%d]", j), "must be an AWS region such as us-east-1; got %q", r)
		}
		allowed = allowed || r == a.DefaultRegion
	}
	if !allowed {
		// %q quotes each region, as every other problem quotes a value,
		// so that withoutSecrets finds a secret among them.
		bad("default_region", "%q must be one of allowed_regions %q", a.DefaultRegion, a.AllowedRegions)
	}
}

// validatePartition reports a's regions that are not in partition, the
// role's: an account, its role and its regions are in one partition, and
// STS and DynamoDB of another refuse the role.
func (a Account) validatePartition(bad func(field, format string, args ...any), partition string) {
	check := func(field, r string) {
		if p := awsname.RegionPartition(r); awsname.ValidRegion(r) && p != partition {
			bad(field, "%q is a region of partition %s, but role_arn is in %s; an account's regions are in its role's partition", r, p, partition)
		}
	}
	check("default_region", a.DefaultRegion)
	for j, r := range a.AllowedRegions {
		if r != a.DefaultRegion {
			check(fmt.Sprintf("allowed_regions[%d]", j), r)
		}
	}
}

func orPlaceholder(id string) string {
	if awsname.ValidAccountID(id) {
		return id
	}
	return "123456789012"
}

// SlogLevel is log.level as slog's; ok is false for a level backupd does
// not take. Validate and the logger both read the level here, so that they
// cannot disagree on a spelling (slog alone takes "info+2").
func (l Log) SlogLevel() (level slog.Level, ok bool) {
	switch strings.ToLower(l.Level) {
	case "debug":
		return slog.LevelDebug, true
	case "info":
		return slog.LevelInfo, true
	case "warn":
		return slog.LevelWarn, true
	case "error":
		return slog.LevelError, true
	}
	return slog.LevelInfo, false
}

// snake turns an operation name into its YAML key: CreateBackup -> create_backup.
func snake(op string) string {
	var b strings.Builder
	for i, r := range op {
		if r >= 'A' && r <= 'Z' {
			if i > 0 {
				b.WriteByte('_')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}
