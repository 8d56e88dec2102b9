package connlimit

import "fmt"

// ownReserve is how many file descriptors a total of connections must
// leave under the process's open-file limit, for backupd's own
// connections to STS, DynamoDB and Redis, and its files.
const ownReserve = 1024

// FileLimitWarning is what to tell operators when total connections would
// leave fewer than ownReserve file descriptors under the process's
// open-file limit: then connections could use every descriptor before the
// limit refused one, which is what the limit is for. It is "" when there
// is room, or when the limit cannot be read.
func FileLimitWarning(total int) string {
	limit, ok := openFileLimit()
	if !ok {
		return ""
	}
	return fileLimitWarning(total, limit)
}

func fileLimitWarning(total int, limit uint64) string {
	if uint64(total)+ownReserve <= limit {
		return ""
	}
	return fmt.Sprintf("listen.max_connections (%d) is not %d under the process's open-file limit (ulimit -n: %d): "+
		"connections could use every file descriptor, leaving none for backupd's calls to STS, DynamoDB and Redis, "+
		"before the limit refuses one; lower max_connections or raise the open-file limit", total, ownReserve, limit)
}
