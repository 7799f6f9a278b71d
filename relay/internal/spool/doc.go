// Package spool is the relay's durable message queue: it stores each accepted message
// and its envelope on disk before the SMTP server answers 250, and keeps the delivery
// state (attempts, next attempt, per-recipient outcome) that the queue runner updates.
//
// # On-disk layout
//
//	<dir>/LOCK           flock'd while a Spool is open, so two processes never share a dir
//	<dir>/tmp/           files being written; everything here is garbage after a crash
//	<dir>/queue/ID.body  the raw message exactly as accepted; never modified
//	<dir>/queue/ID.json  the envelope and delivery state; replaced atomically
//	<dir>/corrupt/       entries that failed validation at Open; kept for an operator
//
// A message exists when, and only when, queue/ID.json exists and queue/ID.body has the
// size recorded in it. Accept writes tmp/ID.body while streaming, writes tmp/ID.json,
// fsyncs both at once, then hands them to the committer, which renames the body and
// then the state into queue/ and fsyncs queue/ once for every message in the batch
// (group commit). Accept returns only after that directory fsync, so a 250 always
// refers to a message that survives a crash.
//
// A crash at any point leaves either a complete message or garbage that Open removes:
//
//   - before the renames: only tmp/ files, which Open deletes;
//   - between the two renames: a body without state, an orphan that Open deletes;
//   - after the renames but before the directory fsync: the complete message, never
//     acknowledged, so the client may send it again (a duplicate, never a loss); or,
//     after a power loss, any subset of the two files. A state file whose body is
//     missing or has the wrong size is never delivered: Open moves it to corrupt/.
//
// The body file is never modified, so header fields that can only be made once the
// whole body has been read (the relay's DKIM signatures) go into the state instead:
// AcceptSealed calls its seal after the body's last byte and before it writes the
// state, which then holds them as Envelope.Prepend, fsync'd with the body before the
// accept returns. Whoever reads the message as a whole (delivery, DSNs, the queue
// admin) reads Content: the prefix, then the body.
//
// Update writes the new state to tmp/ with fsync and renames it over queue/ID.json in
// the next group commit, so a reader or a crash sees the old or the new state, never a
// torn one. Remove unlinks the state first (the commit point) and then the body.
//
// A message an administrator holds (Message.Held) keeps its files and its NextAttempt
// but is never due: the index keys it after every other message until an Update
// releases it. Hold, release and an administrator's delete are ordinary Updates and
// Removes, with the same durability; who may change a message when is the delivery
// package's business (it never writes a message an administrator is changing).
//
// Group commit: one goroutine, the committer, performs every rename and unlink. It
// takes all ops queued while its previous directory fsync ran, so N concurrent
// sessions share one directory fsync instead of queueing for N of them; the per-file
// fsyncs run in the sessions' own goroutines, where the filesystem merges concurrent
// ones into shared journal commits. Stats reports commits and ops.
//
// Durability rests on the filesystem honouring fsync on files and directories, as
// ext4 and XFS do; the crash tests kill a process, which cannot show power loss.
//
// # Memory
//
// The in-memory index holds, per message, its id, size and next-attempt time in a
// heap ordered by next attempt: about a hundred bytes, so 100k queued messages cost
// around 10 MB. Envelopes, recipient states and bodies stay on disk; Get and Due read
// the small state file.
//
// # Errors
//
// A full disk or exhausted quota while accepting returns an error wrapping both
// ErrInsufficientStorage and the system error, and leaves nothing behind; the SMTP
// layer answers it with a temporary 452 4.3.1.
package spool
