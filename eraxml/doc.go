// Package eraxml is the intermediate representation of dm-era metadata that
// the era command's dump, restore and invalidate speak.
//
// A [Metadata] value holds the logical content of an era metadata device as
// thin-provisioning-tools 0.9.0 sees it: the superblock fields, the archived
// writesets (the writeset tree) and the era array. It is read from and written
// to the XML of era_dump/era_restore, and rendered as JSON.
//
// Writers:
//
//   - [WriteDump] writes exactly what era_dump 0.9.0 prints (one <bit> line
//     per bit, one <era> line per block).
//   - [WriteLogicalDump] writes what era_dump --logical prints, optionally
//     reproducing 0.9.0's choice of the lowest-era writeset.
//   - [WriteCompactDump] writes writesets as <marked block_begin len/> runs,
//     the compact form of the newer (Rust) tools. era_restore 0.9.0 does not
//     accept it ("unknown tag type"); [Read] does.
//   - [WriteInvalidate] writes what era_invalidate 0.9.0 prints for the
//     ranges computed by [WrittenSince].
//   - [WriteJSON] and [WriteRangesJSON] write the JSON forms documented on
//     those functions.
//
// [Read] parses any of the XML forms in a streaming fashion with bounded
// memory; its errors carry line numbers and wrap [ErrSyntax].
package eraxml
