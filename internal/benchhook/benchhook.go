// Package benchhook lets the module's benchmark reach what the era
// package does not export.
package benchhook

// MarkOnly, set by package era, marks blocks [lo, hi) of d (an
// *era.Device) in its current era, committing the marks, without writing
// them. The point-in-time figure uses it to time a snapshot's copies apart
// from the marks a new era needs anyway.
var MarkOnly func(d any, lo, hi uint64) error
