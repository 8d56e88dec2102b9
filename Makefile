# Tool versions are pinned in go.mod (protoc plugins) and tools/go.mod (buf);
# nothing here reaches the network except the module proxy.
BUF := go tool -modfile=tools/go.mod buf
GO_PKGS := ./...

.PHONY: run generate checkgenerate lint test bench load count syscalls

run:
	go run ./cmd/backupd --sandbox

generate:
	$(BUF) lint
	$(BUF) generate

# Fails when gen/ differs from a fresh generation.
checkgenerate: generate
	@git add -N gen && git diff --exit-code --stat -- gen || (echo "gen/ is stale: run make generate and commit" && exit 1)

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^gen/')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	go vet $(GO_PKGS)
	go tool -modfile=tools/go.mod staticcheck $(GO_PKGS)
	$(BUF) lint

# Every test, with moto and redis-server started by the script.
test:
	scripts/test.sh

bench:
	go test -run '^$$' -bench . -benchmem -count 1 -benchtime=2s ./bench/

load:
	go run ./cmd/loadgen -target all -d 5s

# Work per call, counted by callgrind rather than timed (needs valgrind).
count:
	scripts/count.sh

# System calls per call, counted by perf stat (needs perf, and root).
syscalls:
	scripts/syscalls.sh
