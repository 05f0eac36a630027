// Package etesting holds what the era package's external tests (package
// era_test: the crash, fault, fuzz and concurrency tortures and the tests
// that borrow their helpers) share: in-memory and sparse stores, waiting
// for the background digest, range helpers, an independent computation of
// the era of every block, a log of concurrent writes, and whether the test
// binary runs under the race detector.
//
// It imports package era, so only external tests may use it: an internal
// test (package era) importing it would be an import cycle.
package etesting
