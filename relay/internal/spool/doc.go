// Package spool is the relay's durable message queue: it stores each accepted message
// and its envelope on disk before the SMTP server answers 250, and keeps the delivery
// state (attempts, next attempt, per-recipient outcome) that the queue runner updates.
//
// # On-disk layout
//
//	<dir>/LOCK           flock'd while a Spool is open, so two processes never share a dir
//	<dir>/tmp/           files being written; everything here is garbage after a crash
//	<dir>/free/          message files of removed messages, kept for reuse (free.go);
//	                     garbage after a crash too
//	<dir>/queue/ID.msg   the message file: the raw message exactly as accepted, then the
//	                     envelope and state at acceptance, then a footer; never modified
//	<dir>/queue/ID.json  the envelope and delivery state once Update has changed them;
//	                     replaced atomically
//	<dir>/corrupt/       entries that failed validation at Open; kept for an operator
//
// One file per accepted message is the point of the layout: a file creation, a rename
// and an unlink are the costliest system calls on the accept path (more than the
// fsyncs at 32 sessions), and a message delivered at its first attempt, most of them,
// needs no other file. The state goes after the body, since only the body's end fixes
// its size and the seal (below); the footer's fixed size finds it from the file's end.
//
// A message exists when, and only when, queue/ID.msg exists; its footer, and ID.json
// when present, must agree on the id and the body's size. Accept writes tmp/ID.msg
// (or a file from free/) while streaming, appends the state and footer, fsyncs it, then hands it to the
// committer, which renames it into queue/ and fsyncs queue/ once for every message in
// the batch (group commit). Accept returns only after that directory fsync, so a 250
// always refers to a message that survives a crash.
//
// A crash at any point leaves either a complete message or garbage that Open removes:
//
//   - before the rename: only a file in tmp/ or free/, which Open deletes;
//   - after the rename but before the directory fsync: the complete message, never
//     acknowledged, so the client may send it again (a duplicate, never a loss); or,
//     after a power loss, no message at all. Since the file was fsync'd before its
//     rename, a message file in queue/ is always whole; one whose footer does not
//     check out (a damaged disk) is never delivered: Open moves it to corrupt/.
//
// The message file is never modified, so header fields that can only be made once the
// whole body has been read (the relay's DKIM signatures) go into the state instead:
// AcceptSealed calls its seal after the body's last byte and before it writes the
// state, which then holds them as Envelope.Prepend, fsync'd with the body before the
// accept returns. Whoever reads the message as a whole (delivery, DSNs, the queue
// admin) reads Content: the prefix, then the body (OpenBody, which stops before the
// state).
//
// Update writes the new state to tmp/ with fsync and renames it over queue/ID.json in
// the next group commit, so a reader or a crash sees the old or the new state, never a
// torn one; the index remembers which file holds a message's current state. Remove
// unlinks the message file first (the commit point) and then ID.json, which a crash in
// between leaves as an orphan that Open deletes.
//
// Attempt is the one write into a message file after its rename: the runner marks
// each delivery attempt before making it, and the mark (attempt number and next
// attempt, with a CRC) overwrites the footer's attempt marker in place. It is not
// fsync'd: a killed process leaves it in the kernel, which is all it is for (a message
// whose delivery kills the relay waits its backoff instead of looping, and a recipient
// in flight counts as a possible duplicate); a power loss may return the message to
// the state before the attempt, which costs only that bookkeeping. Whoever reads a
// state applies the mark when it records a later attempt than the state does.
//
// So a message delivered at its first attempt costs one file, one file fsync and its
// share of two directory fsyncs, where Postfix's queue needs one file as well; and
// since a removed message's file is renamed into free/ and the next accept writes over
// it, in steady operation not even a file creation or an unlink, only two renames.
//
// Spools written before message files held each message as ID.body and ID.json. Open
// converts them: it writes ID.msg from the two, fsyncs it and the directory, keeps
// ID.json as the later state and only then unlinks ID.body; a crash in between leaves
// both, and the next Open finishes the job.
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
// the state from the message file's end or from ID.json.
//
// # Errors
//
// A full disk or exhausted quota while accepting returns an error wrapping both
// ErrInsufficientStorage and the system error, and leaves nothing behind; the SMTP
// layer answers it with a temporary 452 4.3.1.
package spool
