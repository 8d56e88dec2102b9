package integration

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/backupd/backupd/callers"
	"github.com/backupd/backupd/testenv"
)

// TestGeneratedPythonClient proves the proto is enough for another team:
// it generates a Python client from proto/ with stock grpcio-tools, with no
// include path but the proto's own, and runs pyclient/test_generated_client.py
// with it against backupd on moto. That file calls every RPC and decodes
// the google.rpc details (ErrorInfo, BadRequest, RetryInfo) the way a
// Python caller would.
func TestGeneratedPythonClient(t *testing.T) {
	python := testenv.Python(t)
	moto := testenv.MotoURL(t)

	gen := t.TempDir()
	protoc := exec.Command(python, "-m", "grpc_tools.protoc", "-I", "../proto",
		"--python_out", gen, "--grpc_python_out", gen, "backup/v1/backup_service.proto")
	if out, err := protoc.CombinedOutput(); err != nil {
		t.Fatalf("grpc_tools.protoc: %v\n%s", err, out)
	}

	inst, a, slow := startForClient(t, moto, "py-platform", "py-reader")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	script, err := filepath.Abs("pyclient/test_generated_client.py")
	if err != nil {
		t.Fatal(err)
	}
	run := exec.CommandContext(ctx, python, script)
	run.Env = append(os.Environ(),
		"PYTHONPATH="+gen,
		"BACKUPD_GRPC="+inst.grpcAddr,
		"BACKUPD_TOKEN=py-platform",
		"BACKUPD_READER_TOKEN=py-reader",
		"BACKUPD_ACCOUNT="+a,
		"BACKUPD_SLOW_ACCOUNT="+slow,
		"BACKUPD_UNCONFIGURED_ACCOUNT="+testenv.UniqueAccountID(t),
		"BACKUPD_TABLE=Orders",
	)
	out, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("the generated Python client's tests failed: %v\n%s\nbackupd's log:\n%s", err, out, inst.logs)
	}
	t.Logf("%s", out)
}

// startForClient starts backupd on moto for a generated client's checks:
// account a and account slow, whose CreateBackup rate is 0.2 a second,
// each with table Orders; callers platform (token platform, every
// operation in every account) and reader (token reader, GetBackup and
// ListBackups in a).
func startForClient(t *testing.T, moto, platform, reader string) (inst *instance, a, slow string) {
	t.Helper()
	a, _ = newAccount(t, moto, "Orders")
	slow, _ = newAccount(t, moto, "Orders")
	inst = startBackupd(t, instanceOptions{
		Accounts: []account{{ID: a}, {ID: slow, CreateRate: 0.2}},
		Env:      motoEnv(moto),
		Callers: `callers:
  - {name: platform, token_sha256: ` + callers.HashToken(platform) + `, accounts: ["*"], operations: ["*"]}
  - {name: reader, token_sha256: ` + callers.HashToken(reader) + `, accounts: ["` + a + `"], operations: [GetBackup, ListBackups]}
`,
	})
	return inst, a, slow
}

// TestOpenAPIDescriptionValidates checks the OpenAPI description REST
// clients are generated from with an independent validator: a generator
// that refuses it would leave REST callers to write their client by hand.
func TestOpenAPIDescriptionValidates(t *testing.T) {
	python := testenv.Python(t)
	for file, want := range map[string]int{
		"../gen/openapiv2/backup/v1/backup_service.swagger.json": 0,
		"pyclient/invalid_openapi.json":                          3, // refused: the check can fail
	} {
		out, err := exec.Command(python, "pyclient/validate_openapi.py", file).CombinedOutput()
		code := 0
		if exit, ok := errors.AsType[*exec.ExitError](err); ok {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if code != want {
			t.Errorf("%s: validator exit %d, want %d\n%s", file, code, want, out)
		}
		t.Logf("%s: %s", file, bytes.TrimSpace(out))
	}
}
