//go:build !unix

package bench

import "time"

// ProcessCPU returns the CPU time this process has used, and whether it
// could be read: on this platform it cannot.
func ProcessCPU() (time.Duration, bool) { return 0, false }
