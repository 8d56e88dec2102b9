// Package bench measures what one CreateBackup costs through backupd, and
// what part of that is backupd's own work.
//
// [Start] builds one in-process stack on loopback listeners: the sandbox fake
// of STS and DynamoDB on an httptest server, and backupd wired to it by
// wiring.New, which cmd/backupd's serve calls too: it builds the registry
// with accounts.NewFromConfig (per-account assumed-role credentials
// caches, the rate limiter), the service, the gRPC server with its
// interceptor, Prometheus metrics, and the grpc-gateway REST handler on a
// real http.Server that calls the service in process through the same
// interceptor. Every call backs up table Orders of demo account
// 111111111111. The stack differs from the shipped binary in three ways,
// chosen so that the figures show backupd's cost rather than its policy,
// each made by what the stack gives wiring.New (its configuration, its
// logger):
//
//   - It has no callers; the sandbox's demo callers let anonymous requests
//     through after one metadata lookup.
//   - The CreateBackup rate of every account and region is raised from
//     DynamoDB's 50/s to unlimited (see [Options]), so the limiter admits
//     every call at once and only its bookkeeping (a mutex and a check) is
//     measured. 10000/s, the first choice, is not enough: the limiter
//     spaces calls evenly, so at 64 callers most calls waited (loadgen
//     -rate 10000 shows it). The
//     limiter's sleeps are counted ([Stack.LimiterWaits]; the benchmarks
//     report them as waits/op) to show that it never waited.
//   - The request log is JSON, as in production (the sandbox binary logs
//     text), written to io.Discard: each request's log line is formatted,
//     so its cost is counted, but nothing is written anywhere.
//
// Beside backupd, the stack has the two floors backupd's time is compared
// with, and one variant:
//
//   - direct-sdk: aws-sdk-go-v2 calling CreateBackup on the same fake with
//     assumed-role credentials (stscreds in a CredentialsCache), built from
//     the same base aws.Config and retryer options as backupd's clients.
//   - bare-grpc: a unary grpc-go round trip over loopback TCP of the same
//     request, to a stub BackupService on a plain grpc.NewServer that
//     answers the response backupd gave during warm-up (same size).
//   - grpc-nolog: a second backupd, wired alike, over gRPC with
//     slog.DiscardHandler, which drops each record before formatting it:
//     grpc minus grpc-nolog is what the log line costs.
//   - bare-proxy: the two floors chained as backupd chains them, a stub
//     whose handler makes the direct-sdk call and answers the canned
//     response, on a grpc-go server with backupd's transport settings
//     (static HTTP/2 windows, stream workers, the handler's stack grown
//     first). It has everything backupd has except backupd's code: grpc
//     minus bare-proxy is what that code costs, while bare-proxy minus the
//     two floors is what chaining them costs (one more hand-off between
//     goroutines and sockets, and the caller's HTTP/2 PING answered on
//     its own while the DynamoDB call is out).
//   - floors: both floors made by one caller back to back, not chained.
//     Measured apart, each floor runs alone with its code and data hot in
//     the CPU's caches, which no request doing both gets; floors is what
//     doing both costs.
//
// backupd's own work is then grpc - (direct-sdk + bare-grpc): what it adds
// to one SDK call plus one gRPC round trip. The targets in the project's
// issue are that this is at most 25% of (direct-sdk + bare-grpc) at
// concurrency 1 and 64, and that rest is at most 1.5x grpc. BENCHMARKS.md
// at the repository root holds the figures and the commands that made them;
// loadgen prints own against both floors, apart and together.
//
// The benchmarks (BenchmarkCreateBackup serial, BenchmarkCreateBackupParallel
// with 64 goroutines in all) and cmd/loadgen share this package's stack, so
// both measure the same thing. Everything runs in one process: the figures
// include the client's and the fake's work, and on a small machine they
// compete with backupd for the same cores, which is why only ratios taken
// in one run are meaningful. The fake keeps every backup it creates; both
// empty it before each measurement ([Stack.Prune]) so that every target
// starts with the same heap and the same garbage-collection rate.
package bench
