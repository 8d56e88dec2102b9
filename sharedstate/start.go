package sharedstate

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/backupd/backupd/config"
	"github.com/backupd/backupd/redact"
)

// CheckStart fails the start for a Redis that refuses backupd's
// credentials, database, keys or one of its commands, whose certificate
// cannot be verified, or that may evict backupd's keys: mistakes that
// waiting will not mend, and with which a replica would report ready and
// refuse every request. A Redis that does not answer yet is logged, not
// fatal: requests are refused (UNAVAILABLE) until it answers, and what
// it would refuse goes unchecked until the next start.
func CheckStart(ctx context.Context, client *redis.Client, cfg config.Redis, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if answers, err := checkReach(ctx, client, cfg, log); !answers {
		return err
	}
	if err := checkAccess(ctx, client, cfg.KeyPrefix); Refused(err) {
		return fmt.Errorf("shared_state.redis: Redis refuses backupd's user a command or its keys "+
			"(its ACL needs the keys ~%s* and the commands the README lists under Several replicas): %w", cfg.KeyPrefix, err)
	} else if err != nil {
		log.Error("shared state: Redis did not take a first command", slog.String("address", cfg.Address), slog.String("error", redact.Error(err)))
	}
	if err := checkWait(ctx, client, cfg.WaitReplicas, log); err != nil {
		return err
	}
	err := checkEviction(ctx, client)
	if _, ok := errors.AsType[*MayEvictError](err); ok {
		return fmt.Errorf("shared_state.redis: %w", err)
	}
	if Refused(err) {
		return fmt.Errorf("shared_state.redis: Redis refuses backupd's user the INFO command, which tells whether it may evict backupd's keys (grant it +info): %w", err)
	}
	if err != nil {
		log.Error("shared state: could not tell whether Redis may evict backupd's keys", slog.String("error", redact.Error(err)))
	}
	return nil
}

// checkReach pings Redis: whether it answers, and the start's failure
// when it refuses backupd or its certificate.
func checkReach(ctx context.Context, client *redis.Client, cfg config.Redis, log *slog.Logger) (answers bool, err error) {
	err = client.Ping(ctx).Err()
	switch {
	case err == nil:
		return true, nil
	case redis.HasErrorPrefix(err, "NOPERM"):
		// PING's, or that of a command setting up its connection: SELECT
		// for a db other than 0.
		return false, fmt.Errorf("shared_state.redis: Redis refuses backupd's user a command it needs "+
			"(grant it +ping, and +select with a db other than 0, as the README's ACL line says): %w", err)
	case Refused(err):
		return false, fmt.Errorf("shared_state.redis: Redis refused backupd's credentials or database (check username, password and db): %w", err)
	case errors.As(err, new(*tls.CertificateVerificationError)):
		return false, fmt.Errorf("shared_state.redis: Redis' TLS certificate was not accepted "+
			"(set tls_ca_file to the CA that signed it, and check that address names a host the certificate is for): %w", err)
	case cfg.TLS:
		log.Error("shared state: Redis does not answer yet (tls is on: a Redis port that does not speak TLS does not answer either)",
			slog.String("address", cfg.Address), slog.String("error", redact.Error(err)))
	default:
		log.Error("shared state: Redis does not answer yet", slog.String("address", cfg.Address), slog.String("error", redact.Error(err)))
	}
	return false, nil
}

// checkWait checks, with wait_replicas, that backupd's user may run WAIT,
// without which every request with a request_id would be refused for
// good, and logs too few replicas.
func checkWait(ctx context.Context, client *redis.Client, want int, log *slog.Logger) error {
	if want == 0 {
		return nil
	}
	// WAIT 0 0 answers at once.
	if err := client.Do(ctx, "wait", 0, 0).Err(); Refused(err) {
		return fmt.Errorf("shared_state.redis: wait_replicas is %d, but Redis refuses backupd's user the WAIT command (grant it +wait): %w", want, err)
	}
	if err := checkReplicas(ctx, client, want); err != nil {
		log.Error("shared state: not enough Redis replicas", slog.String("error", redact.Error(err)))
	}
	return nil
}
