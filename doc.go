// Package era tracks which blocks of a disk image or device were written in
// which era, in user space, as the Linux device-mapper era target does in
// the kernel, with metadata byte-compatible with the kernel's.
//
// # The types
//
//   - Device wraps an origin (any io.ReaderAt + io.WriterAt) and a metadata
//     store (Open). Every write passes through to the origin, and the device
//     records which origin blocks it touched in the current era, a 32-bit
//     counter that Checkpoint moves on. WrittenSince answers "which blocks
//     changed since era N?", which is what an incremental backup copies.
//   - View is a read-only view of era metadata: the committed state
//     (OpenView), a held metadata snapshot (OpenSnapshot, Snapshot.View), or
//     a running device's last commit (Device.View).
//   - Snapshot is a metadata snapshot owned by whoever took it
//     (HoldSnapshot); a point-in-time one (HoldPointInTime) also reads as
//     the image of its moment while writes go on, its blocks' old content
//     copied to a difference store before they are overwritten.
//   - ChangeID names a point in one device's history: its metadata's
//     identity and an era.
//   - Status is what the kernel's target reports; Stats counts what a
//     device has done; Event is what it reports to an operator.
//   - Check verifies metadata; View.Dump and Restore convert it from and to
//     the XML of the kernel's tools (package eraxml).
//
// # The promise
//
// A write to a block not yet marked in the current era reaches the origin
// only after the mark is committed to the metadata (written, synced,
// superblock last). No crash can hide a change. A write to a block already
// marked costs one bit test. A Device owns its metadata store (ErrLocked for
// a second owner), never formats a store it was not asked to (Config.Format),
// keeps the metadata it uses bounded (Config.MaxBacklog, MetadataSize) and
// recovers from a full store without a reopen.
//
// # Several consumers
//
// Any number of backup agents can share one device without coordinating,
// as VMware's changed block tracking lets them: eras are one timeline that
// only moves forward, and each agent keeps its own place in it, a change ID.
// An agent checkpoints (or takes a snapshot), records the change ID of the
// era that began, and next time asks what changed since that change ID.
// Another agent's checkpoints only move the timeline on; they never remove
// a change from anyone's answer, so nothing is lost whatever the agents do
// meanwhile. This gives what QEMU's one persistent dirty bitmap per
// consumer and libvirt's named checkpoints give, without per-consumer state
// in the metadata: the union of every bitmap since a checkpoint is exactly
// "written since its era". A change ID from other metadata (reformatted,
// restored without its identity, another device) or from an era the
// metadata has not reached fails with ErrStaleChangeID: only a full backup
// is safe then.
//
// In the device's process, Device.View gives each consumer a consistent
// view of its own moment, kept intact until it is closed. For readers in
// other processes and for the kernel's tools there is one on-disk metadata
// snapshot; HoldSnapshot makes it owned, so that no other consumer can drop
// it, and a view whose snapshot was dropped fails with ErrSnapshotDropped,
// never with ErrCorrupt.
//
// The on-disk format and the kernel's semantics this package follows are in
// docs/format.md.
package era
