//go:build !race

package etesting

// Race is true when the test binary is built with -race: the tortures
// then run shorter.
const Race = false
